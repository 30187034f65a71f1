"""What differs between the engines during training, behind one small interface.

    engine.train_step(batch, lr, state, step) -> (loss, gradient norm, final state)
    engine.predictor()                        -> a Predictor (NumPy in, NumPy out)
    engine.checkpoint() / engine.restore(...) -> weights and optimizer state as arrays
    engine.save_model(path)                   -> an lstmlab model file

The loop in `loop.py` is the same for both; so are its callbacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig, TrainConfig
from ..interfaces import Engine
from ..io.files import save
from ..models import network_class
from ..tasks.base import Batch, Predictor

# where --precision fp16 trains: GPUs (a CPU gains nothing from float16, and oneDNN's fused
# LSTM refuses it there)
FP16_DEVICES = ("cuda",)


def make_engine(name: str, model: ModelConfig, train: TrainConfig, loss: str, device=None,
                world=None) -> Engine:
    """The engine `name` (world: a distributed.World when training on several processes)."""
    if name == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy engine runs on the CPU only, got --device {device}")
        if world is not None:
            raise ValueError("training on several processes (--nproc, torchrun) needs --engine torch")
        if train.precision != "fp32":
            raise ValueError(f"--precision {train.precision} needs --engine torch (the numpy engine "
                             "computes in the model's dtype)")
        return NumpyEngine(model, train, loss)
    if name == "torch":
        return TorchEngine(model, train, loss, device, world)
    raise ValueError(f"engine must be 'numpy' or 'torch', got {name!r}")


class NumpyEngine:
    name = "numpy"

    def __init__(self, model: ModelConfig, train: TrainConfig, loss: str):
        from ..numpy import SGD, Adam, RMSprop

        self.config, self.train, self.loss = model, train, loss
        self.model = network_class(model, "numpy")(model, seed=train.seed)
        self.dtype = self.model.dtype
        opt = {"adam": lambda p: Adam(p, lr=train.lr),
               "sgd": lambda p: SGD(p, lr=train.lr, momentum=0.9),
               "rmsprop": lambda p: RMSprop(p, lr=train.lr)}[train.optimizer]
        self.opt = opt(self.model.params)

    def train_step(self, batch: Batch, lr: float, state, step: int) -> tuple[float, float, Any]:
        from ..numpy import clip_grad_norm, ctc_loss, gaussian_nll_loss, mse_loss, softmax_cross_entropy

        x = batch.x.astype(self.dtype) if batch.x.dtype.kind == "f" else batch.x
        with np.errstate(over="ignore", invalid="ignore"):        # divergence is caught below
            if self.config.architecture == "seq2seq":
                out, _, cache = self.model.forward(x, batch.target_in, batch.lengths)
                final = None                                     # no state carries between batches
            else:
                out, final, cache = self.model.forward(x, state, batch.lengths)
            if self.loss in ("mse", "gaussian"):
                mask = None if batch.mask is None else batch.mask[..., None]
                fn = mse_loss if self.loss == "mse" else gaussian_nll_loss
                loss, dout = fn(out, batch.y.astype(self.dtype), mask)
            elif self.loss == "ctc":                             # an impossible alignment counts 0
                frames = np.full(out.shape[1], out.shape[0]) if batch.lengths is None else batch.lengths
                loss, dout = ctc_loss(out, batch.y, frames, batch.target_lengths, zero_infinity=True)
            else:
                loss, dout = softmax_cross_entropy(out, batch.y, batch.mask)
            if not np.isfinite(loss):
                return loss, float("nan"), final
            grads, _ = self.model.backward(cache, dout)
            norm = clip_grad_norm(grads, self.train.clip if self.train.clip else np.inf)
            if not np.isfinite(norm):
                return float("nan"), norm, final
            self.opt.lr = lr
            self.opt.step(grads)
        return loss, norm, final

    def predictor(self) -> Predictor:
        return predictor_for(self.model)

    def checkpoint(self) -> tuple[dict, dict]:
        arrays, scalars = self.opt.state_dict()
        tensors = {f"model/{k}": v for k, v in self.model.params.items()}
        tensors.update({f"optim/{k}": v for k, v in arrays.items()})
        return tensors, scalars

    def restore(self, tensors: dict, scalars: dict) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
        self.opt.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("optim/")},
                                 scalars)

    def load_weights(self, arrays: dict) -> None:
        self.model.load_state_dict(arrays)

    def save_model(self, path) -> Path:
        return save(self.model, path)

    @property
    def num_params(self) -> int:
        return self.model.num_params

    @staticmethod
    def state_to_arrays(state) -> list:
        return [] if state is None else list(state) if isinstance(state, tuple) else [state]

    @staticmethod
    def arrays_to_state(arrays: list):
        return None if not arrays else tuple(arrays) if len(arrays) > 1 else arrays[0]


class TorchEngine:
    name = "torch"

    def __init__(self, model: ModelConfig, train: TrainConfig, loss: str, device=None, world=None):
        import torch

        from ..torch import resolve_device

        self.torch, self.world = torch, world
        self.config, self.train, self.loss = model, train, loss
        self.device = resolve_device(device or "cpu")
        if world is not None and self.device.type == "cuda":       # one GPU per local rank
            if world.local_rank >= torch.cuda.device_count():
                raise ValueError(f"{torch.cuda.device_count()} GPU(s) for more processes on this "
                                 "machine; give --nproc at most the number of GPUs")
            self.device = torch.device("cuda", world.local_rank)
            torch.cuda.set_device(self.device)
        if train.precision == "bf16" and self.device.type == "cpu" \
                and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise ValueError("--precision bf16 on the CPU needs bfloat16 instructions (AVX512-BF16 "
                             f"or AMX; this CPU has {torch.backends.cpu.get_cpu_capability()}, and "
                             "oneDNN's LSTM refuses bfloat16 there): train in fp32, or on a GPU")
        if train.precision == "fp16" and self.device.type not in FP16_DEVICES:
            raise ValueError("--precision fp16 needs a GPU (--device cuda): on the CPU train in "
                             "fp32, or bf16 where the CPU has bfloat16 instructions")
        # autocast's type, and fp16's gradient scaler: the loss is multiplied by a large
        # factor before backward so that small float16 gradients do not flush to zero, the
        # gradients divided by it again; a step whose gradients overflow is skipped and the
        # factor halved (torch.amp.GradScaler; a no-op for the other precisions)
        self._autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(train.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=train.precision == "fp16")
        self.model = network_class(model, "torch")(model, seed=train.seed, device=self.device)
        self.net = self.model                                    # what a training step calls
        if world is not None:                                    # gradients averaged over the ranks
            world.start(self.device)
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        params = self.model.parameters()
        self.opt = {"adam": lambda: torch.optim.Adam(params, lr=train.lr),
                    "sgd": lambda: torch.optim.SGD(params, lr=train.lr, momentum=0.9),
                    "rmsprop": lambda: torch.optim.RMSprop(params, lr=train.lr)}[train.optimizer]()
        self._like = next(self.model.parameters())               # inputs take its device, dtype
        # y's batch axis: CTC labels (B, L) and a readout of the last step (B, O) have no T
        self._y_batch_axis = 0 if loss == "ctc" or model.readout == "last" else 1

    def train_step(self, batch: Batch, lr: float, state, step: int) -> tuple[float, float, Any]:
        torch = self.torch
        rank = 0 if self.world is None else self.world.rank
        torch.manual_seed(self.train.seed * 1_000_003 + step + 7_919 * rank)   # dropout: resumable
        self.model.train()
        if self.world is not None:                               # this rank's share of the batch
            batch = self.world.shard(batch, self._y_batch_axis)
        y = _to_torch(batch.y, self._like)
        with torch.autocast(self.device.type, self._autocast or torch.bfloat16,
                            enabled=self._autocast is not None):
            if self.config.architecture == "seq2seq":
                out, final = self.net(batch.x, batch.target_in, batch.lengths)[0], None
            else:
                x, state = _to_torch(batch.x, self._like), _state_to_torch(state, self._like)
                lengths = None if batch.lengths is None else torch.as_tensor(batch.lengths)
                out, final = self.net(x, state, lengths)
        if self._autocast is not None:                           # the loss and state at full width
            out, final = out.to(self._like.dtype), _state_like(final, self._like)
        total, count = self._loss_terms(batch, out, y)
        if self.world is None:
            loss = total / count
            value = loss.item()
        else:                                                    # over the whole batch, not the share
            both = self.world.sum(torch.stack([total.detach().cpu(), count.detach().cpu()]).double())
            loss = total / float(both[1]) * self.world.size      # DDP averages the gradients
            value = float(both[0] / both[1])
        final = None if final is None else _detach_numpy(final)
        if not np.isfinite(value):
            return value, float("nan"), final
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)                           # the true gradients, to clip
        norm = float(torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.train.clip if self.train.clip else float("inf")))
        if not np.isfinite(norm):
            if self.scaler.is_enabled():                         # float16 overflowed: skip the
                self.scaler.update()                             # step, halve the scale
                return value, norm, final
            return float("nan"), norm, final
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.scaler.step(self.opt)
        self.scaler.update()
        return value, norm, final

    def _loss_terms(self, batch: Batch, out, y):
        """(sum, count) of the loss over this batch (or share): the loss is sum / count, and
        across ranks the sums over the counts."""
        torch = self.torch
        if self.loss in ("mse", "gaussian"):
            if self.loss == "mse":
                err = (out - y) ** 2
            else:                                                # as numpy's gaussian_nll_loss
                mu, logvar = out.chunk(2, dim=-1)
                err = 0.5 * (logvar + (y - mu) ** 2 * torch.exp(-logvar))
            if batch.mask is None:
                return err.sum(), torch.tensor(float(err.numel()))
            m = _to_torch(batch.mask, self._like)[..., None]
            return (err * m).sum(), m.sum() * err.shape[-1]
        if self.loss == "ctc":                                   # as numpy's ctc_loss: per sequence
            frames = torch.full((out.shape[1],), out.shape[0]) if batch.lengths is None \
                else torch.as_tensor(batch.lengths)                   # over its labels, then the mean
            labels = torch.as_tensor(batch.target_lengths)
            per = torch.nn.functional.ctc_loss(torch.log_softmax(out, dim=-1), y.long(), frames,
                                               labels, reduction="none", zero_infinity=True)
            return (per / labels.clamp(min=1).to(per)).sum(), torch.tensor(float(out.shape[1]))
        logp = torch.log_softmax(out, dim=-1)
        nll = -logp.gather(-1, y.long()[..., None])[..., 0]
        m = torch.ones_like(nll) if batch.mask is None else _to_torch(batch.mask, self._like)
        return (nll * m).sum(), m.sum()

    def predictor(self) -> Predictor:
        return predictor_for(self.model)

    def checkpoint(self) -> tuple[dict, dict]:
        tensors = {f"model/{k}": _to_numpy(v) for k, v in self.model.state_dict().items()}
        sd = self.opt.state_dict()
        scalars = {"param_groups": sd["param_groups"], "state": {}}
        for idx, st in sd["state"].items():
            scalars["state"][str(idx)] = {}
            for key, v in st.items():
                if self.torch.is_tensor(v) and v.ndim > 0:
                    tensors[f"optim/{idx}/{key}"] = _to_numpy(v)
                else:
                    scalars["state"][str(idx)][key] = float(v)
        if self.scaler.is_enabled():
            scalars["grad_scaler"] = self.scaler.state_dict()
        return tensors, scalars

    def restore(self, tensors: dict, scalars: dict) -> None:
        torch = self.torch
        self.load_weights({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
        state = {int(i): {k: torch.tensor(v) for k, v in s.items()}
                 for i, s in scalars["state"].items()}
        for key, v in tensors.items():
            if key.startswith("optim/"):
                _, idx, name = key.split("/")
                state.setdefault(int(idx), {})[name] = torch.from_numpy(np.array(v)).to(self.device)
        self.opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})
        if self.scaler.is_enabled() and "grad_scaler" in scalars:
            self.scaler.load_state_dict(scalars["grad_scaler"])

    def load_weights(self, arrays: dict) -> None:
        self.model.load_state_dict({k: self.torch.from_numpy(np.array(v)) for k, v in arrays.items()})

    def save_model(self, path) -> Path:
        return save(self.model, path)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    state_to_arrays = staticmethod(NumpyEngine.state_to_arrays)
    arrays_to_state = staticmethod(NumpyEngine.arrays_to_state)


def predictor_for(model) -> Predictor:
    """NumPy-in, NumPy-out inference around a SequenceModel or Seq2Seq of either engine."""
    if getattr(model.config, "architecture", "sequence") == "seq2seq":
        return _seq2seq_predictor(model)
    if hasattr(model, "params"):                                 # NumPy engine
        def numpy_trace(x):
            if model.embedding is not None:
                x = model.embedding(x)
            return model.rnn.trace(x)

        return Predictor(run=model, trace=numpy_trace, config=model.config, model=model)

    import torch

    like = next(model.parameters())

    def run(x, state=None, lengths=None, final=True):
        model.eval()
        with torch.no_grad():
            out, last = model(_to_torch(x, like), _state_to_torch(state, like),
                              None if lengths is None else torch.as_tensor(lengths), final)
        return out.cpu().numpy(), _detach_numpy(last) if final else None

    def trace(x):
        model.eval()
        with torch.no_grad():
            x = _to_torch(x, like)
            if model.embedding is not None:
                x = model.embedding(x)
            tr = model.rnn.trace(x)
        return {k: {n: _to_numpy(a) for n, a in v.items()} for k, v in tr.items()}

    return Predictor(run=run, trace=trace, config=model.config, model=model)


def ensemble_predictor(members: list[Predictor]) -> Predictor:
    """Several trained models of one task as one: their outputs averaged (a forecast's
    corrections, a classifier's logits), as the M4 competition's leaders combined theirs. A
    state is the tuple of the members' states."""
    configs = {(m.config.architecture, m.config.output_size) for m in members}
    if len(configs) > 1 or next(iter(configs))[0] != "sequence":
        raise ValueError("an ensemble needs sequence models with the same outputs: "
                         f"{sorted(configs)}")

    def run(x, state=None, lengths=None, final=True):
        states = state if state is not None else (None,) * len(members)
        outs = [m.run(x, s, lengths, final) for m, s in zip(members, states)]
        return (np.mean([o for o, _ in outs], axis=0),
                tuple(s for _, s in outs) if final else None)

    def trace(x):
        raise ValueError("an ensemble has no single cell to trace: inspect one of its runs")

    return Predictor(run=run, trace=trace, config=members[0].config)


def _seq2seq_predictor(model) -> Predictor:
    """run, trace and decode of a Seq2Seq (see Predictor), NumPy in and out, either engine."""
    if hasattr(model, "params"):                                 # NumPy engine
        return Predictor(run=model, config=model.config, decode=model.decode, model=model,
                         trace=lambda x, lengths=None: model.encoder.trace(
                             model.src_embedding(x), lengths=lengths))

    import torch

    def run(x, target_in, lengths=None):
        model.eval()
        with torch.no_grad():
            logits, attn = model(x, target_in, lengths)
        return logits.cpu().numpy(), attn.cpu().numpy()

    def decode(x, lengths=None, max_len=32):
        model.eval()
        ids, attn = model.decode(x, lengths, max_len)
        return ids.cpu().numpy(), attn.cpu().numpy()

    def trace(x, lengths=None):
        model.eval()
        with torch.no_grad():
            emb = model.encoder["embedding"](model._ids(x, model.config.vocab_size))
            tr = model.encoder["rnn"].trace(emb, lengths=lengths)
        return {k: {n: _to_numpy(a) for n, a in v.items()} for k, v in tr.items()}

    return Predictor(run=run, trace=trace, config=model.config, decode=decode, model=model)


def _to_torch(a, like):
    """A NumPy array as a tensor on `like`'s device (and of its dtype, if floating)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.to(like.device, like.dtype if t.is_floating_point() else None)


def _state_to_torch(state, like):
    if state is None:
        return None
    return tuple(_to_torch(s, like) for s in state) if isinstance(state, tuple) else _to_torch(state, like)


def _state_like(state, like):
    """A state (a tensor, a tuple of them or None) in `like`'s dtype."""
    if state is None:
        return None
    return tuple(s.to(like.dtype) for s in state) if isinstance(state, tuple) else state.to(like.dtype)


def _to_numpy(v):
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def _detach_numpy(state):
    if isinstance(state, tuple):
        return tuple(_to_numpy(s) for s in state)
    return _to_numpy(state)

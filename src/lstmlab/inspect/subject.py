"""What the analyses inspect: a trained model with its task, in either engine, and the hooks
they need from it.

`Subject` holds a model (lstmlab.numpy's or lstmlab.torch's SequenceModel or Seq2Seq, or
one of their recurrent stacks) with the task of its run when there is one. The analyses
never look at which engine it is: they call

    subject.record(inputs)                    -> outputs and every gate and state, as NumPy
    subject.gradients(inputs, make_dout)      -> dL/d(input) and dL/dh_t, dL/dc_t, as NumPy
    with subject.edited(edit): ...            -> the model runs with a clamp (ablation)

and each engine answers through the recurrent stacks' `edit` hook (see
lstmlab.numpy.reference: every step hands each gate and state it makes to it), so both
engines are inspected by the same code and give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..numpy.seq2seq import BOS
from ..tasks.base import Inputs, Predictor, Task

# what a model's gates and states are called in the results: per family, in step order
STEP_NAMES = {"lstm": ("i", "f", "g", "c", "o", "h"), "gru": ("r", "z", "n", "h"), "rnn": ("h",)}


@dataclass
class Subject:
    """A model to inspect, with its task (None for a bare model) and its run folder."""
    predictor: Predictor
    engine: str                        # "numpy" or "torch"
    task: Task | None = None
    run: Path | None = None

    @property
    def model(self):
        return self.predictor.model

    @property
    def config(self) -> ModelConfig:
        return self.predictor.config

    @property
    def seq2seq(self) -> bool:
        return self.config.architecture == "seq2seq"

    @property
    def name(self) -> str:
        """How figures and tables name this model: its run folder's name, or its variant."""
        return self.run.name if self.run is not None else self.config.variant

    def stacks(self) -> dict[str, Any]:
        """The recurrent stacks by the prefix their groups carry: {"": rnn} for a sequence
        model, {"encoder.": ..., "decoder.": ...} for a seq2seq one."""
        m = self.model
        if not self.seq2seq:
            return {"": m.rnn}
        if self.engine == "numpy":
            return {"encoder.": m.encoder, "decoder.": m.decoder}
        return {"encoder.": m.encoder["rnn"], "decoder.": m.decoder["rnn"]}

    def layer_groups(self) -> list[str]:
        """Every layer and direction, "l0", "l0_reverse", ... (seq2seq: "encoder.l0", ...)."""
        out = []
        for prefix, stack in self.stacks().items():
            for k in range(stack.num_layers):
                out += [f"{prefix}l{k}"] + ([f"{prefix}l{k}_reverse"] if stack.bidirectional else [])
        return out

    def hidden_size(self, group: str) -> int:
        return self.stacks()[prefix_of(group)].hidden_size

    # --- running -------------------------------------------------------------------------
    @contextmanager
    def edited(self, edit: Callable | None) -> Iterator[None]:
        """Run the model with every stack's `edit` set to `edit(group, name, value, when)`
        (group with its prefix, as layer_groups names it); restored afterwards."""
        stacks = self.stacks()
        for prefix, stack in stacks.items():
            stack.edit = None if edit is None else _prefixed(edit, prefix)
        try:
            yield
        finally:
            for stack in stacks.values():
                stack.edit = None

    def run_outputs(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray | None]:
        """(outputs, attention): the model's outputs on `inputs` ((T, B, O), or (B, O) for a
        readout of the last state or the mean; seq2seq: logits (T2, B, V) with its attention
        (B, T2, S)), with whatever edit is set."""
        x = self.as_input(inputs.x)
        if self.seq2seq:
            logits, attn = self.predictor.run(x, inputs.target_in, inputs.lengths)
            return np.asarray(logits), np.asarray(attn)
        out, _ = self.predictor.run(x, None, inputs.lengths)
        return np.asarray(out), None

    def input_picture(self, x) -> tuple[np.ndarray, int, str] | None:
        """The task's picture of what one sequence's steps read, x (T, F) (Task.input_picture:
        speech's spectrogram), or None."""
        return None if self.task is None or self.seq2seq else self.task.input_picture(np.asarray(x))

    def as_input(self, x: np.ndarray) -> np.ndarray:
        """x in the dtype the model reads: token ids as int64, features in the model's dtype."""
        x = np.asarray(x)
        return x.astype(np.int64) if x.dtype.kind in "iub" else x.astype(np.dtype(self.config.dtype))

    def with_targets(self, inputs: Inputs) -> Inputs:
        """A seq2seq model's inputs with decoder inputs: the given ones, or BOS and its own
        greedy translation; any other model's as they are."""
        if not self.seq2seq or inputs.target_in is not None:
            return inputs
        assert self.predictor.decode is not None
        ids, _ = self.predictor.decode(self.as_input(inputs.x), inputs.lengths)
        ids = np.asarray(ids)                                    # (T2, B), PAD after EOS
        target_in = np.concatenate([np.full((1, ids.shape[1]), BOS, ids.dtype), ids[:-1]])
        steps = None
        if self.task is not None and hasattr(self.task, "target_symbols"):
            steps = [self.task.target_symbols(target_in[:, b]) for b in range(ids.shape[1])]
        return Inputs(x=inputs.x, steps=inputs.steps, lengths=inputs.lengths, values=inputs.values,
                      target_in=target_in, target_steps=steps)

    def record(self, inputs: Inputs) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]],
                                              np.ndarray | None]:
        """(outputs, groups, attention) on `inputs`: groups[group][name] (T, B, H) for every
        gate and state the steps made (see STEP_NAMES; h before a projection), zero past each
        sequence's end. Seq2seq: `inputs` must carry target_in (see with_targets)."""
        rec = _Recorder(self, inputs)
        with self.edited(rec):
            out, attn = self.run_outputs(inputs)
        return out, rec.result(), attn

    def gradients(self, inputs: Inputs, make_dout: Callable[[np.ndarray], np.ndarray],
                  states: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """(outputs, dL/d(input) (T, B, I), {group: {"h": dL/dh_t, "c": dL/dc_t}} each (T, B, H))
        for L = sum(outputs * make_dout(outputs)), where the input is the stack's (the
        embedded tokens of a token model). dL/dh_t is the whole gradient that reaches the h
        step t made (through the outputs and every later step); dL/dc_t the gradient that
        reaches c_t from the steps after it, which the cell carries back (the constant error
        carousel). states=False leaves the states' gradients out (empty dict)."""
        if self.seq2seq:
            raise ValueError("gradients are not drawn for seq2seq runs (translate) yet; "
                             "inspect their activations and attention instead")
        if self.config.proj_size:
            raise ValueError("gradient flow is drawn for models without a projection "
                             "(proj_size 0)")
        x = self.as_input(inputs.x)
        if self.engine == "numpy":
            # a vanishing gradient is what gradient flow shows: its underflow is expected
            with np.errstate(under="ignore"):
                out, dx, sg = _numpy_gradients(self.model, x, inputs.lengths, make_dout)
            return out, dx, sg if states else {}
        return _torch_gradients(self, x, inputs.lengths, make_dout, states)


def prefix_of(group: str) -> str:
    """The stack prefix of a group: "" for "l0", "decoder." for "decoder.l1_reverse"."""
    return group[:group.rindex(".") + 1] if "." in group else ""


def _prefixed(edit: Callable, prefix: str) -> Callable:
    return lambda group, name, value, when: edit(prefix + group, name, value, when)


class _Recorder:
    """An `edit` that changes nothing and keeps every value, placed at its step (`when`)."""

    def __init__(self, subject: Subject, inputs: Inputs):
        self.lengths = inputs.lengths
        T = inputs.x.shape[0]
        T2 = T if inputs.target_in is None else inputs.target_in.shape[0]
        self.steps = {"": T, "encoder.": T, "decoder.": T2}
        self.B = inputs.x.shape[1]
        self.groups: dict[str, dict[str, np.ndarray]] = {}

    def __call__(self, group, name, value, when):
        v = _numpy(value)
        store = self.groups.setdefault(group, {})
        if name not in store:
            store[name] = np.zeros((self.steps[prefix_of(group)], self.B, v.shape[-1]), v.dtype)
        _place(store[name], _numpy(when), v)
        return value

    def result(self) -> dict[str, dict[str, np.ndarray]]:
        if self.lengths is not None:                             # zero past each end, as trace
            for group, store in self.groups.items():
                if group.startswith("decoder."):
                    continue
                for v in store.values():
                    T = v.shape[0]
                    v[np.arange(T)[:, None] >= np.asarray(self.lengths)[None, :]] = 0.0
        return self.groups


def _place(arr: np.ndarray, when: np.ndarray, v: np.ndarray) -> None:
    """arr[when] = v for one step's values v (B, H): `when` is the step (an int), or one
    step per sequence (B,) in a reverse direction with lengths."""
    if np.ndim(when) == 0:
        arr[int(when)] = v
    else:
        arr[when, np.arange(arr.shape[1])] = v


def _numpy(v) -> np.ndarray:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def _numpy_gradients(model, x, lengths, make_dout):
    out, _, cache = model.forward(x, None, lengths)
    dout = make_dout(np.asarray(out)).astype(out.dtype)
    sg: dict = {}
    model.backward(cache, dout, state_grads=sg)
    dinput = sg.pop("input")
    return np.asarray(out), np.asarray(dinput), {g: {k: v for k, v in d.items() if k in ("h", "c")}
                                                 for g, d in sg.items()}


def _torch_gradients(subject: Subject, x, lengths, make_dout, states: bool):
    import torch

    model = subject.model
    like = next(model.parameters())
    kept: dict[str, dict[str, list]] = {}
    leaf: list = []

    def keep(group, name, value, when):                          # h and c as the steps made them
        if states and name in ("h", "c"):
            kept.setdefault(group, {}).setdefault(name, []).append((_numpy(when), value))
        return value

    if model.embedding is not None:
        def as_leaf(module, args, output):                       # d/d(embedded tokens)
            e = output.detach().requires_grad_(True)
            leaf.append(e)
            return e

        handle = model.embedding.register_forward_hook(as_leaf)
        inp = torch.from_numpy(x).to(like.device)
    else:
        handle = None
        inp = torch.from_numpy(x).to(like.device, like.dtype).requires_grad_(True)
        leaf.append(inp)
    model.eval()
    try:
        # an edit sends torch to its step-by-step path: only for the states' gradients
        with subject.edited(keep if states else None), torch.enable_grad():
            out, _ = model(inp, None, None if lengths is None else torch.as_tensor(lengths))
            out_np = _numpy(out)
            dout = torch.from_numpy(make_dout(out_np).astype(out_np.dtype)).to(like.device)
            names = [(g, n) for g, d in kept.items() for n in d]
            tensors = [v for g, n in names for _, v in kept[g][n]]
            grads = list(torch.autograd.grad((out * dout).sum(), [leaf[0], *tensors],
                                             allow_unused=True, retain_graph=True))
            total = {}
            k = 1
            for g, n in names:
                total[g, n] = [grads[k + j] if grads[k + j] is not None else torch.zeros_like(v)
                               for j, (_, v) in enumerate(kept[g][n])]
                k += len(kept[g][n])
            for g in kept:
                if "c" not in kept[g]:
                    continue
                # the NumPy engine's dL/dc_t is the gradient that reaches c_t from the steps
                # after it (what the backward carries); autograd's reaches it also through
                # h_t = o * tanh(c_t) of the same step: take that part out (a product of
                # autograd, no hand-written derivative)
                for j, ((_, h), (_, c)) in enumerate(zip(kept[g]["h"], kept[g]["c"])):
                    direct = torch.autograd.grad(h, c, total[g, "h"][j], retain_graph=True,
                                                 allow_unused=True)[0]
                    if direct is not None:
                        total[g, "c"][j] = total[g, "c"][j] - direct
    finally:
        if handle is not None:
            handle.remove()
    T, B = x.shape[:2]
    state: dict[str, dict[str, np.ndarray]] = {}
    for g, n in names:
        for (when, v), d in zip(kept[g][n], total[g, n]):
            arr = state.setdefault(g, {}).get(n)
            if arr is None:
                arr = state[g][n] = np.zeros((T, B, v.shape[-1]), out_np.dtype)
            _place(arr, when, _numpy(d))
    return out_np, _numpy(grads[0]), state

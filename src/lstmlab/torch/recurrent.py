"""Sequence models in PyTorch: the time loop, both directions, stacking, lengths, projection.

`LSTM`, `GRU` and `RNN` take the arguments of their `lstmlab.numpy` namesakes, start from the
same weights for the same seed and keep them under the same names (PyTorch's state-dict
keys), so weights move between the engines and from torch.nn unchanged.

Three paths compute the same function:
  fast     `lstm`, `gru`, `rnn_tanh`, `rnn_relu`: PyTorch's fused kernels (cuDNN on a GPU),
           called on this module's own parameters; variable lengths via packed sequences.
  sequence the other LSTM variants (not FGR; no projection, recurrent dropout, zoneout
           or edit): each layer and direction one autograd Function whose backward
           is the recurrence written out (sequence.py), instead of a graph of every step.
  generic  every variant: cell (cells.py) -> layer (`run_layer`) -> stack (`_generic`),
           written once; autograd gives the backward pass.
The fast path is taken unless `fast=False`, or a regulariser the kernels lack is active:
zoneout (train and eval), recurrent dropout (train). Inter-layer dropout is the kernels'
own and weight drop hands them dropped weights. `fast=False` runs everything generic.

Variable lengths follow PyTorch's packed sequences, as in lstmlab.numpy: outputs past a
sequence's end are zero, its final state is the state at its last step, and the reverse
direction starts there.
"""

from __future__ import annotations

import numbers
import warnings
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..checks import check_lengths, check_numbers, check_state_shape, state_parts
from ..families import FAMILIES, check_stack, family_of, groups, layer_shapes
from ..numpy.init import init_stack
from ..numpy.workspace import Workspace
from ..spec import VARIANTS, CellSpec
from ..spec import variant as make_spec
from . import sequence
from .cells import StepCell, make_cell
from .device import numpy_dtype, resolve_device
from .regularize import drop_weight, variational_mask
from .regularize import zoneout as zone

# variants whose equations are exactly a torch kernel's, with the kernel's cuDNN mode name
_KERNELS = {VARIANTS[name]: mode for f in FAMILIES.values() for name, mode in f.kernels}
# family name -> the class that builds it (LSTM, GRU, RNN register themselves)
STACKS: dict[str, type[Recurrent]] = {}


def _reverse(a, rev):
    """Reverse (T, B, F) in time; with lengths, each sequence within its own length."""
    if rev is None:
        return a.flip(0)
    return a.gather(0, rev[:, :, None].expand_as(a))


def run_layer(cell: StepCell, w, x, state, mask=None, *, rmask=None, zoneout=0.0, training=False,
              record=None, edit=None):
    """One layer, one direction: x (T, B, F) in this direction's time order.

    state: the initial state components, each (B, n). mask: (T, B, 1) bool, True inside each
    sequence; past its end the state is held and the output is zero. With a projection
    (`weight_hr` in w) h = W_hr h_cell is both the output and the recurrent input.
    rmask: (B, R) variational dropout mask on the recurrent input; zoneout: its probability,
    on h and c. record: a dict of lists that receives the gates, c and h of every step.
    edit: None, or a function (t, name, value) -> value that step t (this direction's order)
    calls on each gate and state it makes (see cells.py's `probe`).
    Returns (y (T, B, R), final state).
    """
    xp = cell.project(w, x)                                      # (T, B, G)
    W_hr = w.get("weight_hr")
    zoned = cell.zoned
    ys = []
    for t in range(x.shape[0]):
        new = cell.step(w, xp[t], state, rmask, _probe(t, record, edit))
        if W_hr is not None:
            new = (new[0] @ W_hr.t(),) + new[1:]                 # h = W_hr h_cell: (B, P)
        if zoneout:
            new = tuple(zone(s, n, zoneout, training) for s, n in zip(state[:zoned], new[:zoned])) \
                + new[zoned:]
        if mask is not None:                                     # past its end a sequence holds its state
            new = tuple(torch.where(mask[t], n, s) for n, s in zip(new, state))
        state = new
        ys.append(state[0])
        if record is not None:
            if len(state) > 1:
                record["c"].append(state[1])
            record["h"].append(state[0])
    y = torch.stack(ys)                                          # (T, B, R)
    return (y if mask is None else y * mask), state


def _probe(t, record, edit):
    """Step t's probe (see cells.py): edits, then records the gates (c and h are recorded by
    run_layer, after the projection and the mask); None when there is nothing to do."""
    if record is None and edit is None:
        return None

    def probe(name, value):
        if edit is not None:
            value = edit(t, name, value)
        if record is not None and name not in ("c", "h"):
            record[name].append(value)
        return value

    return probe


class Recurrent(nn.Module):
    """A stack of recurrent layers, one or two directions each. Use LSTM, GRU or RNN."""

    family: str = ""             # a families.Family's name: the variants this class builds
    default_variant: str = ""    # the family's, set below: what it builds without variant=
    weight_ih_l0: nn.Parameter   # registered in __init__; declared for the type checker

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "family" in vars(cls) and cls.family:               # LSTM, GRU, RNN: one per family
            cls.default_variant = family_of(cls.family).default_variant
            STACKS[cls.family] = cls

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, proj_size: int = 0,
                 variant: str | CellSpec | None = None, batch_first: bool = False,
                 dtype=np.float32, seed: int | None = 0, forget_bias: float | None = None,
                 recurrent_init: str = "uniform", *, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, weight_drop: float = 0.0,
                 fast: bool = True, device=None):
        super().__init__()
        spec = make_spec(variant or self.default_variant)
        check_stack(self.family, spec, input_size, hidden_size, num_layers, proj_size, "torch")
        for name, p in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout),
                        ("zoneout", zoneout), ("weight_drop", weight_drop)):
            if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
        np_dtype = numpy_dtype(dtype)
        dev = None if device is None else resolve_device(device)

        # the same engine-neutral draw as lstmlab.numpy's: one seed, the same model in both
        initial = init_stack(spec, input_size, hidden_size, num_layers, bool(bidirectional),
                             proj_size, np_dtype, seed, forget_bias, recurrent_init)

        self.spec = spec
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, proj_size
        self.num_layers, self.bidirectional = num_layers, bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.num_directions = 2 if bidirectional else 1
        self.out_size = proj_size or hidden_size
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.zoneout, self.weight_drop = float(zoneout), float(weight_drop)
        self.fast = bool(fast)
        self.cell = make_cell(spec, hidden_size, proj_size)      # holds no weights: one for all layers
        self._kernel = _KERNELS.get(spec)
        self._sequence = sequence.covers(spec) and not proj_size
        self._workspace = Workspace()                           # sequence.py's buffers, reused
        for name, value in initial.items():
            self.register_parameter(name, nn.Parameter(torch.tensor(value, device=dev)))
        # (layer, direction) -> [(base name, parameter name)], in storage order
        bases = list(layer_shapes(spec, input_size, hidden_size, proj_size))   # alike in every layer
        self._param_names = {(k, d): [(base, base + sfx) for base in bases]
                             for k, d, sfx in self._groups()}
        self._flatten_parameters()
        # None, or edit(group, name, value, when) -> value: while set, forward runs the generic
        # path and every step hands each gate and state it makes to `edit`, as
        # lstmlab.numpy's `edit` (same arguments; value and when are tensors or an int)
        self.edit = None

    # --- structure -----------------------------------------------------------------------
    def _groups(self):
        """(layer, direction, name suffix) for every layer and direction, in storage order."""
        return groups(self.num_layers, self.num_directions)

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype (follows .to() / .double())."""
        return self.weight_ih_l0.dtype

    @property
    def device(self) -> torch.device:
        """The parameters' device (follows .to() / .cuda())."""
        return self.weight_ih_l0.device

    @property
    def _tuple_state(self) -> bool:
        """Whether the state is a tuple (h, c[, gates]), as an LSTM's, or h alone."""
        return len(family_of(self.spec).state) > 1

    @property
    def fast_path(self) -> bool:
        """Whether forward() runs PyTorch's fused kernel in the current mode (train/eval)."""
        return (self.fast and self._kernel is not None and self.zoneout == 0.0
                and not (self.training and self.recurrent_dropout > 0.0) and self.edit is None)

    def extra_repr(self):
        extra = "".join(f", {k}={v!r}" for k, v in (
            ("num_layers", self.num_layers), ("bidirectional", self.bidirectional),
            ("proj_size", self.proj_size), ("batch_first", self.batch_first),
            ("dropout", self.dropout), ("recurrent_dropout", self.recurrent_dropout),
            ("zoneout", self.zoneout), ("weight_drop", self.weight_drop)) if v)
        return (f"{self.input_size}, {self.hidden_size}{extra}, variant={self.spec.name!r}, "
                f"dtype={str(self.dtype).replace('torch.', '')}"
                + ("" if self.fast else ", fast=False"))

    def _weights(self):
        """[layer][direction] -> {base name: tensor}; weight_hh dropped (one mask per call)
        when training with weight_drop."""
        drop = self.weight_drop if self.training else 0.0
        out = []
        for k, d, _ in self._groups():
            if d == 0:
                out.append([])
            w = {base: getattr(self, name) for base, name in self._param_names[k, d]}
            if drop:
                w["weight_hh"] = drop_weight(w["weight_hh"], drop)
            out[k].append(w)
        return out

    # --- the public calls ----------------------------------------------------------------
    def forward(self, x, state=None, lengths=None):
        """Run the model: returns (y, final state), as torch.nn.LSTM/GRU/RNN.

        x: (T, B, I), or (B, T, I) with batch_first, or (T, I) for one sequence; a tensor
            (moved to the model's device and dtype) or anything numpy.asarray takes.
        state: initial state, zeros if None: LSTM (h0, c0) with h0 (L*D, B, P or H) and
            c0 (L*D, B, H) (fgr adds the previous gates, (L*D, B, gates*H)); GRU/RNN h0.
        lengths: (B,) steps in each sequence, 1..T; None means all T.
        Returns y (T, B, D*H) (D*P with a projection) and the final state, in x's layout.
        """
        x, unbatched = self._check_x(x)
        T, B, _ = x.shape
        state0 = self._check_state(state, B, unbatched, "state")
        lengths = self._check_lengths(lengths, T, B)
        weights = self._weights()
        if self.fast_path:
            y, finals = self._fast(x, state0, lengths, weights)
        else:
            y, finals, _ = self._generic(x, state0, lengths, weights)
        return self._public(y, finals, unbatched)

    def padded(self, x, lengths):
        """Outputs y (T, B, D*H) of a time-major padded batch with `lengths` (B,), right at
        each sequence's own steps (zero past its end), on PyTorch's fused kernel without
        packing the batch, for training on the fast path (fast_path must hold), from a zero
        state. No final state: the directions run on through the padding.

        PyTorch's CPU kernel trains 2-3 times slower on a packed batch than on the padded
        one (torch 2.13, 2 threads, T = 170, B = 32, I = 240, H = 128, 2 layers each way:
        0.50-0.75 s against 0.27 s a step forward and backward). A forward direction is
        causal: its outputs at a sequence's own steps never see the padding after them. A
        reverse direction reads each sequence reversed within its own length (its padding
        last), on the one-direction kernel, and its outputs are put back in time order. So
        the values and the gradients at the sequences' own steps are the packed run's."""
        x, _ = self._check_x(x)                                  # time-major (T, B, I)
        T, B, _ = x.shape
        mask, rev = _masks(self._check_lengths(lengths, T, B), T, x.device)
        if mask is None or not self.bidirectional:
            y, _ = self._fast(x, self._zeros(B), None, self._weights())
        else:
            kernel = self._vf_kernel()
            zeros = [z[:1] for z in self._zeros(B)]              # one layer and direction's
            hx = zeros if self._tuple_state else zeros[0]
            inp = x
            for k, layer in enumerate(self._weights()):
                if k and self.dropout and self.training:
                    inp = torch.nn.functional.dropout(inp, self.dropout, True)
                outs = []
                for d, w in enumerate(layer):
                    xin = inp if d == 0 else _reverse(inp, rev)
                    out = kernel(xin, hx, list(w.values()), True, 1, 0.0, self.training, False, False)
                    outs.append(out[0] if d == 0 else _reverse(out[0], rev))
                inp = torch.cat(outs, dim=-1)
            y = inp
        if mask is not None:
            y = y * mask.to(y.dtype)
        return y.transpose(0, 1) if self.batch_first else y

    def _zeros(self, B: int) -> list[torch.Tensor]:
        """The zero state's components, (L*D, B, n) each."""
        return [torch.zeros(self.num_layers * self.num_directions, B, n, dtype=self.dtype,
                            device=self.device) for n in self.cell.state_sizes()]

    def trace(self, x, state=None, lengths=None) -> dict[str, dict[str, torch.Tensor]]:
        """The inside of every cell over a sequence, for plots and teaching (generic path).

        Returns {"l0": {...}, "l0_reverse": {...}, ...}: per layer and direction, the gates
        the variant computes (LSTM i, f, g, o; GRU r, z, n), the cell state "c" (LSTM) and the
        output "h", each a detached (T, B, H) tensor in the input's time order ((T, H) for an
        unbatched input); steps past a sequence's end are zero. As lstmlab.numpy's trace.
        """
        x, unbatched = self._check_x(x)
        T, B, _ = x.shape
        state0 = self._check_state(state, B, unbatched, "state")
        lengths = self._check_lengths(lengths, T, B)
        with torch.no_grad():
            _, _, traces = self._generic(x, state0, lengths, self._weights(), record=True)
        if unbatched:
            traces = {g: {k: v[:, 0] for k, v in tr.items()} for g, tr in traces.items()}
        return traces

    def initial_state(self, batch: int | None = None):
        """Zeros in the state's format, for `step`; batch None for one unbatched stream."""
        return self._public(None, self._zeros(1 if batch is None else batch), batch is None)[1]

    def step(self, x_t, state=None):
        """Advance one time step, for streaming: x_t (B, I), or (I,) for one stream.

        Returns (y_t, state); y_t (B, D*H). For a unidirectional model in eval mode, calling
        it T times equals one `forward` call (in training, recurrent dropout would draw a new
        mask each call). A bidirectional model runs both directions over this one step.
        """
        x_t = self._as_tensor(x_t, "x_t")
        if x_t.ndim not in (1, 2):
            raise ValueError(f"x_t must be 2-D (B, I) or 1-D (I,), got shape {tuple(x_t.shape)}")
        x = x_t[None]                                            # one time step: (1, B, I) or (1, I)
        if self.batch_first and x_t.ndim == 2:
            x = x.transpose(0, 1)
        y, state = self(x, state)
        return ((y[:, 0] if self.batch_first else y[0]) if x_t.ndim == 2 else y[0]), state

    # --- the generic path: layers and directions over run_layer --------------------------
    def _generic(self, x, state0, lengths, weights, record=False):
        """Time-major x (T, B, I) and state components (L*D, B, n) -> (y, finals, traces)."""
        T, B, _ = x.shape
        mask, rev = _masks(lengths, T, x.device)
        D, inp = self.num_directions, x
        finals = [[] for _ in state0]
        traces = {}
        p_rec = self.recurrent_dropout if self.training else 0.0
        whole = (self.fast and self._sequence and not p_rec and not self.zoneout and not record
                 and self.edit is None)                         # sequence.py's one Function
        for k, d, sfx in self._groups():
            if d == 0:
                outs = []
            xin = inp if d == 0 else _reverse(inp, rev)
            rmask = variational_mask(B, self.out_size, p_rec, x) if p_rec else None
            rec = defaultdict(list) if record else None
            if whole:
                y, final = sequence.run(self.spec, weights[k][d], xin, *(s[k * D + d] for s in state0),
                                        mask=mask, workspace=self._workspace)
            else:
                y, final = run_layer(self.cell, weights[k][d], xin, tuple(s[k * D + d] for s in state0),
                                     mask, rmask=rmask, zoneout=self.zoneout, training=self.training,
                                     record=rec, edit=self._edit_for(sfx[1:], d, rev, T))
            outs.append(y if d == 0 else _reverse(y, rev))
            for comp, s in zip(finals, final):
                comp.append(s)
            if record:
                traces[sfx[1:]] = self._assemble_trace(rec, mask, rev, d)
            if d == D - 1:
                inp = torch.cat(outs, dim=2) if D == 2 else outs[0]  # (T, B, D*R)
                if self.dropout and self.training and k < self.num_layers - 1:
                    inp = F.dropout(inp, self.dropout, training=True)   # between layers, as nn.LSTM
        return inp, [torch.stack(c) for c in finals], traces

    def _edit_for(self, group, d, rev, T):
        """run_layer's edit for one layer and direction: self.edit with the step's index in
        the input's time order (see numpy's Recurrent._edited), or None."""
        edit = self.edit
        if edit is None:
            return None

        def at(t, name, value):
            when = t if d == 0 else (T - 1 - t if rev is None else rev[t])
            return edit(group, name, value, when)

        return at

    def _assemble_trace(self, rec, mask, rev, d):
        out = {}
        for name in [*family_of(self.spec).traced, "h"]:
            if name not in rec:                                  # a gate the variant lacks
                continue
            v = torch.stack(rec[name])                           # (T, B, H)
            v = v * mask if mask is not None else v
            out[name] = _reverse(v, rev) if d else v
        return out

    # --- the fast path: PyTorch's kernels on the same parameters -------------------------
    def _fast(self, x, state0, lengths, weights):
        """As nn.LSTM/GRU/RNN.forward, with our parameters (weight_hh dropped if asked)."""
        flat = [t for layer in weights for w in layer for t in w.values()]
        kernel = self._vf_kernel()
        hx = state0 if self._tuple_state else state0[0]
        args = (flat, True, self.num_layers, self.dropout, self.training, self.bidirectional)
        # dropped weights are fresh tensors that cuDNN must copy into its layout: expected
        quiet = _quiet_weight_copy() if self.training and self.weight_drop else nullcontext()
        with quiet:
            if lengths is None:
                out = kernel(x, hx, *args, False)
                return out[0], list(out[1:])
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            order, unorder = packed.sorted_indices, packed.unsorted_indices
            hx = [s.index_select(1, order) for s in hx] if self._tuple_state \
                else hx.index_select(1, order)
            out = kernel(packed.data, packed.batch_sizes, hx, *args)
        y, _ = pad_packed_sequence(PackedSequence(out[0], packed.batch_sizes, order, unorder),
                                   total_length=x.shape[0])
        return y, [s.index_select(1, unorder) for s in out[1:]]

    def _vf_kernel(self):
        """PyTorch's fused kernel of this variant (torch._VF.lstm, gru, rnn_tanh, rnn_relu)."""
        return getattr(torch._VF, self._kernel.lower())

    def _flatten_parameters(self):
        """On a GPU, put the kernel's weights in one buffer as nn.LSTM does, so that cuDNN
        need not copy them at every call. A no-op on CPU and for the generic variants."""
        if self._kernel is None:
            return
        flat = [getattr(self, name) for k, d, _ in self._groups() for _, name in self._param_names[k, d]]
        first = flat[0]
        if not all(w.is_cuda and w.dtype == first.dtype and torch.backends.cudnn.is_acceptable(w)
                   for w in flat):
            return
        if len({w.data_ptr() for w in flat}) != len(flat):
            return
        import torch.backends.cudnn.rnn as cudnn_rnn
        with torch.cuda.device_of(first), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    flat, 5 if self.proj_size else 4, self.input_size,
                    cudnn_rnn.get_cudnn_mode(self._kernel), self.hidden_size, self.proj_size,
                    self.num_layers, False, self.bidirectional)

    def _apply(self, fn, recurse=True):
        ret = super()._apply(fn, recurse)
        self._flatten_parameters()                               # after .to() / .cuda()
        return ret

    # --- boundary checks and layout ------------------------------------------------------
    def _as_tensor(self, a, what):
        """`a` as a tensor of the model's dtype and device; a clear error for non-numbers
        (and, for array-likes, for NaN and inf, as lstmlab.numpy)."""
        if isinstance(a, torch.Tensor):
            if a.dtype.is_complex or a.dtype == torch.bool:
                raise ValueError(f"{what} must hold real numbers, got dtype {a.dtype}")
            return a.to(device=self.device, dtype=self.dtype)
        arr = check_numbers(np.asarray(a), what, numpy_dtype(self.dtype))
        return torch.as_tensor(arr, dtype=self.dtype, device=self.device)

    def _check_x(self, x):
        if isinstance(x, PackedSequence):
            raise ValueError("x is a PackedSequence; pass the padded tensor and lengths= instead")
        x = self._as_tensor(x, "x")
        layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be 3-D {layout}, or 2-D (T, I) for one sequence; "
                             f"got {x.ndim}-D with shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x has {x.shape[-1]} features, the model expects {self.input_size}")
        if x.numel() == 0:
            raise ValueError(f"x has shape {tuple(x.shape)}: it needs at least one step and one sequence")
        unbatched = x.ndim == 2
        if unbatched:
            return x[:, None, :], True
        return (x.transpose(0, 1) if self.batch_first else x), False

    def _public(self, y, comps, unbatched):
        """Time-major y and state components to the user's layout and state format."""
        if y is not None:
            y = y[:, 0] if unbatched else (y.transpose(0, 1) if self.batch_first else y)
        if unbatched:
            comps = [c[:, 0] for c in comps]
        return y, (tuple(comps) if self._tuple_state else comps[0])

    def _check_state(self, state, B, unbatched, what):
        """The state as time-major components (L*D, B, n), zeros if None."""
        LD = self.num_layers * self.num_directions
        sizes = self.cell.state_sizes()
        if state is None:
            return [torch.zeros(LD, B, n, dtype=self.dtype, device=self.device) for n in sizes]
        out = []
        for (name, s), n in zip(state_parts(state, self.spec, what), sizes):
            s = self._as_tensor(s, f"{what} {name}")
            check_state_shape(s.shape, (LD, n) if unbatched else (LD, B, n), unbatched,
                              f"{what} {name}")
            out.append(s[:, None, :] if unbatched else s)
        if len(out) < len(sizes):                                # fgr: gates start at zero
            out.append(torch.zeros(LD, B, sizes[-1], dtype=self.dtype, device=self.device))
        return out

    def _check_lengths(self, lengths, T, B):
        """lengths as a CPU int64 tensor (B,); None when every sequence has T steps."""
        if isinstance(lengths, torch.Tensor):
            lengths = lengths.detach().cpu()
        a = check_lengths(lengths, T, B)
        return None if a is None else torch.from_numpy(a)


@contextmanager
def _quiet_weight_copy():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
        yield


def _masks(lengths, T, device):
    """(mask (T, B, 1) bool, rev (T, B) int64) for variable lengths; (None, None) without."""
    if lengths is None:
        return None, None
    t = torch.arange(T, device=device)[:, None]                  # (T, 1)
    a = lengths.to(device)[None, :]                              # (1, B)
    inside = t < a                                               # (T, B)
    return inside[:, :, None], torch.where(inside, a - 1 - t, t)


class LSTM(Recurrent):
    """A stack of LSTM layers, any LSTM variant of `lstmlab.VARIANTS` (default "lstm").

    Same arguments as lstmlab.numpy.LSTM (torch.nn.LSTM's, plus `variant`, `dtype`, `seed`,
    `forget_bias`, `recurrent_init`), and:
      dropout            on each layer's output but the last, in training (as nn.LSTM)
      recurrent_dropout  variational dropout on h where it enters R h: one mask per sequence,
                         the same at every step (Gal & Ghahramani 2016)
      zoneout            each unit of h and c keeps its previous value with this probability
                         in training; eval uses the expectation (Krueger et al. 2017)
      weight_drop        DropConnect on weight_hh, one mask per call (Merity et al. 2018)
      fast               False forces the generic path even where a fused kernel applies
      device             "cpu", "cuda", "cuda:N", "auto" or a torch.device (None: torch's default)
    """

    family = "lstm"


class _Unprojected(Recurrent):
    """GRU and RNN: the arguments of an LSTM without the projection and the forget bias."""

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False,
                 variant=None, batch_first=False, dtype=np.float32, seed=0,
                 recurrent_init="uniform", *, dropout=0.0, recurrent_dropout=0.0, zoneout=0.0,
                 weight_drop=0.0, fast=True, device=None):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, 0, variant,
                         batch_first, dtype, seed, None, recurrent_init, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         weight_drop=weight_drop, fast=fast, device=device)


class GRU(_Unprojected):
    """A stack of GRU layers: variant "gru" (PyTorch's, fast path) or "gru_cho" (Cho et al.
    2014). Regularisers and device as lstmlab.torch.LSTM."""

    family = "gru"


class RNN(_Unprojected):
    """A stack of plain recurrent layers: variant "rnn_tanh" or "rnn_relu" (both fast path).
    Regularisers and device as lstmlab.torch.LSTM."""

    family = "rnn"


def stack_class(spec: CellSpec) -> type[Recurrent]:
    """The class that builds `spec`'s family: LSTM, GRU or RNN."""
    return STACKS[spec.family]

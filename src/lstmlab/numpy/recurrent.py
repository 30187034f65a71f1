"""Sequence models: the time loop, both directions, stacking, variable lengths, projection.

`LSTM`, `GRU` and `RNN` take the arguments of their torch.nn namesakes and keep their
weights under PyTorch's state-dict names, so a converted `nn.LSTM` state dict loads as is.
The cell equations live in `cells.py` (fast) and `reference.py` (readable, `fast=False`);
this module runs them over time:

    forward:  per step one product [x_t, 1, h_prev] [W | b | R]^T (LSTM without layer norm,
              RNN); GRU and layer norm: xp = W x + b for all steps, then R h_prev per step
    backward: the same steps in reverse, then the weight gradients as products over all steps

Variable lengths follow PyTorch's packed sequences: outputs past a sequence's end are zero,
its final state is the state at its last step, and the reverse direction starts there.
Inside, the state is held (not updated) past the end, and the reverse direction runs the
forward loop over each sequence reversed within its own length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..checks import check_lengths, check_state_shape, state_parts
from ..families import check_stack, family_of, groups, state_names
from ..interfaces import Empty, RecurrentCell
from ..spec import CellSpec
from ..spec import variant as make_spec
from . import kernels
from .cells import make_cell
from .init import init_stack
from .module import Module, check_dtype
from .reference import ReferenceCell
from .workspace import Workspace


@dataclass
class _DirectionCache:
    """What one layer and direction keeps for its backward pass."""
    x: np.ndarray              # (T, B, F) input, in this direction's time order
    ctx: object                # what cell.project kept (layer norm statistics)
    w: dict                    # the weights, prepared
    hist: tuple                # state components, each (T + 1, B, n); [0] is the initial state
    cache: dict                # the cell's per-step storage
    hfull: np.ndarray | None   # (T, B, H) h before the projection, if any
    keep: bool                 # per-step storage kept for backward (else one step's worth)


@dataclass
class Cache:
    """Everything `backward` needs from a `forward` call. Opaque to users."""
    layers: list               # [layer][direction] -> _DirectionCache
    mask: np.ndarray | None    # (T, B, 1) bool, True where a step is inside its sequence
    rev: np.ndarray | None     # (T, B) time index that reverses each sequence within its length
    unbatched: bool
    y_shape: tuple
    edited: bool = False       # ran with the stack's `edit` set: no backward


def _reverse(a, rev):
    """Reverse (T, B, F) in time; with lengths, each sequence within its own length."""
    if rev is None:
        return a[::-1]
    return np.take_along_axis(a, rev[:, :, None], axis=0)


def _run(cell: RecurrentCell, w: dict, x: np.ndarray, state0: list, mask: np.ndarray | None,
         empty: Empty, keep: bool) -> _DirectionCache:
    """One layer, one direction, forward over all steps.

    keep=False (inference) stores the per-step internals of one step only, reused each step.
    """
    T, B, _ = x.shape
    xp, ctx = cell.project(w, x, empty)                          # (T, B, G), or [x, 1, h] rows
    hist = tuple(xp[:, :, -n:] if k == 0 and cell.merged         # h lives in the step's input rows
                 else empty((T + 1, B, n), x.dtype) for k, n in enumerate(cell.state_sizes()))
    for hk, s in zip(hist, state0):
        hk[0] = s
    Tc = T if keep else 1
    cache = cell.alloc(Tc, B, x.dtype, empty)
    hfull = empty((Tc, B, cell.hidden_size), x.dtype) if "weight_hr_T" in w else None
    if kernels.runs(cell, x.dtype) and hfull is None:               # the whole loop in one call
        kernels.lstm_run(xp, w["weight_x1h"], cache["gates"], cache["act"], hist[1], mask, keep)
        return _DirectionCache(x, ctx, w, hist, cache, hfull, keep)
    for t in range(T):
        tc = t if keep else 0
        prev = tuple(hk[t] for hk in hist)
        new = tuple(hk[t + 1] for hk in hist)
        if hfull is not None:                                    # the cell writes h before projection
            new = (hfull[tc],) + new[1:]
        cell.step(w, xp[t], prev, new, cache, tc)
        if hfull is not None:
            np.matmul(hfull[tc], w["weight_hr_T"], out=hist[0][t + 1])     # h = W_hr h_cell: (B, P)
        if mask is not None and not mask[t].all():               # past its end a sequence holds its state
            for hk in hist:
                np.copyto(hk[t + 1], hk[t], where=~mask[t])
    return _DirectionCache(x, ctx, w, hist, cache, hfull, keep)


def _run_backward(cell: RecurrentCell, dc: _DirectionCache, dy: np.ndarray, dstate: list,
                  mask: np.ndarray | None, empty: Empty,
                  seen: list | None = None) -> tuple[dict, np.ndarray, list]:
    """Backpropagation through time for one layer and direction.

    dy: (T, B, R) gradient of the outputs (zero past each end); dstate: gradient of the final
    state components. Returns (grads by base name, dx (T, B, F), gradient of the initial state).
    seen: a list that receives, step by step from the last, the gradient of the state each
    step made (its components, copied).
    """
    T, B, _ = dy.shape
    w, hist, x = dc.w, dc.hist, dc.x
    da = empty((T, B, cell.G), x.dtype)                          # dL/d(pre-activations) = dL/dxp
    hfull = dc.hfull
    dproj = None if hfull is None else empty(dy.shape, dy.dtype)
    if kernels.runs(cell, x.dtype) and hfull is None and seen is None:   # the whole loop in one call
        carry = [np.array(d, x.dtype) for d in dstate]           # overwritten with dL/d(state0)
        kernels.lstm_run_backward(dy, carry[0], carry[1], dc.cache["gates"], dc.cache["act"], hist[1],
                                  w["weight_hh_T"], da, mask)
    else:
        carry = _backward_steps(cell, dc, dy, list(dstate), mask, da, dproj, seen)
    grads: dict[str, np.ndarray] = {}
    dx = cell.project_backward(w, x, dc.ctx, da, grads)
    cell.param_grads(w, da, hist, dc.cache, grads)
    if dproj is not None and hfull is not None:
        grads["weight_hr"] = dproj.reshape(T * B, -1).T @ hfull.reshape(T * B, -1)
    return grads, dx, carry


def _backward_steps(cell, dc, dy, carry, mask, da, dproj, seen) -> list:
    """_run_backward's loop over the steps, last first: fills da (and dproj); returns the
    gradient of the initial state."""
    w, hist, hfull = dc.w, dc.hist, dc.hfull
    for t in reversed(range(dy.shape[0])):
        dnew = [carry[0] + dy[t]] + carry[1:]
        if mask is not None:                                     # past the end: straight through
            passthrough = [np.where(mask[t], 0.0, d) for d in dnew]
            dnew = [np.where(mask[t], d, 0.0) for d in dnew]
        if seen is not None:
            seen.append([d.copy() for d in dnew])
        prev = tuple(hk[t] for hk in hist)
        new = tuple(hk[t + 1] for hk in hist)
        if dproj is not None and hfull is not None:              # undo h = W_hr h_cell
            dproj[t] = dnew[0]
            dnew[0] = dnew[0] @ w["weight_hr"]
            new = (hfull[t],) + new[1:]
        carry = list(cell.step_backward(w, dnew, prev, new, dc.cache, t, da[t]))
        if mask is not None:
            carry = [a + b for a, b in zip(carry, passthrough)]
    return carry


# family name -> the class that builds it (LSTM, GRU, RNN register themselves)
STACKS: dict[str, type[Recurrent]] = {}


class Recurrent(Module):
    """A stack of recurrent layers, one or two directions each. Use LSTM, GRU or RNN."""

    family: str = ""             # a families.Family's name: the variants this class builds
    default_variant: str = ""    # the family's, set below: what it builds without variant=

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "family" in vars(cls) and cls.family:               # LSTM, GRU, RNN: one per family
            cls.default_variant = family_of(cls.family).default_variant
            STACKS[cls.family] = cls

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, proj_size: int = 0,
                 variant: str | CellSpec | None = None, batch_first: bool = False,
                 dtype=np.float32, seed: int | None = 0, forget_bias: float | None = None,
                 recurrent_init: str = "uniform", *, fast: bool = True):
        if not isinstance(fast, (bool, np.bool_)):
            raise ValueError(f"fast must be True or False, got {fast!r}")
        spec = make_spec(variant or self.default_variant)
        check_stack(self.family, spec, input_size, hidden_size, num_layers, proj_size, "numpy")

        self.spec = spec
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, proj_size
        self.num_layers, self.bidirectional = num_layers, bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.dtype = check_dtype(dtype)
        self.num_directions = 2 if bidirectional else 1
        self.out_size = proj_size or hidden_size
        D = self.num_directions
        # the weights first: init_stack refuses a stack too large for memory before any allocation
        self.params: dict[str, np.ndarray] = init_stack(
            spec, input_size, hidden_size, num_layers, self.bidirectional, proj_size, self.dtype,
            seed, forget_bias, recurrent_init)
        self.cells: list[RecurrentCell] = [
            make_cell(spec, input_size if k == 0 else D * self.out_size, hidden_size, proj_size)
            for k in range(num_layers)]
        # what runs the steps: the fast cells, or the readable equations of reference.py
        # (the fast cells still describe the layout: parameter shapes, state sizes)
        self.fast = bool(fast)
        self._steppers: list[RecurrentCell] = (
            self.cells if self.fast else [ReferenceCell(c) for c in self.cells])
        self._workspace = Workspace()
        # step() on one stream of a plain one-directional LSTM runs on kernels.stream_function:
        # the parameter names of each layer, in its argument order, and the state's shape for
        # each shape of x_t
        streams = getattr(self.cells[0], "plain", False) and not bidirectional and not proj_size
        self._stream_names = [tuple(f"{n}_l{k}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                              for k in range(num_layers)] if streams and self.fast else None
        self._stream_shapes = {(input_size,): (num_layers, hidden_size),
                               (1, input_size): (num_layers, 1, hidden_size)}
        self._stream_steps: tuple = (None, [])       # (kernels.enabled, per layer its function)
        # None, or edit(group, name, value, when) -> value: while set, every step runs on the
        # reference equations and hands each gate and state it makes ("i", ..., "c", "h" of
        # layer and direction `group`, e.g. "l0_reverse"; "h" before a projection) to `edit`;
        # `when` is the step's index in the input's time order, an int or (B,) with lengths.
        # lstmlab.inspect sets it to clamp units; backward refuses what it ran.
        self.edit = None

    # --- structure -----------------------------------------------------------------------
    def _groups(self):
        """(layer, direction, name suffix) for every layer and direction, in storage order."""
        return groups(self.num_layers, self.num_directions)

    def _weights(self, k, sfx):
        p = {name[: -len(sfx)]: v for name, v in self.params.items() if name.endswith(sfx)}
        w = self._steppers[k].prepare(p)
        if self.proj_size:
            w["weight_hr_T"] = np.ascontiguousarray(p["weight_hr"].T)
        return w

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in (
            ("num_layers", self.num_layers if self.num_layers > 1 else 0),
            ("bidirectional", self.bidirectional), ("proj_size", self.proj_size),
            ("batch_first", self.batch_first)) if v)
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"variant={self.spec.name!r}, dtype={self.dtype.name}"
                + ("" if self.fast else ", fast=False") + ")")

    # --- the public calls ----------------------------------------------------------------
    def __call__(self, x, state=None, lengths=None):
        """Run the model: returns (y, final state), as torch.nn.LSTM/GRU/RNN.

        Keeps nothing for a backward pass (inference), which saves memory traffic.
        """
        y, state, _ = self._forward(x, state, lengths, keep=False)
        return y, state

    def forward(self, x, state=None, lengths=None):
        """Run the model and keep what `backward` needs.

        x: (T, B, I), or (B, T, I) with batch_first, or (T, I) for one sequence.
        state: initial state, zeros if None: LSTM (h0, c0) with h0 (L*D, B, P or H) and
            c0 (L*D, B, H) (fgr adds the previous gates, (L*D, B, gates*H)); GRU/RNN h0.
        lengths: (B,) steps in each sequence, 1..T; None means all T.
        Returns (y, final state, cache); y (T, B, D*H) (D*P with a projection).
        """
        return self._forward(x, state, lengths, keep=True)

    def _forward(self, x, state, lengths, keep):
        x, unbatched = self._check_x(x)
        T, B, _ = x.shape
        state0 = self._check_state(state, B, unbatched, "state")
        mask, rev = self._check_lengths(lengths, T, B)
        D, inp, layers = self.num_directions, x, []
        finals = [[] for _ in state0]
        lease = self._workspace.lease()                          # buffers live as long as the cache
        edited = self.edit is not None
        keep = keep or edited                                    # an edit needs each step's own t
        for k, d, sfx in self._groups():
            if d == 0:
                layers.append([])
                outs = []
            if d:
                xin = lease(inp.shape, inp.dtype)
                xin[...] = _reverse(inp, rev)
            else:
                xin = inp
            stepper = self._edited(k, d, sfx, rev, T) if edited else self._steppers[k]
            dc = _run(stepper, self._weights(k, sfx), xin,
                      [s[k * D + d] for s in state0], mask, lease, keep)
            layers[k].append(dc)
            y_d = dc.hist[0][1:] if mask is None else dc.hist[0][1:] * mask
            outs.append(y_d if d == 0 else _reverse(y_d, rev))
            for comp, hk in zip(finals, dc.hist):
                comp.append(hk[T])
            if d == D - 1:
                inp = np.concatenate(outs, axis=2)               # (T, B, D*R), a fresh array
        cache = Cache(layers, mask, rev, unbatched, inp.shape, edited)
        lease.bind(cache)
        y, state = self._public(inp, [np.stack(c) for c in finals], unbatched)
        return y, state, cache

    def backward(self, cache: Cache, dy, dstate=None, *, state_grads: dict | None = None):
        """Backpropagation through time for the `forward` call that returned `cache`.

        dy: gradient of the loss with respect to y (None: zero); dstate: with respect to the
        final state, in the state's format (None: zero).
        Returns (grads, dx, dstate0): grads has the keys of `params`; dx the shape of x;
        dstate0 is the gradient with respect to the initial state, in the state's format.
        state_grads: a dict that receives, per layer and direction ("l0", "l0_reverse", ...),
        {"h": dL/dh_t, "c": dL/dc_t (LSTM)}, each (T, B, n) time-major in the input's time
        order: the whole gradient that reaches the state each step made (through the outputs
        and through every later step), as lstmlab.inspect's gradient flow draws it.
        """
        T, B, _ = cache.y_shape
        if not cache.layers[0][0].keep:
            raise ValueError("this cache comes from an inference call (model(x)); "
                             "use model.forward(x) to keep what backward needs")
        if cache.edited:
            raise ValueError("this cache comes from a forward pass with `edit` set, whose "
                             "gradient is not computed; set model.edit = None and run it again")
        if dy is None:
            dy_tm = np.zeros(cache.y_shape, self.dtype)
        else:
            dy = self._as_array(dy, "dy")
            want = self._public_shape(cache.y_shape, cache.unbatched)
            if dy.shape != want:
                raise ValueError(f"dy has shape {dy.shape}, expected {want}, the shape of y")
            dy_tm = self._to_time_major(dy, cache.unbatched)
        dst = self._check_state(dstate, B, cache.unbatched, "dstate")
        if cache.mask is not None:
            dy_tm = dy_tm * cache.mask                           # y is zero past each end
        D, R = self.num_directions, self.out_size
        grads, dstate0 = {}, [np.empty_like(s) for s in dst]
        dinp = dy_tm
        lease = self._workspace.lease()
        for k in reversed(range(self.num_layers)):
            dxs = []                                             # dx of each direction
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                dy_d = dinp[:, :, d * R:(d + 1) * R]
                if d:
                    dy_d = _reverse(dy_d, cache.rev)
                seen: list | None = None if state_grads is None else []
                g, dx_d, ds0 = _run_backward(self._steppers[k], cache.layers[k][d], dy_d,
                                             [s[k * D + d] for s in dst], cache.mask, lease, seen)
                if state_grads is not None and seen is not None:
                    state_grads[sfx[1:]] = self._state_grads(seen, cache, d)
                grads.update({base + sfx: v for base, v in g.items()})
                dxs.append(_reverse(dx_d, cache.rev) if d else dx_d)
                for comp, v in zip(dstate0, ds0):
                    comp[k * D + d] = v
            dinp = sum(dxs[1:], dxs[0])                          # both directions read the input
        lease.end()
        dx, dstate0 = self._public(dinp, dstate0, cache.unbatched)
        return {name: grads[name] for name in self.params}, dx, dstate0

    def _state_grads(self, seen, cache, d) -> dict[str, np.ndarray]:
        """What _run_backward saw, last step first, as {"h": (T, B, R), "c": ...} in the input's
        time order (h and c only: fgr's gates state is not shown)."""
        out = {}
        for j, name in enumerate(state_names(self.spec)[:2]):
            v = np.stack([s[j] for s in seen[::-1]])            # (T, B, n), this direction's order
            out[name] = _reverse(v, cache.rev) if d else v
        return out

    def _edited(self, k, d, sfx, rev, T) -> ReferenceCell:
        """Layer k's reference cell for direction d, handing its steps to self.edit."""
        edit, group = self.edit, sfx[1:]

        def at(t, name, value):                                  # t: this direction's order
            when = t if d == 0 else (T - 1 - t if rev is None else rev[t])
            return edit(group, name, value, when)

        return ReferenceCell(self.cells[k], at)

    def trace(self, x, state=None, lengths=None) -> dict[str, dict[str, np.ndarray]]:
        """The inside of every cell over a sequence, for plots and teaching.

        Returns {"l0": {...}, "l0_reverse": {...}, ...}: per layer and direction, the gates
        the variant computes (LSTM i, f, g, o; GRU r, z, n), the cell state "c" (LSTM) and the
        output "h", each (T, B, H) in the input's time order ((T, H) for an unbatched input);
        steps past a sequence's end are zero.
        """
        _, _, cache = self.forward(x, state, lengths)
        return self._traces(cache)

    def _traces(self, cache: Cache) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for k, d, sfx in self._groups():
            dc = cache.layers[k][d]
            tr = dict(self._steppers[k].trace(dc.cache, dc.hist), h=dc.hist[0][1:])
            for name, v in tr.items():
                v = v * cache.mask if cache.mask is not None else v.copy()
                v = _reverse(v, cache.rev) if d else v
                tr[name] = v[:, 0] if cache.unbatched else v
            out[sfx[1:]] = tr
        return out

    def initial_state(self, batch: int | None = None):
        """Zeros in the state's format, for `step`; batch None for one unbatched stream."""
        B = 1 if batch is None else batch
        zeros = [np.zeros((self.num_layers * self.num_directions, B, n), self.dtype)
                 for n in self.cells[0].state_sizes()]
        return self._public(None, zeros, batch is None)[1]

    def step(self, x_t, state=None, *, record: dict | None = None):
        """Advance one time step, for streaming: x_t (B, I), or (I,) for one stream.

        Returns (y_t, state); y_t (B, D*H). For a unidirectional model, calling it T times
        equals one `forward` call. A bidirectional model runs both directions over this one
        step, as forward() does on a sequence of length 1 (the reverse direction cannot see
        the future of a stream). One stream of a plain one-directional LSTM (`fast_stream`)
        takes the shortest path, a few microseconds a step (`lstmlab bench`).
        record: a dict that receives this step's inside, as `trace` gives it for a sequence:
        per layer and direction ("l0", ...) the gates and states by name, each (B, H) or (H,).
        """
        fast = self._step_stream(x_t, state, record)
        if fast is not None:
            return fast
        x_t = self._as_array(x_t, "x_t")
        if x_t.ndim not in (1, 2):
            raise ValueError(f"x_t must be 2-D (B, I) or 1-D (I,), got shape {x_t.shape}")
        x = x_t[None] if x_t.ndim == 2 else x_t[None, :]         # one time step: (1, B, I) or (1, I)
        if self.batch_first and x_t.ndim == 2:
            x = x.transpose(1, 0, 2)
        y, state, cache = self._forward(x, state, None, keep=record is not None)
        if record is not None:
            record.update({g: {n: v[0] for n, v in tr.items()} for g, tr in self._traces(cache).items()})
        return (y[:, 0] if self.batch_first else y[0]) if x_t.ndim == 2 else y[0], state

    @property
    def fast_stream(self) -> bool:
        """Whether step() on one stream (x_t of shape (I,) or (1, I)) takes the shortest path:
        a plain one-directional LSTM without projection (lstmlab.numpy.kernels.stream_function)."""
        return self._stream_names is not None and self.edit is None

    def _step_stream(self, x_t, state, record):
        """step() for one stream of a plain LSTM with the least work per call: each layer's
        parameters as they are (nothing prepared), no sequence machinery. None when the call
        is anything else (also a NaN, or the wrong type or shape): the general path then
        runs, with its checks and messages."""
        names, dt = self._stream_names, self.dtype
        if names is None or self.edit is not None or type(x_t) is not np.ndarray or x_t.dtype != dt:
            return None
        L, H = self.num_layers, self.hidden_size
        want = self._stream_shapes.get(x_t.shape)
        if want is None:
            return None
        if state is None:
            h0 = c0 = np.zeros(want, dt)
        elif type(state) is tuple and len(state) == 2:
            h0, c0 = state
            if not (type(h0) is np.ndarray and type(c0) is np.ndarray and h0.shape == c0.shape == want
                    and h0.dtype == c0.dtype == dt):
                return None
        else:
            return None
        h, c = np.empty(want, dt), np.empty(want, dt)
        hp, cp, hn, cn = (h0, c0, h, c) if len(want) == 2 else (
            h0.reshape(L, H), c0.reshape(L, H), h.reshape(L, H), c.reshape(L, H))
        z, p, total = np.empty((L, 4 * H), dt), self.params, 0.0
        x = x_t if x_t.ndim == 1 else x_t.reshape(-1)
        on, steps = self._stream_steps
        if on is not kernels.enabled:                           # chosen once (tests switch it)
            on, steps = self._stream_steps = (kernels.enabled, [
                kernels.stream_function(dt, self.input_size if k == 0 else H, H) for k in range(L)])
        for k, (w, r, bi, bh) in enumerate(names):              # each reads layer k - 1's h
            total += steps[k](p[w], p[r], p[bi], p[bh], x, hp, cp, hn, cn, z, k)
        if not math.isfinite(total):                            # a NaN or inf came in
            return None
        if record is not None:                                  # z[k] holds i, f, g, o
            shape = want[1:]
            record.update({f"l{k}": {n: v.reshape(shape) for n, v in zip(
                "ifgoch", (z[k, :H], z[k, H:2 * H], z[k, 2 * H:3 * H], z[k, 3 * H:], cn[k], hn[k]))}
                for k in range(L)})
        return h[L - 1].copy(), (h, c)

    # --- boundary checks and layout ------------------------------------------------------
    def _check_x(self, x):
        x = self._as_array(x, "x")
        layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be 3-D {layout}, or 2-D (T, I) for one sequence; "
                             f"got {x.ndim}-D with shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x has {x.shape[-1]} features, the model expects {self.input_size}")
        if x.size == 0:
            raise ValueError(f"x has shape {x.shape}: it needs at least one step and one sequence")
        unbatched = x.ndim == 2
        return self._to_time_major(x, unbatched), unbatched

    def _to_time_major(self, a, unbatched):
        if unbatched:
            return a[:, None, :]
        return a.transpose(1, 0, 2) if self.batch_first else a

    def _public_shape(self, tm_shape, unbatched):
        T, B, F = tm_shape
        return (T, F) if unbatched else ((B, T, F) if self.batch_first else (T, B, F))

    def _public(self, y, comps, unbatched):
        """Time-major y and state components to the user's layout and state format."""
        if y is not None:
            y = y[:, 0] if unbatched else (y.transpose(1, 0, 2) if self.batch_first else y)
        if unbatched:
            comps = [c[:, 0] for c in comps]
        state = tuple(comps) if len(family_of(self.family).state) > 1 else comps[0]
        return y, state

    def _state_names(self):
        return tuple(n + "0" for n in state_names(self.spec))     # h0, c0, gates0

    def _check_state(self, state, B, unbatched, what):
        """The state (or its gradient) as time-major components (L*D, B, n), zeros if None."""
        LD = self.num_layers * self.num_directions
        sizes = self.cells[0].state_sizes()
        if state is None:
            return [np.zeros((LD, B, n), self.dtype) for n in sizes]
        out = []
        for (name, s), n in zip(state_parts(state, self.spec, what), sizes):
            s = self._as_array(s, f"{what} {name}")
            check_state_shape(s.shape, (LD, n) if unbatched else (LD, B, n), unbatched,
                              f"{what} {name}")
            out.append(s[:, None, :] if unbatched else s)
        if len(out) < len(sizes):                                # fgr: gates start at zero
            out.append(np.zeros((LD, B, sizes[-1]), self.dtype))
        return out

    def _check_lengths(self, lengths, T, B):
        """(mask, rev) for variable lengths; (None, None) when every sequence has T steps."""
        a = check_lengths(lengths, T, B)
        if a is None:
            return None, None
        t = np.arange(T)[:, None]                                # (T, 1)
        mask = (t < a[None, :])[:, :, None]                      # (T, B, 1)
        rev = np.where(t < a, a - 1 - t, t)                      # (T, B)
        return mask, rev


class LSTM(Recurrent):
    """A stack of LSTM layers, any LSTM variant of `lstmlab.VARIANTS` (default "lstm").

    Same arguments as torch.nn.LSTM, plus `variant`, `dtype`, `seed` and the initialisation
    options `forget_bias` and `recurrent_init` (see lstmlab.numpy.init.init_params), and
    `fast`: False runs every step on the readable equations of lstmlab.numpy.reference
    instead of the fast cells (same results, to rounding; slower; for reading and checking).
    """

    family = "lstm"


class _Unprojected(Recurrent):
    """GRU and RNN: torch's arguments, without an LSTM's projection or forget gate; `fast`
    as lstmlab.numpy.LSTM."""

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False,
                 variant=None, batch_first=False, dtype=np.float32, seed=0,
                 recurrent_init="uniform", *, fast=True):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, 0, variant,
                         batch_first, dtype, seed, None, recurrent_init, fast=fast)


class GRU(_Unprojected):
    """A stack of GRU layers: variant "gru" (PyTorch's) or "gru_cho" (Cho et al. 2014)."""

    family = "gru"


class RNN(_Unprojected):
    """A stack of plain recurrent layers: variant "rnn_tanh" or "rnn_relu"."""

    family = "rnn"


def stack_class(spec: CellSpec) -> type[Recurrent]:
    """The class that builds `spec`'s family: LSTM, GRU or RNN."""
    return STACKS[spec.family]

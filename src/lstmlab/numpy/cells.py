"""The fast cells: one time step forward, and the same step undone, for every variant.

To learn what a cell computes, read `reference.py` instead: the same steps written as the
equations (`lstm_step`, `gru_step`, `rnn_step` and their backward), which these cells are
tested equal to for every variant. The cells here compute the same numbers arranged for
speed: fused products, gates squashed together through per-column constants, weights
pre-scaled, scratch arrays reused. `LSTM(..., fast=False)` runs a model on the reference.

A cell holds no weights and no time loop, and the layout is not its own: the parameters'
names and shapes, the gate blocks and the state's sizes are its family's description
(`lstmlab.families`). The layer (`recurrent.py`) owns the loop, the reverse direction,
masks for variable lengths and the LSTM projection; it calls, per sequence and direction:

    xp, ctx = cell.project(w, x, empty)     # input part of every step at once (see project)
    cache = cell.alloc(T, B, dtype, empty)  # per-step storage, preallocated
    for t: cell.step(w, xp[t], prev, new, cache, t)            # writes the state into `new`
    for t reversed: dprev = cell.step_backward(w, dnew, prev, new, cache, t, da[t])
    dx = cell.project_backward(w, x, ctx, da, grads)            # weight_ih, bias_ih(, weight_hh), dx
    cell.param_grads(w, da, hist, cache, grads)                 # the other weights

`w` is the layer's parameters by base name (`weight_ih`, ...) plus what `prepare` makes
once per call: contiguous transposes (`*_T`) and, for merged cells, `weight_x1h` =
[W | b | R]. `prev`/`new` are the state before and after the step, as a tuple whose first
entry is h; `da[t]` receives the gradient of the step's pre-activations. `empty(shape,
dtype)` hands out scratch arrays (from the model's workspace pool). A forward pass that
keeps no cache for backward allocates the per-step storage for one step and always passes
t = 0.
"""

from __future__ import annotations

import numpy as np

from ..families import family_of, gate_blocks, merge_runs, state_sizes
from ..interfaces import RecurrentCell
from ..spec import CellSpec
from . import kernels
from .ops import activate, activate_grad, layer_norm, layer_norm_backward, sigmoid, sigmoid_grad


class Cell:
    """What the three families share: sizes, the input projection and its gradient."""

    def __init__(self, spec: CellSpec, input_size: int, hidden_size: int, proj_size: int = 0):
        self.spec = spec
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.proj_size = proj_size
        self.out_size = proj_size or hidden_size   # width of h, the recurrent input R
        self.G = spec.num_gates * hidden_size
        self.blk = gate_blocks(spec, hidden_size)  # the columns of each gate in (B, G)

    def state_sizes(self) -> tuple[int, ...]:
        return state_sizes(self.spec, self.hidden_size, self.proj_size)

    # The step's product. A "merged" cell (LSTM without layer norm, RNN) computes its
    # pre-activations a = W x + b + R h_prev in ONE product per step, [x, 1, h_prev] times
    # [W | b | R]^T: the input rows x_t and the ones column are written for every step up
    # front and h_prev lands next to them, so no separate input product, no pass adding it,
    # and one product after the backward loop gives every weight gradient at once. GRU
    # (r multiplies R_n h) and layer norm (normalises R h alone) keep the two products:
    # xp = [x, 1] [W | b]^T for all steps at once, then R h_prev per step.
    merged = True
    plain = False    # the plain LSTM, whose loops lstmlab.numpy.kernels compile (LSTMCell sets it)

    def prepare(self, p: dict) -> dict:
        w = dict(p)
        b = p["bias_ih"] + self._folded_bias(p)
        w["weight_hh_T"] = np.ascontiguousarray(p["weight_hh"].T)  # (R, G): h @ R^T per step
        if self.merged:                                         # [W | b | R]: (G, I + 1 + R)
            w["weight_x1h"] = np.concatenate([p["weight_ih"], b[:, None], p["weight_hh"]], 1)
            return w
        # [W_ih | b]^T: (I + 1, G), the bias as the weight of an input fixed at 1
        w["weight_ih1_T"] = np.ascontiguousarray(np.concatenate([p["weight_ih"], b[:, None]], 1).T)
        return w

    def project(self, w, x, empty):
        """The input part of every step: x (T, B, I) -> xp.

        Merged cells: xp (T + 1, B, I + 1 + R) holds [x_t, 1, h_prev] per step; the layer
        keeps its h history in the last R columns. Others: xp (T, B, G) = W x + b in one
        product, x with a column of ones so the bias comes out of the same product (and its
        gradient out of the weight gradient's product).
        """
        T, B, I = x.shape
        if self.merged:
            xh = empty((T + 1, B, I + 1 + self.out_size), x.dtype)
            xh[:T, :, :I] = x
            xh[:T, :, I] = 1.0
            return xh, xh
        x1 = empty((T * B, I + 1), x.dtype)                     # [x, 1]: (T*B, I+1)
        x1[:, :I] = x.reshape(T * B, I)
        x1[:, I] = 1.0
        xp = empty((T * B, self.G), x.dtype)
        np.matmul(x1, w["weight_ih1_T"], out=xp)                # (T*B, G)
        return xp.reshape(T, B, self.G), x1

    def _folded_bias(self, w):
        """The part of bias_hh that adds linearly, folded into the input projection."""
        return w["bias_hh"]

    def project_backward(self, w, x, ctx, da, grads):
        """Gradients of weight_ih and bias_ih (merged: and weight_hh) from da (T, B, G);
        returns dx (T, B, I)."""
        T, B, I = x.shape
        da2 = da.reshape(T * B, self.G)
        if self.merged:                                         # (G, I+1+R): [dW_ih | db | dW_hh]
            g1 = (ctx[:T].reshape(T * B, -1).T @ da2).T         # this layout: 8% faster here
            grads["weight_hh"] = g1[:, I + 1:]
        else:
            g1 = da2.T @ ctx                                    # (G, I+1): [dW_ih | db]
        grads["weight_ih"], grads["bias_ih"] = g1[:, :I], g1[:, I]
        return (da2 @ w["weight_ih"]).reshape(T, B, I)

    def alloc(self, T, B, dtype, empty) -> dict:
        return {"gates": empty((T, B, self.G), dtype)}

    @staticmethod
    def _undo_recurrent(w, da):
        """dh_prev = da R (B, R), computed as (R^T da^T)^T: OpenBLAS runs this layout of
        the same product about 15% faster here."""
        return (w["weight_hh_T"] @ da.T).T

    def _recurrent_weight_grads(self, da, hist, grads):
        """weight_hh (unless the merged product gave it) and bias_hh when the recurrent
        product adds straight into the gates."""
        T, B, G = da.shape
        if not self.merged:
            grads["weight_hh"] = da.reshape(T * B, G).T @ hist[0][:-1].reshape(T * B, -1)  # (G, R)
        grads["bias_hh"] = grads["bias_ih"].copy()              # both biases add into a alike


class LSTMCell(Cell):
    """Every LSTM variant, one set of equations with the spec's flags (see lstmlab.spec);
    the readable version is reference.lstm_step / lstm_step_backward::

        i = sigma(a_i + p_i * c_prev)      a = W x + R h_prev (+ W_gg gates_prev) + b
        f = sigma(a_f + p_f * c_prev)      (f = 1 - i with coupled gates; 1 without f)
        g = act_in(a_g)
        c = f * c_prev + i * g
        o = sigma(a_o + p_o * c)
        h = o * act_out(c)                 (act_out(LN(c)) with layer norm)
    """

    def __init__(self, spec, input_size, hidden_size, proj_size=0):
        super().__init__(spec, input_size, hidden_size, proj_size)
        self.sig = spec.sigmoid_gates                           # gates with a sigmoid
        self.peep = {g: k for k, g in enumerate(self.sig)}      # row of each in weight_peephole
        # Every squashing function of the gates is one tanh: y = m tanh(s a) + b, with
        # sigma(a) = (1 + tanh(a / 2)) / 2, sigmoid4(a) = 2 tanh(a / 2). So the gates are
        # squashed together, per contiguous run of columns, by four whole-array operations
        # with per-column (s, m, b), instead of one chain of operations per gate.
        shape = {g: (0.5, 0.5, 0.5) for g in self.sig}
        shape["g"] = {"tanh": (1.0, 1.0, 0.0), "sigmoid4": (0.5, 2.0, 0.0)}.get(spec.input_activation)
        # squashed right after the pre-activations: all but o when o looks at the new c, and
        # but g when g is the identity
        early = [g for g in spec.gates if shape[g] and not (g == "o" and spec.peepholes)]
        self.squash_runs = merge_runs([self.blk[g] for g in early])
        self.o_late = "o" in self.blk and spec.peepholes
        s, m, b = (np.ones(self.G), np.ones(self.G), np.zeros(self.G))
        for g, sl in self.blk.items():
            if shape[g]:
                s[sl], m[sl], b[sl] = shape[g]
        self.squash = (s, m, b)
        # its derivative in terms of y: m s (1 - t^2) with t = (y - b) / m, i.e. k2 y^2 + k1 y + k0
        self.dsquash = (-s / m, 2 * s * b / m, m * s - s * b * b / m)
        self._consts = {}
        # merged (no layer norm): the scale s of the squashing is folded into the weights of
        # the step's product, exactly since s is 1 or 1/2
        self.merged = not spec.layer_norm
        self.plain = spec == CellSpec()                         # the compiled kernels' case

    def prepare(self, p):
        w = super().prepare(p)
        fold = 0.5 if self.merged else 1.0                      # s of the sigmoid gates, if folded
        if self.merged:
            np.multiply(w["weight_x1h"], self.squash[0][:, None], out=w["weight_x1h"])
        if self.spec.peepholes:                                 # the peepholes as the step adds them
            w["weight_peephole_a"] = p["weight_peephole"] * fold
        if self.spec.gate_recurrence:
            w["weight_gg_T"] = np.ascontiguousarray(p["weight_gg"].T) * fold
        return w

    def project(self, w, x, empty):
        if not self.spec.layer_norm:
            return super().project(w, x, empty)
        T, B, _ = x.shape
        xw = x.reshape(T * B, -1) @ w["weight_ih"].T            # (T*B, G)
        xhat, rstd = layer_norm(xw)
        xp = xhat * w["ln_ih_weight"] + w["bias_ih"] + w["bias_hh"]
        return xp.reshape(T, B, self.G), (xhat, rstd)

    def project_backward(self, w, x, ctx, da, grads):
        if not self.spec.layer_norm:
            return super().project_backward(w, x, ctx, da, grads)
        T, B, I = x.shape
        xhat, rstd = ctx
        da2 = da.reshape(T * B, self.G)
        grads["bias_ih"] = da2.sum(axis=0)
        grads["ln_ih_weight"] = np.sum(da2 * xhat, axis=0)
        dxw = layer_norm_backward(da2 * w["ln_ih_weight"], xhat, rstd)   # (T*B, G)
        grads["weight_ih"] = dxw.T @ x.reshape(T * B, I)
        return (dxw @ w["weight_ih"]).reshape(T, B, I)

    def alloc(self, T, B, dtype, empty):
        H, G = self.hidden_size, self.G
        cache = {"gates": empty((T, B, G), dtype),          # activated gates i, f, g, o
                 "act": empty((T, B, H), dtype)}            # act_out(c) (of LN(c) with layer norm)
        if self.spec.layer_norm:
            cache.update(rhat=empty((T, B, G), dtype), rrstd=empty((T, B, 1), dtype),
                         chat=empty((T, B, H), dtype), crstd=empty((T, B, 1), dtype),
                         dr=empty((T, B, G), dtype), du=empty((T, B, H), dtype))
        return cache

    def _gate(self, z, name):
        """The activated gate `name` as a view of z, or 1.0 for a gate the variant lacks."""
        return z[:, self.blk[name]] if name in self.blk else 1.0

    def _squash_consts(self, dtype):
        """Per run start: (s, m, b, k2, k1, k0), the vectors in `dtype` (a float64 vector
        would make NumPy compute a float32 product in float64)."""
        consts = self._consts.get(dtype)
        if consts is None:
            runs = self.squash_runs + ([self.blk["o"]] if self.o_late else [])
            consts = self._consts[dtype] = {}
            for run in runs:
                s, m, b, k2, k1, k0 = (v[run].astype(dtype) for v in self.squash + self.dsquash)
                consts[run.start] = (s, m, b, None if (k2 == -1).all() else k2, k1, k0)
        return consts

    def _squash(self, z, run):
        """y = m tanh(s a) + b on the columns `run` of z, in place."""
        s, m, b, *_ = self._squash_consts(z.dtype)[run.start]
        zr = z[:, run]
        if not self.merged:                                     # else folded into the weights
            zr *= s
        np.tanh(zr, out=zr)
        zr *= m
        zr += b

    def _unsquash(self, y, dy, run):
        """dy[:, run] *= dy/da, given the squashed y: (k2 y + k1) y + k0 per column
        (k2 = -1 for sigma and tanh: one pass fewer)."""
        *_, k2, k1, k0 = self._squash_consts(y.dtype)[run.start]
        yr = y[:, run]
        if k2 is None:
            d = k1 - yr
        else:
            d = yr * k2
            d += k1
        d *= yr
        d += k0
        dy[:, run] *= d

    def step(self, w, xp_t, prev, new, cache, t):
        spec, blk = self.spec, self.blk
        h, c = prev[0], prev[1]
        z = cache["gates"][t]                                   # (B, G): a, then the gates
        if kernels.runs(self, z.dtype):                        # the rest in one call
            np.matmul(xp_t, w["weight_x1h"].T, out=z)
            kernels.lstm_forward(z, c, new[1], cache["act"][t], new[0])
            return
        if spec.layer_norm:                                     # z = LN(R h) gamma + xp
            rhat, rrstd = layer_norm(h @ w["weight_hh_T"])
            cache["rhat"][t], cache["rrstd"][t] = rhat, rrstd
            np.multiply(rhat, w["ln_hh_weight"], out=z)
            z += xp_t
        else:                                                   # z = [x, 1, h] [W | b | R]^T
            np.matmul(xp_t, w["weight_x1h"].T, out=z)
        if spec.peepholes:
            for g in ("i", "f"):
                if g in self.peep:
                    z[:, blk[g]] += w["weight_peephole_a"][self.peep[g]] * c
        if spec.gate_recurrence:                                # gates see the last gates
            zg = prev[2] @ w["weight_gg_T"]                     # (B, S)
            for k, g in enumerate(self.sig):
                z[:, blk[g]] += zg[:, k * self.hidden_size:(k + 1) * self.hidden_size]
        for run in self.squash_runs:                            # i, f, o = sigma(a), g = act_in(a)
            self._squash(z, run)
        i, f, o, g = (self._gate(z, n) for n in "ifog")
        if spec.coupled_gates:
            f = 1.0 - i

        c_new = new[1]
        np.multiply(f, c, out=c_new)                            # c = f * c + i * g
        c_new += i * g

        if self.o_late:                                         # o looks at the new c
            z[:, blk["o"]] += w["weight_peephole_a"][self.peep["o"]] * c_new
            self._squash(z, blk["o"])
        act = cache["act"][t]
        if spec.layer_norm:                                     # act_out(LN(c) gamma + beta)
            chat, crstd = layer_norm(c_new)
            cache["chat"][t], cache["crstd"][t] = chat, crstd
            np.multiply(chat, w["ln_cell_weight"], out=act)
            act += w["ln_cell_bias"]
            activate(spec.output_activation, act, out=act)
        else:
            activate(spec.output_activation, c_new, out=act)
        np.multiply(o, act, out=new[0])                         # h = o * act_out(c)
        if spec.gate_recurrence:
            for k, gname in enumerate(self.sig):
                new[2][:, k * self.hidden_size:(k + 1) * self.hidden_size] = z[:, blk[gname]]

    def step_backward(self, w, dnew, prev, new, cache, t, da):
        """First the gradients of the gates' outputs go into da, then one pass per run of
        columns turns them into gradients of the pre-activations."""
        spec, blk, H = self.spec, self.blk, self.hidden_size
        dh, dc_next = dnew[0], dnew[1]
        c = prev[1]
        z, act = cache["gates"][t], cache["act"][t]
        if kernels.runs(self, z.dtype):
            dc_prev = np.empty_like(c)
            kernels.lstm_backward(dh, dc_next, z, act, c, da, dc_prev)
            return self._undo_recurrent(w, da), dc_prev
        i, f, o, g = (self._gate(z, n) for n in "ifog")
        if spec.coupled_gates:
            f = 1.0 - i
        d = {n: da[:, sl] for n, sl in blk.items()}             # dL/d(gate output), then dL/da
        dgate = {}                                              # dL/d(gate) from the next step (FGR)
        if spec.gate_recurrence:
            dgate = {n: dnew[2][:, k * H:(k + 1) * H] for k, n in enumerate(self.sig)}

        dact = dh * o                                           # undo h = o * act
        if spec.layer_norm:
            du = cache["du"][t]
            du[...] = activate_grad(spec.output_activation, act, dact)
            dc = dc_next + layer_norm_backward(du * w["ln_cell_weight"],
                                               cache["chat"][t], cache["crstd"][t])
        else:
            dc = activate_grad(spec.output_activation, act, dact, out=dact)
            dc += dc_next
        if "o" in blk:
            np.multiply(dh, act, out=d["o"])
            if "o" in dgate:
                d["o"] += dgate["o"]
            if self.o_late:                                     # undo o's look at the new c
                self._unsquash(z, da, blk["o"])
                dc += d["o"] * w["weight_peephole"][self.peep["o"]]

        if "i" in blk:                                          # undo c = f * c_prev + i * g
            np.multiply(dc, g, out=d["i"])
        np.multiply(dc, i, out=d["g"])
        dc_prev = dc * f
        if "f" in blk:
            np.multiply(dc, c, out=d["f"])
        elif spec.coupled_gates:                                # undo f = 1 - i
            d["i"] -= dc * c
        for n in ("i", "f"):
            if n in dgate:
                d[n] += dgate[n]
        for run in self.squash_runs:                            # undo the squashing
            self._unsquash(z, da, run)
        if spec.peepholes:                                      # undo i, f's look at c_prev
            for gname in ("i", "f"):
                if gname in self.peep:
                    dc_prev += d[gname] * w["weight_peephole"][self.peep[gname]]

        if spec.layer_norm:                                     # undo LN(R h) gamma
            dr = cache["dr"][t]
            dr[...] = layer_norm_backward(da * w["ln_hh_weight"], cache["rhat"][t], cache["rrstd"][t])
            dh_prev = self._undo_recurrent(w, dr)
        else:
            dh_prev = self._undo_recurrent(w, da)               # undo R h: (B, R)
        if not spec.gate_recurrence:
            return dh_prev, dc_prev
        dgates_prev = np.concatenate([d[n] for n in self.sig], axis=1) @ w["weight_gg"]
        return dh_prev, dc_prev, dgates_prev

    def param_grads(self, w, da, hist, cache, grads):
        spec, blk = self.spec, self.blk
        T, B, G = da.shape
        if spec.layer_norm:
            dr = cache["dr"].reshape(T * B, G)
            grads["weight_hh"] = dr.T @ hist[0][:-1].reshape(T * B, -1)
            grads["bias_hh"] = grads["bias_ih"].copy()
            grads["ln_hh_weight"] = np.einsum("tbg,tbg->g", da, cache["rhat"])
            grads["ln_cell_weight"] = np.einsum("tbh,tbh->h", cache["du"], cache["chat"])
            grads["ln_cell_bias"] = cache["du"].sum(axis=(0, 1))
        else:
            self._recurrent_weight_grads(da, hist, grads)
        if spec.peepholes:
            c_prev, c_new = hist[1][:-1], hist[1][1:]
            grads["weight_peephole"] = np.stack([
                np.einsum("tbh,tbh->h", da[:, :, blk[g]], c_new if g == "o" else c_prev)
                for g in self.sig])
        if spec.gate_recurrence:
            da_sig = np.concatenate([da[:, :, blk[n]] for n in self.sig], axis=2)  # (T, B, S)
            grads["weight_gg"] = da_sig.reshape(T * B, -1).T @ hist[2][:-1].reshape(T * B, -1)

    def trace(self, cache, hist):
        z = cache["gates"]
        out = {g: z[:, :, self.blk[g]] for g in self.spec.gates}
        if self.spec.coupled_gates:
            out["f"] = 1.0 - out["i"]
        out["c"] = hist[1][1:]
        return {k: out[k] for k in family_of(self.spec).traced if k in out}   # i, f, g, o, c


class GRUCell(Cell):
    """Gated recurrent unit (readable version: reference.gru_step / gru_step_backward)::

        r = sigma(a_r),  z = sigma(a_z)            a = W x + b_i + R h_prev + b_h
        n = tanh(W_n x + b_in + r * (R_n h_prev + b_hn))       linear_before_reset (PyTorch)
        n = tanh(W_n x + b_in + R_n (r * h_prev) + b_hn)       Cho et al. 2014
        h = (1 - z) * n + z * h_prev
    """

    merged = False                                              # r multiplies R_n h: two products

    def __init__(self, spec, input_size, hidden_size, proj_size=0):
        super().__init__(spec, input_size, hidden_size, proj_size)
        H = hidden_size
        self.rz, self.n = slice(0, 2 * H), slice(2 * H, 3 * H)

    def _folded_bias(self, w):
        if not self.spec.linear_before_reset:
            return w["bias_hh"]
        b = w["bias_hh"].copy()
        b[self.n] = 0.0                                         # b_hn sits inside r * (...)
        return b

    def alloc(self, T, B, dtype, empty):
        cache = super().alloc(T, B, dtype, empty)               # "gates": r, z, n
        if self.spec.linear_before_reset:
            cache["hr"] = empty((T, B, self.G), dtype)          # R h + b_h: (T, B, 3H)
            cache["dhr"] = empty((T, B, self.G), dtype)
        else:
            cache["rh"] = empty((T, B, self.hidden_size), dtype)  # r * h_prev
        return cache

    def step(self, w, xp_t, prev, new, cache, t):
        h, rz, n = prev[0], self.rz, self.n
        a = cache["gates"][t]                                   # (B, 3H)
        if self.spec.linear_before_reset:
            hr = cache["hr"][t]
            np.matmul(h, w["weight_hh_T"], out=hr)              # (B, 3H)
            hr[:, n] += w["bias_hh"][n]
            np.add(xp_t[:, rz], hr[:, rz], out=a[:, rz])
            sigmoid(a[:, rz], out=a[:, rz])
            np.multiply(a[:, self.blk["r"]], hr[:, n], out=a[:, n])   # r * (R_n h + b_hn)
        else:
            np.matmul(h, w["weight_hh_T"][:, rz], out=a[:, rz])
            a[:, rz] += xp_t[:, rz]
            sigmoid(a[:, rz], out=a[:, rz])
            rh = cache["rh"][t]
            np.multiply(a[:, self.blk["r"]], h, out=rh)                # R_n (r * h)
            np.matmul(rh, w["weight_hh_T"][:, n], out=a[:, n])
        a[:, n] += xp_t[:, n]
        gn = np.tanh(a[:, n], out=a[:, n])
        gz = a[:, self.blk["z"]]
        h_new = new[0]
        np.subtract(h, gn, out=h_new)                           # h = n + z * (h_prev - n)
        h_new *= gz
        h_new += gn

    def step_backward(self, w, dnew, prev, new, cache, t, da):
        h, rz, n = prev[0], self.rz, self.n
        dh = dnew[0]
        a = cache["gates"][t]
        r, z, gn = a[:, self.blk["r"]], a[:, self.blk["z"]], a[:, n]
        dgn = dh * (1.0 - z)                                    # undo h = (1 - z) n + z h_prev
        dz = dh * (h - gn)
        dh_prev = dh * z
        da[:, n] = dn = dgn * (1.0 - gn * gn)                   # undo tanh
        da[:, self.blk["z"]] = sigmoid_grad(z, dz)
        if self.spec.linear_before_reset:
            hr = cache["hr"][t]
            da[:, self.blk["r"]] = sigmoid_grad(r, dn * hr[:, n])   # undo r * (R_n h + b_hn)
            dhr = cache["dhr"][t]
            dhr[:, rz] = da[:, rz]
            np.multiply(dn, r, out=dhr[:, n])
            dh_prev += dhr @ w["weight_hh"]                     # undo R h
        else:
            drh = dn @ w["weight_hh"][n]                        # undo R_n (r * h)
            da[:, self.blk["r"]] = sigmoid_grad(r, drh * h)
            dh_prev += drh * r
            dh_prev += da[:, rz] @ w["weight_hh"][rz]
        return (dh_prev,)

    def param_grads(self, w, da, hist, cache, grads):
        T, B, G = da.shape
        h_prev = hist[0][:-1].reshape(T * B, -1)
        if self.spec.linear_before_reset:
            dhr = cache["dhr"].reshape(T * B, G)
            grads["weight_hh"] = dhr.T @ h_prev
            grads["bias_hh"] = dhr.sum(axis=0)
        else:
            da2 = da.reshape(T * B, G)
            grads["weight_hh"] = np.concatenate([
                da2[:, self.rz].T @ h_prev,
                da2[:, self.n].T @ cache["rh"].reshape(T * B, -1)])
            grads["bias_hh"] = grads["bias_ih"].copy()          # all of b_hh adds linearly

    def trace(self, cache, hist):
        a = cache["gates"]
        return {g: a[:, :, self.blk[g]] for g in ("r", "z", "n")}


class RNNCell(Cell):
    """Plain recurrent cell:  h = act(W x + b_ih + R h_prev + b_hh),  act tanh or ReLU.
    (Readable version: reference.rnn_step / rnn_step_backward.)"""

    def step(self, w, xp_t, prev, new, cache, t):
        a = cache["gates"][t]
        np.matmul(xp_t, w["weight_x1h"].T, out=a)               # a = [x, 1, h] [W | b | R]^T
        activate(self.spec.nonlinearity, a, out=a)
        np.copyto(new[0], a)

    def step_backward(self, w, dnew, prev, new, cache, t, da):
        da[...] = activate_grad(self.spec.nonlinearity, cache["gates"][t], dnew[0])
        return (self._undo_recurrent(w, da),)

    def param_grads(self, w, da, hist, cache, grads):
        self._recurrent_weight_grads(da, hist, grads)

    def trace(self, cache, hist):
        return {}


# the steps of each family; the type makes the checker verify each against RecurrentCell
CELLS: dict[str, type[LSTMCell | GRUCell | RNNCell]] = {"lstm": LSTMCell, "gru": GRUCell, "rnn": RNNCell}


def make_cell(spec: CellSpec, input_size: int, hidden_size: int, proj_size: int = 0) -> RecurrentCell:
    return CELLS[spec.family](spec, input_size, hidden_size, proj_size)


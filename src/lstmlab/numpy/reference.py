"""The reference cells: one time step of every variant, forward and backward, as the equations.

This is the file to read to learn what an LSTM (or a GRU, or a plain RNN) computes in one
step, and how the gradient of that step is worked out by hand. Each family has two pure
functions, the backward one right under its forward:

    h, state, saved = lstm_step(spec, p, x, state)                       # one step
    grads, dx, dstate_prev = lstm_step_backward(spec, p, saved, dstate)  # the same step undone

`spec` is the variant (its flags, see `lstmlab.spec`); `p` one layer's parameters by base
name in the canonical layout (`weight_ih` (G, I) with the blocks of the gates stacked i, f,
g, o; GRU r, z, n); `x` the step's input (B, I), one row per sequence of the batch, so `W x`
is written `x @ W.T`; `state` a tuple whose first entry is h. Gradient names are the
forward names with a `d` prefix (dc is dL/dc), and each backward line names what it undoes.
Nothing here is fused, pre-scaled or preallocated.

`lstmlab.numpy.LSTM(..., fast=False)` (and GRU, RNN) runs whole layers on these functions
through `ReferenceCell`. The fast cells of `cells.py` compute the same numbers in another
order; the tests hold them equal to these, forward and backward, for every variant.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..families import family_of
from ..interfaces import RecurrentCell
from ..spec import CellSpec
from .ops import layer_norm, layer_norm_backward


def unchanged(name, value):
    """The default `edit` of a step: every value as the equations made it."""
    return value


def sigmoid(a):
    """sigma(a) = 1 / (1 + e^-a), squashes into (0, 1): how open a gate is."""
    with np.errstate(over="ignore", under="ignore"):   # e^-a is inf for a < -709: sigma is 0
        return 1.0 / (1.0 + np.exp(-a))


# The squashing functions a variant may choose, each with its derivative at the same input.
# "sigmoid4" and "sigmoid2" are the ones of Hochreiter & Schmidhuber 1997.
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
    "identity": (lambda a: a, lambda a: np.ones_like(a)),
    "sigmoid4": (lambda a: 4.0 * sigmoid(a) - 2.0, lambda a: 4.0 * sigmoid(a) * (1.0 - sigmoid(a))),
    "sigmoid2": (lambda a: 2.0 * sigmoid(a) - 1.0, lambda a: 2.0 * sigmoid(a) * (1.0 - sigmoid(a))),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(a.dtype)),
}


def by_gate(a, names, axis=0):
    """Split `a` along `axis` into equal blocks, one per gate: {"i": a_i, "f": a_f, ...}."""
    return dict(zip(names, np.split(a, len(names), axis=axis)))


def _peepholes(spec: CellSpec, p):
    """p_i, p_f, p_o: the rows of weight_peephole, (H,) each; 0 for a gate without one."""
    rows = by_gate(p["weight_peephole"], spec.sigmoid_gates) if spec.peepholes else {}
    return tuple(rows[k][0] if k in rows else 0.0 for k in ("i", "f", "o"))


# --- LSTM ---------------------------------------------------------------------------------

def lstm_step(spec: CellSpec, p: dict, x, state, edit=unchanged):
    """One LSTM step, every variant::

        a = W x + R h_prev + b              the pre-activations of all gates, stacked [a_i, a_f, a_g, a_o]
        i = sigma(a_i + p_i * c_prev)       input gate    (nig: i = 1)
        f = sigma(a_f + p_f * c_prev)       forget gate   (cifg: f = 1 - i; nfg: f = 1)
        g = act_in(a_g)                     block input   (tanh; niaf: identity; lstm1997: 4 sigma - 2)
        c = f * c_prev + i * g              cell state
        o = sigma(a_o + p_o * c)            output gate, looks at the NEW c   (nog: o = 1)
        h = o * act_out(c)                  hidden state  (tanh; noaf: identity; lstm1997: 2 sigma - 1)

    The peepholes p_i, p_f, p_o are 0 without `peepholes`. With `gate_recurrence` (fgr) the
    gates also see the previous step's gates: [a_i, a_f, a_o] += W_gg [i, f, o]_prev. With
    `layer_norm`: a = LN(W x) gamma_ih + LN(R h_prev) gamma_hh + b, and act_out reads
    LN(c) gamma_c + beta_c instead of c; LN normalises over the units of one step.

    p: the layer's parameters by base name. x (B, I). state: (h_prev (B, R), c_prev (B, H)),
    plus with fgr the previous step's gates (B, S), its i, f, o side by side.
    Returns h (B, H), the new state (h, c[, gates]) and `saved`, what lstm_step_backward
    needs. With a projection the layer then makes h = W_hr h, of width R = proj_size.
    edit(name, value) -> value sees i, f, g, c, o and h as they are made (only those the
    variant computes) and returns what the step goes on with: lstmlab.inspect clamps units
    through it. The backward of an edited step is not the edited network's.
    """
    h_prev, c_prev = state[0], state[1]
    b = p["bias_ih"] + p["bias_hh"]                              # the two biases add alike
    Wx = x @ p["weight_ih"].T                                    # W x: (B, G)
    Rh = h_prev @ p["weight_hh"].T                               # R h_prev: (B, G)
    saved = dict(x=x, h_prev=h_prev, c_prev=c_prev)
    if spec.layer_norm:                                          # LN over all G columns of a step
        Wx_hat, Wx_rstd = layer_norm(Wx)
        Rh_hat, Rh_rstd = layer_norm(Rh)
        # a = LN(W x) gamma_ih + LN(R h_prev) gamma_hh + b
        a = Wx_hat * p["ln_ih_weight"] + Rh_hat * p["ln_hh_weight"] + b
        saved.update(Wx_hat=Wx_hat, Wx_rstd=Wx_rstd, Rh_hat=Rh_hat, Rh_rstd=Rh_rstd)
    else:
        a = Wx + Rh + b                                          # a = W x + R h_prev + b
    a = by_gate(a, spec.gates, axis=1)                           # {"i": a_i, ...}, each (B, H)
    if spec.gate_recurrence:
        saved["gates_prev"] = state[2]
        agg = by_gate(state[2] @ p["weight_gg"].T, spec.sigmoid_gates, axis=1)
        for k in spec.sigmoid_gates:
            a[k] = a[k] + agg[k]                                 # a_k += W_gg[k] [i, f, o]_prev
    p_i, p_f, p_o = _peepholes(spec, p)
    act_in = ACTIVATIONS[spec.input_activation][0]
    act_out = ACTIVATIONS[spec.output_activation][0]

    i = edit("i", sigmoid(a["i"] + p_i * c_prev)) if spec.input_gate else 1.0    # i = sigma(a_i + p_i c_prev)
    if spec.coupled_gates:
        f = edit("f", 1.0 - i)                                                   # f = 1 - i
    else:
        f = edit("f", sigmoid(a["f"] + p_f * c_prev)) if spec.forget_gate else 1.0   # sigma(a_f + p_f c_prev)
    g = edit("g", act_in(a["g"]))                                                # g = act_in(a_g)
    c = edit("c", f * c_prev + i * g)                                            # c = f * c_prev + i * g
    o = edit("o", sigmoid(a["o"] + p_o * c)) if spec.output_gate else 1.0        # o = sigma(a_o + p_o c)
    if spec.layer_norm:
        c_hat, c_rstd = layer_norm(c)
        cn = c_hat * p["ln_cell_weight"] + p["ln_cell_bias"]              # cn = LN(c) gamma_c + beta_c
        saved.update(c_hat=c_hat, c_rstd=c_rstd)
    else:
        cn = c                                                            # cn: c as the output reads it
    h = edit("h", o * act_out(cn))                                               # h = o * act_out(cn)

    state = (h, c)
    if spec.gate_recurrence:                                     # the next step sees these gates
        gates = {"i": i, "f": f, "o": o}
        state += (np.concatenate([gates[k] for k in spec.sigmoid_gates], axis=1),)
    saved.update(a_g=a["g"], i=i, f=f, g=g, o=o, c=c, cn=cn)
    return h, state, saved


def lstm_step_backward(spec: CellSpec, p: dict, saved: dict, dstate):
    """Undo lstm_step. dstate: (dh, dc[, dgates]), the gradient of the loss with respect to
    the state the step returned (dh includes what reaches h through the layer's output).

    Returns (grads, dx, dstate_prev): this step's share of the gradient of every parameter
    (by base name; the layer sums the steps), dx (B, I), and (dh_prev, dc_prev[, dgates_prev]).
    """
    x, h_prev, c_prev = saved["x"], saved["h_prev"], saved["c_prev"]
    i, f, g, o, c, cn = (saved[k] for k in ("i", "f", "g", "o", "c", "cn"))
    dh, dc = dstate[0], dstate[1]
    # with fgr, what the next step's a_k += W_gg [i, f, o] sends back to this step's gates
    dgates = by_gate(dstate[2], spec.sigmoid_gates, axis=1) if spec.gate_recurrence else {}
    p_i, p_f, p_o = _peepholes(spec, p)
    act_out = ACTIVATIONS[spec.output_activation][0]
    dact_in = ACTIVATIONS[spec.input_activation][1]
    dact_out = ACTIVATIONS[spec.output_activation][1]
    grads = {}

    do = dh * act_out(cn) + dgates.get("o", 0.0)                 # undo h = o * act_out(cn): dh/do (+ fgr)
    dcn = dh * o * dact_out(cn)                                  #   and dh/dcn
    if spec.layer_norm:                                          # undo cn = LN(c) gamma_c + beta_c
        grads["ln_cell_weight"] = np.sum(dcn * saved["c_hat"], axis=0)
        grads["ln_cell_bias"] = np.sum(dcn, axis=0)
        dcn = layer_norm_backward(dcn * p["ln_cell_weight"], saved["c_hat"], saved["c_rstd"])
    dc = dc + dcn                                                # c counts twice: in h, and in the next c
    da_o = do * o * (1.0 - o)                                    # undo o = sigma(a_o + p_o c)
    dc = dc + da_o * p_o                                         #   o looked at the new c
    di = dc * g + dgates.get("i", 0.0)                           # undo c = f * c_prev + i * g
    df = dc * c_prev + dgates.get("f", 0.0)
    dg = dc * i
    dc_prev = dc * f
    if spec.coupled_gates:
        di = di - df                                             # undo f = 1 - i
    da_i = di * i * (1.0 - i)                                    # undo i = sigma(a_i + p_i c_prev)
    da_f = df * f * (1.0 - f)                                    # undo f = sigma(a_f + p_f c_prev)
    da_g = dg * dact_in(saved["a_g"])                            # undo g = act_in(a_g)
    dc_prev = dc_prev + da_i * p_i + da_f * p_f                  #   i and f looked at c_prev

    # only the gates the variant has (no forget-gate weights with cifg: f = 1 - i)
    da_k = {"i": da_i, "f": da_f, "g": da_g, "o": da_o}
    da = np.concatenate([da_k[k] for k in spec.gates], axis=1)   # (B, G), stacked as a
    dstate_prev = [None, dc_prev]
    if spec.gate_recurrence:                                     # undo a_k += W_gg[k] [i, f, o]_prev
        da_sig = np.concatenate([da_k[k] for k in spec.sigmoid_gates], axis=1)   # (B, S)
        grads["weight_gg"] = da_sig.T @ saved["gates_prev"]
        dstate_prev.append(da_sig @ p["weight_gg"])
    if spec.peepholes:                                           # dp_k = sum over the batch of da_k c
        seen = {"i": c_prev, "f": c_prev, "o": c}
        grads["weight_peephole"] = np.stack([np.sum(da_k[k] * seen[k], axis=0)
                                             for k in spec.sigmoid_gates])
    grads["bias_ih"] = np.sum(da, axis=0)                        # undo a = ... + b_ih + b_hh
    grads["bias_hh"] = grads["bias_ih"].copy()
    if spec.layer_norm:                                          # undo LN(W x) gamma_ih + LN(R h) gamma_hh
        grads["ln_ih_weight"] = np.sum(da * saved["Wx_hat"], axis=0)
        grads["ln_hh_weight"] = np.sum(da * saved["Rh_hat"], axis=0)
        dWx = layer_norm_backward(da * p["ln_ih_weight"], saved["Wx_hat"], saved["Wx_rstd"])
        dRh = layer_norm_backward(da * p["ln_hh_weight"], saved["Rh_hat"], saved["Rh_rstd"])
    else:                                                        # undo a = W x + R h_prev
        dWx = dRh = da
    grads["weight_ih"] = dWx.T @ x                               # undo W x: (G, I)
    grads["weight_hh"] = dRh.T @ h_prev                          # undo R h_prev: (G, R)
    dx = dWx @ p["weight_ih"]                                    # (B, I)
    dstate_prev[0] = dRh @ p["weight_hh"]                        # dh_prev: (B, R)
    return grads, dx, tuple(dstate_prev)


# --- GRU ----------------------------------------------------------------------------------

def gru_step(spec: CellSpec, p: dict, x, state, edit=unchanged):
    """One GRU step::

        r = sigma(W_r x + b_ir + R_r h_prev + b_hr)          reset gate
        z = sigma(W_z x + b_iz + R_z h_prev + b_hz)          update gate
        n = tanh(W_n x + b_in + r * (R_n h_prev + b_hn))     candidate, linear_before_reset (gru)
        n = tanh(W_n x + b_in + R_n (r * h_prev) + b_hn)     candidate, Cho et al. 2014 (gru_cho)
        h = (1 - z) * n + z * h_prev

    x (B, I); state (h_prev,) with h_prev (B, H). Returns h, the new state (h,) and `saved`;
    `edit` sees r, z, n and h, as in lstm_step.
    """
    h_prev = state[0]
    W, R = by_gate(p["weight_ih"], "rzn"), by_gate(p["weight_hh"], "rzn")   # (H, I), (H, H) each
    b_i, b_h = by_gate(p["bias_ih"], "rzn"), by_gate(p["bias_hh"], "rzn")   # (H,) each
    r = edit("r", sigmoid(x @ W["r"].T + b_i["r"] + h_prev @ R["r"].T + b_h["r"]))   # r = sigma(a_r)
    z = edit("z", sigmoid(x @ W["z"].T + b_i["z"] + h_prev @ R["z"].T + b_h["z"]))   # z = sigma(a_z)
    saved = dict(x=x, h_prev=h_prev, r=r, z=z)
    if spec.linear_before_reset:
        hn = h_prev @ R["n"].T + b_h["n"]                        # hn = R_n h_prev + b_hn
        n = edit("n", np.tanh(x @ W["n"].T + b_i["n"] + r * hn))  # n = tanh(W_n x + b_in + r * hn)
        saved["hn"] = hn
    else:
        rh = r * h_prev                                          # rh = r * h_prev
        n = edit("n", np.tanh(x @ W["n"].T + b_i["n"] + rh @ R["n"].T + b_h["n"]))   # n = tanh(.. + R_n rh)
        saved["rh"] = rh
    h = edit("h", (1.0 - z) * n + z * h_prev)                    # h = (1 - z) * n + z * h_prev
    saved["n"] = n
    return h, (h,), saved


def gru_step_backward(spec: CellSpec, p: dict, saved: dict, dstate):
    """Undo gru_step. dstate: (dh,). Returns (grads, dx, (dh_prev,)) as lstm_step_backward."""
    x, h_prev, r, z, n = (saved[k] for k in ("x", "h_prev", "r", "z", "n"))
    W, R = by_gate(p["weight_ih"], "rzn"), by_gate(p["weight_hh"], "rzn")
    dh = dstate[0]

    dn = dh * (1.0 - z)                                          # undo h = (1 - z) * n + z * h_prev
    dz = dh * (h_prev - n)
    dh_prev = dh * z
    da_n = dn * (1.0 - n * n)                                    # undo n = tanh(a_n)
    if spec.linear_before_reset:
        dr = da_n * saved["hn"]                                  # undo a_n = W_n x + b_in + r * hn
        dhn = da_n * r
        dR_n, db_hn = dhn.T @ h_prev, np.sum(dhn, axis=0)        # undo hn = R_n h_prev + b_hn
        dh_prev = dh_prev + dhn @ R["n"]
    else:
        drh = da_n @ R["n"]                                      # undo a_n = W_n x + b_in + R_n rh + b_hn
        dR_n, db_hn = da_n.T @ saved["rh"], np.sum(da_n, axis=0)
        dr = drh * h_prev                                        # undo rh = r * h_prev
        dh_prev = dh_prev + drh * r
    da_r = dr * r * (1.0 - r)                                    # undo r = sigma(a_r)
    da_z = dz * z * (1.0 - z)                                    # undo z = sigma(a_z)
    dh_prev = dh_prev + da_r @ R["r"] + da_z @ R["z"]            # undo R_r h_prev and R_z h_prev
    dx = da_r @ W["r"] + da_z @ W["z"] + da_n @ W["n"]           # undo W_r x, W_z x, W_n x

    db_r, db_z, db_n = (np.sum(d, axis=0) for d in (da_r, da_z, da_n))
    grads = {"weight_ih": np.concatenate([da_r.T @ x, da_z.T @ x, da_n.T @ x]),       # (3H, I)
             "weight_hh": np.concatenate([da_r.T @ h_prev, da_z.T @ h_prev, dR_n]),  # (3H, H)
             "bias_ih": np.concatenate([db_r, db_z, db_n]),
             "bias_hh": np.concatenate([db_r, db_z, db_hn])}
    return grads, dx, (dh_prev,)


# --- plain RNN ----------------------------------------------------------------------------

def rnn_step(spec: CellSpec, p: dict, x, state, edit=unchanged):
    """One plain (Elman) RNN step::

        h = act(W x + b_ih + R h_prev + b_hh)       act: tanh, or relu = max(0, .)

    x (B, I); state (h_prev,) with h_prev (B, H). Returns h, the new state (h,) and `saved`;
    `edit` sees h, as in lstm_step.
    """
    h_prev = state[0]
    a = x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"]  # a
    h = edit("h", ACTIVATIONS[spec.nonlinearity][0](a))          # h = act(a)
    return h, (h,), dict(x=x, h_prev=h_prev, a=a)


def rnn_step_backward(spec: CellSpec, p: dict, saved: dict, dstate):
    """Undo rnn_step. dstate: (dh,). Returns (grads, dx, (dh_prev,)) as lstm_step_backward."""
    x, h_prev = saved["x"], saved["h_prev"]
    da = dstate[0] * ACTIVATIONS[spec.nonlinearity][1](saved["a"])   # undo h = act(a)
    db = np.sum(da, axis=0)                                      # undo a = ... + b_ih + b_hh
    grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev,  # undo W x and R h_prev
             "bias_ih": db, "bias_hh": db.copy()}
    return grads, da @ p["weight_ih"], (da @ p["weight_hh"],)


STEPS = {"lstm": (lstm_step, lstm_step_backward),               # the steps of each family
         "gru": (gru_step, gru_step_backward),
         "rnn": (rnn_step, rnn_step_backward)}


class ReferenceCell:
    """The layer's cell interface (see cells.py) over the step functions above, so that
    `LSTM(..., fast=False)` runs the layer's own loop, masks, reverse direction and
    projection on the readable equations.

    layout: the fast cell of the same variant and sizes, asked only for the sizes (the
    state's come from the family's description). The step input is x itself (the step functions
    do their own products), so `da`, the gradient of the step input, is dx: G, the width
    of da, is the input's width here.

    edit: None, or a function (t, name, value) -> value that each step `t` (in the layer's
    time order) hands to the step function as its `edit` (lstmlab.inspect's clamps).
    """

    merged = False

    def __init__(self, layout: RecurrentCell, edit: Callable | None = None):
        self.spec, self.input_size = layout.spec, layout.input_size
        self.hidden_size, self.out_size = layout.hidden_size, layout.out_size
        self.G = layout.input_size                               # the width of da: dx
        self.state_sizes = layout.state_sizes
        self._step, self._step_backward = STEPS[self.spec.family]
        self.edit = edit

    def prepare(self, p):
        return p                                                 # the parameters as they are

    def project(self, w, x, empty):
        return x, None

    def alloc(self, T, B, dtype, empty):
        return {"saved": [None] * T, "grads": {}}                # per step; gradients summed

    def step(self, w, xp_t, prev, new, cache, t):
        edit = self.edit
        if edit is None:
            _, state, saved = self._step(self.spec, w, xp_t, prev)
        else:
            _, state, saved = self._step(self.spec, w, xp_t, prev, lambda name, v: edit(t, name, v))
        cache["saved"][t] = saved
        for target, value in zip(new, state):                   # the layer keeps the state
            target[...] = value

    def step_backward(self, w, dnew, prev, new, cache, t, da):
        grads, dx, dprev = self._step_backward(self.spec, w, cache["saved"][t], dnew)
        da[...] = dx
        total = cache["grads"]
        for name, g in grads.items():
            total[name] = total[name] + g if name in total else g
        return dprev

    def project_backward(self, w, x, ctx, da, grads):
        return da.copy()                                         # da comes from the layer's pool

    def param_grads(self, w, da, hist, cache, grads):
        grads.update(cache["grads"])

    def trace(self, cache, hist):
        saved = cache["saved"]
        # what the family's trace shows, of what the step saved (an LSTM gate the variant
        # lacks is the constant 1 and is left out)
        return {k: np.stack([s[k] for s in saved]) for k in family_of(self.spec).traced
                if isinstance(saved[0][k], np.ndarray)}

"""One time step of one cell, laid out as its equations with the real numbers (the
dashboard's Step-through view, for learners).

    st = step_through("runs/sine", input=0, t=5, layer=0, unit=3)
    st.to_json()      # equations, every quantity's number for unit 3 and for every unit,
                      # the backward step's numbers, and what each quantity means

The forward numbers come from the glass-box reference step (lstmlab.numpy.reference:
lstm_step, gru_step, rnn_step) run in float64 on the layer's own parameters, the step's
real input and the real previous state of the model on that input (Subject.record); the
backward numbers from the reference step's backward fed the gradient that reaches the step's
state (Subject.gradients: the engine's own backward).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import numpy as np

from ..families import family_of, state_names
from ..numpy.ops import layer_norm_backward
from ..numpy.reference import ACTIVATIONS, STEPS, by_gate
from ..spec import VARIANTS, CellSpec
from .analyses import _output_grad, inputs_of, open_subject
from .subject import STEP_NAMES, Subject

X_SHOWN = 8                       # entries of x_t given (the whole vector is long)

# what each quantity means, for learners (the seed documents' notebook analogy)
NOTES = {
    "lstm": {
        "x": "the input at this step: what the cell reads now",
        "h_prev": "the previous hidden state: what the cell said at the last step",
        "c_prev": "the cell state so far: the notebook the cell keeps from step to step",
        "i": "the input gate decides what new information to write down in the notebook "
             "(0: write nothing, 1: write it all)",
        "f": "the forget gate decides which old notes to cross out (0: cross out, 1: keep)",
        "g": "the block input: the new information the cell could write down (-1 to 1)",
        "c": "the new cell state: the old notes kept by f plus the new ones let in by i",
        "o": "the output gate decides which notes to share in the current meeting",
        "h": "the hidden state: the shared part of the notebook, what the next layer, the "
             "output and the next step see",
    },
    "gru": {
        "x": "the input at this step: what the cell reads now",
        "h_prev": "the previous hidden state: the GRU's memory, which is also what it says",
        "r": "the reset gate decides how much of the old memory to consult when drafting the "
             "new candidate (0: ignore it, 1: use it all)",
        "z": "the update gate decides how much of the old memory to keep as it is (1) "
             "instead of replacing it with the candidate (0)",
        "n": "the candidate: a new draft of the memory, from the input and the consulted "
             "memory (-1 to 1)",
        "h": "the new memory: a blend of the old one (weight z) and the candidate (1 - z)",
    },
    "rnn": {
        "x": "the input at this step: what the cell reads now",
        "h_prev": "the previous hidden state: all the memory a plain RNN has",
        "h": "the new hidden state: input and old memory mixed and squashed; with no gate to "
             "protect it, the memory is rewritten at every step, so old information fades",
    },
}


@dataclass
class StepThrough:
    """One step t of one layer and direction for one sequence.

    equations: {quantity: the variant's line for it} (as `lstmlab variants NAME` prints it,
    with the family's standard line where the variant keeps it); doc: that whole text.
    values[name]: (H,) every quantity of the step (x: (I,), the layer's input). pre[k]: the
    gate k's pre-activation terms (H,) each: "input" (W_k x), "recurrent" (R_k h_prev),
    "bias", for a peephole variant "peephole" (p_k * c), for fgr "gates", and "total".
    backward: {name: (H,)} of the backward step, with backward_equations; None when the
    gradient cannot be shown (with the reason in backward_note).
    """
    variant: str
    family: str
    group: str
    t: int
    steps: int
    unit: int
    step_label: str
    equations: dict[str, str]
    doc: str
    values: dict[str, np.ndarray]
    pre: dict[str, dict[str, np.ndarray]]
    backward: dict[str, np.ndarray] | None
    backward_equations: dict[str, str]
    backward_note: str
    notes: dict[str, str]

    def to_json(self) -> dict:
        u = self.unit
        x = self.values["x"]

        def unit_and_all(v):
            return {"value": float(v[u]), "all": v.tolist()}

        quantities = {n: unit_and_all(v) for n, v in self.values.items() if n != "x"}
        for k, terms in self.pre.items():
            quantities[k]["pre"] = {name: unit_and_all(v) for name, v in terms.items()}
        return {
            "variant": self.variant, "family": self.family, "group": self.group, "t": self.t,
            "steps": self.steps, "unit": u, "step_label": self.step_label,
            "equations": self.equations, "doc": self.doc,
            "x": {"size": int(x.size), "norm": float(np.linalg.norm(x)),
                  "first": x[:X_SHOWN].tolist()},
            "quantities": quantities,
            "backward": None if self.backward is None else
            {n: unit_and_all(v) for n, v in self.backward.items()},
            "backward_equations": self.backward_equations, "backward_note": self.backward_note,
            "notes": self.notes}


def step_through(run, input=0, t: int = 0, layer: int = 0, unit: int = 0, direction: str = "",
                 loss: str = "last", engine: str | None = None) -> StepThrough:
    """Step t of layer `layer` (direction "" or "reverse") on `input` (see inputs_of; the
    first sequence of it), shown for `unit`.

    loss: the scalar whose gradient the backward step shows, as gradient_flow defines it per
    output ("last": at the last step; "all": summed over every step): the log-probability of
    the most probable class, or the sum of the outputs for a regression."""
    subject = open_subject(run, engine)
    if subject.seq2seq:
        raise ValueError("step-through reads sequence models; a seq2seq run (translate) is "
                         "inspected with its activations and attention")
    c = subject.config
    if c.proj_size:
        raise ValueError("step-through is for models without a projection (proj_size 0)")
    if loss not in ("last", "all"):
        raise ValueError(f"loss must be 'last' or 'all', got {loss!r}")
    inputs = inputs_of(subject, input).take(0)
    T = inputs.length(0)
    _check_index("t", t, T, "steps")
    _check_index("layer", layer, c.num_layers, "layers")
    if direction not in ("", "reverse") or (direction and not c.bidirectional):
        allowed = "'' or 'reverse'" if c.bidirectional else "'' (the model reads one direction)"
        raise ValueError(f"direction must be {allowed}, got {direction!r}")
    _check_index("unit", unit, c.hidden_size, "units")
    spec = c.spec
    group = f"l{layer}" + ("_reverse" if direction else "")
    _, groups, _ = subject.record(inputs)
    params = _params(subject)
    p = {name[4:-len(group) - 1]: v for name, v in params.items()
         if name.startswith("rnn.") and name.endswith("_" + group)}
    x = _layer_input(subject, params, inputs, groups, layer, t)
    prev = t + 1 if direction else t - 1                         # the step before, in cell order
    rec = {n: (v[prev, 0] if 0 <= prev < T else np.zeros_like(v[0, 0])).astype(np.float64)
           for n, v in groups[group].items()}
    names = state_names(spec)
    state = [rec["h"][None]] + ([rec["c"][None]] if "c" in names else [])
    if spec.gate_recurrence:                                     # the previous step's gates
        state.append(np.concatenate([rec[k] for k in spec.sigmoid_gates])[None])
    step, step_backward = STEPS[spec.family]
    h, _, saved = step(spec, p, x[None], tuple(state))
    values = {"x": x, "h_prev": rec["h"]}
    if "c" in names:
        values["c_prev"] = rec["c"]
    for n in STEP_NAMES[spec.family]:
        v = h if n == "h" else saved.get(n)
        if isinstance(v, np.ndarray):                            # a gate the variant lacks is 1
            values[n] = v[0]
    pre = _pre_activations(spec, p, x, rec, saved)
    back, back_eq, note = _backward(subject, inputs, group, t, loss, spec, p, saved, step_backward)
    return StepThrough(spec.name or c.variant, spec.family, group, int(t), T, int(unit),
                       inputs.steps[0][t], equations(spec), spec.doc, values, pre, back, back_eq,
                       note, NOTES[spec.family])


def _check_index(what: str, value, n: int, plural: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < n:
        raise ValueError(f"{what} {value!r} is out of range: this model and input have {plural} "
                         f"0 to {n - 1}")


def _params(subject: Subject) -> dict[str, np.ndarray]:
    """The model's parameters by their canonical names, float64 NumPy, either engine."""
    m = subject.model
    if subject.engine == "numpy":
        return {k: np.asarray(v, np.float64) for k, v in m.params.items()}
    return {k: v.detach().cpu().double().numpy() for k, v in m.state_dict().items()}


def _layer_input(subject, params, inputs, groups, layer, t) -> np.ndarray:
    """x_t as layer `layer` reads it (I,): the features or the token's embedding row for
    layer 0, the h of both directions of the layer below otherwise."""
    if layer == 0:
        x = inputs.x[t, 0]
        return params["embedding.weight"][int(x)] if subject.config.vocab_size else \
            np.asarray(x, np.float64)
    below = [f"l{layer - 1}"] + ([f"l{layer - 1}_reverse"] if subject.config.bidirectional else [])
    return np.concatenate([groups[g]["h"][t, 0] for g in below]).astype(np.float64)


def _pre_activations(spec: CellSpec, p, x, rec, saved) -> dict[str, dict[str, np.ndarray]]:
    """Each sigmoid or tanh gate's pre-activation, term by term (H,) each, as the step adds them."""
    b = by_gate(p["bias_ih"] + p["bias_hh"], spec.gates)
    if spec.layer_norm:                                          # the normalised W x and R h
        wx = by_gate(saved["Wx_hat"][0] * p["ln_ih_weight"], spec.gates)
        rh = by_gate(saved["Rh_hat"][0] * p["ln_hh_weight"], spec.gates)
    else:
        wx = by_gate(p["weight_ih"] @ x, spec.gates)
        rh = by_gate(p["weight_hh"] @ rec["h"], spec.gates)
    if spec.family == "gru":                                     # b_in and b_hn stay apart
        bi, bh = by_gate(p["bias_ih"], "rzn"), by_gate(p["bias_hh"], "rzn")
        r = saved["r"][0]
        out = {k: {"input": wx[k], "recurrent": rh[k], "bias": b[k]} for k in "rz"}
        if spec.linear_before_reset:                             # r * (R_n h + b_hn)
            rec_n = r * (rh["n"] + bh["n"])
        else:                                                    # R_n (r * h) + b_hn
            rec_n = by_gate(p["weight_hh"], "rzn")["n"] @ (r * rec["h"]) + bh["n"]
        out["n"] = {"input": wx["n"], "recurrent": rec_n, "bias": bi["n"]}
    elif spec.family == "rnn":
        out = {"h": {"input": wx["h"], "recurrent": rh["h"], "bias": b["h"]}}
    else:
        out = {k: {"input": wx[k], "recurrent": rh[k], "bias": b[k]} for k in spec.gates}
        if spec.peepholes:                                       # i, f see c_prev; o sees the new c
            rows = by_gate(p["weight_peephole"], spec.sigmoid_gates)
            for k in spec.sigmoid_gates:
                out[k]["peephole"] = rows[k][0] * (saved["c"][0] if k == "o" else rec["c"])
        if spec.gate_recurrence:
            gg = by_gate(p["weight_gg"] @ np.concatenate([rec[k] for k in spec.sigmoid_gates]),
                         spec.sigmoid_gates)
            for k in spec.sigmoid_gates:
                out[k]["gates"] = gg[k]
    for terms in out.values():
        terms["total"] = sum(terms.values())
    return out


def _backward(subject, inputs, group, t, loss, spec, p, saved, step_backward):
    """(numbers {name: (H,)}, their equations, a note): the backward step at t fed the
    gradient the engine's backward sends to the state step t made."""
    if spec.gate_recurrence:
        return None, {}, ("the backward step of fgr also needs the gradient of the gates' "
                          "state, which the engines do not report; forward numbers only")
    T = inputs.length(0)

    def make_dout(out):
        d = np.zeros_like(out, dtype=np.float64)
        if subject.config.readout != "sequence":
            d[:] = _output_grad(subject, out)
        elif loss == "last":
            d[T - 1] = _output_grad(subject, out[T - 1])
        else:
            d[:T] = _output_grad(subject, out[:T])
        return d

    _, _, sg = subject.gradients(inputs, make_dout)
    dstate = tuple(np.asarray(sg[group][n][t], np.float64) for n in ("h", "c") if n in sg[group])
    grads, _, dprev = step_backward(spec, p, saved, dstate)
    da = by_gate(grads["bias_ih"], spec.gates)                   # B = 1: the bias's gradient is da
    out = {"dh": dstate[0][0]}
    if spec.family == "lstm":
        out["dc_next"] = dstate[1][0]
        out.update({f"da_{k}": v for k, v in da.items()})
        out["dc_prev"] = dprev[1][0]
        eqs = _lstm_backward_lines(spec)
        out.update(_lstm_backward_terms(spec, p, saved, dstate, da))
    elif spec.family == "gru":
        z, n, h_prev = saved["z"][0], saved["n"][0], saved["h_prev"][0]
        if spec.linear_before_reset:                             # a_n = ... + r * hn
            dr = da["n"] * saved["hn"][0]
            via_n = "R_n^T (da_n * r)"
        else:                                                    # a_n = ... + R_n (r * h_prev)
            dr = (da["n"] @ by_gate(p["weight_hh"], "rzn")["n"]) * h_prev
            via_n = "(R_n^T da_n) * r"
        out.update(dn=dstate[0][0] * (1.0 - z), dz=dstate[0][0] * (h_prev - n), dr=dr,
                   **{f"da_{k}": v for k, v in da.items()})
        eqs = {"dn": "dn = dh * (1 - z)", "dz": "dz = dh * (h_prev - n)",
               "da_n": "da_n = dn * (1 - n^2)",
               "dr": "dr = da_n * (R_n h_prev + b_hn)" if spec.linear_before_reset
               else "dr = (R_n^T da_n) * h_prev",
               "da_r": "da_r = dr * r * (1 - r)", "da_z": "da_z = dz * z * (1 - z)",
               "dh_prev": f"dh_prev = dh * z + R_r^T da_r + R_z^T da_z + {via_n}"}
    else:
        out["da_h"] = da["h"]
        act = spec.nonlinearity
        eqs = {"da_h": f"da = dh * {act}'(a)", "dh_prev": "dh_prev = R^T da"}
    out["dh_prev"] = dprev[0][0]
    note = (f"the gradient of the {'last output' if loss == 'last' else 'outputs at every step'}"
            " (the log-probability of the most probable class, or the sum of the outputs) "
            "reaching step t: dh through the outputs and every later step")
    if spec.family == "lstm":
        note += ", dc_next from the steps after t (the constant error carousel)"
    return {k: np.asarray(v, np.float64) for k, v in out.items()}, eqs, note


def _lstm_backward_terms(spec, p, saved, dstate, da) -> dict[str, np.ndarray]:
    """do, dc (total), di, df, dg of the LSTM backward (H,) each, as its lines write them (the
    tests hold them to lstm_step_backward's own da_k and dc_prev)."""
    i, f, g, o, cn, c_prev = (np.asarray(saved[k], np.float64) for k in ("i", "f", "g", "o", "cn", "c_prev"))
    act_out, dact_out = ACTIVATIONS[spec.output_activation]
    dh, dc_next = dstate[0], dstate[1]
    dcn = dh * o * dact_out(cn)                                  # c counts in h and in the next c
    if spec.layer_norm:                                          # h reads LN(c) gamma_c + beta_c
        dcn = layer_norm_backward(dcn * p["ln_cell_weight"], saved["c_hat"], saved["c_rstd"])
    dc = dc_next + dcn
    if spec.peepholes and spec.output_gate:                      # o looked at the new c
        dc = dc + da["o"] * by_gate(p["weight_peephole"], spec.sigmoid_gates)["o"][0]
    out = {"dc": dc, "dg": dc * i}
    if spec.output_gate:
        out["do"] = dh * act_out(cn)
    if spec.input_gate:
        out["di"] = dc * g - (dc * c_prev if spec.coupled_gates else 0.0)
    if spec.forget_gate:
        out["df"] = dc * c_prev
    return {k: np.broadcast_to(v, dh.shape)[0] for k, v in out.items()}


def _lstm_backward_lines(spec: CellSpec) -> dict[str, str]:
    """The LSTM backward step's lines for the quantities `spec` has."""
    act_in, act_out, peep = spec.input_activation, spec.output_activation, spec.peepholes
    cn = "LN(c)" if spec.layer_norm else "c"
    dcn = f"LN'(dh * o * {act_out}'({cn}) * gamma_c)" if spec.layer_norm else f"dh * o * {act_out}'(c)"
    lines = {"dc": f"dc = dc_next + {dcn}" + (" + da_o * p_o" if peep else ""),
             "dg": "dg = dc * i", "da_g": f"da_g = dg * {act_in}'(a_g)"}
    if spec.output_gate:
        lines.update(do=f"do = dh * {act_out}({cn})", da_o="da_o = do * o * (1 - o)")
    if spec.input_gate:
        lines.update(di="di = dc * g" + (" - df   (f = 1 - i)" if spec.coupled_gates else ""),
                     da_i="da_i = di * i * (1 - i)")
    if spec.forget_gate:
        lines["df"] = "df = dc * c_prev"
        if not spec.coupled_gates:
            lines["da_f"] = "da_f = df * f * (1 - f)"
    seen = [f"da_{k} * p_{k}" for k in ("i", "f") if peep and f"da_{k}" in lines]
    lines["dc_prev"] = " + ".join(["dc_prev = dc * f"] + seen)
    lines["dh_prev"] = "dh_prev = R^T [" + ", ".join(f"da_{k}" for k in spec.gates) + "]"
    return lines


# --- the variant's equations, as `lstmlab variants NAME` prints them -------------------------
_SEGMENT = re.compile(r"^\[?([a-z](?:, [a-z])*)\]? (\+?=) (.+)$")


def equations(spec: CellSpec) -> dict[str, str]:
    """{quantity: its line}: the lines of the family's standard variant, replaced by those of
    every registered variant whose flags `spec` has (peephole, cifg, ... and spec itself);
    "+=" lines (peepholes, fgr) are added to the quantity's line."""
    base = VARIANTS[family_of(spec).default_variant]
    docs = [base.doc] + [v.doc for v in VARIANTS.values() if v is not base and _has_flags(spec, v)]
    if spec.doc not in docs:
        docs.append(spec.doc)
    out: dict[str, str] = {}
    for doc in docs:
        for line in doc.splitlines():
            for seg in re.split(r"\s{2,}", line.strip()):
                seg = re.sub(r"(,? so|[,.;])$", "", seg.strip())
                m = _SEGMENT.match(seg)
                if m is None:
                    continue
                for q in m.group(1).split(", "):
                    if m.group(2) == "+=" and q in out:
                        out[q] += f",  with {q} += {m.group(3)}"
                    elif m.group(2) == "=":
                        out[q] = seg
    return {q: out[q] for q in STEP_NAMES[spec.family] if q in out}


def _has_flags(spec: CellSpec, v: CellSpec) -> bool:
    """Whether `spec` sets every flag that registered variant `v` sets (v differs from the
    default cell of its family only in flags spec shares)."""
    if v.family != spec.family:
        return False
    default = CellSpec(family=v.family)
    return all(getattr(spec, f.name) == getattr(v, f.name) for f in fields(CellSpec)
               if f.name not in ("name", "doc") and getattr(v, f.name) != getattr(default, f.name))

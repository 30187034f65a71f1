"""What a recurrent cell is, as data: `CellSpec` and the one registry `VARIANTS`.

A variant is a named set of flags. Both engines build their cells from a `CellSpec`, the
CLI offers the registry's names, and the tests run every entry, so a new variant is one
entry here plus the lines of its cell that differ.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

from .checks import check_bool, check_choice, listed, shown
from .families import FAMILIES as _DESCRIPTIONS

FAMILIES = tuple(_DESCRIPTIONS)                                 # each described in families.py
# g = act_in(a_g) and h = o * act_out(c); the two "sigmoid" forms are the squashing
# functions of Hochreiter & Schmidhuber 1997: g(x) = 4 sigma(x) - 2, h(x) = 2 sigma(x) - 1.
INPUT_ACTIVATIONS = ("tanh", "identity", "sigmoid4")
OUTPUT_ACTIVATIONS = ("tanh", "identity", "sigmoid2")
NONLINEARITIES = ("tanh", "relu")


@dataclass(frozen=True)
class CellSpec:
    """The flags that define a recurrent cell. Build one with `lstmlab.variant(...)`."""

    family: str = "lstm"             # "lstm", "gru" or "rnn": which cell equations apply
    input_gate: bool = True          # False: i = 1 (Greff et al.'s NIG)
    forget_gate: bool = True         # False: f = 1 (NFG, and the LSTM of 1997)
    output_gate: bool = True         # False: o = 1 (NOG)
    coupled_gates: bool = False      # True: f = 1 - i, no forget weights (CIFG)
    peepholes: bool = False          # gates i, f see c_{t-1}; o sees c_t (Gers & Schmidhuber 2000)
    gate_recurrence: bool = False    # gates see the previous step's gates (FGR)
    layer_norm: bool = False         # normalise W x, R h and c (Ba et al. 2016)
    input_activation: str = "tanh"   # squashing of the block input g
    output_activation: str = "tanh"  # squashing of the cell state before the output gate
    linear_before_reset: bool = True  # GRU: r multiplies (R h + b) (PyTorch) or h (Cho et al.)
    nonlinearity: str = "tanh"       # plain RNN: "tanh" or "relu"
    name: str = field(default="", compare=False)  # how the user asked for it, for display
    doc: str = field(default="", compare=False, repr=False)  # equations and source paper

    def __post_init__(self):
        check_choice(self.family, "family", FAMILIES)
        for f in dataclasses.fields(self):                       # a flag is True or False, not "yes"
            if f.type == "bool":
                check_bool(getattr(self, f.name), f.name)
        check_choice(self.input_activation, "input_activation", INPUT_ACTIVATIONS)
        check_choice(self.output_activation, "output_activation", OUTPUT_ACTIVATIONS)
        check_choice(self.nonlinearity, "nonlinearity", NONLINEARITIES)
        if self.coupled_gates and not (self.input_gate and self.forget_gate):
            raise ValueError("coupled_gates (f = 1 - i) needs both an input gate and a forget gate; "
                             "drop coupled_gates or re-enable the gate")
        if self.gate_recurrence and not self.sigmoid_gates:
            raise ValueError("gate_recurrence needs at least one of the gates i, f, o")
        # a frozen dataclass instance may still carry its own docstring
        object.__setattr__(self, "__doc__", self.doc or None)

    # --- the layout of the parameters, derived from the flags --------------------------
    @property
    def gates(self) -> tuple[str, ...]:
        """The blocks of `weight_ih`/`weight_hh`, in storage order (i, f, g, o; GRU r, z, n)."""
        absent = {"i": not self.input_gate, "f": not self.forget_gate or self.coupled_gates,
                  "o": not self.output_gate}
        return tuple(g for g in _DESCRIPTIONS[self.family].gates if not absent.get(g, False))

    @property
    def sigmoid_gates(self) -> tuple[str, ...]:
        """The LSTM gates that have weights of their own (the rows of the peephole matrix)."""
        if self.family != "lstm":
            return ()
        return tuple(g for g in self.gates if g != "g")

    @property
    def num_gates(self) -> int:
        return len(self.gates)


def _spec(name: str, doc: str, **flags) -> CellSpec:
    return CellSpec(name=name, doc=doc.strip(), **flags)


_LSTM_EQ = """
    i = sigma(W_i x + R_i h + b_i)       input gate
    f = sigma(W_f x + R_f h + b_f)       forget gate
    g = tanh(W_g x + R_g h + b_g)        block input
    o = sigma(W_o x + R_o h + b_o)       output gate
    c = f * c + i * g                    cell state
    h = o * tanh(c)                      hidden state"""

VARIANTS: dict[str, CellSpec] = {s.name: s for s in (
    _spec("lstm", f"""
LSTM with a forget gate and no peepholes: today's standard cell, exactly torch.nn.LSTM.
{_LSTM_EQ}
Hochreiter & Schmidhuber 1997, Neural Computation 9(8); forget gate: Gers, Schmidhuber &
Cummins 2000, Neural Computation 12(10)."""),
    _spec("peephole", f"""
LSTM with peephole connections: the gates look at the cell state.
{_LSTM_EQ}
with  i += p_i * c_prev,  f += p_f * c_prev  and  o += p_o * c_new  inside the sigmoids.
Gers & Schmidhuber 2000, "Recurrent nets that time and count", IJCNN; the "vanilla" LSTM
of Greff et al. 2017, "LSTM: A Search Space Odyssey", IEEE TNNLS 28(10).""",
          peepholes=True),
    _spec("nig", """
No input gate (Greff et al. 2017, NIG):  i = 1, so  c = f * c + g.  Other equations as lstm.""",
          input_gate=False),
    _spec("nfg", """
No forget gate (Greff et al. 2017, NFG):  f = 1, so  c = c + i * g.  Other equations as lstm.""",
          forget_gate=False),
    _spec("nog", """
No output gate (Greff et al. 2017, NOG):  o = 1, so  h = tanh(c).  Other equations as lstm.""",
          output_gate=False),
    _spec("niaf", """
No input activation function (Greff et al. 2017, NIAF):  g = W_g x + R_g h + b_g  (identity).
Other equations as lstm.""",
          input_activation="identity"),
    _spec("noaf", """
No output activation function (Greff et al. 2017, NOAF):  h = o * c  (identity).
Other equations as lstm.""",
          output_activation="identity"),
    _spec("cifg", """
Coupled input and forget gate (Greff et al. 2017, CIFG; the GRU's idea in an LSTM):
    f = 1 - i,  so  c = (1 - i) * c + i * g;  there are no forget-gate weights.
Other equations as lstm. ONNX LSTM with input_forget=1.""",
          coupled_gates=True),
    _spec("fgr", """
Full gate recurrence (Greff et al. 2017, FGR): every gate also sees all gates of the
previous step,  [i, f, o] += W_gg [i_prev, f_prev, o_prev]  inside the sigmoids (gates are
zero before the first step). The recurrent state is (h, c, gates).
Other equations as lstm. Gers & Schmidhuber's original LSTM formulation.""",
          gate_recurrence=True),
    _spec("lstm1997", """
The LSTM as first published: no forget gate, and the original squashing functions
    g = 4 sigma(a_g) - 2   (range -2..2),   h = o * (2 sigma(c) - 1)   (range -1..1),
    i, o as lstm,   c = c + i * g.
Without a forget gate c can only grow on a long stream: why forget gates exist.
Hochreiter & Schmidhuber 1997, "Long short-term memory", Neural Computation 9(8).""",
          forget_gate=False, input_activation="sigmoid4", output_activation="sigmoid2"),
    _spec("layernorm", """
Layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization"):
    [i, f, g, o] = LN(W x; gamma_ih) + LN(R h; gamma_hh) + b      (then sigma / tanh)
    c = f * c + i * g,   h = o * tanh(LN(c; gamma_c, beta_c))
LN normalises over the units of one step; bias_ih and bias_hh play the role of LN's shifts.""",
          layer_norm=True),
    _spec("gru", """
Gated recurrent unit, reset applied after the recurrent product (PyTorch nn.GRU, ONNX GRU
with linear_before_reset=1):
    r = sigma(W_r x + b_ir + R_r h + b_hr)
    z = sigma(W_z x + b_iz + R_z h + b_hz)
    n = tanh(W_n x + b_in + r * (R_n h + b_hn))
    h = (1 - z) * n + z * h
Cho et al. 2014 as implemented by cuDNN and PyTorch.""",
          family="gru"),
    _spec("gru_cho", """
Gated recurrent unit as published, reset applied to h before the product (ONNX GRU with
linear_before_reset=0):
    n = tanh(W_n x + b_in + R_n (r * h) + b_hn),   r, z and h as gru.
Cho et al. 2014, "Learning phrase representations using RNN encoder-decoder", EMNLP.""",
          family="gru", linear_before_reset=False),
    _spec("rnn_tanh", """
Plain (Elman) recurrent net:  h = tanh(W x + b_ih + R h + b_hh).  torch.nn.RNN.
Elman 1990, "Finding structure in time", Cognitive Science 14(2).""",
          family="rnn"),
    _spec("rnn_relu", """
Plain recurrent net with ReLU:  h = max(0, W x + b_ih + R h + b_hh).  torch.nn.RNN with
nonlinearity="relu"; with identity-initialised R it is the IRNN of Le, Jaitly & Hinton 2015.""",
          family="rnn", nonlinearity="relu"),
)}


def variant(spec: str | CellSpec, **flags) -> CellSpec:
    """A `CellSpec` from a registry name (or a spec), with `flags` composed on top.

    >>> variant("cifg", peepholes=True).gates
    ('i', 'g', 'o')
    """
    if isinstance(spec, CellSpec):
        base = spec
    elif isinstance(spec, str) and "+" in spec:                  # a composed name, as saved
        head, *extra = spec.split("+")
        return variant(variant(head), **{**dict(_parse_flag(e) for e in extra), **flags})
    elif isinstance(spec, str) and spec in VARIANTS:
        base = VARIANTS[spec]
    else:
        close = difflib.get_close_matches(spec, VARIANTS, n=1) if isinstance(spec, str) and \
            len(spec) < 100 else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown variant {shown(spec)}{hint}; choose one of: {', '.join(VARIANTS)}")
    if not flags:
        return base
    known = {f.name for f in dataclasses.fields(CellSpec)} - {"name", "doc", "family"}
    unknown = sorted(set(flags) - known)
    if unknown:
        raise ValueError(f"unknown flag(s) {listed(unknown)}; flags are: {', '.join(sorted(known))}")
    foreign = [k for k in flags if k not in _DESCRIPTIONS[base.family].flags
               and flags[k] != getattr(base, k)]
    if foreign:
        raise ValueError(f"{', '.join(foreign)} do(es) not apply to {base.name or base.family!r}, "
                         f"a {base.family.upper()} variant")
    changed = {k: v for k, v in flags.items() if v != getattr(base, k)}
    name = base.name + "".join(f"+{k}" if v is True else f"+{k}={v}" for k, v in changed.items())
    note = "".join(f"\nwith {k}={v!r}" for k, v in changed.items())
    return dataclasses.replace(base, name=name, doc=base.doc + note, **flags)


def _parse_flag(text: str) -> tuple[str, object]:
    """'peepholes' -> ('peepholes', True); 'input_activation=identity' -> (name, 'identity')."""
    name, eq, value = text.partition("=")
    if not eq:
        return name, True
    return name, {"True": True, "False": False}.get(value, value)

"""What a cell family is, as data: one `Family` per family, the one place both engines, the
model files and ONNX read.

A variant (`lstmlab.spec.CellSpec`) says which equations run; its family says everything
around them: the class that builds it (`lstmlab.numpy.LSTM`, `lstmlab.torch.LSTM`, a model
file's "kind"), which flags apply, the gate blocks and the state, the parameters' names and
shapes, and the ONNX operator with its gate order. The initial weights come from these
shapes through one engine-neutral function, `lstmlab.numpy.init.init_stack`, so that one
seed gives the same model in both engines.

The initial weights follow PyTorch's rule for every tensor (U(-1/sqrt(H), 1/sqrt(H)); layer
norm gains 1, shifts 0), with the options forget_bias and recurrent_init on top (see
init_params there).

A new family is one entry in `FAMILIES` and its variants in `spec.VARIANTS`, plus what
differs: its cell steps (numpy/cells.py, numpy/reference.py, torch/cells.py,
io/onnx/loop.py) and its class in each engine (numpy/recurrent.py, torch/recurrent.py; a
class registers itself by naming its family). A new flag is a CellSpec field and its name
in its family's `flags` (and its tensors, if any, in `layer_shapes`), plus the steps.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:                                                # spec imports this module
    from .spec import CellSpec


@dataclass(frozen=True)
class Family:
    """One cell family: how it is built, stored and exported. Pure data."""

    name: str                    # CellSpec.family
    class_name: str              # lstmlab.numpy.<class_name>, lstmlab.torch.<..>, a file's kind
    default_variant: str         # the variant its class builds without variant=
    gates: str                   # every gate block, in storage order (a variant may lack some)
    flags: tuple[str, ...]       # the CellSpec flags that mean something for this family
    state: tuple[str, ...]       # the state's components; h first (fgr adds "gates", LSTM only)
    projection: bool             # takes proj_size: h = W_hr h_cell (weight_hr)
    forget_bias: bool            # takes forget_bias: its forget gate's initial bias (init_params)
    traced: tuple[str, ...]      # what trace() shows per step besides h
    onnx_op: str = ""            # ONNX's operator for it ("": none, always a Scan loop)
    onnx_gates: str = ""         # the gate blocks in the ONNX operator's order, our letters
    onnx_peepholes: str = ""     # the rows of ONNX's P, our letters
    onnx_flags: tuple[str, ...] = ()   # flags the ONNX operator expresses (an attribute, P)
    kernels: tuple[tuple[str, str], ...] = ()  # (variant, torch/cuDNN mode) fused kernels


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("lstm", "LSTM", "lstm", gates="ifgo",
           flags=("input_gate", "forget_gate", "output_gate", "coupled_gates", "peepholes",
                  "gate_recurrence", "layer_norm", "input_activation", "output_activation"),
           state=("h", "c"), projection=True, forget_bias=True, traced=("i", "f", "g", "o", "c"),
           onnx_op="LSTM", onnx_gates="iofg", onnx_peepholes="iof",
           onnx_flags=("peepholes", "coupled_gates"),             # P, input_forget=1
           kernels=(("lstm", "LSTM"),)),
    Family("gru", "GRU", "gru", gates="rzn", flags=("linear_before_reset",),
           state=("h",), projection=False, forget_bias=False, traced=("r", "z", "n"),
           onnx_op="GRU", onnx_gates="zrn", onnx_flags=("linear_before_reset",),
           kernels=(("gru", "GRU"),)),
    Family("rnn", "RNN", "rnn_tanh", gates="h", flags=("nonlinearity",),
           state=("h",), projection=False, forget_bias=False, traced=(),
           onnx_op="RNN", onnx_gates="h", onnx_flags=("nonlinearity",),   # activations
           kernels=(("rnn_tanh", "RNN_TANH"), ("rnn_relu", "RNN_RELU"))),
)}


def family_of(spec: CellSpec | str) -> Family:
    """The `Family` of a CellSpec (or of a family's name)."""
    return FAMILIES[spec if isinstance(spec, str) else spec.family]


def state_names(spec: CellSpec) -> tuple[str, ...]:
    """The state's components in order: ("h", "c") for an LSTM, plus "gates" with fgr."""
    return family_of(spec).state + (("gates",) if spec.gate_recurrence else ())


def state_sizes(spec: CellSpec, hidden_size: int, proj_size: int = 0) -> tuple[int, ...]:
    """The width of each state component: h (proj_size or hidden_size), c (hidden_size),
    the previous gates (one block of hidden_size per sigmoid gate)."""
    width = {"h": proj_size or hidden_size, "c": hidden_size,
             "gates": len(spec.sigmoid_gates) * hidden_size}
    return tuple(width[n] for n in state_names(spec))


def gate_blocks(spec: CellSpec, hidden_size: int) -> dict[str, slice]:
    """The rows of each gate in weight_ih, weight_hh and the biases: {"i": slice(0, H), ...}."""
    H = hidden_size
    return {g: slice(k * H, (k + 1) * H) for k, g in enumerate(spec.gates)}


def merge_runs(slices) -> list[slice]:
    """Merge adjacent slices (sorted by start) into contiguous runs: the gates an operation
    can treat as one block of columns."""
    runs: list[slice] = []
    for s in sorted(slices, key=lambda s: s.start):
        if runs and runs[-1].stop == s.start:
            runs[-1] = slice(runs[-1].start, s.stop)
        else:
            runs.append(s)
    return runs


def layer_shapes(spec: CellSpec, input_size: int, hidden_size: int,
                 proj_size: int = 0) -> dict[str, tuple[int, ...]]:
    """{base name: shape} of one layer and direction, in storage order (the state dict's, and
    the order the initial weights are drawn in). G = gates * H rows, R = proj_size or H:

        weight_ih (G, I), weight_hh (G, R), bias_ih (G,), bias_hh (G,)
        weight_peephole (sigmoid gates, H)      peepholes
        weight_gg (S, S), S = sigmoid gates * H  gate_recurrence
        ln_ih_weight (G,), ln_hh_weight (G,), ln_cell_weight (H,), ln_cell_bias (H,)  layer_norm
        weight_hr (P, H)                         proj_size P
    """
    H, G, R = hidden_size, spec.num_gates * hidden_size, proj_size or hidden_size
    shapes = {"weight_ih": (G, input_size), "weight_hh": (G, R), "bias_ih": (G,), "bias_hh": (G,)}
    if spec.peepholes:
        shapes["weight_peephole"] = (len(spec.sigmoid_gates), H)
    if spec.gate_recurrence:
        S = len(spec.sigmoid_gates) * H
        shapes["weight_gg"] = (S, S)
    if spec.layer_norm:
        shapes.update(ln_ih_weight=(G,), ln_hh_weight=(G,), ln_cell_weight=(H,), ln_cell_bias=(H,))
    if proj_size:
        shapes["weight_hr"] = (proj_size, H)
    return shapes


def groups(num_layers: int, num_directions: int):
    """(layer, direction, name suffix) of every layer and direction, in storage order:
    (0, 0, "_l0"), (0, 1, "_l0_reverse"), (1, 0, "_l1"), ..."""
    for k in range(num_layers):
        for d in range(num_directions):
            yield k, d, f"_l{k}" + ("_reverse" if d else "")


def stack_shapes(spec: CellSpec, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, proj_size: int = 0) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a recurrent stack's parameters, under PyTorch's names
    (weight_ih_l0, ..., weight_hh_l1_reverse), in storage order, as both engines keep them."""
    D = 2 if bidirectional else 1
    first = layer_shapes(spec, input_size, hidden_size, proj_size)
    rest = layer_shapes(spec, D * (proj_size or hidden_size), hidden_size, proj_size)
    return {base + sfx: shape for k, _, sfx in groups(num_layers, D)
            for base, shape in (first if k == 0 else rest).items()}


def check_stack(family: str, spec: CellSpec, input_size, hidden_size, num_layers, proj_size,
                engine: str) -> None:
    """The arguments of `engine`'s class for `family` ("numpy" or "torch"): whole sizes, a
    variant of that family, a projection only where the family has one."""
    for name, v, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1),
                         ("num_layers", num_layers, 1), ("proj_size", proj_size, 0)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:   # NumPy ints too
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if spec.family != family:
        raise ValueError(f"variant {spec.name!r} is a {spec.family.upper()} variant; "
                         f"use lstmlab.{engine}.{family_of(spec).class_name}")
    if proj_size and (not FAMILIES[family].projection or proj_size >= hidden_size):
        raise ValueError(f"proj_size must be 0 or below hidden_size ({hidden_size}) "
                         f"and only LSTMs have it, got {proj_size}")

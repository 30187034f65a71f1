"""A layer as one ONNX LSTM, GRU or RNN node (the variants ONNX defines)."""

from __future__ import annotations

from ...families import family_of
from ...numpy.recurrent import Recurrent
from .builder import Builder
from .common import native_weights


def native_layer(b: Builder, model: Recurrent, k: int, x, state_in):
    """One ONNX LSTM/GRU/RNN node for layer k; returns (y (T, B, D*H), [h (D, B, H), c])."""
    spec, D, H = model.spec, model.num_directions, model.hidden_size
    w = native_weights(model, k)
    ins = [x] + [b.const(w[n], f"{n}_l{k}") for n in "WRB"] + [""]    # no sequence_lens
    for s in state_in:                                           # initial_h, initial_c: (D, B, n)
        ins.append(b.op("Slice", [s, b.ints([k * D]), b.ints([(k + 1) * D]), b.ints([0])]))
    attrs: dict[str, object] = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if spec.family == "lstm":
        if "P" in w:
            ins += [""] * (7 - len(ins)) + [b.const(w["P"], f"P_l{k}")]
        if spec.coupled_gates:
            attrs["input_forget"] = 1
    elif spec.family == "gru":
        attrs["linear_before_reset"] = int(spec.linear_before_reset)
    else:
        attrs["activations"] = [spec.nonlinearity.capitalize()] * D
    while ins[-1] == "":
        ins.pop()
    fam = family_of(spec)
    outs = b.op(fam.onnx_op, ins, n_out=1 + len(fam.state), **attrs)   # Y, Y_h(, Y_c)
    y = b.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])          # (T, D, B, H) -> (T, B, D, H)
    y = b.op("Reshape", [y, b.ints([0, 0, -1])])                 # (T, B, D*H)
    return y, list(outs[1:])

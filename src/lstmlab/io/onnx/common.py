"""What export and import share: the onnx package on demand, opsets, which variants ONNX
computes natively, and the weight layout conversion between ours and ONNX's."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...families import FAMILIES, family_of
from ...numpy.recurrent import Recurrent
from ...spec import VARIANTS, CellSpec

DEFAULT_OPSET = 17   # widely implemented; LSTM/GRU/RNN-14 and Scan-16 under it
MIN_OPSET = 14       # LSTM/GRU/RNN-14: the last change to their semantics (`layout`)

# ONNX's recurrent operators (LSTM, GRU, RNN) -> the family each computes; the gate orders
# and flags of each are in its families.Family
FAMILY = {f.onnx_op: f.name for f in FAMILIES.values() if f.onnx_op}


def require_onnx(what: str):
    try:
        import onnx
        import onnx.checker  # noqa: F401
        import onnx.helper  # noqa: F401
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise ValueError(f"ONNX {what} needs the onnx package: "
                         "pip install 'lstmlab[onnx]'") from None
    return onnx


def is_native(spec: CellSpec, proj_size: int = 0) -> bool:
    """Whether ONNX's own LSTM/GRU/RNN operator computes this variant (no projection): the
    family has an operator, and the variant differs from the family's default only in
    flags the operator expresses (Family.onnx_flags)."""
    fam = family_of(spec)
    if not fam.onnx_op or proj_size:
        return False
    base = VARIANTS[fam.default_variant]
    plain = dataclasses.replace(spec, **{flag: getattr(base, flag) for flag in fam.onnx_flags})
    return plain == base


# --- weights: our layout <-> ONNX's -----------------------------------------------------
def _blocks(m: np.ndarray, order: str) -> dict[str, np.ndarray]:
    """m's leading axis cut into len(order) equal blocks, named by order."""
    return dict(zip(order, np.split(m, len(order))))


def _reorder(m: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Blocks of m (named by src) in the order dst; a block src lacks is zeros."""
    blocks = _blocks(m, src)
    zero = np.zeros_like(next(iter(blocks.values())))
    return np.concatenate([blocks.get(g, zero) for g in dst])


def native_weights(model: Recurrent, k: int) -> dict[str, np.ndarray]:
    """ONNX W, R, B (and P) of layer k, both directions stacked on axis 0."""
    spec, fam = model.spec, family_of(model.spec)
    ours, theirs = "".join(spec.gates), fam.onnx_gates
    W, R, B, P = [], [], [], []
    for d in range(model.num_directions):
        sfx = f"_l{k}" + ("_reverse" if d else "")
        p = model.params
        W.append(_reorder(p["weight_ih" + sfx], ours, theirs))
        R.append(_reorder(p["weight_hh" + sfx], ours, theirs))
        B.append(np.concatenate([_reorder(p["bias_ih" + sfx], ours, theirs),
                                 _reorder(p["bias_hh" + sfx], ours, theirs)]))
        if spec.peepholes:                                       # rows i, f, o -> i, o, f
            P.append(_reorder(p["weight_peephole" + sfx].reshape(-1),
                              "".join(spec.sigmoid_gates), fam.onnx_peepholes))
    out = {"W": np.stack(W), "R": np.stack(R), "B": np.stack(B)}
    if P:
        out["P"] = np.stack(P)
    return out


def params_from_native(spec: CellSpec, k: int, W, R, B, P) -> dict[str, np.ndarray]:
    """Our state-dict entries of layer k from ONNX W, R, B, P (B, P may be None)."""
    fam = family_of(spec)
    theirs, ours = fam.onnx_gates, "".join(spec.gates)
    sd = {}
    for d in range(W.shape[0]):
        sfx = f"_l{k}" + ("_reverse" if d else "")
        sd["weight_ih" + sfx] = _reorder(W[d], theirs, ours)
        sd["weight_hh" + sfx] = _reorder(R[d], theirs, ours)
        wb, rb = np.split(B[d], 2) if B is not None else (np.zeros(W.shape[1], W.dtype),) * 2
        sd["bias_ih" + sfx] = _reorder(wb, theirs, ours)
        sd["bias_hh" + sfx] = _reorder(rb, theirs, ours)
        if spec.peepholes:
            rows = "".join(spec.sigmoid_gates)                  # ONNX rows i, o, f -> ours
            peep = _reorder(P[d], fam.onnx_peepholes, rows)      # (rows * H,)
            sd["weight_peephole" + sfx] = peep.reshape(len(rows), -1)
    return sd

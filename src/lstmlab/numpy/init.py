"""Initial weights: PyTorch's default, plus the forget-gate bias and orthogonal/identity R."""

from __future__ import annotations

import numpy as np

from ..spec import CellSpec

RECURRENT_INITS = ("uniform", "orthogonal", "identity")


def check_init_options(spec: CellSpec, forget_bias, recurrent_init, hidden_size, out_size):
    """Reject options that cannot apply to this model, with what to do instead."""
    if recurrent_init not in RECURRENT_INITS:
        raise ValueError(f"recurrent_init must be one of {RECURRENT_INITS}, got {recurrent_init!r}")
    if recurrent_init == "identity" and out_size != hidden_size:
        raise ValueError("recurrent_init='identity' needs square recurrent blocks; "
                         "use 'orthogonal' with proj_size")
    if forget_bias is not None and "f" not in spec.gates and not spec.coupled_gates:
        raise ValueError(f"variant {spec.name or spec.family!r} has no forget gate; "
                         "leave forget_bias unset")


def init_params(shapes: dict[str, tuple], spec: CellSpec, hidden_size: int, rng,
                dtype, forget_bias=None, recurrent_init="uniform") -> dict[str, np.ndarray]:
    """Weights for one layer and direction, by base name.

    Default as torch.nn.LSTM/GRU/RNN: every tensor U(-1/sqrt(H), 1/sqrt(H)); layer-norm gains
    start at 1 and shifts at 0. `forget_bias=b` sets the forget gate's total bias to b (Keras's
    unit_forget_bias is b = 1, recommended by Jozefowicz et al. 2015; with coupled gates,
    f = 1 - i, it sets the input gate's bias to -b). `recurrent_init` "orthogonal" makes each
    gate block of weight_hh (semi-)orthogonal (Saxe et al. 2014); "identity" makes it the
    identity (Le et al. 2015's IRNN, with rnn_relu).
    """
    H = hidden_size
    k = 1.0 / np.sqrt(H)
    p = {}
    for name, shape in shapes.items():
        if name.startswith("ln_"):
            p[name] = np.full(shape, 1.0 if name.endswith("_weight") else 0.0)
        else:
            p[name] = rng.uniform(-k, k, size=shape)
    if recurrent_init != "uniform":
        W = p["weight_hh"]                                       # (G*H, R)
        for b in range(W.shape[0] // H):
            W[b * H:(b + 1) * H] = (_orthogonal(rng, H, W.shape[1]) if recurrent_init == "orthogonal"
                                   else np.eye(H))
    if forget_bias is not None:
        gate, value = ("i", -forget_bias) if spec.coupled_gates else ("f", forget_bias)
        block = slice(spec.gates.index(gate) * H, (spec.gates.index(gate) + 1) * H)
        p["bias_ih"][block] = value
        p["bias_hh"][block] = 0.0
    return {name: v.astype(dtype) for name, v in p.items()}


def _orthogonal(rng, rows, cols):
    """A (rows, cols) matrix with orthonormal rows or columns, whichever are fewer."""
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))                                     # a uniform draw, not QR's bias
    return q if rows >= cols else q.T

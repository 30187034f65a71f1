"""Initial weights, engine-neutral (both engines start from these arrays): PyTorch's default,
plus the forget-gate bias and orthogonal/identity R."""

from __future__ import annotations

import numpy as np

from ..checks import check_choice, check_memory, check_real, count_text
from ..config import RECURRENT_INITS, stack_params
from ..families import groups, layer_shapes
from ..spec import CellSpec


def check_init_options(spec: CellSpec, forget_bias, recurrent_init, hidden_size, out_size):
    """Reject options that cannot apply to this model, with what to do instead."""
    check_choice(recurrent_init, "recurrent_init", RECURRENT_INITS)
    if forget_bias is not None:
        check_real(forget_bias, "forget_bias")                   # nan would poison every step
    if recurrent_init == "identity" and out_size != hidden_size:
        raise ValueError("recurrent_init='identity' needs square recurrent blocks; "
                         "use 'orthogonal' with proj_size")
    if forget_bias is not None and "f" not in spec.gates and not spec.coupled_gates:
        raise ValueError(f"variant {spec.name or spec.family!r} has no forget gate; "
                         "leave forget_bias unset")


def check_stack_size(spec: CellSpec, input_size, hidden_size, num_layers, num_directions,
                     proj_size, dtype) -> None:
    """Refuse, before any allocation, a stack whose weights cannot fit in this machine's memory."""
    n = stack_params(spec.num_gates, input_size, hidden_size, proj_size, num_layers, num_directions)
    check_memory(f"the {count_text(n)} (or more) weights of {count_text(num_layers)} layer(s) of "
                 f"{count_text(hidden_size)} units", n * np.dtype(dtype).itemsize,
                 "choose a smaller hidden_size, num_layers or input_size")


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


def init_stack(spec: CellSpec, input_size: int, hidden_size: int, num_layers: int = 1,
               bidirectional: bool = False, proj_size: int = 0, dtype=np.float32,
               seed: int | None = 0, forget_bias=None, recurrent_init="uniform") -> dict[str, np.ndarray]:
    """The initial weights of a recurrent stack, {state-dict name: array} in storage order.

    Engine-neutral: lstmlab.numpy and lstmlab.torch both start from these arrays, so one seed
    gives the same model in each. One random stream (seeded by `seed`) is drawn layer by
    layer and direction by direction, in the order of families.stack_shapes; `init_params`
    says what each tensor gets. Refuses options that cannot apply (check_init_options) and
    a stack too large for this machine's memory (check_stack_size) before drawing anything.
    """
    D = 2 if bidirectional else 1
    check_init_options(spec, forget_bias, recurrent_init, hidden_size, proj_size or hidden_size)
    check_stack_size(spec, input_size, hidden_size, num_layers, D, proj_size, dtype)
    rng = np.random.default_rng(seed)
    first = layer_shapes(spec, input_size, hidden_size, proj_size)
    rest = layer_shapes(spec, D * (proj_size or hidden_size), hidden_size, proj_size)
    params: dict[str, np.ndarray] = {}
    for k, _, sfx in groups(num_layers, D):
        drawn = init_params(first if k == 0 else rest, spec, hidden_size, rng, dtype,
                            forget_bias, recurrent_init)
        params.update((base + sfx, v) for base, v in drawn.items())
    return params


def init_linear(in_features: int, out_features: int, bias: bool = True, dtype=np.float32,
                seed: int | None = 0) -> dict[str, np.ndarray]:
    """A linear layer's initial weights, as torch.nn.Linear's: `weight` (out, in) and `bias`
    (out,), U(-1/sqrt(in), 1/sqrt(in)). Engine-neutral, as init_stack."""
    rng, k = np.random.default_rng(seed), 1.0 / np.sqrt(in_features)
    params = {"weight": rng.uniform(-k, k, (out_features, in_features)).astype(dtype)}
    if bias:
        params["bias"] = rng.uniform(-k, k, out_features).astype(dtype)
    return params


def init_embedding(num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                   dtype=np.float32, seed: int | None = 0) -> dict[str, np.ndarray]:
    """An embedding table's initial `weight` (num_embeddings, embedding_dim), N(0, 1) as
    torch.nn.Embedding's, the row `padding_idx` zero. Engine-neutral, as init_stack."""
    w = np.random.default_rng(seed).standard_normal((num_embeddings, embedding_dim))
    if padding_idx is not None:
        w[padding_idx] = 0.0
    return {"weight": w.astype(dtype)}


def _orthogonal(rng, rows, cols):
    """A (rows, cols) matrix with orthonormal rows or columns, whichever are fewer."""
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))                                     # a uniform draw, not QR's bias
    return q if rows >= cols else q.T

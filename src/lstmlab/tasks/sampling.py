"""Drawing from a model's next-symbol distribution: temperature and top-k, shared by every
task that generates (text, music)."""

from __future__ import annotations

import numpy as np

from ..checks import check_memory


def check_sampling(length: int, temperature: float, top_k: int) -> None:
    """One clear error per bad generation setting."""
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"--length must be a positive integer, got {length!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"--temperature must be a positive number, got {temperature!r} "
                         "(near 0: the most likely symbol, 1: the model's own distribution)")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"--top-k must be 0 (all symbols) or a positive integer, got {top_k!r}")
    # the ids (int64) and the text or events made of them, before a step is taken
    check_memory(f"--length {length}", 16 * length, "generate less")


def sample(logits: np.ndarray, temperature: float, top_k: int, rng: np.random.Generator) -> np.ndarray:
    """One symbol per row of `logits` (B, V): softmax(logits / temperature) restricted to the
    top_k most likely symbols (0: all of them). A symbol whose logit is -inf (banned) has
    probability 0 and is never drawn, at any temperature. Returns (B,) int64 ids."""
    z = np.asarray(logits, dtype=np.float64)                     # (B, V)
    if 0 < top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)                       # keep the top k (ties too)
    # shift before dividing: the best symbol gets 0 and the others <= 0 (-inf at a tiny
    # temperature), never inf - inf = NaN as logits / 1e-320 would give
    with np.errstate(over="ignore", under="ignore"):             # exp of a cold logit is 0
        p = np.exp((z - z.max(axis=-1, keepdims=True)) / temperature)
    c = p.cumsum(axis=-1)                                        # (B, V), unnormalised
    u = rng.random((z.shape[0], 1)) * c[:, -1:]
    # the first symbol whose cumulative mass exceeds u: one with p = 0 never is; the last
    # symbol with p > 0 where rounding puts u at the total
    last = z.shape[-1] - 1 - np.argmax(p[:, ::-1] > 0, axis=-1)
    return np.minimum((c <= u).sum(axis=-1), last).astype(np.int64)


def autoregress(predictor, primer_ids, length: int, temperature: float, top_k: int,
                rng: np.random.Generator, banned=None) -> np.ndarray:
    """Prime the predictor's state with `primer_ids` (n,), then sample `length` ids one at a
    time, each fed back as the next input; `banned` ids (e.g. UNKNOWN) are never drawn.
    Returns (length,) int64 ids."""
    check_sampling(length, temperature, top_k)
    logits, state = predictor.run(np.asarray(primer_ids)[:, None])     # (n, 1, V)
    out = np.empty(length, dtype=np.int64)
    for t in range(length):
        z = np.array(logits[-1], dtype=np.float64)               # (1, V), a copy
        if banned is not None:
            z[:, banned] = -np.inf
        out[t] = sample(z, temperature, top_k, rng)[0]
        if t + 1 < length:                                       # the last one is not read
            logits, state = predictor.run(out[t:t + 1, None], state)
    return out

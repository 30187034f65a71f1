"""Drawing from a model's next-symbol distribution: temperature and top-k, shared by every
task that generates (text, music)."""

from __future__ import annotations

import numpy as np


def check_sampling(length: int, temperature: float, top_k: int) -> None:
    """One clear error per bad generation setting."""
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"--length must be a positive integer, got {length!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"--temperature must be a positive number, got {temperature!r} "
                         "(near 0: the most likely symbol, 1: the model's own distribution)")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"--top-k must be 0 (all symbols) or a positive integer, got {top_k!r}")


def sample(logits: np.ndarray, temperature: float, top_k: int, rng: np.random.Generator) -> np.ndarray:
    """One symbol per row of `logits` (B, V): softmax(logits / temperature) restricted to the
    top_k most likely symbols (0: all of them). Returns (B,) int64 ids."""
    z = np.asarray(logits, dtype=np.float64) / temperature       # (B, V)
    if 0 < top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)                       # keep the top k (ties too)
    z = z - z.max(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):                            # exp of a cold logit is 0
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
    u = rng.random((z.shape[0], 1))
    return np.minimum((p.cumsum(axis=-1) < u).sum(axis=-1), z.shape[-1] - 1).astype(np.int64)


def autoregress(predictor, primer_ids, length: int, temperature: float, top_k: int,
                rng: np.random.Generator, banned=None) -> np.ndarray:
    """Prime the predictor's state with `primer_ids` (n,), then sample `length` ids one at a
    time, each fed back as the next input; `banned` ids (e.g. UNKNOWN) are never drawn.
    Returns (length,) int64 ids."""
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

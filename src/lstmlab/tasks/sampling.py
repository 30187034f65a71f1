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
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    u = rng.random((z.shape[0], 1))
    return np.minimum((p.cumsum(axis=-1) < u).sum(axis=-1), z.shape[-1] - 1).astype(np.int64)

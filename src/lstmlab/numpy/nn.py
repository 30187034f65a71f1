"""Layers around the recurrent stack: a linear head and an embedding, each with its backward."""

from __future__ import annotations

import numpy as np

from .init import init_embedding, init_linear
from .module import Module, check_dtype


class Linear(Module):
    """y = x W^T + b over the last axis of x; x may have any leading axes.

    Weights as torch.nn.Linear: `weight` (out, in) and `bias` (out,), U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32, seed: int | None = 0):
        self.dtype = check_dtype(dtype)
        self.in_features, self.out_features = in_features, out_features
        self.params = init_linear(in_features, out_features, bias, self.dtype, seed)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={'bias' in self.params})"

    def __call__(self, x):
        return self.forward(x)[0]

    def forward(self, x):
        """x (..., in) -> (y (..., out), cache)."""
        x = self._as_array(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x has {x.shape[-1] if x.ndim else 0} features, "
                             f"Linear expects {self.in_features}")
        y = x @ self.params["weight"].T
        if "bias" in self.params:
            y += self.params["bias"]
        return y, x

    def backward(self, cache, dy):
        """Returns (grads, dx) for dL/dy `dy`."""
        x = cache
        x2, dy2 = x.reshape(-1, self.in_features), np.asarray(dy).reshape(-1, self.out_features)
        grads = {"weight": dy2.T @ x2}                           # (out, in)
        if "bias" in self.params:
            grads["bias"] = dy2.sum(axis=0)
        return grads, dy @ self.params["weight"]


class Embedding(Module):
    """Rows of a table by integer id: ids (...) -> (..., dim). Weights N(0, 1), as torch.

    `padding_idx` names a row that stays fixed (its gradient is zero), as in torch.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype=np.float32, seed: int | None = 0):
        self.dtype = check_dtype(dtype)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.params = init_embedding(num_embeddings, embedding_dim, padding_idx, self.dtype, seed)

    def __repr__(self):
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"

    def __call__(self, ids):
        return self.forward(ids)[0]

    def forward(self, ids):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"ids must lie in 0..{self.num_embeddings - 1}, got "
                             f"{ids.min()}..{ids.max()}")
        return self.params["weight"][ids], ids

    def backward(self, cache, dy):
        """Returns (grads, None): ids have no gradient."""
        ids = cache
        dw = np.zeros_like(self.params["weight"])
        np.add.at(dw, ids.reshape(-1), np.asarray(dy).reshape(-1, self.embedding_dim))
        if self.padding_idx is not None:
            dw[self.padding_idx] = 0.0
        return {"weight": dw}, None

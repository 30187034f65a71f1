"""A whole network from a `ModelConfig`: embedding or features, the recurrent stack, a head.

Time-major throughout: x (T, B, input_size) or token ids (T, B); outputs (T, B, output_size)
with readout "sequence", (B, output_size) with readout "last" (the head reads the top
layer's final h, both directions concatenated) or "mean" (the head reads the top layer's
outputs averaged over each sequence's own steps: a classifier whose every step gets a
gradient of its own, which trains far faster on long texts than the last state).
"""

from __future__ import annotations

import numpy as np

from ..config import ModelConfig
from .module import Module
from .nn import Embedding, Linear
from .recurrent import stack_class


def check_numpy_config(config: ModelConfig) -> None:
    """ValueError if `config` switches on a regulariser only the torch engine has."""
    if config.regularised:
        raise ValueError("dropout, recurrent_dropout, zoneout and weight_drop exist only in "
                         "the torch engine; use --engine torch or set them to 0")


class SequenceModel(Module):
    """The NumPy build of a `ModelConfig`. `params` names: embedding.*, rnn.*, head.*."""

    def __init__(self, config: ModelConfig, seed: int | None = 0):
        check_numpy_config(config)
        self.config = config
        self.dtype = np.dtype(config.dtype)
        rng = np.random.default_rng(seed)
        seeds = rng.integers(0, 2**31, size=3)                   # one stream per part
        c = config
        self.embedding = (Embedding(c.vocab_size, c.input_size, dtype=self.dtype, seed=seeds[0])
                          if c.vocab_size else None)
        self.rnn = stack_class(c.spec)(c.input_size, c.hidden_size, dtype=self.dtype,
                                       seed=seeds[1], **c.rnn_kwargs())
        D = self.rnn.num_directions
        self.head = Linear(D * self.rnn.out_size, c.output_size, dtype=self.dtype, seed=seeds[2])
        self.params = {f"{name}.{k}": v for name, part in self._parts() for k, v in part.params.items()}

    def _parts(self):
        return [(n, p) for n, p in (("embedding", self.embedding), ("rnn", self.rnn),
                                    ("head", self.head)) if p is not None]

    def __repr__(self):
        return f"SequenceModel({self.config})"

    def __call__(self, x, state=None, lengths=None, final=True):
        """Inference: (outputs, final state of the recurrent stack; None with final=False)."""
        out, state, _ = self._forward(x, state, lengths, keep=False)
        return out, state if final else None

    def forward(self, x, state=None, lengths=None):
        """(outputs, final state, cache for `backward`)."""
        return self._forward(x, state, lengths, keep=True)

    def _forward(self, x, state, lengths, keep):
        emb_cache = None
        if self.embedding is not None:
            x, emb_cache = self.embedding.forward(x)             # (T, B) ids -> (T, B, E)
        if keep:
            y, state, rnn_cache = self.rnn.forward(x, state, lengths)
        else:
            (y, state), rnn_cache = self.rnn(x, state, lengths), None
        readout, n = self.config.readout, None
        if readout == "mean":                                    # y is 0 past each sequence's end
            n = _steps(lengths, y.shape[0], y.shape[1], y.dtype)     # (B, 1)
            feats = y.sum(axis=0) / n                            # (T, B, D*R) -> (B, D*R)
        else:
            feats = self._last(state) if readout == "last" else y
        out, head_cache = self.head.forward(feats)
        return out, state, (emb_cache, rnn_cache, head_cache, y.shape, state, lengths, n)

    def _last(self, state):
        """The top layer's final h, directions side by side: (B, D*R)."""
        h = state[0] if isinstance(state, tuple) else state      # (L*D, B, R)
        D = self.rnn.num_directions
        return np.concatenate(list(h[-D:]), axis=-1)

    def backward(self, cache, dout, dstate=None, *, state_grads: dict | None = None):
        """Gradients for every name in `params` (and dx for feature inputs).

        state_grads: a dict that receives the recurrent stack's (see its backward) and, as
        "input", the gradient of the stack's input (T, B, I): the embedded tokens' for a
        token model, the features' otherwise."""
        emb_cache, rnn_cache, head_cache, y_shape, state, lengths, n = cache
        if rnn_cache is None:
            raise ValueError("this output came from model(x), which keeps nothing for backward; "
                             "use model.forward(x)")
        hg, dfeats = self.head.backward(head_cache, dout)
        grads = {f"head.{k}": v for k, v in hg.items()}
        if self.config.readout == "last":
            dy = None
            dstate = self._add_last(state, dfeats, dstate)
        elif self.config.readout == "mean":                      # each valid step gets dfeats / n
            T = y_shape[0]
            valid = (np.arange(T)[:, None] < (T if lengths is None else np.asarray(lengths)))
            dy = valid[..., None] * (dfeats / n)[None]           # (T, B, D*R), 0 past the end
        else:
            dy = dfeats
        rg, dx, _ = self.rnn.backward(rnn_cache, dy, dstate, state_grads=state_grads)
        if state_grads is not None:
            state_grads["input"] = dx
        grads.update({f"rnn.{k}": v for k, v in rg.items()})
        if self.embedding is not None:
            eg, dx = self.embedding.backward(emb_cache, dx)
            grads.update({f"embedding.{k}": v for k, v in eg.items()})
        return grads, dx

    def _add_last(self, state, dfeats, dstate):
        """Gradient of the final state, with the head's gradient on the top layer's h."""
        comps = list(state) if isinstance(state, tuple) else [state]
        d = [np.zeros_like(c) for c in comps] if dstate is None else \
            [np.array(c, copy=True) for c in (dstate if isinstance(dstate, tuple) else [dstate])]
        D, R = self.rnn.num_directions, self.rnn.out_size
        for k in range(D):
            d[0][len(d[0]) - D + k] += dfeats[:, k * R:(k + 1) * R]
        return tuple(d) if isinstance(state, tuple) else d[0]


def _steps(lengths, T, B, dtype):
    """(B, 1) the number of steps each sequence has: its length, or T for all."""
    n = np.full(B, T) if lengths is None else np.asarray(lengths)
    return n.astype(dtype)[:, None]

"""A whole network from a `ModelConfig`, in PyTorch: embedding or features, the recurrent
stack, a linear head. The same network, names and initial weights as
lstmlab.numpy.model.SequenceModel, plus the regularisers only this engine has.

Time-major throughout: x (T, B, input_size) or token ids (T, B); outputs (T, B, output_size)
with readout "sequence", (B, output_size) with readout "last" (the head reads the top
layer's final h, both directions concatenated).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import numpy as lnp
from ..config import ModelConfig
from .device import resolve_device, torch_dtype
from .recurrent import GRU, LSTM, RNN

RECURRENT = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


class SequenceModel(nn.Module):
    """The torch build of a `ModelConfig`. state_dict names: embedding.*, rnn.*, head.*."""

    def __init__(self, config: ModelConfig, seed: int | None = 0, device=None, fast: bool = True):
        super().__init__()
        c = self.config = config
        dev = None if device is None else resolve_device(device)
        dtype = torch_dtype(c.dtype)
        seeds = np.random.default_rng(seed).integers(0, 2**31, size=3)  # one stream per part, as numpy
        self.embedding = None
        if c.vocab_size:
            self.embedding = nn.Embedding(c.vocab_size, c.input_size, device=dev, dtype=dtype)
            _copy_in(self.embedding, lnp.Embedding(c.vocab_size, c.input_size, dtype=c.dtype,
                                                   seed=seeds[0]))
        self.rnn = RECURRENT[c.spec.family](
            c.input_size, c.hidden_size, dtype=dtype, seed=seeds[1], dropout=c.dropout,
            recurrent_dropout=c.recurrent_dropout, zoneout=c.zoneout, weight_drop=c.weight_drop,
            fast=fast, device=dev, **c.rnn_kwargs())
        D = self.rnn.num_directions
        self.head = nn.Linear(D * self.rnn.out_size, c.output_size, device=dev, dtype=dtype)
        _copy_in(self.head, lnp.Linear(D * self.rnn.out_size, c.output_size, dtype=c.dtype,
                                       seed=seeds[2]))

    def forward(self, x, state=None, lengths=None):
        """(outputs, final state of the recurrent stack); x features or token ids."""
        if self.embedding is not None:
            x = self._embed(x)                                   # (T, B) ids -> (T, B, E)
        y, state = self.rnn(x, state, lengths)
        feats = self._last(state) if self.config.readout == "last" else y
        return self.head(feats), state

    def _embed(self, ids):
        ids = torch.as_tensor(ids, device=self.embedding.weight.device)
        if ids.is_floating_point() or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
        n = self.embedding.num_embeddings
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
            raise ValueError(f"ids must lie in 0..{n - 1}, got {int(ids.min())}..{int(ids.max())}")
        return self.embedding(ids.long())

    def _last(self, state):
        """The top layer's final h, directions side by side: (B, D*R)."""
        h = state[0] if isinstance(state, tuple) else state      # (L*D, B, R)
        D = self.rnn.num_directions
        return torch.cat(list(h[-D:]), dim=-1)


def _copy_in(module: nn.Module, reference) -> None:
    """The NumPy part's initial weights into the torch part, by name."""
    with torch.no_grad():
        for name, value in reference.params.items():
            getattr(module, name).copy_(torch.from_numpy(np.asarray(value)))

"""A whole network from a `ModelConfig`, in PyTorch: embedding or features, the recurrent
stack, a linear head. The same network, names and initial weights as
lstmlab.numpy.model.SequenceModel, plus the regularisers only this engine has. Readouts
and shapes as lstmlab.numpy.model.SequenceModel.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from ..numpy.init import init_embedding, init_linear
from .device import resolve_device, torch_dtype
from .recurrent import stack_class


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
            _copy_in(self.embedding, init_embedding(c.vocab_size, c.input_size, dtype=c.dtype,
                                                    seed=seeds[0]))
        self.rnn = stack_class(c.spec)(c.input_size, c.hidden_size, seed=seeds[1],
                                       **rnn_options(c, fast, dev, dtype), **c.rnn_kwargs())
        D = self.rnn.num_directions
        self.head = nn.Linear(D * self.rnn.out_size, c.output_size, device=dev, dtype=dtype)
        _copy_in(self.head, init_linear(D * self.rnn.out_size, c.output_size, dtype=c.dtype,
                                        seed=seeds[2]))

    def forward(self, x, state=None, lengths=None, final=True):
        """(outputs, final state of the recurrent stack); x features or token ids. final=False
        says the final state is not wanted (it may come back None), in evaluation as well."""
        if self.embedding is not None:
            x = self._embed(x)                                   # (T, B) ids -> (T, B, E)
        readout = self.config.readout
        if (readout != "last" and state is None and lengths is not None
                and self._pad_instead_of_pack(final)):
            y, state = self.rnn.padded(x, lengths), None         # (T, B, D*R), see below
        else:
            y, state = self.rnn(x, state, lengths)
        if readout == "mean":                                    # y is 0 past each sequence's end
            n = (torch.full((y.shape[1],), y.shape[0]) if lengths is None
                 else torch.as_tensor(lengths)).to(y.device, y.dtype)
            feats = y.sum(0) / n[:, None]                        # (T, B, D*R) -> (B, D*R)
        else:
            feats = self._last(state) if readout == "last" else y
        return self.head(feats), state

    def _pad_instead_of_pack(self, final: bool) -> bool:
        """Whether readout "mean" or "sequence" may run the padded batch
        without packing it (Recurrent.padded: each direction reads each sequence's own steps
        first, the outputs past each end zeroed; same outputs and gradients).

        PyTorch's CPU kernel trains about 20 times slower on packed sequences than on the
        padded batch (torch 2.13, one thread, T=200, B=64, H=64; the forward alone is 2.5
        times slower, the backward is the bulk). Only the final state differs (it ran on
        through the padding): the readouts that read it ("last") and a carried state keep
        packing, and so does evaluation unless the caller says it has no use for the final
        state (final=False: the tasks' scoring, 2-3 times faster)."""
        return (self.training or not final) and self.rnn.fast_path

    def _embed(self, ids):
        e = self.embedding
        return e(token_ids(ids, e.num_embeddings, e.weight.device))

    def _last(self, state):
        """The top layer's final h, directions side by side: (B, D*R)."""
        h = state[0] if isinstance(state, tuple) else state      # (L*D, B, R)
        D = self.rnn.num_directions
        return torch.cat(list(h[-D:]), dim=-1)


def rnn_options(c: ModelConfig, fast: bool, device, dtype) -> dict:
    """A recurrent stack's torch-only arguments: the regularisers, `fast`, device and dtype."""
    return dict(dropout=c.dropout, recurrent_dropout=c.recurrent_dropout, zoneout=c.zoneout,
                weight_drop=c.weight_drop, fast=fast, device=device, dtype=dtype)


def token_ids(ids, n: int, device) -> torch.Tensor:
    """`ids` as a long tensor on `device`; ValueError unless they are integers in 0..n-1."""
    ids = torch.as_tensor(ids, device=device)
    if ids.is_floating_point() or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
        raise ValueError(f"ids must lie in 0..{n - 1}, got {int(ids.min())}..{int(ids.max())}")
    return ids.long()


def _copy_in(module: nn.Module, params: dict) -> None:
    """Initial weights (lstmlab.numpy.init's, as the NumPy engine's) into `module`, by name."""
    with torch.no_grad():
        for name, value in params.items():
            getattr(module, name).copy_(torch.from_numpy(value))

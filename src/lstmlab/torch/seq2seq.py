"""The encoder-decoder with attention in PyTorch: lstmlab.numpy.seq2seq.Seq2Seq's network,
parameter names and initial weights (see that module for the equations), plus the
regularisers only this engine has, applied to both recurrent stacks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from ..numpy.init import init_embedding, init_linear
from ..numpy.seq2seq import BOS, EOS, PAD, PARTS, bridge, decoder_kwargs
from .device import resolve_device, torch_dtype
from .model import _copy_in, rnn_options, token_ids
from .recurrent import stack_class


class Seq2Seq(nn.Module):
    """The torch build of a seq2seq `ModelConfig`. state_dict names as lstmlab.numpy's."""

    def __init__(self, config: ModelConfig, seed: int | None = 0, device=None, fast: bool = True):
        super().__init__()
        if config.architecture != "seq2seq":
            raise ValueError(f"Seq2Seq needs architecture 'seq2seq', got {config.architecture!r}")
        c = self.config = config
        dev = None if device is None else resolve_device(device)
        dtype = torch_dtype(c.dtype)
        seeds = np.random.default_rng(seed).integers(0, 2**31, size=len(PARTS))  # as numpy
        cls = stack_class(c.spec)
        reg = rnn_options(c, fast, dev, dtype)

        def embedding(n, seed_):
            e = nn.Embedding(n, c.input_size, device=dev, dtype=dtype)
            _copy_in(e, init_embedding(n, c.input_size, dtype=c.dtype, seed=seed_))
            return e

        def linear(i, o, seed_, bias=True):
            lin = nn.Linear(i, o, bias=bias, device=dev, dtype=dtype)
            _copy_in(lin, init_linear(i, o, bias=bias, dtype=c.dtype, seed=seed_))
            return lin

        encoder_embedding = embedding(c.vocab_size, seeds[0])
        encoder_rnn = cls(c.input_size, c.hidden_size, seed=seeds[1], **reg, **c.rnn_kwargs())
        self.encoder = nn.ModuleDict({"embedding": encoder_embedding, "rnn": encoder_rnn})
        self.decoder = nn.ModuleDict({
            "embedding": embedding(c.output_size, seeds[2]),
            "rnn": cls(c.input_size, seed=seeds[3], **reg, **decoder_kwargs(c))})
        self.D = encoder_rnn.num_directions
        W = self.width = self.D * encoder_rnn.out_size
        self.attention = linear(W, W, seeds[4], bias=False)
        self.combine = linear(2 * W, W, seeds[5])
        self.head = linear(W, c.output_size, seeds[6])

    def _ids(self, ids, n):
        return token_ids(ids, n, self.head.weight.device)

    def encode(self, x, lengths=None):
        """(enc (S, B, W), final state, keys (S, B, W), valid (B, S) bool)."""
        x = self._ids(x, self.config.vocab_size)
        enc, state = self.encoder["rnn"](self.encoder["embedding"](x), None, lengths)
        S, B = x.shape
        if lengths is None:
            valid = torch.ones(B, S, dtype=torch.bool, device=enc.device)
        else:
            lens = torch.as_tensor(np.asarray(lengths), device=enc.device)
            valid = torch.arange(S, device=enc.device)[None, :] < lens[:, None]
        return enc, state, self.attention(enc), valid

    def forward(self, x, target_in, lengths=None):
        """Teacher forcing: (logits (T, B, V), attention (B, T, S)); see the numpy docstring."""
        enc, state, keys, valid = self.encode(x, lengths)
        init = bridge(state, self.D, torch.cat)
        y_in = self._ids(target_in, self.config.output_size)
        dec, _ = self.decoder["rnn"](self.decoder["embedding"](y_in), init)
        a, ctx = self._attend(dec, keys, enc, valid)
        return self._output(ctx, dec), a

    @staticmethod
    def _attend(dec, keys, enc, valid):
        """dec (T, B, W), keys and enc (S, B, W), valid (B, S) -> a (B, T, S), ctx (T, B, W)."""
        score = torch.einsum("tbw,sbw->bts", dec, keys)          # (B, T, S)
        score = score.masked_fill(~valid[:, None, :], float("-inf"))
        a = torch.softmax(score, dim=-1)
        return a, torch.einsum("bts,sbw->tbw", a, enc)

    def _output(self, ctx, dec):
        return self.head(torch.tanh(self.combine(torch.cat([ctx, dec], dim=-1))))

    @torch.no_grad()
    def decode(self, x, lengths=None, max_len: int = 32):
        """Greedy decoding: (ids (T, B) int64, attention (B, T, S)), PAD after each EOS."""
        enc, state, keys, valid = self.encode(x, lengths)
        B = enc.shape[1]
        dstate = bridge(state, self.D, torch.cat)
        prev = torch.full((B,), BOS, dtype=torch.long, device=enc.device)
        done = torch.zeros(B, dtype=torch.bool, device=enc.device)
        ids, attns = [], []
        for _ in range(max_len):
            d, dstate = self.decoder["rnn"](self.decoder["embedding"](prev)[None], dstate)
            a, ctx = self._attend(d, keys, enc, valid)           # (B, 1, S), (1, B, W)
            prev = self._output(ctx, d)[0].argmax(dim=-1)
            ids.append(prev.masked_fill(done, PAD))
            attns.append(a[:, 0].masked_fill(done[:, None], 0.0))
            done |= prev == EOS
            if bool(done.all()):
                break
        return torch.stack(ids), torch.stack(attns, dim=1)

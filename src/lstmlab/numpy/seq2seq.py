"""An encoder-decoder with attention, in NumPy, with its backward pass written out.

Luong, Pham & Manning 2015, "Effective Approaches to Attention-based Neural Machine
Translation": global attention with the "general" score and no input feeding, so both
recurrent stacks run over whole sequences and their backward is the stacks' own:

    enc_out, state = encoder.rnn(E_src[x], lengths)        # (S, B, D*R)
    dec_state0[k]  = state[k], directions side by side      # decoder layer k <- encoder layer k
    dec_out, _     = decoder.rnn(E_tgt[y_in], dec_state0)    # (T, B, D*R); y_in = BOS + y[:-1]
    score[t, s]    = dec_out[t] . (W_a enc_out[s])           # -inf where s >= length
    a[t]           = softmax_s(score[t])
    ctx[t]         = sum_s a[t, s] enc_out[s]
    h~[t]          = tanh(W_c [ctx[t]; dec_out[t]] + b_c)
    logits[t]      = W_h h~[t] + b_h

The decoder is one-directional with D*H units (D*P with a projection), so it starts from the
encoder's final state with both directions concatenated. Parameter names (both engines):

    encoder.embedding.weight (vocab_size, input_size)   encoder.rnn.<PyTorch RNN names>
    decoder.embedding.weight (output_size, input_size)  decoder.rnn.<PyTorch RNN names>
    attention.weight (D*R, D*R)    combine.weight (D*R, 2*D*R), combine.bias (D*R,)
    head.weight (output_size, D*R), head.bias (output_size,)

Token conventions (the task's, documented here because decode relies on them): id 0 is PAD
in both vocabularies, target id 1 is BOS (the decoder's first input) and id 2 is EOS.
"""

from __future__ import annotations

import numpy as np

from ..config import ModelConfig
from ..families import family_of
from .model import check_numpy_config
from .module import Module
from .nn import Embedding, Linear
from .recurrent import stack_class

PAD, BOS, EOS = 0, 1, 2
PARTS = ("encoder.embedding", "encoder.rnn", "decoder.embedding", "decoder.rnn", "attention",
         "combine", "head")                                      # also the order of the seeds


def decoder_kwargs(c: ModelConfig) -> dict:
    """The decoder stack's arguments: one direction, as wide as the encoder's two."""
    D = 2 if c.bidirectional else 1
    kw = dict(c.rnn_kwargs(), bidirectional=False)
    if family_of(c.spec).projection:
        kw["proj_size"] = D * c.proj_size
    return dict(kw, hidden_size=D * c.hidden_size)


def _parts(state) -> list:
    return list(state) if isinstance(state, tuple) else [state]


def _pack(comps, like):
    return tuple(comps) if isinstance(like, tuple) else comps[0]


def bridge(state, D: int, cat=np.concatenate):
    """Encoder final state -> decoder initial state, each component (L*D, B, n) -> (L, B, D*n).

    `cat(arrays, axis)` joins along the last axis: np.concatenate, or torch.cat for tensors."""
    return _pack([cat([s[d::D] for d in range(D)], -1) for s in _parts(state)], state)


def unbridge(dstate, D: int):
    """The gradient of `bridge`, each component (L, B, D*n) -> (L*D, B, n)."""
    out = []
    for g in _parts(dstate):
        L, B, Dn = g.shape
        parts = np.split(g, D, axis=-1)                          # D x (L, B, n)
        out.append(np.stack(parts, axis=1).reshape(L * D, B, Dn // D))
    return _pack(out, dstate)


class Seq2Seq(Module):
    """The NumPy build of a seq2seq `ModelConfig`; see the module docstring for the equations."""

    def __init__(self, config: ModelConfig, seed: int | None = 0):
        if config.architecture != "seq2seq":
            raise ValueError(f"Seq2Seq needs architecture 'seq2seq', got {config.architecture!r}")
        check_numpy_config(config)
        self.config = c = config
        self.dtype = np.dtype(c.dtype)
        seeds = np.random.default_rng(seed).integers(0, 2**31, size=len(PARTS))
        cls = stack_class(c.spec)
        self.src_embedding = Embedding(c.vocab_size, c.input_size, dtype=self.dtype, seed=seeds[0])
        self.encoder = cls(c.input_size, c.hidden_size, dtype=self.dtype, seed=seeds[1],
                           **c.rnn_kwargs())
        self.tgt_embedding = Embedding(c.output_size, c.input_size, dtype=self.dtype, seed=seeds[2])
        self.decoder = cls(c.input_size, dtype=self.dtype, seed=seeds[3], **decoder_kwargs(c))
        self.D = self.encoder.num_directions
        W = self.D * self.encoder.out_size                  # the encoder and decoder output width
        self.width = W
        self.attention = Linear(W, W, bias=False, dtype=self.dtype, seed=seeds[4])
        self.combine = Linear(2 * W, W, dtype=self.dtype, seed=seeds[5])
        self.head = Linear(W, c.output_size, dtype=self.dtype, seed=seeds[6])
        modules = (self.src_embedding, self.encoder, self.tgt_embedding, self.decoder,
                   self.attention, self.combine, self.head)                # in PARTS order
        self.params = {f"{name}.{k}": v for name, part in zip(PARTS, modules)
                       for k, v in part.params.items()}

    def __repr__(self):
        return f"Seq2Seq({self.config})"

    # --- forward -------------------------------------------------------------------------
    def __call__(self, x, target_in, lengths=None):
        """Teacher-forced inference: (logits (T, B, V), attention (B, T, S))."""
        logits, attn, _ = self._forward(x, target_in, lengths, keep=False)
        return logits, attn

    def forward(self, x, target_in, lengths=None):
        """x (S, B) source ids, target_in (T, B) decoder input ids, lengths (B,) source steps.

        Returns (logits (T, B, V), attention (B, T, S), cache for `backward`)."""
        return self._forward(x, target_in, lengths, keep=True)

    def _encode(self, x, lengths, keep):
        emb, emb_cache = self.src_embedding.forward(x)           # (S, B) -> (S, B, E)
        if keep:
            enc, state, enc_cache = self.encoder.forward(emb, None, lengths)
        else:
            (enc, state), enc_cache = self.encoder(emb, None, lengths), None
        S, B = x.shape
        valid = np.ones((B, S), bool) if lengths is None else \
            np.arange(S)[None, :] < np.asarray(lengths)[:, None]          # (B, S)
        keys = self.attention(enc)                                # W_a enc_out: (S, B, W)
        return (emb_cache, enc_cache), enc, state, keys, valid

    def _forward(self, x, target_in, lengths, keep):
        x, target_in = np.asarray(x), np.asarray(target_in)
        if x.ndim != 2 or target_in.ndim != 2 or x.shape[1] != target_in.shape[1]:
            raise ValueError(f"x (S, B) and target_in (T, B) must be token ids with one batch "
                             f"size, got shapes {x.shape} and {target_in.shape}")
        caches, enc, state, keys, valid = self._encode(x, lengths, keep)
        init = bridge(state, self.D)
        temb, temb_cache = self.tgt_embedding.forward(target_in)  # (T, B) -> (T, B, E)
        if keep:
            dec, _, dec_cache = self.decoder.forward(temb, init)
        else:
            (dec, _), dec_cache = self.decoder(temb, init), None
        attn, ctx = self._attend(dec, keys, enc, valid)
        logits, out_cache = self._output(ctx, dec)
        cache = (caches, temb_cache, dec_cache, enc, keys, dec, attn, out_cache)
        return logits, attn, cache

    @staticmethod
    def _attend(dec, keys, enc, valid):
        """dec (T, B, W), keys and enc (S, B, W), valid (B, S) -> a (B, T, S), ctx (T, B, W)."""
        dec_b, keys_b, enc_b = (a.transpose(1, 0, 2) for a in (dec, keys, enc))   # batch-major
        score = dec_b @ keys_b.transpose(0, 2, 1)                # (B, T, S)
        score = np.where(valid[:, None, :], score, -np.inf)      # no attention past the end
        with np.errstate(under="ignore"):
            e = np.exp(score - score.max(axis=-1, keepdims=True))
            a = e / e.sum(axis=-1, keepdims=True)
        ctx = (a @ enc_b).transpose(1, 0, 2)                     # (B, T, W) -> (T, B, W)
        return a, ctx

    def _output(self, ctx, dec):
        pre, comb_cache = self.combine.forward(np.concatenate([ctx, dec], axis=-1))  # (T, B, W)
        h = np.tanh(pre)
        logits, head_cache = self.head.forward(h)                # (T, B, V)
        return logits, (comb_cache, h, head_cache)

    # --- backward ------------------------------------------------------------------------
    def backward(self, cache, dlogits):
        """Gradients for every name in `params`, for dL/dlogits `dlogits` (T, B, V).

        Returns (grads, None): token ids have no gradient (the None keeps SequenceModel's
        (grads, dx) shape)."""
        caches, temb_cache, dec_cache, enc, keys, dec, attn, out_cache = cache
        if dec_cache is None:
            raise ValueError("this output came from model(x, target_in), which keeps nothing "
                             "for backward; use model.forward(x, target_in)")
        comb_cache, h, head_cache = out_cache
        W = self.width
        grads = {}

        def put(part, g):                                        # g: one part's own names
            grads.update({f"{part}.{k}": v for k, v in g.items()})

        g, dh = self.head.backward(head_cache, dlogits)
        put("head", g)
        dpre = dh * (1.0 - h * h)                                # undo h~ = tanh(pre)
        g, dcat = self.combine.backward(comb_cache, dpre)
        put("combine", g)
        dctx, ddec = dcat[..., :W], dcat[..., W:]                # undo [ctx; dec]
        dctx_b = dctx.transpose(1, 0, 2)                         # (B, T, W)
        dec_b, keys_b, enc_b = (a.transpose(1, 0, 2) for a in (dec, keys, enc))
        with np.errstate(under="ignore"):
            da = dctx_b @ enc_b.transpose(0, 2, 1)               # (B, T, S), undo ctx = a enc
            denc_b = attn.transpose(0, 2, 1) @ dctx_b            # (B, S, W)
            dscore = attn * (da - (attn * da).sum(axis=-1, keepdims=True))   # undo softmax
        ddec = ddec + (dscore @ keys_b).transpose(1, 0, 2)       # (T, B, W), undo the score
        dkeys = (dscore.transpose(0, 2, 1) @ dec_b).transpose(1, 0, 2)       # (S, B, W)
        g, denc_k = self.attention.backward(enc, dkeys)          # undo keys = W_a enc
        put("attention", g)
        denc = denc_b.transpose(1, 0, 2) + denc_k                # (S, B, W)

        g, dtemb, dinit = self.decoder.backward(dec_cache, ddec)
        put("decoder.rnn", g)
        g, _ = self.tgt_embedding.backward(temb_cache, dtemb)
        put("decoder.embedding", g)
        dstate = unbridge(dinit, self.D)                         # undo the bridge
        emb_cache, enc_cache = caches
        g, demb, _ = self.encoder.backward(enc_cache, denc, dstate)
        put("encoder.rnn", g)
        g, _ = self.src_embedding.backward(emb_cache, demb)
        put("encoder.embedding", g)
        return {name: grads[name] for name in self.params}, None

    # --- greedy decoding -----------------------------------------------------------------
    def decode(self, x, lengths=None, max_len: int = 32):
        """Greedy decoding: each step feeds the previous step's most probable token.

        Returns (ids (T, B) int64, attention (B, T, S)), T <= max_len; a sequence's ids are
        PAD after its first EOS. Equals `forward` fed with BOS + its own outputs."""
        x = np.asarray(x)
        _, enc, state, keys, valid = self._encode(x, lengths, keep=False)
        B = x.shape[1]
        dstate = bridge(state, self.D)
        prev = np.full(B, BOS, dtype=np.int64)
        done = np.zeros(B, bool)
        ids, attns = [], []
        for _ in range(max_len):
            d, dstate = self.decoder.step(self.tgt_embedding(prev), dstate)   # (B, W)
            a, ctx = self._attend(d[None], keys, enc, valid)      # (B, 1, S), (1, B, W)
            logits, _ = self._output(ctx, d[None])
            prev = logits[0].argmax(axis=-1)
            ids.append(np.where(done, PAD, prev))
            attns.append(np.where(done[:, None], 0.0, a[:, 0]))
            done |= prev == EOS
            if done.all():
                break
        return np.stack(ids).astype(np.int64), np.stack(attns, axis=1)

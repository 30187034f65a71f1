"""Losses, each returning (loss, gradient with respect to its first argument)."""

from __future__ import annotations

import numpy as np


def _weights(mask, shape, dtype):
    """The mask as float weights of `shape`, and how many entries count."""
    if mask is None:
        return None, float(np.prod(shape))
    m = np.broadcast_to(np.asarray(mask, dtype=dtype), shape)
    n = float(m.sum())
    if n == 0:
        raise ValueError("the mask selects no entries: nothing to average")
    return m, n


def mse_loss(pred, target, mask=None):
    """Mean squared error over the entries where `mask` (broadcast to pred) is nonzero.

    Returns (loss, dL/dpred).
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {pred.shape} but target has shape {target.shape}")
    m, n = _weights(mask, pred.shape, pred.dtype)
    diff = pred - target
    if m is not None:
        diff = diff * m
    return float(np.sum(diff * diff) / n), (2.0 / n) * diff


def gaussian_nll_loss(out, target, mask=None):
    """Gaussian negative log-likelihood of `target` (..., K) under a mean and log-variance head.

    out (..., 2K): the means, then the log-variances s (a log keeps the variance positive);
    per entry 0.5 * (s + (y - mu)^2 exp(-s)), the constant 0.5 log(2 pi) left out as in
    torch.nn.GaussianNLLLoss, averaged where `mask` (broadcast to target) is nonzero.
    Returns (loss, dL/dout).
    """
    out, target = np.asarray(out), np.asarray(target)
    K = target.shape[-1]
    if out.shape[:-1] != target.shape[:-1] or out.shape[-1] != 2 * K:
        raise ValueError(f"out has shape {out.shape}; a Gaussian head for targets {target.shape} "
                         f"needs {target.shape[:-1] + (2 * K,)} (means, then log-variances)")
    m, n = _weights(mask, target.shape, out.dtype)
    mu, s = out[..., :K], out[..., K:]
    err = target - mu
    inv_var = np.exp(-s)
    nll = 0.5 * (s + err * err * inv_var)
    dmu = -err * inv_var / n                                     # d/dmu of 0.5 err^2 / var
    ds = 0.5 * (1.0 - err * err * inv_var) / n                   # d/ds of 0.5 (s + err^2 e^-s)
    if m is not None:
        nll, dmu, ds = nll * m, dmu * m, ds * m
    return float(nll.sum() / n), np.concatenate([dmu, ds], axis=-1)


def log_softmax(logits):
    """log softmax over the last axis, stable for any logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):                            # exp of very negative is 0
        lse = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted - lse


def softmax_cross_entropy(logits, targets, mask=None):
    """Mean cross-entropy (nats) of integer `targets` (...) under `logits` (..., C).

    Positions where `mask` (shape of targets) is zero, such as padding, are left out of the
    mean and get no gradient. Returns (loss, dL/dlogits).
    """
    logits, targets = np.asarray(logits), np.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {logits.shape} need targets of shape {logits.shape[:-1]}, "
                         f"got {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise ValueError(f"targets must be integer class ids, got dtype {targets.dtype}")
    C = logits.shape[-1]
    m, n = _weights(mask, targets.shape, logits.dtype)
    valid = targets if m is None else np.where(m > 0, targets, 0)
    if valid.size and (valid.min() < 0 or valid.max() >= C):
        raise ValueError(f"targets must lie in 0..{C - 1}, got {valid.min()}..{valid.max()}")
    logp = log_softmax(logits)
    picked = np.take_along_axis(logp, valid[..., None], axis=-1)[..., 0]
    with np.errstate(under="ignore"):
        grad = np.exp(logp)                                      # softmax
    np.put_along_axis(grad, valid[..., None],
                      np.take_along_axis(grad, valid[..., None], axis=-1) - 1.0, axis=-1)
    if m is not None:
        picked = picked * m
        grad *= m[..., None]
    return float(-picked.sum() / n), grad / n


def _shift(v, k):
    """v (B, S) moved k places along S, -inf coming in."""
    out = np.full_like(v, -np.inf)
    out[:, k:] = v[:, :-k]
    return out


def ctc_loss(logits, targets, input_lengths, target_lengths, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False):
    """Connectionist temporal classification (Graves et al. 2006): -ln p(targets | logits),
    summed over every alignment, by the forward-backward recursion in log space.

    logits (T, B, C), softmaxed over C here; targets (B, L) padded or (sum L,) concatenated,
    integer ids other than `blank`; input_lengths, target_lengths (B,). reduction "mean"
    divides each sequence's loss by its target length (at least 1) and averages over the
    batch, "sum" adds them, as torch.nn.functional.ctc_loss. A target no alignment fits (too
    long for its frames) costs inf, or 0 with no gradient when `zero_infinity`.

    Returns (loss, dL/dlogits): the softmax folded in, softmax - the posterior of each
    label at each frame, zero past a sequence's frames."""
    logits = np.asarray(logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must be (T, B, C), got shape {logits.shape}")
    T, B, C = logits.shape
    tl = np.asarray(target_lengths, np.int64).reshape(-1)
    il = np.asarray(input_lengths, np.int64).reshape(-1)
    if tl.shape != (B,) or il.shape != (B,):
        raise ValueError(f"input_lengths and target_lengths need one entry per sequence ({B}), "
                         f"got {il.shape[0]} and {tl.shape[0]}")
    if il.min(initial=1) < 1 or il.max(initial=0) > T or tl.min(initial=0) < 0:
        raise ValueError(f"input lengths must lie in 1..{T} and target lengths be at least 0")
    if not 0 <= blank < C:
        raise ValueError(f"blank must be a class id in 0..{C - 1}, got {blank}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise ValueError(f"targets must be integer class ids, got dtype {targets.dtype}")
    L = int(tl.max(initial=0))
    labels = np.full((B, L), blank, np.int64)
    if targets.ndim == 1:                                        # concatenated
        if targets.shape[0] != tl.sum():
            raise ValueError(f"concatenated targets hold {targets.shape[0]} ids, the target "
                             f"lengths add up to {tl.sum()}")
        starts = np.concatenate([[0], np.cumsum(tl)[:-1]])
        for b in range(B):
            labels[b, :tl[b]] = targets[starts[b]:starts[b] + tl[b]]
    else:
        if targets.ndim != 2 or targets.shape[0] != B or targets.shape[1] < L:
            raise ValueError(f"padded targets must be (B, L) = ({B}, >= {L}), got {targets.shape}")
        for b in range(B):
            labels[b, :tl[b]] = targets[b, :tl[b]]
    inside = np.arange(L)[None, :] < tl[:, None]
    if inside.any() and (labels[inside].min() < 0 or labels[inside].max() >= C
                         or (labels[inside] == blank).any()):
        raise ValueError(f"targets must be class ids in 0..{C - 1} other than the blank ({blank})")

    S = 2 * L + 1                                                # blank, l1, blank, l2, ..., blank
    ext = np.full((B, S), blank, np.int64)
    ext[:, 1::2] = labels
    skip = np.zeros((B, S), bool)                                # s - 2 -> s: a label unlike the last
    skip[:, 3::2] = labels[:, 1:] != labels[:, :-1]
    last = 2 * tl                                                # (B,) the final blank's place
    logp = log_softmax(np.asarray(logits, np.float64))
    emit = np.take_along_axis(logp, np.broadcast_to(ext[None], (T, B, S)), axis=2)   # (T, B, S)
    rows = np.arange(B)

    alpha = np.full((T, B, S), -np.inf)
    alpha[0, :, 0] = emit[0, :, 0]
    has = tl > 0
    alpha[0, has, 1] = emit[0, has, 1]
    for t in range(1, T):
        a = alpha[t - 1]
        v = np.logaddexp(a, _shift(a, 1))
        if S > 2:
            v = np.where(skip, np.logaddexp(v, _shift(a, 2)), v)
        alpha[t] = v + emit[t]
    end = alpha[il - 1, rows]                                    # (B, S) at each sequence's last frame
    ll = np.logaddexp(end[rows, last], np.where(has, end[rows, np.maximum(last - 1, 0)], -np.inf))

    beta = np.full((T, B, S), -np.inf)                           # beta includes frame t's emission
    start = np.full((B, S), -np.inf)
    start[rows, last] = 0.0
    start[has, last[has] - 1] = 0.0
    skip_next = np.zeros((B, S), bool)                           # s -> s + 2 allowed
    skip_next[:, :-2] = skip[:, 2:]
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            n = beta[t + 1]
            v = np.logaddexp(n, np.concatenate([n[:, 1:], np.full((B, 1), -np.inf)], axis=1))
            if S > 2:
                two = np.concatenate([n[:, 2:], np.full((B, 2), -np.inf)], axis=1)
                v = np.where(skip_next, np.logaddexp(v, two), v)
        else:
            v = np.full((B, S), -np.inf)
        v = np.where((il - 1 == t)[:, None], start, np.where((t < il - 1)[:, None], v, -np.inf))
        beta[t] = v + emit[t]

    finite = np.isfinite(ll)
    nll = np.where(finite, -ll, np.inf)
    # the posterior of each extended position: alpha beta / (p emit), summed per class
    with np.errstate(invalid="ignore", under="ignore"):
        post = np.exp(alpha + beta - emit - np.where(finite, ll, 0.0)[None, :, None])
    post[:, ~finite] = 0.0
    occupancy = np.zeros((T, B, C))
    np.add.at(occupancy, (np.arange(T)[:, None, None], rows[:, None], ext), post)   # over S
    with np.errstate(under="ignore"):
        grad = np.exp(logp) - occupancy
    grad[np.arange(T)[:, None] >= il[None, :]] = 0.0             # past each sequence's frames
    if zero_infinity:
        nll = np.where(finite, nll, 0.0)
        grad[:, ~finite] = 0.0
    weight = 1.0 / np.maximum(tl, 1) / B if reduction == "mean" else np.ones(B)
    grad *= weight[None, :, None]
    with np.errstate(under="ignore"):                            # below float32's range: 0
        grad = grad.astype(logits.dtype, copy=False)
    return float((nll * weight).sum()), grad

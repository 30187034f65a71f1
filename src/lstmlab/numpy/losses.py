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

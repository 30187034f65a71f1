"""Elementwise pieces the cells share: squashing functions with their derivatives, layer norm.

Derivatives are written in terms of the function's *output* y, which the forward pass
keeps anyway, so the backward pass never recomputes an exponential.
"""

from __future__ import annotations

import numpy as np

LN_EPS = 1e-5  # layer norm's epsilon, as torch.nn.LayerNorm


def sigmoid(a, out=None):
    """sigma(a) = 1 / (1 + e^-a), computed as (1 + tanh(a / 2)) / 2: it cannot overflow."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def sigmoid_grad(y, dy, out=None):
    """d sigma = y (1 - y), times the incoming gradient."""
    out = np.multiply(dy, y, out=out)                            # dy y - dy y^2
    out -= out * y
    return out


def activate(name: str, a, out=None):
    """Apply the squashing function `name` (see spec.INPUT_/OUTPUT_ACTIVATIONS)."""
    if name == "tanh":
        return np.tanh(a, out=out)
    if name == "identity":
        if out is None:
            return a.copy()
        if out is not a:
            np.copyto(out, a)
        return out
    if name == "sigmoid4":               # 4 sigma(a) - 2 = 2 tanh(a / 2)
        out = np.multiply(a, 0.5, out=out)
        np.tanh(out, out=out)
        out *= 2.0
        return out
    if name == "sigmoid2":               # 2 sigma(a) - 1 = tanh(a / 2)
        out = np.multiply(a, 0.5, out=out)
        return np.tanh(out, out=out)
    if name == "relu":
        return np.maximum(a, 0.0, out=out)
    raise ValueError(f"unknown activation {name!r}")


def activate_grad(name: str, y, dy, out=None):
    """Gradient through `activate(name, a) = y`, given y and dL/dy."""
    if name == "tanh":
        return np.multiply(dy, 1.0 - y * y, out=out)
    if name == "identity":
        if out is None:
            return dy
        np.copyto(out, dy)
        return out
    if name == "sigmoid4":               # d/da 2 tanh(a/2) = 1 - tanh^2(a/2) = 1 - y^2 / 4
        return np.multiply(dy, 1.0 - 0.25 * y * y, out=out)
    if name == "sigmoid2":               # d/da tanh(a/2) = (1 - y^2) / 2
        return np.multiply(dy, 0.5 - 0.5 * y * y, out=out)
    if name == "relu":
        return np.multiply(dy, y > 0, out=out)
    raise ValueError(f"unknown activation {name!r}")


def layer_norm(x):
    """Normalise over the last axis: returns (xhat, rstd) with xhat = (x - mean) * rstd."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + LN_EPS)
    return xc * rstd, rstd


def layer_norm_backward(dxhat, xhat, rstd):
    """Gradient with respect to x of xhat = layer_norm(x), given dL/dxhat."""
    return rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                   - xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True))

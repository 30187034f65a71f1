"""The numba code behind lstmlab.numpy.kernels (imported only when a kernel first runs).

Constants are float32 so that numba keeps the arithmetic in float32 (a Python float would
promote it to float64); error_model="numpy" drops the division-by-zero check that stops the
loops from vectorising. `cache=True` keeps the machine code between processes.
"""

from __future__ import annotations

import numba
import numpy as np

_ONE, _HALF = np.float32(1.0), np.float32(0.5)
_LIM = np.float32(7.90531110763549805)      # tanh is +-1 in float32 beyond this
_P = tuple(np.float32(v) for v in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03))
_Q = tuple(np.float32(v) for v in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03))
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = _P
_Q0, _Q1, _Q2, _Q3 = _Q

# fast math without "nnan" and "ninf": a NaN must stay a NaN for stream's check
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
_jit = numba.njit(cache=True, fastmath=_FAST, error_model="numpy", nogil=True)


@numba.njit(cache=True, inline="always", fastmath=_FAST, error_model="numpy")
def tanh(x):
    """Eigen's rational tanh: x (clipped) times an odd degree-13 over an even degree-6 polynomial."""
    x = min(max(x, -_LIM), _LIM)
    x2 = x * x
    p = ((((((_P0 * x2 + _P1) * x2 + _P2) * x2 + _P3) * x2 + _P4) * x2 + _P5) * x2 + _P6) * x
    q = ((_Q0 * x2 + _Q1) * x2 + _Q2) * x2 + _Q3
    return p / q


@_jit
def forward(z, c_prev, c, act, h):
    B, H = c.shape
    for b in range(B):
        zb = z[b]
        for j in range(4 * H):                                  # one vectorised pass over the gates
            zb[j] = tanh(zb[j])                                 # (a first, fused loop ran 3x slower)
        for j in range(H):
            i = _HALF + _HALF * zb[j]                           # sigma(a) = (1 + tanh(a/2)) / 2
            f = _HALF + _HALF * zb[H + j]
            g = zb[2 * H + j]
            o = _HALF + _HALF * zb[3 * H + j]
            zb[j], zb[H + j], zb[3 * H + j] = i, f, o
            cn = f * c_prev[b, j] + i * g
            a = tanh(cn)
            c[b, j], act[b, j], h[b, j] = cn, a, o * a


@_jit
def backward(dh, dc_next, z, act, c_prev, da, dc_prev):
    B, H = dc_prev.shape
    for b in range(B):
        for j in range(H):
            i, f, g, o = z[b, j], z[b, H + j], z[b, 2 * H + j], z[b, 3 * H + j]
            a, d = act[b, j], dh[b, j]
            dc = d * o * (_ONE - a * a) + dc_next[b, j]         # through h = o tanh(c), plus c's own
            da[b, j] = dc * g * i * (_ONE - i)
            da[b, H + j] = dc * c_prev[b, j] * f * (_ONE - f)
            da[b, 2 * H + j] = dc * i * (_ONE - g * g)
            da[b, 3 * H + j] = d * a * o * (_ONE - o)
            dc_prev[b, j] = dc * f


@numba.njit(cache=True, inline="always", fastmath=_FAST, error_model="numpy")
def _stream_gates(z, b_i, b_h, c, h_out, c_out):
    """z (4H,) holds W x + R h; adds the biases, squashes, updates the state. Returns the sum of
    the pre-activations and of c_out: not finite when a NaN or inf came in."""
    H = c.shape[0]
    total = 0.0
    for g in range(4 * H):
        a = z[g] + b_i[g] + b_h[g]
        z[g] = a
        total += a
    for j in range(H):
        i = _HALF + _HALF * tanh(_HALF * z[j])
        f = _HALF + _HALF * tanh(_HALF * z[H + j])
        g = tanh(z[2 * H + j])
        o = _HALF + _HALF * tanh(_HALF * z[3 * H + j])
        z[j], z[H + j], z[2 * H + j], z[3 * H + j] = i, f, g, o
        cn = f * c[j] + i * g
        c_out[j], h_out[j] = cn, o * tanh(cn)
        total += cn
    return total


@_jit
def stream(W, R, b_i, b_h, x, h, c, h_out, c_out, z):
    """One step of one stream, the products included (small layers: no BLAS call overhead)."""
    G, I = W.shape
    H = c.shape[0]
    for g in range(G):
        acc = W[g, 0] * x[0]
        for k in range(1, I):
            acc += W[g, k] * x[k]
        for k in range(H):
            acc += R[g, k] * h[k]
        z[g] = acc
    return _stream_gates(z, b_i, b_h, c, h_out, c_out)


@_jit
def stream_gates(z, b_i, b_h, c, h_out, c_out):
    """The rest of a step whose products W x + R h BLAS made into z (large layers)."""
    return _stream_gates(z, b_i, b_h, c, h_out, c_out)

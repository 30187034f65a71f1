"""The numba code behind lstmlab.numpy.kernels (imported only when a kernel first runs).

Constants are float32 so that numba keeps the arithmetic in float32 (a Python float would
promote it to float64); error_model="numpy" drops the division-by-zero check that stops the
loops from vectorising. `cache=True` keeps the machine code between processes.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types

from .kernels import SMALL_PRODUCT, numpy_sgemm

# NumPy's cblas_sgemm, called by name from the compiled loops (the name is bound again in each
# process, so numba's cache keeps the machine code)
_address, _bits = numpy_sgemm() or (0, 64)
llvm.add_symbol("lstmlab_numpy_sgemm", _address)
_int = types.int64 if _bits == 64 else types.int32
_SGEMM = types.ExternalFunction("lstmlab_numpy_sgemm", types.void(
    types.intc, types.intc, types.intc, _int, _int, _int, types.float32, types.voidptr, _int,
    types.voidptr, _int, types.float32, types.voidptr, _int))
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

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


def compiled(fn=None, **options):
    """numba.njit with this module's options, its machine code cached between processes; where
    numba finds no folder to write its cache to (a read-only install and home), compiled in
    each process instead of failing."""
    if fn is None:
        return lambda f: compiled(f, **options)
    options = {"fastmath": _FAST, "error_model": "numpy", **options}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:                                        # "cannot cache ...: no locator"
        return numba.njit(**options)(fn)


_jit = compiled(nogil=True)


@compiled(inline="always")
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


@_jit
def _gemm_nt(a, b, c):
    """c = a b^T: a (M, K), b (N, K), c (M, N), each C-contiguous. NumPy's BLAS, or for a small
    product (a batch of one) dot products here: a BLAS call costs more than the arithmetic."""
    M, K = a.shape
    N = b.shape[0]
    if M * N * K > SMALL_PRODUCT:
        _SGEMM(_ROW_MAJOR, _NO_TRANS, _TRANS, M, N, K, 1.0, a.ctypes, K, b.ctypes, K, 0.0, c.ctypes, N)
        return
    for m in range(M):
        for n in range(N):
            acc = a[m, 0] * b[n, 0]
            for k in range(1, K):
                acc += a[m, k] * b[n, k]
            c[m, n] = acc


# the loops below copy element by element: numba compiles an array-slice assignment in
# seconds (generic broadcasting), which made the first use of these kernels take 15 s


@_jit
def run(xh, W, z, act, c, mask, keep):
    """The whole forward loop of one layer and direction (see kernels.lstm_run)."""
    T, B, H = c.shape[0] - 1, c.shape[1], c.shape[2]
    K = xh.shape[2]
    for t in range(T):
        k = t if keep else 0
        _gemm_nt(xh[t], W, z[k])                                # [x, 1, h] [W | b | R]^T
        forward(z[k], c[t], c[t + 1], act[k], xh[t + 1, :, K - H:])
        if mask.shape[0]:                                       # past its end a sequence holds its state
            for b in range(B):
                if not mask[t, b]:
                    for j in range(H):
                        c[t + 1, b, j] = c[t, b, j]
                        xh[t + 1, b, K - H + j] = xh[t, b, K - H + j]


@_jit
def run_back(dy, dh, dc, z, act, c, RT, da, mask):
    """The whole backward loop of one layer and direction (see kernels.lstm_run_backward)."""
    T, B, H = dy.shape
    dc_prev = np.empty_like(dc)
    carry = np.empty((H, B), dh.dtype)                          # dL/dh_prev, transposed: (R^T da^T)
    hold = np.zeros((2, B, H), dh.dtype)                        # is the layout BLAS runs fastest here
    for b in range(B):
        for j in range(H):
            carry[j, b] = dh[b, j]
    for t in range(T - 1, -1, -1):
        for b in range(B):
            held = mask.shape[0] and not mask[t, b]             # past the end: straight through
            for j in range(H):
                d = carry[j, b] + dy[t, b, j]
                if held:
                    hold[0, b, j], hold[1, b, j], dh[b, j], dc[b, j] = d, dc[b, j], 0.0, 0.0
                else:
                    hold[0, b, j], hold[1, b, j], dh[b, j] = 0.0, 0.0, d
        backward(dh, dc, z[t], act[t], c[t], da[t], dc_prev)
        _gemm_nt(RT, da[t], carry)                              # undo R h
        for b in range(B):
            for j in range(H):
                carry[j, b] += hold[0, b, j]
                dc[b, j] = dc_prev[b, j] + hold[1, b, j]
    for b in range(B):
        for j in range(H):
            dh[b, j] = carry[j, b]


@compiled(inline="always")
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

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
from .ops import LN_EPS

# NumPy's cblas_sgemm, called by name from the compiled loops (the name is bound again in each
# process, so numba's cache keeps the machine code)
_address, _bits = numpy_sgemm() or (0, 64)
llvm.add_symbol("lstmlab_numpy_sgemm", _address)
_int = types.int64 if _bits == 64 else types.int32
_SGEMM = types.ExternalFunction("lstmlab_numpy_sgemm", types.void(
    types.intc, types.intc, types.intc, _int, _int, _int, types.float32, types.voidptr, _int,
    types.voidptr, _int, types.float32, types.voidptr, _int))
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# torch's Fortran sgemm (kernels.torch_sgemm binds the name before the variant loops first run)
_TORCH_SGEMM = types.ExternalFunction("lstmlab_torch_sgemm", types.void(*[types.voidptr] * 13))

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


# The elementwise loops run over range(n) of views (zi = zb[:H], ...): with an index LLVM cannot
# prove non-negative (zb[H + j]) numba keeps its negative-index wraparound in the loop, which
# stops it from vectorising: those loops ran 2-6x slower.


@_jit
def forward(z, c_prev, c, act, h):
    B, H = c.shape
    for b in range(B):
        zb, cp, cb, ab, hb = z[b], c_prev[b], c[b], act[b], h[b]
        for j in range(4 * H):                                  # one vectorised pass over the gates
            zb[j] = tanh(zb[j])                                 # (a first, fused loop ran 3x slower)
        zi, zf, zg, zo = zb[:H], zb[H:2 * H], zb[2 * H:3 * H], zb[3 * H:]
        for j in range(H):
            i = _HALF + _HALF * zi[j]                           # sigma(a) = (1 + tanh(a/2)) / 2
            f = _HALF + _HALF * zf[j]
            o = _HALF + _HALF * zo[j]
            zi[j], zf[j], zo[j] = i, f, o
            cn = f * cp[j] + i * zg[j]
            a = tanh(cn)
            cb[j], ab[j], hb[j] = cn, a, o * a


@_jit
def backward(dh, dc_next, z, act, c_prev, da, dc_prev):
    B, H = dc_prev.shape
    for b in range(B):
        zb, dab = z[b], da[b]
        zi, zf, zg, zo = zb[:H], zb[H:2 * H], zb[2 * H:3 * H], zb[3 * H:]
        di, df, dg, do = dab[:H], dab[H:2 * H], dab[2 * H:3 * H], dab[3 * H:]
        ab, dhb, dcn, cp, dcp = act[b], dh[b], dc_next[b], c_prev[b], dc_prev[b]
        for j in range(H):
            i, f, g, o = zi[j], zf[j], zg[j], zo[j]
            a, d = ab[j], dhb[j]
            dc = d * o * (_ONE - a * a) + dcn[j]                # through h = o tanh(c), plus c's own
            di[j] = dc * g * i * (_ONE - i)
            df[j] = dc * cp[j] * f * (_ONE - f)
            dg[j] = dc * i * (_ONE - g * g)
            do[j] = d * a * o * (_ONE - o)
            dcp[j] = dc * f


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
    if B * 4 * H * K > SMALL_PRODUCT:                           # the faster layout
        _run_transposed(xh, W, z, act, c, mask, keep)
        return
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


@compiled(inline="always")
def _rows_from_columns(src, dst):
    """dst (B, n) = src (n, B)^T, eight columns at a time (a plain loop ran 2-3x slower)."""
    n, B = src.shape
    whole = n - n % 8
    for j0 in range(0, whole, 8):
        for b in range(B):
            row = dst[b]
            for j in range(8):
                row[j0 + j] = src[j0 + j, b]
    for b in range(B):
        row = dst[b]
        for j in range(whole, n):
            row[j] = src[j, b]


@compiled(inline="always")
def _run_transposed(xh, W, z, act, c, mask, keep):
    """run's loop with each step's product transposed, z^T = [W | b | R] [x, 1, h]^T (4H, B):
    OpenBLAS makes that product in about 60 us against 105 us for [x, 1, h] [W | b | R]^T at
    (B, H, K) = (32, 128, 161) here. The gates and the state then live as (H, B) rows; h and c
    (and, to keep for backward, the gates and tanh c) are written back in rows each step."""
    T, B, H = c.shape[0] - 1, c.shape[1], c.shape[2]
    K = xh.shape[2]
    zT = np.empty((4 * H, B), np.float32)
    flat = zT.reshape(4 * H * B)
    cT = np.empty((2, H, B), np.float32)                        # c_prev and c_new, in turn
    hT = np.empty((H, B), np.float32)
    aT = np.empty((H, B), np.float32)
    for j in range(H):
        for b in range(B):
            cT[0, j, b] = c[0, b, j]
    for t in range(T):
        cp, cn = cT[t % 2], cT[(t + 1) % 2]
        _SGEMM(_ROW_MAJOR, _NO_TRANS, _TRANS, 4 * H, B, K, 1.0, W.ctypes, K, xh[t].ctypes, K,
               0.0, zT.ctypes, B)
        for k in range(4 * H * B):                              # one vectorised pass over the gates
            flat[k] = tanh(flat[k])
        for j in range(H):
            zi, zf, zg, zo = zT[j], zT[H + j], zT[2 * H + j], zT[3 * H + j]
            cpj, cnj, hj, aj = cp[j], cn[j], hT[j], aT[j]
            for b in range(B):
                i = _HALF + _HALF * zi[b]
                f = _HALF + _HALF * zf[b]
                o = _HALF + _HALF * zo[b]
                zi[b], zf[b], zo[b] = i, f, o
                v = f * cpj[b] + i * zg[b]
                a = tanh(v)
                cnj[b], aj[b], hj[b] = v, a, o * a
        if keep:
            _rows_from_columns(zT, z[t])
            _rows_from_columns(aT, act[t])
        if mask.shape[0]:                                       # past its end a sequence holds its state
            for b in range(B):
                if not mask[t, b]:
                    for j in range(H):
                        cn[j, b] = cp[j, b]
                        hT[j, b] = xh[t, b, K - H + j]
        _rows_from_columns(hT, xh[t + 1, :, K - H:])
        _rows_from_columns(cn, c[t + 1])


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
    zi, zf, zg, zo = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
    for j in range(H):
        i = _HALF + _HALF * tanh(_HALF * zi[j])
        f = _HALF + _HALF * tanh(_HALF * zf[j])
        g = tanh(zg[j])
        o = _HALF + _HALF * tanh(_HALF * zo[j])
        zi[j], zf[j], zg[j], zo[j] = i, f, g, o
        cn = f * c[j] + i * g
        c_out[j], h_out[j] = cn, o * tanh(cn)
        total += cn
    return total


@_jit
def stream(W, R, b_i, b_h, x, h, c, h_out, c_out, z, k):
    """One step of layer k of one stream, the products included (small layers: no BLAS call
    overhead); the arguments as kernels.lstm_stream's. Four rows of W and R at a time
    (G = 4H), so each load of the input and of h serves four products: 1.6x faster than a
    row at a time at H = 128."""
    G, I = W.shape
    inp = x if k == 0 else h_out[k - 1]
    hk = h[k]
    zk = z[k]
    for g in range(0, G, 4):
        a0, a1, a2, a3 = _ZERO, _ZERO, _ZERO, _ZERO
        for j in range(I):
            v = inp[j]
            a0 += W[g, j] * v
            a1 += W[g + 1, j] * v
            a2 += W[g + 2, j] * v
            a3 += W[g + 3, j] * v
        for j in range(hk.shape[0]):
            v = hk[j]
            a0 += R[g, j] * v
            a1 += R[g + 1, j] * v
            a2 += R[g + 2, j] * v
            a3 += R[g + 3, j] * v
        zk[g], zk[g + 1], zk[g + 2], zk[g + 3] = a0, a1, a2, a3
    return _stream_gates(zk, b_i, b_h, c[k], h_out[k], c_out[k])


@_jit
def stream_gates(z, b_i, b_h, c, h_out, c_out):
    """The rest of a step whose products W x + R h BLAS made into z (large layers)."""
    return _stream_gates(z, b_i, b_h, c, h_out, c_out)


# --- one step of any LSTM variant without gate recurrence, the products made by the caller ---
# (the torch engine's LSTMSequence on the CPU: torch makes the products, these the rest)

_ZERO, _TWO, _QUARTER = np.float32(0.0), np.float32(2.0), np.float32(0.25)
_EPS = np.float32(LN_EPS)
# the entries of `lay` (kernels.variant_layout): gate column offsets (-1: no such gate),
# peephole rows (-1: none), and the flags
_OI, _OF, _OG, _OO, _PI, _PF, _PO, _COUPLED, _ACT_IN, _ACT_OUT, _LN = range(11)


# A gate the variant lacks gets a view of block 0, never used (see _block).


@compiled(inline="always")
def _squash(code, v):
    """v = act(v) in place: 0 tanh, 1 identity, 2 2 sigma - 1, 3 4 sigma - 2."""
    if code == 0:
        for k in range(v.shape[0]):
            v[k] = tanh(v[k])
    elif code == 2:                                             # 2 sigma(a) - 1 = tanh(a / 2)
        for k in range(v.shape[0]):
            v[k] = tanh(_HALF * v[k])
    elif code == 3:
        for k in range(v.shape[0]):
            v[k] = _TWO * tanh(_HALF * v[k])


@compiled(inline="always")
def _times_squash_grad(code, y, v):
    """v *= d act / d a, from y = act(a)."""
    if code == 0:
        for k in range(v.shape[0]):
            v[k] *= _ONE - y[k] * y[k]
    elif code == 2:
        for k in range(v.shape[0]):
            v[k] *= _HALF * (_ONE - y[k] * y[k])
    elif code == 3:
        for k in range(v.shape[0]):
            v[k] *= _ONE - _QUARTER * y[k] * y[k]


@compiled(inline="always")
def _sigmoids(v):
    """v = sigma(v) in place."""
    for k in range(v.shape[0]):
        v[k] = _HALF + _HALF * tanh(_HALF * v[k])


@compiled(inline="always")
def _moments(v):
    """Mean and 1 / sqrt(variance + eps) of a row, as torch's layer norm (biased variance;
    float32 sums, as torch's)."""
    n = v.shape[0]
    s = _ZERO
    for k in range(n):
        s += v[k]
    mean = s / np.float32(n)
    q = _ZERO
    for k in range(n):
        e = v[k] - mean
        q += e * e
    return mean, _ONE / np.sqrt(q / np.float32(n) + _EPS)


@compiled(inline="always")
def _ln_back(d, g, xhat, rstd, dg, scratch, out):
    """Undo y = layer_norm(x) g for one row: from d = dL/dy, adds dL/dg to dg and writes
    out = dL/dx (scratch receives d g; out may be d, scratch may be d)."""
    n = d.shape[0]
    s1 = _ZERO
    s2 = _ZERO
    for k in range(n):
        dg[k] += d[k] * xhat[k]
        e = d[k] * g[k]
        scratch[k] = e
        s1 += e
        s2 += e * xhat[k]
    m1, m2 = s1 / np.float32(n), s2 / np.float32(n)
    for k in range(n):
        out[k] = rstd * (scratch[k] - m1 - xhat[k] * m2)


@compiled(inline="always")
def _peephole(P, row, spare):
    """A gate's peephole weights, P[row] (-1, a gate without: `spare`, unused)."""
    return P[row] if row >= 0 else spare


@compiled(inline="always")
def _block(v, offset, H):
    """The H entries of a gate at `offset` (-1, a gate the variant lacks: block 0, unused)."""
    lo = max(offset, 0)
    return v[lo:lo + H]


@compiled(inline="always")
def _gemm_plan(trans_a, m, n, k, lda, ldb, beta, ldc):
    """The arguments of one product shape for _torch_gemm, made once per loop: c = op(a) b +
    beta c, column-major (op: transposed when trans_a); the integers as int64 (see
    kernels.torch_sgemm)."""
    return (np.array([84 if trans_a else 78, 78], np.uint8),      # "T" / "N"
            np.array([m, n, k, lda, ldb, ldc], np.int64), np.array([1.0, beta], np.float32))


@compiled(inline="always")
def _torch_gemm(plan, a, b, c):
    """c = op(a) b + beta c on torch's BLAS, as `plan` (_gemm_plan) says."""
    flags, ints, scalars = plan
    _TORCH_SGEMM(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
                 scalars[0:].ctypes, a.ctypes, ints[3:].ctypes, b.ctypes, ints[4:].ctypes,
                 scalars[1:].ctypes, c.ctypes, ints[5:].ctypes)


@_jit
def variant_run(lay, z, r, hs, cs, act, R, mask, P, lnw, stats, lo, hi):
    """The forward loop of an LSTM variant over the batch rows lo:hi (see
    kernels.variant_loops): per step torch's product, then variant_step. Row-major
    (n, G) = (n, H) (G, H)^T is column-major (G, n) = (H, G)^T (H, n)."""
    T, G = z.shape[0], z.shape[2]
    H = cs.shape[2]
    ln = lay[_LN] != 0
    plan = _gemm_plan(True, G, hi - lo, H, H, H, _ZERO if ln else _ONE, G)
    for t in range(T):                                          # layer norm: r = h R^T, normalised
        _torch_gemm(plan, R, hs[t, lo:hi], r[lo:hi] if ln else z[t, lo:hi])   # in the step; else
        variant_step(t, lay, z, r, hs, cs, act, mask, P, lnw, stats, lo, hi)  # z[t] += h R^T


@_jit
def variant_run_back(lay, z, act, cs, dy, dh, hold, dc, da, mask, P, lnw, stats, dr, sums, R, lo, hi):
    """The backward loop of an LSTM variant over the batch rows lo:hi (see
    kernels.variant_loops): per step variant_step_back, then torch's product
    dL/dh_(t-1) = da[t] R (dr[t] R), column-major (H, n) = (H, G) (G, n)."""
    T, G = da.shape[0], da.shape[2]
    H = cs.shape[2]
    grads = dr if lay[_LN] else da
    plan = _gemm_plan(False, H, hi - lo, G, H, G, _ZERO, H)
    for t in range(T - 1, -1, -1):
        variant_step_back(t, lay, z, act, cs, dy, dh, hold, dc, da, mask, P, lnw, stats, dr, sums, lo, hi)
        _torch_gemm(plan, R, grads[t, lo:hi], dh[lo:hi])


@compiled
def variant_step(t, lay, z, r, hs, cs, act, mask, P, lnw, stats, lo, hi):
    """Step t of an LSTM variant for the batch rows lo:hi, after the product."""
    g_ih, g_hh, g_c, b_c, bias = lnw
    xhat, xrstd, rhat, rrstd, chat, crstd = stats
    G = z.shape[2]
    H = cs.shape[2]
    oi, of, og, oo = lay[_OI], lay[_OF], lay[_OG], lay[_OO]
    pi, pf, po = lay[_PI], lay[_PF], lay[_PO]
    coupled, a_in, a_out, ln = lay[_COUPLED], lay[_ACT_IN], lay[_ACT_OUT], lay[_LN]
    has_i, has_f, has_o = oi >= 0, of >= 0, oo >= 0
    for b in range(lo, hi):
        zb, c, cn, a, hn = z[t, b], cs[t, b], cs[t + 1, b], act[t, b], hs[t + 1, b]
        zi, zf, zg, zo = _block(zb, oi, H), _block(zb, of, H), _block(zb, og, H), _block(zb, oo, H)
        if ln:                                                  # z = LN(x W^T) g_ih + b + LN(R h) g_hh
            xb = xhat[t, b]                                     # x W^T, normalised in place
            mean, rstd = _moments(xb)
            xrstd[t, b, 0] = rstd
            for k in range(G):
                v = (xb[k] - mean) * rstd
                xb[k] = v
                zb[k] = v * g_ih[k] + bias[k]
            rb, rh = r[b], rhat[t, b]
            mean, rstd = _moments(rb)
            rrstd[t, b, 0] = rstd
            for k in range(G):
                v = (rb[k] - mean) * rstd
                rh[k] = v
                zb[k] += v * g_hh[k]
        if pi >= 0:                                             # i, f look at c_prev
            p = P[pi]
            for j in range(H):
                zi[j] += c[j] * p[j]
        if pf >= 0:
            p = P[pf]
            for j in range(H):
                zf[j] += c[j] * p[j]
        if has_i:
            _sigmoids(zi)
        if has_f:
            _sigmoids(zf)
        if has_o and po < 0:
            _sigmoids(zo)
        _squash(a_in, zg)
        for j in range(H):                                      # c = f c_prev + i g
            i = zi[j] if has_i else _ONE
            f = zf[j] if has_f else (_ONE - i if coupled else _ONE)
            cn[j] = f * c[j] + i * zg[j]
        if has_o and po >= 0:                                   # o looks at the new c
            p = P[po]
            for j in range(H):
                zo[j] += cn[j] * p[j]
            _sigmoids(zo)
        if ln:                                                  # act(LN(c) g_c + b_c)
            mean, rstd = _moments(cn)
            crstd[t, b, 0] = rstd
            ch = chat[t, b]
            for j in range(H):
                v = (cn[j] - mean) * rstd
                ch[j] = v
                a[j] = v * g_c[j] + b_c[j]
        else:
            for j in range(H):
                a[j] = cn[j]
        _squash(a_out, a)
        for j in range(H):
            hn[j] = a[j] * zo[j] if has_o else a[j]
        if mask.shape[0] and not mask[t, b]:                    # past its end: the state holds
            hp = hs[t, b]
            for j in range(H):
                cn[j], hn[j] = c[j], hp[j]


@compiled
def variant_step_back(t, lay, z, act, cs, dy, dhp, hold, dc, da, mask, P, lnw, stats, dr, sums, lo, hi):
    """Undo step t of an LSTM variant for the batch rows lo:hi, up to the product; adds the
    step's share of the summed gradients (see kernels.variant_loops) to sums, summed in float32
    over the batch first.

    Short loops, one or two arrays written in each: one fused loop per row, with the variant's
    choices as selects, ran 15-30% slower (LLVM's run-time alias checks between a dozen
    arrays give up on vectorising)."""
    g_ih, g_hh, g_c = lnw[0], lnw[1], lnw[2]
    xhat, xrstd, rhat, rrstd, chat, crstd = stats
    G = da.shape[2]
    H = cs.shape[2]
    oi, of, og, oo = lay[_OI], lay[_OF], lay[_OG], lay[_OO]
    pi, pf, po = lay[_PI], lay[_PF], lay[_PO]
    coupled, a_in, a_out, ln = lay[_COUPLED], lay[_ACT_IN], lay[_ACT_OUT], lay[_LN]
    has_i, has_f, has_o, has_dy = oi >= 0, of >= 0, oo >= 0, dy.shape[0] > 0
    d_out = np.empty(H, np.float32)
    d_c = np.empty(H, np.float32)
    dxhat = np.empty(G, np.float32)
    part = np.zeros(sums.shape[0], np.float32)                 # [db | dP | g_ih | g_hh | g_c | b_c]
    e = G + P.shape[0] * H
    db, dP = part[:G], part[G:e].reshape(P.shape)
    dg_ih, dg_hh = part[e:e + G], part[e + G:e + 2 * G]
    dg_c, db_c = part[e + 2 * G:e + 2 * G + H], part[e + 2 * G + H:e + 2 * G + 2 * H]
    p_i, p_f, p_o = _peephole(P, pi, d_c), _peephole(P, pf, d_c), _peephole(P, po, d_c)
    s_i, s_f, s_o = _peephole(dP, pi, d_c), _peephole(dP, pf, d_c), _peephole(dP, po, d_c)
    for b in range(lo, hi):
        zb, dab, dcb, hb, ab, cp = z[t, b], da[t, b], dc[b], hold[b], act[t, b], cs[t, b]
        dh = dhp[b]
        if mask.shape[0] and not mask[t, b]:                    # past the end: straight through
            for j in range(H):
                hb[j] += dh[j]
            for k in range(G):
                dab[k] = 0.0
            if ln:
                for k in range(G):
                    dr[t, b, k] = 0.0
            continue
        zi, zf, zg, zo = _block(zb, oi, H), _block(zb, of, H), _block(zb, og, H), _block(zb, oo, H)
        di, df, dg, do = _block(dab, oi, H), _block(dab, of, H), _block(dab, og, H), _block(dab, oo, H)
        for j in range(H):                                      # dL/dh_t, all of it
            d_out[j] = dh[j] + hb[j]
            hb[j] = 0.0
        if has_dy:
            dyb = dy[t, b]
            for j in range(H):
                d_out[j] += dyb[j]
        if has_o:                                               # undo h = o act(c)
            for j in range(H):
                o = zo[j]
                do[j] = d_out[j] * ab[j] * o * (_ONE - o)
                d_out[j] *= o
        _times_squash_grad(a_out, ab, d_out)
        if ln:                                                  # undo act(LN(c) g_c + b_c)
            for j in range(H):
                db_c[j] += d_out[j]
            _ln_back(d_out, g_c, chat[t, b], crstd[t, b, 0], dg_c, d_out, d_c)
            for j in range(H):
                d_c[j] += dcb[j]
        else:
            for j in range(H):
                d_c[j] = d_out[j] + dcb[j]
        if po >= 0:                                             # o looked at c
            for j in range(H):
                d_c[j] += do[j] * p_o[j]
        for j in range(H):                                      # undo c = f c_prev + i g
            dg[j] = d_c[j] * zi[j] if has_i else d_c[j]
        _times_squash_grad(a_in, zg, dg)
        if has_i and coupled:                                   # c = c_prev + i (g - c_prev)
            for j in range(H):
                i = zi[j]
                di[j] = d_c[j] * (zg[j] - cp[j]) * i * (_ONE - i)
                dcb[j] = d_c[j] * (_ONE - i)
        elif has_i:
            for j in range(H):
                di[j] = d_c[j] * zg[j] * zi[j] * (_ONE - zi[j])
        if has_f:
            for j in range(H):
                f = zf[j]
                df[j] = d_c[j] * cp[j] * f * (_ONE - f)
                dcb[j] = d_c[j] * f
        elif not coupled:
            for j in range(H):
                dcb[j] = d_c[j]
        if pi >= 0:                                             # i, f looked at c_prev
            for j in range(H):
                dcb[j] += di[j] * p_i[j]
        if pf >= 0:
            for j in range(H):
                dcb[j] += df[j] * p_f[j]
        if pi >= 0:                                             # the peepholes' gradients
            for j in range(H):
                s_i[j] += di[j] * cp[j]
        if pf >= 0:
            for j in range(H):
                s_f[j] += df[j] * cp[j]
        if po >= 0:
            cn = cs[t + 1, b]
            for j in range(H):
                s_o[j] += do[j] * cn[j]
        for k in range(G):                                      # the bias's
            db[k] += dab[k]
        if ln:                                                  # undo LN(R h) g_hh
            _ln_back(dab, g_hh, rhat[t, b], rrstd[t, b, 0], dg_hh, dxhat, dr[t, b])
            # undo LN(x W^T) g_ih, in place: da becomes dL/d(x W^T)
            _ln_back(dab, g_ih, xhat[t, b], xrstd[t, b, 0], dg_ih, dab, dab)
    for k in range(sums.shape[0]):
        sums[k] += part[k]

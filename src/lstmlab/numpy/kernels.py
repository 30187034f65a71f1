"""Compiled kernels: the NumPy engine's LSTM loops without Python per step (optional, numba).

Per step the NumPy engine makes one matrix product and then squashes the gates, updates
the cell and forms h: as NumPy calls that is a dozen passes over small arrays, each with
its own call overhead, and NumPy's float32 tanh runs about 4 ns per element here. At the
shapes most people start with, (T, B, I, H) = (100, 32, 32, 128), that elementwise work
and the Python around it took more time than the product. These kernels, compiled by numba
(the `fast` extra), run a layer's whole time loop in one call, the elementwise work of a
step in one pass with a tanh that vectorises, the products on NumPy's own BLAS:

    lstm_run:            forward over all steps: z = [x, 1, h] [W | b | R]^T (sigmoid rows
                         pre-halved) -> i, f, g, o, c, tanh c, h; lengths held as in recurrent.py
    lstm_run_backward:   backward over all steps: dL/da of every step, dL/d(initial state)
    lstm_forward/_backward: one step's elementwise part (the loop in Python: with a projection)
    stream_function:     one step of one stream (B = 1, `LSTM.step`), products included: about
                         500 us through the sequence machinery, a few us here (`lstmlab bench`)
    variant_loops:       the time loops of any LSTM variant without gate recurrence (peepholes,
                         CIFG, layer norm, missing gates, other activations), forward and
                         backward: the torch engine's LSTMSequence on the CPU, over the batch
                         in parts on several threads (row_parts, in_parallel)

The NumPy engine's loops cover the plain LSTM (`variant="lstm"`) in float32: the variants and
float64 run on the NumPy code in cells.py (and the stream step on the NumPy lines of `lstm_stream`), which
is also what runs when numba is not installed or `LSTMLAB_KERNELS=0` is set. Tests hold the
two paths equal (tests/test_numpy_kernels.py).

The tanh is the rational approximation of Eigen (generic_fast_tanh_float, also used by
TensorFlow): at most 2 float32 units in the last place from the true tanh, exactly
+-1 beyond |x| = 7.9.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .ops import sigmoid


def numpy_sgemm() -> tuple[int, int] | None:
    """(address, integer bits) of NumPy's own cblas_sgemm, or None.

    The compiled loops make their products through it, on the BLAS (and thread pool) the
    rest of NumPy uses. numba's np.dot would call SciPy's BLAS: a second pool, whose threads
    and NumPy's, each spinning after its own work, halved the speed of training on 2 cores.
    """
    import ctypes

    try:                                                         # NumPy 2, then 1
        umath = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:
        umath = importlib.import_module("numpy.core._multiarray_umath")
    try:
        lib = ctypes.CDLL(umath.__file__)                        # dlsym searches its BLAS too
    except OSError:
        return None
    for name, bits in (("scipy_cblas_sgemm64_", 64), ("cblas_sgemm64_", 64), ("cblas_sgemm", 32)):
        fn = getattr(lib, name, None)                            # NumPy's wheels, other builds
        if fn is not None:
            return ctypes.cast(fn, ctypes.c_void_p).value or 0, bits
    return None


def _wanted() -> bool:
    if os.environ.get("LSTMLAB_KERNELS", "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    return importlib.util.find_spec("numba") is not None and numpy_sgemm() is not None


# whether the compiled kernels run; tests switch it to compare the two paths
enabled: bool = _wanted()


def lstm_forward(z, c_prev, c, act, h) -> None:
    """Finish one LSTM step, in place. z (B, 4H): the pre-activations, halved in the i, f, o
    columns, becomes the gates i, f, g, o; writes c = f c_prev + i g, act = tanh(c), h = o act."""
    _code().forward(z, c_prev, c, act, h)


def lstm_backward(dh, dc_next, z, act, c_prev, da, dc_prev) -> None:
    """Undo one LSTM step's elementwise part: from dL/dh and dL/dc of the step's outputs and its
    stored gates z and act = tanh(c), write dL/da (B, 4H) and dL/dc_prev (B, H)."""
    _code().backward(dh, dc_next, z, act, c_prev, da, dc_prev)


# multiply-adds of a product up to which compiled dot loops beat BLAS calls (the stream step,
# a batch of one in the loops): a stream step at H = 128 (82 k) took 6 us against 12 us,
# at H = 512 (1.1 M) 97 us against 54 us on 2 cores
SMALL_PRODUCT = 1 << 18


def runs(cell, dtype) -> bool:
    """Whether `cell`'s steps run on these kernels: a plain LSTM's fast cell (not the reference
    equations) in float32, the kernels enabled."""
    return enabled and getattr(cell, "plain", False) and dtype == np.float32


def lstm_run(xh, W, z, act, c, mask, keep: bool) -> None:
    """The whole forward loop of one layer and direction, in one call (no Python per step).
    xh (T + 1, B, K): the rows [x_t, 1, h_t], h_0 set; each step writes its h into the last
    H columns of the next row. W (4H, K) = [W | b | R] with the sigmoid gates' rows halved.
    z (T, B, 4H) and act (T, B, H) receive each step's gates and tanh(c) (one step's worth,
    rewritten each step, when not keep); c (T + 1, B, H), c[0] set. mask None or (T, B, 1)
    bool: past its end a sequence holds its state."""
    _code().run(xh, W, z, act, c, _NO_MASK if mask is None else mask[:, :, 0], keep)


def lstm_run_backward(dy, dh, dc, z, act, c, RT, da, mask) -> None:
    """The whole backward loop of one layer and direction, in one call: dy (T, B, H) the
    outputs' gradient, dh and dc (B, H) the final state's, overwritten with the initial
    state's; z, act, c as lstm_run kept them; RT = weight_hh^T, contiguous; da (T, B, 4H)
    receives dL/da."""
    _code().run_back(dy, dh, dc, z, act, c, RT, da, _NO_MASK if mask is None else mask[:, :, 0])


_NO_MASK = np.zeros((0, 0), bool)


def stream_function(dtype, inputs: int, hidden: int) -> Callable[..., float]:
    """What one layer's stream step runs on, with lstm_stream's arguments, chosen once for
    the layer's shape and dtype (tested on every call, the choice cost a tenth of a step at
    H = 128): a small float32 layer, the compiled step with its products; anything else,
    lstm_stream."""
    if enabled and np.dtype(dtype) == np.float32 and 4 * hidden * (inputs + hidden) <= SMALL_PRODUCT:
        return _code().stream
    return lstm_stream


def lstm_stream(W, R, b_i, b_h, x, h, c, h_out, c_out, z, k: int) -> float:
    """One step of layer k of a stack of LSTMs on one stream (B = 1), straight from the
    layer's parameters (nothing prepared, so a weight changed in place is seen at once).
    x (I,): the input of layer 0 (a later layer reads h_out[k - 1]); h and c (L, H): the
    state before; writes h_out[k], c_out[k] and the gates i, f, g, o into z[k] (z: (L, 4H)).
    Every layer is indexed by the callee, not by the caller: a NumPy view costs as much as a
    tenth of the compiled step. Returns the sum of the pre-activations and of c_out[k]: not
    finite when a NaN or inf came in. Small float32 layers run the compiled `stream` instead
    (stream_function chooses)."""
    H = c.shape[1]
    x = x if k == 0 else h_out[k - 1]
    h, c, h_out, c_out, z = h[k], c[k], h_out[k], c_out[k], z[k]
    np.matmul(W, x, out=z)                                      # a = W x + R h + b_i + b_h
    z += R @ h
    if enabled and z.dtype == np.float32:                       # large: BLAS's threads win
        return _code().stream_gates(z, b_i, b_h, c, h_out, c_out)
    z += b_i
    z += b_h
    a_sum = z.sum()
    i, f, g, o = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
    np.tanh(g, out=g)
    sigmoid(z[:2 * H], out=z[:2 * H])
    sigmoid(o, out=o)
    np.multiply(f, c, out=c_out)                                # c = f c + i g
    c_out += i * g
    np.tanh(c_out, out=h_out)                                   # h = o tanh(c)
    h_out *= o
    return float(a_sum + c_out.sum())


def _torch_symbol(name: str):
    """The function `name` exported by torch's own library (libtorch_cpu, which carries MKL in
    the x86-64 wheels), or None where no such library or symbol is found."""
    import ctypes
    import glob

    import torch

    for path in sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.*"))):
        try:
            return getattr(ctypes.CDLL(path), name)
        except (OSError, AttributeError):
            continue
    return None


@functools.cache
def torch_sgemm() -> int | None:
    """The address of the Fortran sgemm inside torch's own library (MKL in the x86-64 wheels),
    bound for variant_loops; None where torch has none that answers as one (then the torch
    engine runs its variants as torch operations).

    Torch's products and these loops then share one BLAS and one thread pool: calling NumPy's
    instead made torch's and NumPy's threads spin against each other on 2 cores, and doubled
    the time of torch's own fused LSTM in the same process. Checked on a 2 x 3 product first:
    the integers are passed as int64, which an LP64 BLAS reads correctly too (little-endian)."""
    import ctypes

    fn = _torch_symbol("sgemm_")
    if fn is None:
        return None
    c_float_p = ctypes.POINTER(ctypes.c_float)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    c = np.zeros((2, 2), np.float32)                             # c = a b^T, column-major below
    dims = [ctypes.c_int64(v) for v in (2, 2, 3, 3, 3, 2)]
    fn(ctypes.c_char_p(b"T"), ctypes.c_char_p(b"N"), *map(ctypes.byref, dims[:3]),
       ctypes.byref(ctypes.c_float(1.0)), b.ctypes.data_as(c_float_p), ctypes.byref(dims[3]),
       a.ctypes.data_as(c_float_p), ctypes.byref(dims[4]), ctypes.byref(ctypes.c_float(0.0)),
       c.ctypes.data_as(c_float_p), ctypes.byref(dims[5]))
    if not np.array_equal(c, a @ b.T):
        return None
    address = ctypes.cast(fn, ctypes.c_void_p).value
    import llvmlite.binding as llvm
    llvm.add_symbol("lstmlab_torch_sgemm", address)
    return address


@functools.cache
def _torch_blas_threads_local() -> Callable[[int], int] | None:
    """MKL's MKL_Set_Num_Threads_Local inside torch's library (the threads the calling thread's
    products may use, 0: the global count; returns the previous), or None where there is none.
    (The lower-case name is the Fortran entry, which takes a pointer.)"""
    import ctypes

    fn = _torch_symbol("MKL_Set_Num_Threads_Local")
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


def row_parts(rows: int) -> list[tuple[int, int]]:
    """The batch rows 0:rows cut into as many runs (lo, hi) as torch has threads (at most one
    per row): variant_loops' parts, for `in_parallel`. One part where torch's BLAS cannot be
    held to one thread per caller (its threads would then run on top of each other), or where
    torch's idle threads spin (threads.idle_threads_sleep: they would take the cores)."""
    import torch

    from ..threads import idle_threads_sleep

    split = _torch_blas_threads_local() is not None and idle_threads_sleep()
    n = min(torch.get_num_threads(), rows) if split else 1
    cuts = [rows * k // n for k in range(n + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def in_parallel(calls: list[Callable[[], object]]) -> None:
    """Run `calls` at once, each on its own thread (the first on this one) with torch's BLAS on
    one thread (the compiled loops release the GIL): the variant loops' batch rows in parts.
    One call runs here as it is, its products on all of torch's threads."""
    if len(calls) == 1:
        calls[0]()
        return
    futures = [_pool().submit(_on_one_blas_thread, call) for call in calls[1:]]
    try:
        _on_one_blas_thread(calls[0])
    finally:
        for f in futures:
            f.result()


@functools.cache
def _pool():
    from concurrent.futures import ThreadPoolExecutor
    return ThreadPoolExecutor(thread_name_prefix="lstmlab-rows")


def _on_one_blas_thread(call: Callable[[], object]) -> None:
    local = _torch_blas_threads_local()
    before = local(1) if local is not None else 0
    try:
        call()
    finally:
        if local is not None:
            local(before)


def variant_layout(spec, hidden_size: int) -> np.ndarray:
    """What `variant_step` needs to know of an LSTM variant (spec: a CellSpec without gate
    recurrence), as int64: the column offsets of the gates i, f, g, o in the pre-activations
    (-1: the variant has no such gate), the rows of i, f, o in the peephole matrix (-1: none),
    coupled gates, the input and output activations (0 tanh, 1 identity, 2 sigmoid2,
    3 sigmoid4) and layer norm."""
    H, gates = hidden_size, spec.gates
    peep = spec.sigmoid_gates if spec.peepholes else ()
    codes = {"tanh": 0, "identity": 1, "sigmoid2": 2, "sigmoid4": 3}
    return np.array([gates.index(g) * H if g in gates else -1 for g in "ifgo"]
                    + [peep.index(g) if g in peep else -1 for g in "ifo"]
                    + [spec.coupled_gates, codes[spec.input_activation],
                       codes[spec.output_activation], spec.layer_norm], np.int64)


def variant_loops() -> VariantLoops:
    """(run, run_back): the compiled time loops of an LSTM variant, forward and backward, for a
    caller that makes the products over all steps itself (the torch engine's LSTMSequence on
    the CPU, in float32, where `torch_sgemm()` is found). All arrays float32 (lay int64, mask
    bool), C-contiguous; an absent one (no peepholes, no layer norm, no mask, no dy) is an
    empty array of its rank. Per step one product on torch's BLAS and one pass.

    lnw = (g_ih, g_hh, g_c, b_c, bias) (G, G, H, H, G): the layer norms' weights and the bias,
    stats = (xhat, xrstd, rhat, rrstd, chat, crstd) (T, B, G or 1 or H): what the layer norms
    of x W^T, R h and c keep for backward (their xhat and 1 / std).

    Both take the batch rows lo:hi they run as their last two arguments: parts of the batch
    run at once on different threads (`in_parallel`), each part adding to a `sums` of its own.

    run(lay, z, r, hs, cs, act, R, mask, P, lnw, stats, lo, hi):
        without layer norm z (T, B, G) holds x W^T + b and each step adds h_t R^T; with it
        xhat holds x W^T, normalised in place, r (B, G) receives h_t R^T, and each step writes
        z = LN(x W^T) g_ih + bias + LN(h R^T) g_hh. Then the step squashes the gates into z[t]
        and writes act[t] = act_out(c), cs[t + 1], hs[t + 1] (hs[0], cs[0]: the initial state)
        and the statistics. mask (T, B): past its end a sequence holds its state.
    run_back(lay, z, act, cs, dy, dh, hold, dc, da, mask, P, lnw, stats, dr, sums, R, lo, hi):
        dh, dc (B, H): dL/dh_T and dL/dc_T, rewritten down to dL/dh_0 (less `hold`) and dL/dc_0;
        hold (B, H), zeros at first: what passed straight through held steps, to add to dh;
        writes da (T, B, G) = dL/d(pre-activations) (with layer norm: dL/d(x W^T), and dr the
        gradient of R h), and adds to sums (float64) the gradients summed over steps and batch:
        the bias (G), the peepholes (P's rows, H each), and with layer norm g_ih (G), g_hh (G),
        g_c (H) and b_c (H).
    """
    if torch_sgemm() is None:
        raise RuntimeError("variant_loops needs torch's sgemm (kernels.torch_sgemm())")
    code = _code()
    return VariantLoops(code.variant_run, code.variant_run_back)


class VariantLoops(NamedTuple):
    """What `variant_loops` returns."""

    run: Callable
    run_back: Callable


@functools.cache
def _code():
    """The compiled module, imported on first use: importing lstmlab does not import numba."""
    from . import kernels_numba
    return kernels_numba

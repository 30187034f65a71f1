"""The compiled kernels (lstmlab.numpy.kernels, numba) equal the NumPy code they replace, and
`step` on one stream equals the general path, with its checks and messages kept."""

import subprocess
import sys

import numba
import numpy as np
import pytest

import lstmlab.numpy
from lstmlab.numpy import kernels
from tests.conftest import assert_close, raises_one_line


def _run(m, x, dy, lengths=None):
    y, state, cache = m.forward(x, lengths=lengths)
    grads, dx, ds = m.backward(cache, dy, tuple(np.ones_like(s) for s in state))
    return [y, *state, dx, *ds, *grads.values()]


def _both(monkeypatch, fn):
    """fn() with the kernels on, then off."""
    out = []
    for on in (True, False):
        monkeypatch.setattr(kernels, "enabled", on)
        out.append(fn())
    return out


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True), dict(proj_size=3)])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5]])
def test_kernels_equal_numpy_path(monkeypatch, kw, lengths):
    m = lstmlab.numpy.LSTM(4, 5, dtype=np.float32, seed=1, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32) * 2
    dy = rng.standard_normal((6, 3, m.num_directions * m.out_size)).astype(np.float32)
    fast, plain = _both(monkeypatch, lambda: _run(m, x, dy, lengths))
    for a, b in zip(fast, plain):
        assert_close(a, b, 2e-5, "kernels against NumPy")
    inference = _both(monkeypatch, lambda: m(x, lengths=lengths)[0])[0]
    assert_close(inference, fast[0], 1e-7, "inference = training forward")


def test_kernels_equal_float64_engine(monkeypatch):
    """float32 on the kernels against the float64 NumPy engine on the same weights."""
    monkeypatch.setattr(kernels, "enabled", True)
    m32 = lstmlab.numpy.LSTM(3, 16, num_layers=2, dtype=np.float32, seed=2)
    m64 = lstmlab.numpy.LSTM(3, 16, num_layers=2, dtype=np.float64, seed=2)
    m64.load_state_dict({k: v.astype(np.float64) for k, v in m32.params.items()})
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((20, 4, 3)), rng.standard_normal((20, 4, 16))
    for a, b in zip(_run(m32, x.astype(np.float32), dy.astype(np.float32)), _run(m64, x, dy)):
        assert_close(a, b, 1e-4, "float32 kernels against float64")


def test_kernels_run_only_where_they_apply(monkeypatch):
    """Variants and float64 keep the NumPy code: a kernel that raised would show it."""
    def boom(*a):
        raise AssertionError("kernel called")
    monkeypatch.setattr(kernels, "lstm_forward", boom)
    monkeypatch.setattr(kernels, "lstm_run", boom)
    x = np.ones((3, 2, 4))
    for m in (lstmlab.numpy.LSTM(4, 5, variant="peephole", dtype=np.float32),
              lstmlab.numpy.LSTM(4, 5, dtype=np.float64), lstmlab.numpy.GRU(4, 5, dtype=np.float32)):
        m(x)
    with pytest.raises(AssertionError, match="kernel called"):
        lstmlab.numpy.LSTM(4, 5, dtype=np.float32)(x)


def test_kernel_tanh_accuracy():
    from lstmlab.numpy import kernels_numba

    @numba.njit
    def apply(a):
        out = np.empty_like(a)
        for k in range(a.size):
            out[k] = kernels_numba.tanh(a[k])
        return out

    a = np.concatenate([np.linspace(-12, 12, 400_001), [0.0, 1e-30, 7.9, 8.0, 50.0]]).astype(np.float32)
    y = apply(a)
    err = np.abs(y.astype(np.float64) - np.tanh(a.astype(np.float64)))
    assert err.max() <= 3 * np.finfo(np.float32).eps                # within 3 units at 1.0
    assert np.abs(y).max() <= 1.0 and y[-1] == 1.0 and (y[a > 0] >= 0).all()
    assert np.array_equal(apply(-a), -y)                              # odd


def test_switch_off_by_environment():
    code = "from lstmlab.numpy import kernels; print(kernels.enabled)"
    for value, want in (("0", "False"), ("1", "True")):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"LSTMLAB_KERNELS": value, "PATH": ""})
        assert r.stdout.strip() == want, r.stderr


# --- step on one stream -------------------------------------------------------------------

def _general(m, monkeypatch):
    """m.step on the general path (the sequence machinery)."""
    monkeypatch.setattr(m, "_stream_names", None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("on", [True, False])
@pytest.mark.parametrize("hidden", [7, 300])       # 300: past SMALL_PRODUCT, BLAS makes the products
def test_stream_step_equals_general_path(monkeypatch, dtype, batched, on, hidden):
    monkeypatch.setattr(kernels, "enabled", on)
    m = lstmlab.numpy.LSTM(5, hidden, num_layers=2, dtype=dtype, seed=3)
    xs = np.random.default_rng(0).standard_normal((9, 1, 5)).astype(dtype)
    xs = xs if batched else xs[:, 0]

    def loop():
        s, ys, states = None, [], []
        for x_t in xs:
            y, s = m.step(x_t, s)
            ys.append(y)
            states.append(s)
        return np.stack(ys), states

    fast_y, fast_states = loop()
    with monkeypatch.context() as mp:
        _general(m, mp)
        y_ref, states_ref = loop()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(fast_y, y_ref, tol, "y")
    for s, r in zip(fast_states, states_ref):
        for a, b in zip(s, r):
            assert a.shape == b.shape and a.dtype == b.dtype
            assert_close(a, b, tol, "state")
    assert_close(fast_y, m(xs[:, None] if not batched else xs)[0].reshape(fast_y.shape), tol, "forward")


def test_stream_step_runs_the_stream_path(monkeypatch):
    m = lstmlab.numpy.LSTM(3, 4, dtype=np.float32)

    def boom(*a, **k):
        raise AssertionError("general path")
    monkeypatch.setattr(m, "_forward", boom)
    y, (h, c) = m.step(np.ones(3, np.float32))
    y2, _ = m.step(np.ones((1, 3), np.float32), (h[:, None], c[:, None]))
    assert y.shape == (4,) and y2.shape == (1, 4)
    for other in (lstmlab.numpy.LSTM(3, 4, variant="cifg", dtype=np.float32),
                  lstmlab.numpy.LSTM(3, 4, bidirectional=True, dtype=np.float32),
                  lstmlab.numpy.LSTM(3, 4, proj_size=2, dtype=np.float32)):
        monkeypatch.setattr(other, "_forward", boom)
        with pytest.raises(AssertionError, match="general path"):
            other.step(np.ones(3, np.float32))
    with pytest.raises(AssertionError, match="general path"):               # B = 2: a batch
        m.step(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("hidden", [8, 300])       # 300: past SMALL_PRODUCT, BLAS makes the products
def test_stream_step_sees_weights_changed_in_place(monkeypatch, hidden):
    m = lstmlab.numpy.LSTM(3, hidden, dtype=np.float32, seed=0)
    x = np.random.default_rng(2).standard_normal(3).astype(np.float32)
    y0, _ = m.step(x)
    m.params["weight_ih_l0"] *= 2.0                                # as an optimizer does
    m.params["bias_hh_l0"] += 0.1
    y1, s1 = m.step(x)
    with monkeypatch.context() as mp:
        _general(m, mp)
        y_ref, s_ref = m.step(x)
    assert not np.allclose(y0, y1)
    assert_close(y1, y_ref, 1e-5, "y after an update")
    assert_close(s1[1], s_ref[1], 1e-5, "c after an update")


def test_stream_step_leaves_inputs_alone():
    m = lstmlab.numpy.LSTM(3, 4, dtype=np.float32)
    x = np.ones(3, np.float32)
    _, s = m.step(x)
    h, c = s[0].copy(), s[1].copy()
    y, s2 = m.step(x, s)
    assert np.array_equal(s[0], h) and np.array_equal(s[1], c)
    y += 1.0                                                       # y is not a view of the state
    assert not np.shares_memory(y, s2[0])


@pytest.mark.parametrize("bad, message", [
    ((np.array([1.0, np.nan, 0.0], np.float32), None), "x_t contains 1 NaN or inf"),
    ((np.ones(3, np.float32), (np.full((1, 4), np.inf, np.float32), np.zeros((1, 4), np.float32))),
     "state h0 contains 4 NaN or inf"),
    ((np.ones(3, np.float32), (np.zeros((1, 4), np.float32), np.zeros((1, 5), np.float32))),
     "state c0 has shape (1, 5), expected (1, 4)"),
    ((np.ones(4, np.float32), None), "x has 4 features, the model expects 3"),
])
def test_stream_step_keeps_the_checks(bad, message):
    m = lstmlab.numpy.LSTM(3, 4, dtype=np.float32)
    assert message in raises_one_line(m.step, *bad)


def test_stream_step_nan_in_a_deeper_layer_state():
    m = lstmlab.numpy.LSTM(3, 4, num_layers=2, dtype=np.float32)
    c = np.zeros((2, 4), np.float32)
    c[1, 2] = np.nan
    assert "state c0 contains 1 NaN or inf" in raises_one_line(m.step, np.ones(3, np.float32),
                                                               (np.zeros((2, 4), np.float32), c))


@pytest.mark.parametrize("batched", [False, True])
def test_stream_step_record_equals_general_path(monkeypatch, batched):
    """record= gives the step's gates and states as trace does, on either path."""
    m = lstmlab.numpy.LSTM(3, 4, num_layers=2, dtype=np.float32, seed=5)
    x = np.linspace(-1, 1, 3, dtype=np.float32)
    x = x[None] if batched else x
    fast: dict = {}
    _, s = m.step(x)
    m.step(x, s, record=fast)
    slow: dict = {}
    with monkeypatch.context() as mp:
        _general(m, mp)
        m.step(x, s, record=slow)
    trace = m.trace(np.stack([x, x]), None)                         # the same two steps
    assert list(fast) == list(slow) == ["l0", "l1"]
    for g in slow:
        assert list(fast[g]) == list(slow[g]) == ["i", "f", "g", "o", "c", "h"]
        for n in slow[g]:
            assert fast[g][n].shape == slow[g][n].shape == ((1, 4) if batched else (4,))
            assert_close(fast[g][n], slow[g][n], 1e-5, f"{g}.{n}")
            assert_close(fast[g][n], trace[g][n][1], 1e-5, f"{g}.{n} against trace")


def test_compiled_without_a_cache_folder():
    """A function numba finds no cache folder for (here: source in no file; on a read-only
    install and home, every kernel) is compiled in each process instead of failing."""
    from lstmlab.numpy.kernels_numba import compiled

    scope: dict = {}
    exec("def twice(a):\n    return 2 * a\n", scope)                      # source in no file
    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(scope["twice"])
    assert compiled(scope["twice"])(3.0) == 6.0


@pytest.mark.parametrize("lengths", [None, np.arange(16) % 12 + 1])
def test_loops_with_the_transposed_product_equal_the_numpy_path(monkeypatch, lengths):
    """Past SMALL_PRODUCT each step's product runs transposed, the gates and state as (H, B)
    rows written back each step: training (forward and backward) and inference equal the NumPy
    code, with and without lengths. H = 67: the blocks of eight columns and their remainder."""
    m = lstmlab.numpy.LSTM(8, 67, seed=3)
    assert 16 * 4 * 67 * (8 + 1 + 67) > kernels.SMALL_PRODUCT
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 16, 8)).astype(np.float32)
    dy = rng.standard_normal((12, 16, 67)).astype(np.float32)
    fast, plain = _both(monkeypatch, lambda: _run(m, x, dy, lengths))
    for a, b in zip(fast, plain):
        assert_close(a, b, 2e-5, "transposed loops against NumPy")
    monkeypatch.setattr(kernels, "enabled", True)
    y, (h, c) = m(x, lengths=lengths)
    for a, b in ((y, fast[0]), (h, fast[1]), (c, fast[2])):
        assert np.abs(a - b).max() <= 1e-6

"""The buffer pool never lets one call's results or live cache change under another call."""

import gc

import numpy as np

import lstmlab
from tests.conftest import assert_close


def test_live_caches_and_returned_arrays_stay_intact():
    m = lstmlab.numpy.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    rng = np.random.default_rng(0)
    # big enough that the buffers are pooled
    x1, x2 = rng.standard_normal((2, 300, 80, 3))
    dy = rng.standard_normal((300, 80, 8))
    ref = lstmlab.numpy.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    g1_ref = ref.backward(ref.forward(x1)[2], dy)[0]
    g2_ref = ref.backward(ref.forward(x2)[2], dy)[0]

    y1, _, c1 = m.forward(x1)
    y1_copy = y1.copy()
    y2, _, c2 = m.forward(x2)                     # both caches alive at once
    for _ in range(3):                            # inference calls recycle freed buffers
        m(rng.standard_normal((300, 80, 3)))
        gc.collect()
    g2 = m.backward(c2, dy)[0]
    g1 = m.backward(c1, dy)[0]
    assert np.array_equal(y1, y1_copy)
    for k in g1_ref:
        assert_close(g1[k], g1_ref[k], 1e-12, k)
        assert_close(g2[k], g2_ref[k], 1e-12, k)


def test_buffers_are_reused_after_the_cache_is_gone():
    m = lstmlab.numpy.LSTM(3, 64)
    x = np.zeros((200, 64, 3), np.float32)
    m(x)
    def address(a):
        return a.__array_interface__["data"][0]

    pooled = {address(a) for free in m._workspace._free.values() for a in free}
    assert pooled, "inference buffers should return to the pool"
    _, _, cache = m.forward(x)
    taken = {address(a) for dc in cache.layers[0] for a in dc.hist}
    assert taken & pooled


def test_pooled_arrays_start_on_a_cache_line():
    from lstmlab.numpy.workspace import Workspace, aligned_empty

    for shape, dtype in [((3, 5), np.float32), ((7,), np.float64), ((70_001,), np.int8)]:
        a = aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0
    ws = Workspace()
    a = ws.empty((300, 300), np.float32)
    ws.give_back([a])
    b = ws.empty((90_000,), np.float32)                   # the same memory, another shape
    assert b.ctypes.data == a.ctypes.data and b.ctypes.data % 64 == 0

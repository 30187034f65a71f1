"""The torch engine's whole-sequence Function (lstmlab.torch.sequence) equals the generic
path (autograd over cells.py's steps), the NumPy engine, and finite differences."""

import numpy as np
import pytest
import torch

import lstmlab
import lstmlab.torch as lt
from lstmlab.numpy import kernels
from lstmlab.torch import recurrent, sequence
from tests.conftest import assert_close

COVERED = [n for n, s in lstmlab.VARIANTS.items() if sequence.covers(s)]


def _grads(m, x, state, lengths=None):
    """y, final state and every gradient of a fixed random loss."""
    x = x.clone().requires_grad_(True)
    state = tuple(s.clone().requires_grad_(True) for s in state)
    y, final = m(x, state, lengths)
    g = torch.Generator().manual_seed(5)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in (y, *final))
    loss.backward()
    return [y, *final, x.grad, *(s.grad for s in state)] + [p.grad for p in m.parameters()]


def test_covers_every_lstm_variant_but_gate_recurrence():
    assert set(COVERED) == {n for n, s in lstmlab.VARIANTS.items()
                            if s.family == "lstm" and not s.gate_recurrence}
    assert "peephole" in COVERED and "layernorm" in COVERED and "fgr" not in COVERED


@pytest.mark.parametrize("name", COVERED)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("lengths", [None, [7, 3]])
def test_sequence_equals_generic_path(name, dtype, tol, lengths):
    fast = lt.LSTM(3, 5, num_layers=2, bidirectional=True, variant=name, seed=1).to(dtype)
    slow = lt.LSTM(3, 5, num_layers=2, bidirectional=True, variant=name, seed=1, fast=False).to(dtype)
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(7, 2, 3, generator=rng, dtype=dtype)
    state = tuple(torch.randn(4, 2, 5, generator=rng, dtype=dtype) for _ in range(2))
    for a, b in zip(_grads(fast, x, state, lengths), _grads(slow, x, state, lengths)):
        assert_close(a.detach().numpy(), b.detach().numpy(), tol, name)


@pytest.mark.parametrize("name", COVERED)
@pytest.mark.parametrize("lengths", [None, [11, 4, 1]])
def test_compiled_steps_equal_torch_steps(name, lengths, monkeypatch):
    """On the CPU in float32 the steps run on the compiled kernels; with them switched off, as
    torch operations: the two agree. H = 19, so that the vectorised loops and their remainders
    both run."""
    monkeypatch.setattr(kernels, "enabled", True)
    m = lt.LSTM(6, 19, num_layers=2, bidirectional=True, variant=name, seed=3)
    rng = torch.Generator().manual_seed(2)
    x = torch.randn(11, 3, 6, generator=rng)
    state = tuple(torch.randn(4, 3, 19, generator=rng) for _ in range(2))
    compiled = _grads(m, x, state, lengths)
    m.zero_grad()
    monkeypatch.setattr(kernels, "enabled", False)
    for a, b in zip(compiled, _grads(m, x, state, lengths)):
        assert_close(a.detach().numpy(), b.detach().numpy(), 3e-5, name)


@pytest.mark.parametrize("name", COVERED)
@pytest.mark.parametrize("lengths", [None, [11, 4, 1, 7]])
@pytest.mark.parametrize("parts", [[(0, 1), (1, 4)], [(0, 2), (2, 3), (3, 4)]])
def test_compiled_steps_in_parts_equal_one_part(name, lengths, parts, monkeypatch):
    """The compiled loops over the batch in parts, each on its own thread (kernels.row_parts,
    where torch's idle threads sleep), give what one part gives."""
    monkeypatch.setattr(kernels, "enabled", True)
    m = lt.LSTM(6, 19, num_layers=2, bidirectional=True, variant=name, seed=3)
    rng = torch.Generator().manual_seed(2)
    x = torch.randn(11, 4, 6, generator=rng)
    state = tuple(torch.randn(4, 4, 19, generator=rng) for _ in range(2))
    monkeypatch.setattr(kernels, "row_parts", lambda rows: [(0, rows)])
    whole = _grads(m, x, state, lengths)
    m.zero_grad()
    monkeypatch.setattr(kernels, "row_parts", lambda rows: parts)
    for a, b in zip(whole, _grads(m, x, state, lengths)):
        assert_close(a.detach().numpy(), b.detach().numpy(), 1e-5, name)


def test_row_parts_only_where_idle_threads_sleep(monkeypatch):
    """The batch is cut into torch's thread count of parts (at most one per row) only where
    torch's idle threads sleep; else one part."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert kernels.row_parts(32) == [(0, 10), (10, 21), (21, 32)]
    assert kernels.row_parts(2) == [(0, 1), (1, 2)]
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert kernels.row_parts(32) == [(0, 32)]
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")
    assert len(kernels.row_parts(32)) == 3
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    assert kernels.row_parts(32) == [(0, 32)]


def test_in_parallel_runs_every_call_and_raises_what_one_raises():
    done = []
    kernels.in_parallel([lambda k=k: done.append(k) for k in range(3)])
    assert sorted(done) == [0, 1, 2]

    def fails():
        raise ValueError("part 2")

    with pytest.raises(ValueError, match="part 2"):
        kernels.in_parallel([lambda: None, fails])


def test_compiled_steps_run_where_they_apply(monkeypatch):
    """CPU float32 uses the compiled steps; float64 and a disabled switch the torch operations."""
    monkeypatch.setattr(kernels, "enabled", True)
    calls = []
    real = kernels.variant_loops
    monkeypatch.setattr(kernels, "variant_loops", lambda: calls.append(1) or real())
    x = torch.randn(5, 2, 3, requires_grad=True)
    lt.LSTM(3, 4, variant="peephole")(x)[0].sum().backward()
    assert len(calls) == 2                                  # forward and backward
    lt.LSTM(3, 4, variant="peephole", dtype=np.float64)(x.double())[0].sum().backward()
    monkeypatch.setattr(kernels, "enabled", False)
    lt.LSTM(3, 4, variant="peephole")(x)[0].sum().backward()
    assert len(calls) == 2


@pytest.mark.parametrize("name", ["peephole", "cifg", "layernorm", "lstm1997"])
@pytest.mark.parametrize("lengths", [None, [9, 1, 5]])
def test_sequence_equals_numpy_engine(name, lengths):
    tm = lt.LSTM(4, 6, variant=name, dtype=np.float64, seed=2)
    nm = lstmlab.numpy.LSTM(4, 6, variant=name, dtype=np.float64, seed=2)
    x = np.random.default_rng(3).standard_normal((9, 3, 4))
    dy = np.random.default_rng(4).standard_normal((9, 3, 6))
    xt = torch.tensor(x, requires_grad=True)
    y, _ = tm(xt, lengths=lengths)
    (y * torch.tensor(dy)).sum().backward()
    y_np, _, cache = nm.forward(x, lengths=lengths)
    grads, dx, _ = nm.backward(cache, dy)
    assert_close(y.detach().numpy(), y_np, 1e-12, "y")
    assert_close(xt.grad.numpy(), dx, 1e-10, "dx")
    for name_, p in tm.named_parameters():
        assert_close(p.grad.numpy(), grads[name_], 1e-10, name_)


@pytest.mark.parametrize("name", ["peephole", "cifg", "layernorm", "nog", "noaf"])
@pytest.mark.parametrize("mask", [None, [[True, True], [True, False], [True, False], [False, False]]])
def test_sequence_gradcheck(name, mask):
    """Finite differences of the Function itself, every input and weight."""
    m = lt.LSTM(2, 3, variant=name, dtype=np.float64, seed=4)
    w = {base: getattr(m, pn).detach().clone().requires_grad_(True) for base, pn in m._param_names[0, 0]}
    spec = m.spec
    rng = torch.Generator().manual_seed(1)
    x, h0, c0 = (torch.randn(*s, generator=rng, dtype=torch.float64, requires_grad=True)
                 for s in ((4, 2, 2), (2, 3), (2, 3)))

    m_ = None if mask is None else torch.tensor(mask)[:, :, None]

    def f(x, h0, c0, *ws):
        y, (h, c) = sequence.run(spec, dict(zip(w, ws)), x, h0, c0, mask=m_)
        return y, h, c

    assert torch.autograd.gradcheck(f, (x, h0, c0, *w.values()), eps=1e-6, atol=1e-7)


def test_sequence_runs_where_it_applies(monkeypatch):
    """The peephole model runs the Function, also with lengths; zoneout, fast=False, a projection
    or FGR run the steps."""
    calls = []
    real = recurrent.run_layer
    monkeypatch.setattr(recurrent, "run_layer", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(5, 2, 3)
    lt.LSTM(3, 4, variant="peephole")(x)
    lt.LSTM(3, 4, variant="peephole")(x, lengths=[5, 3])
    assert calls == []
    lt.LSTM(3, 4, variant="peephole", zoneout=0.1)(x)
    lt.LSTM(3, 4, variant="peephole", fast=False)(x)
    lt.LSTM(3, 4, variant="peephole", proj_size=2)(x)
    lt.LSTM(3, 4, variant="fgr")(x)
    assert len(calls) == 4


def test_pooled_buffers_are_not_shared_between_live_graphs(monkeypatch):
    """The compiled path takes its buffers from the model's pool and gives them back when the
    graph is gone: two graphs alive at once (the same model run twice before one backward),
    a backward run twice (retain_graph) and a run from the filled pool all give exactly what
    fresh buffers give."""
    monkeypatch.setattr(kernels, "enabled", True)
    m = lt.LSTM(4, 80, variant="layernorm", seed=5)              # (T, B, 4H): over the pool's minimum
    rng = torch.Generator().manual_seed(3)
    xa, xb = (torch.randn(30, 8, 4, generator=rng) for _ in range(2))

    def grads():
        m.zero_grad()
        ya, yb = m(xa)[0], m(xb)[0]                              # both graphs alive
        loss = (ya * yb).sum() + (ya ** 2).sum()
        loss.backward(retain_graph=True)
        loss.backward()                                          # again: the saved buffers intact
        return [ya, yb] + [p.grad.clone() for p in m.parameters()]

    first, second = grads(), grads()                              # the second from the filled pool
    assert m._workspace._free                                     # the buffers came back
    monkeypatch.setattr(m, "_workspace", None)                    # fresh tensors
    for a, b, c in zip(first, second, grads()):
        assert torch.equal(a, c) and torch.equal(b, c)

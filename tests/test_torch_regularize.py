"""The regularisers of lstmlab.torch: identity in eval, reproducible in training, and each
one's defining property (a fixed recurrent-dropout mask, zoneout's expectation, one weight
mask per call, nn.LSTM's inter-layer dropout)."""

import numpy as np
import pytest
import torch

import lstmlab
import lstmlab.torch as lt
from lstmlab.families import FAMILIES
from tests.conftest import assert_close

TORCH = {name: getattr(lt, f.class_name) for name, f in FAMILIES.items()}  # by family
REGULARISERS = {"dropout": 0.3, "recurrent_dropout": 0.3, "zoneout": 0.3, "weight_drop": 0.3}


def _model(name, **kw):
    spec = lstmlab.variant(name)
    kw.setdefault("dtype", np.float64)
    return TORCH[spec.family](3, 5, variant=spec, **kw)


def _x(T=6, B=4, I=3, seed=0):
    return torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("name", ["lstm", "peephole", "gru", "rnn_tanh"])
def test_eval_mode_dropouts_are_identity(name, fast):
    kw = dict(num_layers=2, bidirectional=True, seed=4, fast=fast)
    plain = _model(name, **kw).eval()
    reg = _model(name, dropout=0.4, recurrent_dropout=0.4, weight_drop=0.4, **kw).eval()
    assert reg.fast_path == (fast and name != "peephole")     # eval: no regulariser is active
    x = _x()
    y0, s0 = plain(x, lengths=[6, 3, 5, 1])
    y1, s1 = reg(x, lengths=[6, 3, 5, 1])
    assert torch.equal(y0, y1)
    assert all(torch.equal(a, b) for a, b in zip(_tuple(s0), _tuple(s1)))


@pytest.mark.parametrize("name", ["lstm", "peephole", "fgr", "gru", "rnn_relu"])
def test_zoneout_in_eval_is_the_expectation(name):
    """s_t = p * s_{t-1} + (1 - p) * s_new for h and c (not for FGR's gate state)."""
    p = 0.35
    plain, zoned = _model(name, seed=2).eval(), _model(name, seed=2, zoneout=p).eval()
    assert not zoned.fast_path
    x = _x(seed=1)
    with torch.no_grad():
        y, final = zoned(x)
        s = plain.initial_state(4)
        ys = []
        for t in range(x.shape[0]):
            _, new = plain.step(x[t], s)
            s, new = _tuple(s), _tuple(new)
            s = tuple(p * a + (1 - p) * b for a, b in zip(s[:2], new[:2])) + new[2:]
            s = s if len(s) > 1 else s[0]
            ys.append(_tuple(s)[0][-1])                  # the top layer's h
    assert_close(y.numpy(), torch.stack(ys).numpy(), 1e-12, "y")
    for a, b in zip(_tuple(final), _tuple(s), strict=True):
        assert_close(a.numpy(), b.numpy(), 1e-12, "state")


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("reg", list(REGULARISERS))
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_training_is_random_and_reproducible(name, reg, fast):
    m = _model(name, num_layers=2, bidirectional=True, seed=1, fast=fast, **{reg: REGULARISERS[reg]})
    x = _x()
    m.train()
    torch.manual_seed(0)
    y1, s1 = m(x, lengths=[6, 2, 5, 6])
    torch.manual_seed(0)
    y2, s2 = m(x, lengths=[6, 2, 5, 6])
    y3, _ = m(x, lengths=[6, 2, 5, 6])                        # the generator has moved on
    assert torch.equal(y1, y2)
    assert all(torch.equal(a, b) for a, b in zip(_tuple(s1), _tuple(s2)))
    assert not torch.equal(y1, y3)
    (y1.sum() + sum(s.sum() for s in _tuple(s1))).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()
    y_eval, _ = m(x, lengths=[6, 2, 5, 6])
    assert not torch.allclose(y1, y_eval)
    assert torch.equal(y1[2:, 1], torch.zeros_like(y1[2:, 1]))  # still zero past the end


def _doubling_rnn(**kw):
    """h_t = relu(1 + M h_{t-1}) per unit: stays at 1 where the recurrent input is dropped,
    and runs 1, 3, 7, 15, ... where it is kept (x 2 by inverted dropout at p = 0.5)."""
    m = lt.RNN(1, 8, variant="rnn_relu", dtype=np.float64, **kw)
    with torch.no_grad():
        m.weight_ih_l0.zero_()
        m.weight_hh_l0.copy_(torch.eye(8))
        m.bias_ih_l0.fill_(1.0)
        m.bias_hh_l0.zero_()
    return m.train()


def _dropped_units(y):
    """(B, H) True where a unit's recurrent input was dropped at every step; fails if a unit
    was dropped at some steps and kept at others."""
    T = y.shape[0]
    dropped = (y == 1.0).all(dim=0)
    kept = (y == (2.0 ** torch.arange(1, T + 1, dtype=y.dtype) - 1)[:, None, None]).all(dim=0)
    assert torch.all(dropped ^ kept), "a mask changed over time"
    return dropped


def test_recurrent_dropout_mask_is_fixed_over_time_and_per_sequence():
    m = _doubling_rnn(recurrent_dropout=0.5)
    assert not m.fast_path                                    # in training the kernel lacks it
    torch.manual_seed(3)
    y, _ = m(torch.zeros(6, 8, 1, dtype=torch.float64))
    dropped = _dropped_units(y)
    assert dropped.any() and not dropped.all()
    assert not (dropped == dropped[0]).all()                  # each sequence has its own mask
    y2, _ = m(torch.zeros(6, 8, 1, dtype=torch.float64))
    assert not torch.equal(_dropped_units(y2), dropped)       # a new mask each call


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_weight_drop_is_one_mask_per_call_shared_by_the_batch(fast):
    m = _doubling_rnn(weight_drop=0.5, fast=fast)
    torch.manual_seed(5)
    y, _ = m(torch.zeros(6, 8, 1, dtype=torch.float64))
    dropped = _dropped_units(y)                               # the diagonal of R dropped or not
    assert dropped.any() and not dropped.all()
    assert (dropped == dropped[0]).all()                      # one weight mask for all sequences


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_weight_drop_fast_path_equals_generic_path(name):
    """Both paths draw the same weight masks from the same seed, so they agree in training."""
    kw = dict(num_layers=2, bidirectional=True, seed=3, weight_drop=0.5)
    fast, slow = _model(name, **kw).train(), _model(name, fast=False, **kw).train()
    assert fast.fast_path and not slow.fast_path
    x = _x()
    out = []
    for m in (fast, slow):
        torch.manual_seed(9)
        y, s = m(x, lengths=[6, 1, 4, 6])
        (y.sum() + _tuple(s)[0].sum()).backward()
        out.append((y, {k: p.grad for k, p in m.named_parameters()}))
    assert_close(out[0][0].detach().numpy(), out[1][0].detach().numpy(), 1e-12, "y")
    for k, g in out[0][1].items():
        assert_close(g.numpy(), out[1][1][k].numpy(), 1e-12, k)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_inter_layer_dropout_equals_torch_nn(name, fast):
    """Same seed, same masks: dropout between layers is nn.LSTM's, on both paths (CPU)."""
    m = _model(name, num_layers=3, bidirectional=True, dropout=0.4, fast=fast, dtype=np.float32)
    ref = (torch.nn.LSTM if name == "lstm" else torch.nn.GRU)(3, 5, num_layers=3, bidirectional=True,
                                                              dropout=0.4)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(6, 4, 3, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(11)
    y, s = m(x)
    torch.manual_seed(11)
    y_ref, s_ref = ref(x)
    assert_close(y.detach().numpy(), y_ref.detach().numpy(), 1e-5, "y")
    for a, b in zip(_tuple(s), _tuple(s_ref), strict=True):
        assert_close(a.detach().numpy(), b.detach().numpy(), 1e-5, "state")
    m.eval()
    assert not torch.allclose(m(x)[0], y)


def test_zoneout_in_training_keeps_about_p_of_the_units():
    m = lt.LSTM(3, 16, zoneout=0.5, dtype=np.float64).train()
    torch.manual_seed(1)
    y, _ = m(torch.randn(10, 32, 3, dtype=torch.float64))
    same = (y[1:] == y[:-1]).double().mean().item()           # h_t == h_{t-1} exactly: zoned out
    assert 0.45 < same < 0.55

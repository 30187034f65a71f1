"""Initialisation: PyTorch's default range, the forget-gate bias, orthogonal and identity R."""

import numpy as np
import pytest

import lstmlab


def test_default_is_uniform_in_pytorch_range():
    m = lstmlab.numpy.LSTM(10, 64, num_layers=2, seed=0)
    for v in m.params.values():
        assert np.abs(v).max() <= 1 / 8 and np.abs(v).max() > 0.12
    assert lstmlab.numpy.LSTM(10, 64, seed=0).params["weight_ih_l0"].dtype == np.float32
    a, b = lstmlab.numpy.LSTM(3, 4, seed=5), lstmlab.numpy.LSTM(3, 4, seed=5)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


def test_forget_bias_sets_the_total_forget_bias():
    m = lstmlab.numpy.LSTM(3, 4, forget_bias=1.0, dtype=np.float64)
    f = slice(4, 8)
    assert np.all(m.params["bias_ih_l0"][f] + m.params["bias_hh_l0"][f] == 1.0)
    # the forget gates then start mostly open: sigma(1 + noise) > 0.6 for small inputs
    tr = m.trace(np.zeros((3, 1, 3)))
    assert tr["l0"]["f"].min() > 0.6


def test_forget_bias_on_coupled_gates_closes_the_input_gate():
    m = lstmlab.numpy.LSTM(3, 4, variant="cifg", forget_bias=2.0, dtype=np.float64)
    i = slice(0, 4)
    assert np.all(m.params["bias_ih_l0"][i] + m.params["bias_hh_l0"][i] == -2.0)
    with pytest.raises(ValueError, match="has no forget gate"):
        lstmlab.numpy.LSTM(3, 4, variant="nfg", forget_bias=1.0)


def test_orthogonal_and_identity_recurrent_weights():
    m = lstmlab.numpy.LSTM(3, 6, recurrent_init="orthogonal", dtype=np.float64)
    R = m.params["weight_hh_l0"]
    for b in range(4):
        block = R[b * 6:(b + 1) * 6]
        assert np.allclose(block @ block.T, np.eye(6), atol=1e-12)
    p = lstmlab.numpy.LSTM(3, 6, proj_size=2, recurrent_init="orthogonal", dtype=np.float64)
    block = p.params["weight_hh_l0"][:6]                      # (6, 2): orthonormal columns
    assert np.allclose(block.T @ block, np.eye(2), atol=1e-12)
    irnn = lstmlab.numpy.RNN(3, 5, variant="rnn_relu", recurrent_init="identity")
    assert np.array_equal(irnn.params["weight_hh_l0"], np.eye(5, dtype=np.float32))

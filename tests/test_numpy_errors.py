"""A user's mistake raises ValueError naming what was expected and what came."""

import numpy as np
import pytest
import torch

import lstmlab


@pytest.fixture
def lstm():
    return lstmlab.numpy.LSTM(8, 4, num_layers=2, dtype=np.float64)


def test_wrong_feature_count(lstm):
    with pytest.raises(ValueError, match="x has 7 features, the model expects 8"):
        lstm(np.zeros((5, 2, 7)))


@pytest.mark.parametrize("shape", [(8,), (5, 2, 3, 8)])
def test_wrong_number_of_dimensions(lstm, shape):
    with pytest.raises(ValueError, match=f"got {len(shape)}-D with shape"):
        lstm(np.zeros(shape))


def test_empty_sequence(lstm):
    with pytest.raises(ValueError, match="at least one step"):
        lstm(np.zeros((0, 2, 8)))


def test_state_of_the_wrong_shape(lstm):
    h0, c0 = np.zeros((1, 2, 4)), np.zeros((2, 2, 4))
    with pytest.raises(ValueError, match=r"state h0 has shape \(1, 2, 4\), expected \(2, 2, 4\)"):
        lstm(np.zeros((5, 2, 8)), (h0, c0))
    with pytest.raises(ValueError, match="must be a tuple \\(h0, c0\\)"):
        lstm(np.zeros((5, 2, 8)), c0)
    gru = lstmlab.numpy.GRU(8, 4)
    with pytest.raises(ValueError, match="one array h0 for a GRU"):
        gru(np.zeros((5, 2, 8)), (c0, c0))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_the_input(lstm, value):
    x = np.zeros((5, 2, 8))
    x[3, 1, 6] = value
    with pytest.raises(ValueError, match=r"x contains 1 NaN or inf value\(s\), first at index \(3, 1, 6\)"):
        lstm(x)


def test_non_numeric_input(lstm):
    with pytest.raises(ValueError, match="x must hold numbers"):
        lstm(np.full((5, 2, 8), "a"))


@pytest.mark.parametrize("lengths,match", [([5], "one entry per sequence \\(2\\)"),
                                           ([6, 2], "must lie in 1..5"),
                                           ([0, 2], "must lie in 1..5"),
                                           ([2.5, 1], "whole numbers")])
def test_bad_lengths(lstm, lengths, match):
    with pytest.raises(ValueError, match=match):
        lstm(np.zeros((5, 2, 8)), lengths=lengths)


def test_unknown_variant_and_wrong_family():
    with pytest.raises(ValueError, match="unknown variant 'peep'"):
        lstmlab.numpy.LSTM(3, 4, variant="peep")
    with pytest.raises(ValueError, match="'gru' is a GRU variant; use lstmlab.numpy.GRU"):
        lstmlab.numpy.LSTM(3, 4, variant="gru")
    with pytest.raises(ValueError, match="proj_size must be 0 or below hidden_size"):
        lstmlab.numpy.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="hidden_size must be an integer >= 1, got 0"):
        lstmlab.numpy.LSTM(3, 0)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        lstmlab.numpy.LSTM(3, 4, dtype=np.int32)


def test_load_state_dict_missing_unknown_misshaped():
    ours = lstmlab.numpy.LSTM(3, 4)
    sd = {k: v.detach().numpy() for k, v in torch.nn.LSTM(3, 4).state_dict().items()}
    before = {k: v.copy() for k, v in ours.params.items()}

    missing = dict(sd)
    del missing["bias_hh_l0"]
    with pytest.raises(ValueError, match="missing bias_hh_l0"):
        ours.load_state_dict(missing)
    with pytest.raises(ValueError, match="unknown weight_hh_l1"):
        ours.load_state_dict(dict(sd, weight_hh_l1=sd["weight_hh_l0"]))
    with pytest.raises(ValueError, match=r"weight_ih_l0 has shape \(16, 5\), the model expects \(16, 3\)"):
        ours.load_state_dict(dict(sd, weight_ih_l0=np.zeros((16, 5))))
    with pytest.raises(ValueError, match="bias_ih_l0 contains 1 NaN"):
        ours.load_state_dict(dict(sd, bias_ih_l0=np.r_[np.nan, np.zeros(15)]))
    # a refused state dict leaves the model as it was
    assert all(np.array_equal(before[k], ours.params[k]) for k in before)


def test_wrong_dy_shape():
    m = lstmlab.numpy.GRU(3, 4)
    y, _, cache = m.forward(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dy has shape \(5, 2, 3\), expected \(5, 2, 4\)"):
        m.backward(cache, np.zeros((5, 2, 3)))

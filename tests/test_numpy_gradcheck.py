"""Every variant's backward pass agrees with central finite differences (float64).

2 layers, bidirectional, sequences of different lengths, a random initial state; the checked
gradients are those of every weight, the input and the initial state.
"""

import pytest

import lstmlab
from lstmlab.numpy.gradcheck import TOLERANCE, gradcheck, relative_error


@pytest.mark.parametrize("name", list(lstmlab.VARIANTS))
def test_backward_matches_finite_differences(name):
    result = gradcheck(name)
    assert {"x", "h0"} <= set(result.errors)
    assert result.worst < TOLERANCE, f"{result.worst_tensor}: {result.worst:.2e}"


@pytest.mark.parametrize("name,flags", [("peephole", {}), ("cifg", {"peepholes": True}),
                                        ("layernorm", {"peepholes": True}),
                                        ("fgr", {"coupled_gates": True})])
def test_composed_flags_and_projection(name, flags):
    """Flags compose, and the LSTM projection (proj_size) is differentiated too."""
    result = gradcheck(lstmlab.variant(name, **flags), proj_size=2)
    assert any(k.startswith("weight_hr") for k in result.errors)
    assert result.worst < TOLERANCE, f"{result.worst_tensor}: {result.worst:.2e}"


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    """The checker can fail: break one gradient and it must notice."""
    from lstmlab.numpy import cells

    original = cells.LSTMCell.param_grads

    def off_by_a_bit(self, w, da, hist, cache, grads):
        original(self, w, da, hist, cache, grads)
        grads["bias_hh"] = grads["bias_hh"] * 1.001

    monkeypatch.setattr(cells.LSTMCell, "param_grads", off_by_a_bit)
    result = gradcheck("lstm", num_layers=1, bidirectional=False)
    assert not result.passed and result.worst_tensor.startswith("bias_hh")


def test_relative_error_definition():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert relative_error([1.0, 2.0], [1.0, 2.002]) == pytest.approx(0.002 / 2.002)

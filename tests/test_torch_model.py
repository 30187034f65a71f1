"""lstmlab.torch.SequenceModel builds the network of lstmlab.numpy's: names, initial weights
and outputs, for feature and token inputs and both read-outs."""

import numpy as np
import pytest
import torch

import lstmlab.torch as lt
from lstmlab.config import ModelConfig
from lstmlab.numpy.model import SequenceModel as NumpySequenceModel
from lstmlab.train.engines import predictor_for
from tests.conftest import assert_close


def _config(variant, vocab, readout, **kw):
    return ModelConfig(input_size=3, output_size=2, variant=variant, hidden_size=4, num_layers=2,
                       bidirectional=True, vocab_size=vocab, readout=readout, dtype="float64", **kw)


@pytest.mark.parametrize("vocab,readout", [(0, "sequence"), (7, "last")])
@pytest.mark.parametrize("variant", ["lstm", "peephole", "cifg+peepholes"])
def test_equals_the_numpy_sequence_model(variant, vocab, readout):
    c = _config(variant, vocab, readout)
    ref, m = NumpySequenceModel(c, seed=3), lt.SequenceModel(c, seed=3)
    sd = m.state_dict()
    assert list(sd) == list(ref.params)
    for k, v in ref.params.items():
        assert np.array_equal(sd[k].numpy(), v), k
    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, (5, 3)) if vocab else rng.standard_normal((5, 3, 3))
    out, _ = m(x, lengths=[5, 2, 3])
    expected, _ = ref(x, lengths=[5, 2, 3])
    assert out.shape == ((3, 2) if readout == "last" else (5, 3, 2))
    assert_close(out.detach().numpy(), expected, 1e-12, "outputs")


@pytest.mark.parametrize("variant", ["gru", "rnn_relu", "layernorm"])
def test_regularised_models_build_and_train(variant):
    c = _config(variant, 0, "last", dropout=0.2, recurrent_dropout=0.2, zoneout=0.1, weight_drop=0.2)
    m = lt.SequenceModel(c, seed=1).train()
    assert m.rnn.zoneout == 0.1 and m.rnn.dropout == 0.2
    out, _ = m(torch.randn(5, 3, 3, dtype=torch.float64))
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_bad_ids_and_forget_bias_are_clear_errors():
    m = lt.SequenceModel(_config("lstm", 7, "sequence"))
    with pytest.raises(ValueError, match=r"ids must lie in 0..6, got 0..7"):
        m(np.array([[0, 7]]))
    with pytest.raises(ValueError, match="ids must be integers"):
        m(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="forget_bias apply to LSTM variants only"):
        _config("gru", 0, "sequence", forget_bias=1.0)


@pytest.mark.parametrize("variant,bidirectional,proj", [
    ("lstm", True, 0), ("lstm", True, 3), ("gru", True, 0), ("lstm", False, 0), ("rnn_tanh", True, 0)])
@pytest.mark.parametrize("readout", ["sequence", "mean"])
def test_training_on_the_padded_batch_equals_the_packed_one(variant, bidirectional, proj, readout):
    """Training runs a padded batch on the fused kernel instead of packing it (each direction
    reads each sequence's own steps first): the same outputs and gradients as packing."""
    c = ModelConfig(input_size=3, output_size=2, variant=variant, hidden_size=5, num_layers=2,
                    bidirectional=bidirectional, proj_size=proj, readout=readout, dtype="float64")
    m = lt.SequenceModel(c, seed=2).train()
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((7, 4, 3)))
    lengths = torch.tensor([7, 2, 5, 1])
    weight = torch.from_numpy(np.random.default_rng(2).standard_normal((7, 4, 2) if readout == "sequence"
                                                                      else (4, 2)))
    results = []
    for pad in (True, False):
        m.zero_grad()
        m._pad_instead_of_pack = lambda final, pad=pad: pad      # the padded path, or packing
        out, _ = m(x, lengths=lengths)
        (out * weight).sum().backward()
        if readout == "sequence":                                # past each end: not read
            out = out * (torch.arange(7)[:, None] < lengths)[..., None]
        results.append((out.detach().numpy(), {k: p.grad.numpy().copy() for k, p in m.named_parameters()}))
    (out_pad, g_pad), (out_packed, g_packed) = results
    assert_close(out_pad, out_packed, 1e-12, "outputs")
    for k in g_packed:
        assert_close(g_pad[k], g_packed[k], 1e-12, k)


@pytest.mark.parametrize("readout", ["sequence", "mean", "last"])
def test_scoring_without_the_final_state_gives_the_same_outputs(readout):
    """A predictor told that the final state is not wanted (final=False, as the tasks' scoring
    says) may skip packing: the same outputs, and no state instead of a wrong one."""
    c = ModelConfig(input_size=3, output_size=2, hidden_size=5, num_layers=2, bidirectional=True,
                    readout=readout, dtype="float64")
    run = predictor_for(lt.SequenceModel(c, seed=4)).run
    x = np.random.default_rng(3).standard_normal((7, 4, 3))
    lengths = np.array([7, 2, 5, 1])
    out, state = run(x, lengths=lengths)
    fast, none = run(x, lengths=lengths, final=False)
    if readout == "sequence":
        keep = (np.arange(7)[:, None] < lengths)[..., None]
        out, fast = out * keep, fast * keep
    assert_close(fast, out, 1e-12, "outputs")
    assert none is None and state is not None

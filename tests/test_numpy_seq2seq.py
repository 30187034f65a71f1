"""The attention encoder-decoder: NumPy backward against finite differences, NumPy against
torch (logits, attention and every gradient), greedy decoding against teacher forcing, and
save/load in both engines."""

import numpy as np
import pytest

from lstmlab.config import ModelConfig
from lstmlab.numpy.gradcheck import TOLERANCE, relative_error
from lstmlab.numpy.seq2seq import BOS, EOS, PAD, Seq2Seq
from tests.conftest import assert_close

SRC_V, TGT_V, S, T, B = 7, 6, 5, 4, 3
CASES = [  # variant, layers, bidirectional, proj_size
    ("lstm", 2, True, 0),
    ("lstm", 1, False, 0),
    ("lstm", 1, True, 1),
    ("gru", 2, True, 0),
    ("peephole", 1, True, 0),
    ("fgr", 1, True, 0),
    ("rnn_tanh", 1, True, 0),
]


def config(variant="lstm", layers=1, bi=True, proj=0, dtype="float64", hidden=2, **kw):
    return ModelConfig(input_size=3, output_size=TGT_V, vocab_size=SRC_V, hidden_size=hidden,
                       num_layers=layers, bidirectional=bi, proj_size=proj, variant=variant,
                       dtype=dtype, architecture="seq2seq", **kw)


def problem(seed=0):
    """Source ids with different lengths (one full), decoder inputs, a random linear loss."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, SRC_V, size=(S, B))
    lengths = np.array([S, 2, 4])
    x[np.arange(S)[:, None] >= lengths] = PAD
    y_in = rng.integers(0, TGT_V, size=(T, B))
    w = rng.standard_normal((T, B, TGT_V))
    return x, lengths, y_in, w


@pytest.mark.parametrize("variant,layers,bi,proj", CASES)
def test_backward_matches_finite_differences(variant, layers, bi, proj):
    model = Seq2Seq(config(variant, layers, bi, proj), seed=1)
    rng = np.random.default_rng(5)
    for v in model.params.values():                   # weights larger than the init: a harder test
        v[...] = rng.uniform(-0.6, 0.6, v.shape)
    # a large W_a makes the attention far from uniform, so its gradient is not tiny (central
    # differences of a tiny gradient are all rounding error)
    model.params["attention.weight"][...] = rng.uniform(-3, 3, (model.width, model.width))
    x, lengths, y_in, w = problem()
    logits, attn, cache = model.forward(x, y_in, lengths)
    assert logits.shape == (T, B, TGT_V) and attn.shape == (B, T, S)
    assert np.allclose(attn.sum(-1), 1.0) and np.all(attn[1, :, 2:] == 0)   # nothing past the end
    grads, _ = model.backward(cache, w)
    assert set(grads) == set(model.params)
    eps = 1e-5
    for name, tensor in model.params.items():
        numeric = np.empty_like(tensor)
        flat, nflat = tensor.reshape(-1), numeric.reshape(-1)
        for j in range(flat.size):
            keep = flat[j]
            flat[j] = keep + eps
            up = float(np.sum(w * model(x, y_in, lengths)[0]))
            flat[j] = keep - eps
            down = float(np.sum(w * model(x, y_in, lengths)[0]))
            flat[j] = keep
            nflat[j] = (up - down) / (2 * eps)
        if name == "encoder.embedding.weight":        # PAD past the ends is never read
            assert np.all(grads[name][PAD] == 0)
        err = relative_error(grads[name], numeric)
        assert err < TOLERANCE, f"{variant} {name}: relative error {err:.2e}"


def test_parameter_names():
    model = Seq2Seq(config(layers=2, bi=True, hidden=3))
    names = set(model.params)
    for n in ("encoder.embedding.weight", "encoder.rnn.weight_ih_l1_reverse",
              "decoder.embedding.weight", "decoder.rnn.weight_hh_l1", "attention.weight",
              "combine.weight", "combine.bias", "head.weight", "head.bias"):
        assert n in names
    assert model.params["decoder.rnn.weight_hh_l0"].shape == (4 * 6, 6)   # decoder: 2 x 3 units
    assert model.params["combine.weight"].shape == (6, 12)
    assert not any(n.startswith("decoder.rnn.") and "reverse" in n for n in names)


@pytest.mark.parametrize("variant,layers,bi,proj", CASES)
def test_numpy_equals_torch(variant, layers, bi, proj):
    torch = pytest.importorskip("torch")
    from lstmlab.torch.seq2seq import Seq2Seq as TorchSeq2Seq

    c = config(variant, layers, bi, proj, hidden=3)
    ours, theirs = Seq2Seq(c, seed=4), TorchSeq2Seq(c, seed=4)
    sd = theirs.state_dict()
    assert list(sd) == list(ours.params)              # the same names in the same order
    for k, v in ours.params.items():                  # the same seeded initial weights
        assert np.array_equal(sd[k].numpy(), v), k
    rng = np.random.default_rng(2)                    # then other weights, loaded into both
    ours.load_state_dict({k: rng.uniform(-0.5, 0.5, v.shape) for k, v in ours.params.items()})
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.params.items()})
    x, lengths, y_in, w = problem(3)
    logits, attn, cache = ours.forward(x, y_in, lengths)
    grads, _ = ours.backward(cache, w)
    t_logits, t_attn = theirs(x, y_in, lengths)
    (t_logits * torch.from_numpy(w)).sum().backward()
    assert_close(t_logits.detach().numpy(), logits, 1e-10, "logits")
    assert_close(t_attn.detach().numpy(), attn, 1e-10, "attention")
    for name, p in theirs.named_parameters():
        assert_close(p.grad.numpy(), grads[name], 1e-10, name)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_greedy_decode_equals_teacher_forcing_on_its_own_outputs(engine):
    x, lengths, _, _ = problem(6)
    c = config("lstm", 2, True, hidden=4)
    ref = Seq2Seq(c, seed=3)
    rng = np.random.default_rng(0)
    ref.load_state_dict({k: rng.uniform(-1.5, 1.5, v.shape) for k, v in ref.params.items()})
    ref.params["head.bias"][EOS] += 1.0               # one sequence ends early, two run to max_len
    if engine == "numpy":
        run, decode = ref, ref.decode
    else:
        torch = pytest.importorskip("torch")
        from lstmlab.torch.seq2seq import Seq2Seq as TorchSeq2Seq

        model = TorchSeq2Seq(c, seed=3)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ref.params.items()})
        run = lambda *a: tuple(t.detach().numpy() for t in model(*a))       # noqa: E731
        decode = lambda *a: tuple(t.numpy() for t in model.decode(*a))      # noqa: E731
    ids, attn = decode(x, lengths, 6)
    assert ids.shape == (6, B) and attn.shape == (B, 6, S)
    assert (ids == EOS).any(axis=0).tolist() == [True, False, False]
    y_in = np.concatenate([np.full((1, B), BOS), ids[:-1]])
    logits, tf_attn = run(x, y_in, lengths)
    for b in range(B):
        ends = np.flatnonzero(ids[:, b] == EOS)
        n = ends[0] + 1 if ends.size else len(ids)                    # up to its first EOS
        assert np.array_equal(logits[:n, b].argmax(-1), ids[:n, b])
        assert_close(attn[b, :n], tf_attn[b, :n], 1e-10, "attention")
        assert np.all(ids[n:, b] == PAD) and np.all(attn[b, n:] == 0)


def test_numpy_decode_matches_torch_decode():
    pytest.importorskip("torch")
    from lstmlab.torch.seq2seq import Seq2Seq as TorchSeq2Seq

    c = config("gru", 1, True, hidden=4)
    x, lengths, _, _ = problem(8)
    a_ids, a_attn = Seq2Seq(c, seed=9).decode(x, lengths, 5)
    b_ids, b_attn = TorchSeq2Seq(c, seed=9).decode(x, lengths, 5)
    assert np.array_equal(a_ids, b_ids.numpy())
    assert_close(b_attn.numpy(), a_attn, 1e-10, "attention")


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_save_load_round_trip(tmp_path, engine):
    import lstmlab

    if engine == "torch":
        pytest.importorskip("torch")
        from lstmlab.torch.seq2seq import Seq2Seq as Cls
    else:
        Cls = Seq2Seq
    c = config("lstm", 1, True, dtype="float32", hidden=3)
    model = Cls(c, seed=11)
    path = lstmlab.save(model, tmp_path / "m.safetensors")
    x, lengths, y_in, _ = problem(1)
    want = Seq2Seq(c, seed=11)(x, y_in, lengths)[0]
    for other in ("numpy", "torch"):                  # a file from one engine loads into both
        back = lstmlab.load(path, engine=other)
        assert type(back).__name__ == "Seq2Seq" and back.config == c
        got = back(x, y_in, lengths)[0]
        got = got.detach().numpy() if hasattr(got, "detach") else got
        assert_close(got, want, 1e-6, other)


def test_config_checks():
    with pytest.raises(ValueError, match="architecture must be one of"):
        ModelConfig(input_size=3, output_size=4, architecture="transformer")
    with pytest.raises(ValueError, match="seq2seq model reads token ids"):
        ModelConfig(input_size=3, output_size=4, architecture="seq2seq")
    with pytest.raises(ValueError, match="only in the torch engine"):
        Seq2Seq(config(dropout=0.1))

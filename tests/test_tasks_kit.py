"""The tasks' shared kit (lstmlab.tasks.kit): vocabularies, splits, padding, batched
evaluation and classification metrics, tested on their own."""

import matplotlib.image
import numpy as np
import pytest

from lstmlab.config import ModelConfig
from lstmlab.numpy.model import SequenceModel
from lstmlab.tasks import kit
from lstmlab.train.engines import predictor_for


# --- vocabularies ----------------------------------------------------------------------------
def test_vocabulary_round_trip_with_reserved_ids():
    v = kit.Vocabulary("abc", reserved=("<pad>", "<unk>"))
    assert len(v) == 5 and v.tokens[:2] == ["<pad>", "<unk>"] and v.ids["a"] == 2
    ids = v.encode("cab", unknown=1)
    assert ids.dtype == np.int64 and ids.tolist() == [4, 2, 3]
    assert "".join(v.decode(ids)) == "cab"
    assert v.encode("axb", unknown=1, dtype=np.int32).tolist() == [2, 1, 3]
    # reserved and out-of-range ids decode as reserved_as; `stop` cuts (and is left out)
    assert v.decode([2, 0, 1, 9, 3], reserved_as="?") == ["a", "?", "?", "?", "b"]
    assert v.decode([2, 3, 1, 4], stop=1) == ["a", "b"]
    with pytest.raises(KeyError):                 # no unknown id: the caller checked first
        v.encode("ax")


def test_most_frequent_keeps_the_limit_ties_in_sorted_order():
    texts = [["b", "a", "c", "a"], ["c", "d", "b"], ["e"]]
    v = kit.Vocabulary.most_frequent(texts, 3, reserved=("<pad>",))
    assert v.tokens == ["<pad>", "a", "b", "c"]   # a, b, c twice (ties sorted); d, e once
    assert kit.Vocabulary.most_frequent(iter(texts), 10).tokens == ["a", "b", "c", "d", "e"]


# --- splits ----------------------------------------------------------------------------------
def test_stratified_split_keeps_each_class_share():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    rng = np.random.default_rng(5)
    labels = labels[rng.permutation(labels.size)]
    train, valid, test = kit.stratified_split(labels, np.random.default_rng(1),
                                              lambda n: (n - 2 * (n // 10), n // 10, n // 10))
    assert np.array_equal(np.sort(np.concatenate([train, valid, test])), np.arange(100))
    for part, share in ((train, 0.8), (valid, 0.1), (test, 0.1)):
        assert np.all(np.diff(part) > 0) and part.dtype == np.int64
        assert np.bincount(labels[part], minlength=3).tolist() == \
            [round(share * 50), round(share * 30), round(share * 20)]
    again = kit.stratified_split(labels, np.random.default_rng(1),
                                 lambda n: (n - 2 * (n // 10), n // 10, n // 10))
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, valid, test)))


# --- padding ---------------------------------------------------------------------------------
def test_pad_features_and_ids():
    xs = [np.ones((3, 2)), 2 * np.ones((1, 2)), 3 * np.ones((4, 2))]
    x, lengths = kit.pad(xs)
    assert x.shape == (4, 3, 2) and x.dtype == np.float64
    assert lengths.tolist() == [3, 1, 4] and lengths.dtype == np.int64
    for j, a in enumerate(xs):
        assert np.array_equal(x[:len(a), j], a) and not x[len(a):, j].any()   # zeros past the end
    ids, lengths = kit.pad([np.array([5, 6]), np.array([7])], np.int64)
    assert ids.dtype == np.int64 and ids.tolist() == [[5, 7], [6, 0]] and lengths.tolist() == [2, 1]


def test_pad_next_shifts_targets_by_one_and_masks_the_padding():
    x, y, mask, lengths = kit.pad_next([np.array([1, 2, 3, 4]), np.array([5, 6])])
    assert x.shape == y.shape == mask.shape == (3, 2) and mask.dtype == bool
    assert x[:, 0].tolist() == [1, 2, 3] and y[:, 0].tolist() == [2, 3, 4]
    assert x[:, 1].tolist() == [5, 0, 0] and y[:, 1].tolist() == [6, 0, 0]
    assert mask.T.tolist() == [[True, True, True], [True, False, False]]
    assert lengths.tolist() == [3, 1]


# --- batched evaluation ----------------------------------------------------------------------
def _predictor(readout, **settings):
    config = ModelConfig(input_size=3, output_size=4, hidden_size=6, readout=readout,
                         dtype="float64", **settings)
    return predictor_for(SequenceModel(config))


@pytest.mark.parametrize("readout", ["last", "sequence", "mean"])
def test_run_batched_equals_one_call(readout):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 23, 3))
    lengths = rng.integers(1, 10, size=23)
    p = _predictor(readout)
    whole, _ = p.run(x, lengths=lengths)
    got = kit.run_batched(p, x, lengths, size=5)
    assert got.dtype == np.float64 and got.shape == np.shape(whole)
    np.testing.assert_allclose(got, whole, rtol=1e-12, atol=1e-14)
    if readout != "sequence":            # by length: the same numbers, in the input's order
        np.testing.assert_allclose(kit.run_batched(p, x, lengths, size=5, by_length=True),
                                   whole, rtol=1e-12, atol=1e-14)


def test_run_batched_takes_token_ids():
    p = _predictor("sequence", vocab_size=7)
    x = np.random.default_rng(1).integers(0, 7, size=(6, 11))
    whole, _ = p.run(x)
    np.testing.assert_allclose(kit.run_batched(p, x, size=4), whole, rtol=1e-12, atol=1e-14)


def test_with_loss_only_on_valid():
    m = {"nll": 0.5, "accuracy": 0.9}
    assert kit.with_loss(m, "valid") == {**m, "loss": 0.5}
    assert kit.with_loss(m, "test") == m
    assert kit.with_loss({"mse": 2.0}, "valid", "mse") == {"mse": 2.0, "loss": 2.0}


# --- classification metrics ------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_metrics_equal_sklearn_on_random_labels(seed):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss

    rng = np.random.default_rng(seed)
    C, N = int(rng.integers(2, 7)), int(rng.integers(5, 60))
    y = rng.integers(0, C - 1 if seed % 2 else C, size=N)   # odd seeds: a class never true
    logits = rng.standard_normal((N, C)) * 2
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    pred = logp.argmax(1)
    assert kit.confusion_matrix(y, pred, C).tolist() == \
        confusion_matrix(y, pred, labels=range(C)).tolist()
    assert kit.macro_f1(y, pred) == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    yb, pb = y % 2, pred % 2
    assert kit.f1_of(yb, pb) == pytest.approx(f1_score(yb, pb, zero_division=0), abs=1e-12)
    assert kit.f1_of(yb, pb, positive=0) == \
        pytest.approx(f1_score(yb, pb, pos_label=0, zero_division=0), abs=1e-12)
    m = kit.classification_metrics(logp, y)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["nll"] == pytest.approx(log_loss(y, np.exp(logp), labels=range(C)), rel=1e-9)
    assert m["f1"] == kit.macro_f1(y, pred) and m["accuracy"] == kit.accuracy(logp, y)
    assert m["nll"] == kit.nll(logp, y)


def test_f1_of_is_zero_without_a_true_positive():
    assert kit.f1_of(np.array([0, 0, 1]), np.array([1, 0, 0])) == 0.0
    assert kit.f1_of(np.array([0, 0]), np.array([0, 0])) == 0.0


# --- the shared figure -----------------------------------------------------------------------
@pytest.mark.parametrize("names", [["a", "b", "c"], ["Q XX", "R XY", "S YX", "U YY"],
                                   [f"speaker number {k}" for k in range(25)]])
def test_confusion_figure_draws(tmp_path, names):
    from lstmlab.viz.figures import confusion_figure

    rng = np.random.default_rng(0)
    C = len(names)
    y = rng.integers(0, C, size=80)
    logits = rng.standard_normal((80, C))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    path = confusion_figure(tmp_path / "confusion.png", y, logp, names, title="a test",
                            label="speaker", chance="majority baseline")
    assert path == tmp_path / "confusion.png"
    assert matplotlib.image.imread(path).shape[1] > 1000       # the house width, drawn

"""The sentiment task: tokens, the user's CSV and its mistakes, the split, bucketed batches,
the "mean" readout in both engines, a small run that learns, and predict."""

import json
from collections import Counter

import numpy as np
import pytest

from lstmlab.config import ModelConfig, TrainConfig
from lstmlab.tasks import get_task
from lstmlab.tasks.sentiment import PAD, UNK, stratified_split, tokenize
from lstmlab.train import fit

from .conftest import assert_close

GOOD = ["great", "superb", "moving", "wonderful", "loved"]
BAD = ["awful", "boring", "dull", "terrible", "hated"]
FILLER = ["the", "film", "plot", "actor", "scene", "a", "was", "and", "it", "story", "music",
          "camera", "end", "of", "this"]


def _reviews(n, seed=0):
    """Synthetic reviews: filler words with one to three sentiment words; the label says which
    side they come from, as "pos" / "neg"."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for k in range(n):
        side = k % 2
        words = list(rng.choice(FILLER, size=rng.integers(4, 30)))
        for _ in range(rng.integers(1, 4)):
            word = str(rng.choice(GOOD if side else BAD))
            words.insert(int(rng.integers(0, len(words) + 1)), word)
        texts.append(" ".join(words))
        labels.append("pos" if side else "neg")
    return texts, labels


def _csv(tmp_path, n=400, name="reviews.csv"):
    texts, labels = _reviews(n)
    path = tmp_path / name
    path.write_text("id,review,opinion\n" + "".join(f'{k},"{t}",{y}\n' for k, (t, y)
                                                   in enumerate(zip(texts, labels))))
    return path


def test_tokenize_by_hand():
    assert tokenize("Don't miss it!<br /><br />A 10/10 film.") == \
        ["don't", "miss", "it", "!", "a", "10", "/", "10", "film", "."]
    assert tokenize("  ") == []


def test_csv_split_vocabulary_and_encoding(tmp_path):
    task = get_task("sentiment", csv=str(_csv(tmp_path)), text_column="review",
                    label_column="opinion", max_tokens=12, vocab=8)
    assert task.classes == ["neg", "pos"]                        # sorted: class 1 is "pos"
    s = task.split
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(400))
    assert [len(s[k]) for k in ("train", "valid", "test")] == [320, 40, 40]
    assert all(np.mean(task.labels[s[k]]) == 0.5 for k in s)    # stratified
    # the vocabulary: PAD, UNK, then the 8 most frequent training tokens
    counts = Counter(w for i in s["train"] for w in task.texts[i].split())
    assert task.words == ["<pad>", "<unk>"] + sorted(counts, key=lambda w: (-counts[w], w))[:8]
    top = task.words[2]
    ids = task.encode("zebra zebra " + f"{top} " * 11 + "zebra")
    assert ids.tolist() == [task.ids[top]] * 11 + [UNK]          # the last 12 tokens are kept
    assert task.encode("zebra")[0] == UNK and task.encode("")[0] == UNK
    # the split is the same for every training seed
    other = get_task("sentiment", seed=5, csv=str(_csv(tmp_path)), text_column="review",
                     label_column="opinion")
    assert all(np.array_equal(other.split[k], s[k]) for k in s)
    assert np.array_equal(stratified_split(task.labels)["test"], s["test"])


def test_batches_are_bucketed_resumable_and_cover_an_epoch(tmp_path):
    task = get_task("sentiment", csv=str(_csv(tmp_path)), text_column="review",
                    label_column="opinion")
    per_epoch = task.epochs.per_epoch(16)
    assert per_epoch == 20
    seen, padded, real = [], 0, 0
    for step in range(1, per_epoch + 1):
        b = task.train_batch(step, 16)
        assert b.x.shape == (b.lengths.max(), len(b.y)) and b.x.dtype == np.int64
        assert np.all(b.x[b.lengths - 1, np.arange(len(b.y))] != PAD)
        assert np.all((np.arange(b.x.shape[0])[:, None] >= b.lengths) == (b.x == PAD))
        padded, real = padded + b.x.size, real + b.lengths.sum()
        seen.append(b.y)
    assert sum(len(y) for y in seen) == 320                      # every training text once
    assert padded < 1.1 * real                                   # bucketing: little padding
    again = get_task("sentiment", csv=str(_csv(tmp_path)), text_column="review",
                     label_column="opinion").train_batch(7, 16)
    assert np.array_equal(again.x, task.train_batch(7, 16).x)   # a pure function of the step
    later = task.train_batch(per_epoch + 7, 16)                  # a new epoch reshuffles
    assert later.x.shape != again.x.shape or not np.array_equal(later.x, again.x)


def test_word_dropout_turns_tokens_into_unk_in_training_only(tmp_path):
    kw = dict(csv=str(_csv(tmp_path)), text_column="review", label_column="opinion")
    plain, dropped = get_task("sentiment", **kw), get_task("sentiment", word_dropout=0.3, **kw)
    a, b = plain.train_batch(3, 64), dropped.train_batch(3, 64)
    assert np.array_equal(a.lengths, b.lengths) and np.array_equal(a.y, b.y)
    changed = a.x != b.x
    assert np.all(b.x[changed] == UNK) and np.all(a.x[changed] != PAD)
    assert 0.2 < changed.sum() / (a.x != PAD).sum() < 0.4
    assert np.array_equal(b.x, dropped.train_batch(3, 64).x)  # the same batch for the same step
    assert np.array_equal(plain.encoded[5], dropped.encoded[5])  # evaluation sees every word
    with pytest.raises(ValueError, match="word_dropout must lie in"):
        get_task("sentiment", word_dropout=1.0, **kw)


@pytest.mark.parametrize("content, expect", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"review,opinion\n\xff\xfe bad bytes,pos\n", "line 2: bytes that are not UTF-8"),
    (b"text,opinion\nfine,pos\n", "no column 'review'.*its columns are: text, opinion"),
    (b"review,opinion\n" + b"".join(b"r%d,%d\n" % (k, k % 3) for k in range(60)),
     "exactly two classes, it holds 3"),
    (b"review,opinion\n" + b"".join(b"r%d,pos\n" % k for k in range(60)),
     "exactly two classes, it holds 1"),
    (b"review,opinion\n" + b"".join(b"r%d,%s\n" % (k, b"pos" if k < 3 else b"neg")
                                    for k in range(60)), "give at least 10 of each"),
    (b"review,opinion\nfine,\n", "label column 'opinion' is empty"),
])
def test_bad_csv_is_one_clear_line(tmp_path, content, expect):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=expect) as e:
        get_task("sentiment", csv=str(path), text_column="review", label_column="opinion")
    assert "\n" not in str(e.value)


def test_option_mistakes():
    with pytest.raises(ValueError, match="built in: imdb, rt"):
        get_task("sentiment", data="yelp")
    with pytest.raises(ValueError, match="max_tokens"):
        get_task("sentiment", data="rt", max_tokens=0)


def test_builtin_rotten_tomatoes():
    task = get_task("sentiment", data="rt")
    assert len(task.labels) == 8530 and task.classes == ["negative", "positive"]
    assert [len(task.split[k]) for k in ("train", "valid", "test")] == [6824, 852, 854]
    assert task.words[2:5] == [".", "the", ","]                  # the most frequent tokens


# --- the "mean" readout: NumPy equals torch, and its backward equals finite differences -----
def _mean_config(bidirectional=True):
    return ModelConfig(input_size=3, output_size=2, hidden_size=4, num_layers=2,
                       bidirectional=bidirectional, vocab_size=9, readout="mean", dtype="float64")


@pytest.mark.parametrize("bidirectional", [True, False])
def test_mean_readout_numpy_equals_torch(bidirectional):
    """Training runs the padded batch without packing it (the fast path; the reverse
    direction reads each sequence reversed within its length), which must give the same
    outputs and gradients as the NumPy engine's."""
    import torch

    from lstmlab.numpy.model import SequenceModel as NumpyModel
    from lstmlab.torch import SequenceModel as TorchModel

    cfg = _mean_config(bidirectional)
    ref, m = NumpyModel(cfg, seed=4), TorchModel(cfg, seed=4).train()
    assert m._pad_instead_of_pack(final=True)
    ids = np.random.default_rng(0).integers(0, 9, size=(6, 3))
    lengths = np.array([6, 2, 4])
    out, _, cache = ref.forward(ids, lengths=lengths)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    grads, _ = ref.backward(cache, dout)
    t_out, _ = m(torch.from_numpy(ids), lengths=torch.from_numpy(lengths))
    assert out.shape == (3, 2)
    assert_close(t_out.detach().numpy(), out, 1e-12, "outputs")
    (t_out * torch.from_numpy(dout)).sum().backward()
    for name, p in m.named_parameters():
        assert_close(p.grad.numpy(), grads[name], 1e-10, name)
    with torch.no_grad():                  # evaluation: packed again, unless no state is wanted
        for final in (True, False):
            assert_close(m.eval()(torch.from_numpy(ids), lengths=torch.from_numpy(lengths),
                                  final=final)[0].numpy(), out, 1e-12, f"eval outputs, final={final}")
    # the mean of a sequence is the mean of its own steps: padding after it changes nothing
    alone, _ = ref(ids[:2, 1:2])
    assert_close(out[1:2], alone, 1e-12, "padding")
    full, _ = ref(ids)                                           # no lengths: all T steps
    with_t, _ = ref(ids, lengths=np.array([6, 6, 6]))
    assert_close(full, with_t, 1e-12, "no lengths")


def test_mean_readout_backward_equals_finite_differences():
    from lstmlab.numpy.model import SequenceModel

    model = SequenceModel(_mean_config(), seed=2)
    ids = np.random.default_rng(3).integers(0, 9, size=(5, 3))
    lengths = np.array([5, 1, 3])
    w = np.random.default_rng(4).standard_normal((3, 2))

    def loss():
        return float(np.sum(model(ids, lengths=lengths)[0] * w))

    out, _, cache = model.forward(ids, lengths=lengths)
    grads, _ = model.backward(cache, w)
    rng, eps = np.random.default_rng(5), 1e-6
    for name, p in model.params.items():
        for flat in rng.choice(p.size, size=min(4, p.size), replace=False):
            k = np.unravel_index(flat, p.shape)
            keep = p[k]
            p[k] = keep + eps
            up = loss()
            p[k] = keep - eps
            down = loss()
            p[k] = keep
            assert abs((up - down) / (2 * eps) - grads[name][k]) < 1e-7, name


# --- a small run learns, and predicts --------------------------------------------------------
def test_a_small_run_learns_the_words_and_predicts(tmp_path):
    csv = _csv(tmp_path, n=600)
    task = get_task("sentiment", csv=str(csv), text_column="review", label_column="opinion",
                    embedding=16)
    r = fit(task, task.model_config(hidden_size=16),
            TrainConfig(steps=120, batch_size=32, lr=1e-2, eval_every=40), tmp_path / "run",
            engine="torch")
    test, base = r["metrics"]["test"], r["baselines"]
    assert set(test) == {"accuracy", "f1", "nll"} and set(base["majority"]) == set(test)
    assert base["majority"]["accuracy"] == 0.5
    assert base["majority"]["nll"] == pytest.approx(np.log(2))
    assert base["bow_logistic"]["accuracy"] > 0.9                # the words decide: easy for it
    assert test["accuracy"] > 0.9 and test["f1"] > 0.9 and test["nll"] < 0.4
    assert {p.rsplit("/", 1)[-1] for p in r["figures"]} >= {"test.png", "words.png"}

    # the CLI in this process (a subprocess would import torch again for each call)
    from click.testing import CliRunner

    from lstmlab.cli import main

    def predict(*args):
        return CliRunner().invoke(main, ["predict", str(tmp_path / "run"), *args])

    out = predict("--text", "a wonderful superb film", "--json")
    assert out.exit_code == 0, out.output
    p = json.loads(out.stdout)["predictions"][0]
    assert p["label"] == "pos" and p["probability"] > 0.8
    lines = tmp_path / "texts.txt"
    lines.write_text("boring dull plot\n\nthe music was great and moving\n")
    out = predict("--input", str(lines))
    assert out.exit_code == 0, out.output
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [r[0] for r in rows] == ["neg", "pos"] and all(0.5 < float(r[1]) <= 1 for r in rows)
    for args, expect in ((["--text", "x", "--input", str(lines)], "exactly one of"),
                         (["--input", str(tmp_path / "nope.txt")], "nope.txt does not exist")):
        out = predict(*args)
        assert out.exit_code == 2 and expect in out.stderr and out.stderr.count("\n") == 1
    from lstmlab.train import load_run

    task, predictor, _ = load_run(tmp_path / "run")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 good\n".encode("latin-1"))
    with pytest.raises(ValueError, match="line 1: bytes that are not UTF-8"):
        task.predict(predictor, tmp_path / "latin1.txt")


def test_the_numpy_engine_trains_it_too(tmp_path):
    task = get_task("sentiment", csv=str(_csv(tmp_path, n=200)), text_column="review",
                    label_column="opinion", embedding=8)
    r = fit(task, task.model_config(hidden_size=8),
            TrainConfig(steps=40, batch_size=32, lr=2e-2, eval_every=20), tmp_path / "run",
            engine="numpy")
    assert r["metrics"]["test"]["nll"] < np.log(2) - 0.05       # better than a coin

"""The classify task: its readers, splits, metrics and baselines are right, a model that must
see the order of the steps beats the order-blind baseline, and the user's files round-trip
through train and predict."""

import json

import matplotlib.image
import numpy as np
import pytest

import lstmlab
from lstmlab.config import TrainConfig
from lstmlab.tasks import TASKS, get_task
from lstmlab.tasks import classify as K
from lstmlab.tasks.datasets import japanese_vowels, mnist_rows, read_labelled_sequences, read_ts
from lstmlab.train import fit
from lstmlab.train.runs import RunFolder

TS = """#a comment
@problemName Tiny
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3:4,5,6:a

0.5,1.5:-1,-2:b
"""


def _ramps(n=120, seed=0):
    """Sequences of 2 features whose class is the direction of a ramp: class "up" rises,
    "down" falls, through the same values, so each sequence's mean and standard deviation
    say nothing about the class; only the order of the steps does."""
    rng = np.random.default_rng(seed)
    rows = ["sequence,label,level,noise"]
    for j in range(n):
        T = int(rng.integers(6, 14))
        up = j % 2 == 0
        ramp = np.linspace(-1, 1, T)[:: 1 if up else -1] + rng.uniform(-2, 2)
        for t in range(T):
            rows.append(f"s{j},{'up' if up else 'down'},{ramp[t]:.5f},"
                        f"{rng.standard_normal():.5f}")
    return "\n".join(rows) + "\n"


def _csv(tmp_path, text, name="seqs.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- readers ---------------------------------------------------------------------------------
def test_read_ts_parses_channels_and_labels(tmp_path):
    xs, labels = read_ts(_csv(tmp_path, TS, "tiny.ts"))
    assert labels.tolist() == ["a", "b"]
    np.testing.assert_array_equal(xs[0], [[1, 4], [2, 5], [3, 6]])   # (T, channels)
    np.testing.assert_array_equal(xs[1], [[0.5, -1], [1.5, -2]])
    with pytest.raises(ValueError, match="line 7: channels of different lengths"):
        read_ts(_csv(tmp_path, TS.replace("4,5,6", "4,5"), "bad.ts"))


def test_builtin_data_come_from_their_packages():
    train, test = japanese_vowels()
    assert len(train.xs) == 270 and len(test.xs) == 370
    lengths = [len(x) for x in train.xs + test.xs]
    assert min(lengths) == 7 and max(lengths) == 29
    assert all(x.shape[1] == 12 for x in train.xs + test.xs)
    assert np.unique(train.labels, return_counts=True)[1].tolist() == [30] * 9
    digits = mnist_rows()
    assert len(digits.xs) == 5000 and digits.xs[0].shape == (28, 28)
    assert np.unique(digits.labels, return_counts=True)[1].tolist() == [500] * 10
    assert max(x.max() for x in digits.xs[:50]) == 255


def test_labelled_csv_round_trip(tmp_path):
    text = ("id,x,label,y\n"                     # label need not be second; ids interleave
            "b,1,cat,2\na,0.5,dög,0\nb,3,cat,4\na,1e-3,dög,-1\n")
    d = read_labelled_sequences(_csv(tmp_path, text))
    assert d.ids == ("b", "a") and d.labels.tolist() == ["cat", "dög"]
    assert d.features == ("x", "y")
    np.testing.assert_array_equal(d.xs[0], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(d.xs[1], [[0.5, 0], [1e-3, -1]])
    d = read_labelled_sequences(_csv(tmp_path, "id,x\nq,1\nq,2\n"), need_labels=False)
    assert d.labels.tolist() == [""] and d.xs[0].shape == (2, 1)


@pytest.mark.parametrize("content, expect", [
    (None, "does not exist"),
    ("", "is empty"),
    (b"id,label,x\na,\xff\xfe,1\n", "not UTF-8 text"),
    ("id,kind,x\na,1,2\n", "no column 'label' .*its columns: id, kind, x"),
    ("id,label\na,1\n", "no feature columns"),
    ("id,label,x\na,p,1\na,p,oops\n", "line 3, column 'x': 'oops' is not a number"),
    ("id,label,x\na,p,1\na,p,nan\n", "line 3: a value is not a finite number"),
    ("id,label,x\na,p,1\na,q,2\n", "line 3: sequence 'a' has label 'q' here but 'p' above"),
    ("id,label,x\na,p,1,9\n", "line 2: 4 cells, the header has 3"),
    ("id,label,x\n", "a header but no rows"),
    ("id,label,x\na,,1\n", "line 2: the label is empty"),
])
def test_a_bad_csv_is_one_clear_line(tmp_path, content, expect):
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=expect) as e:
        read_labelled_sequences(path)
    assert "\n" not in str(e.value)


def test_option_mistakes(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'digits'; built in: japanese-vowels"):
        get_task("classify", data="digits")
    few = "id,label,x\n" + "".join(f"s{j},{j % 2},1\n" for j in range(6))
    with pytest.raises(ValueError, match="holds 6 sequences; give at least 10"):
        get_task("classify", csv=str(_csv(tmp_path, few)))
    one = "id,label,x\n" + "".join(f"s{j},same,{j}\n" for j in range(20))
    with pytest.raises(ValueError, match="one class"):
        get_task("classify", csv=str(_csv(tmp_path, one, "one.csv")))
    with pytest.raises(ValueError, match="train_size is 999 but the training split holds 225"):
        get_task("classify", train_size=999)
    with pytest.raises(ValueError, match="have no training sequence"):
        get_task("classify", train_size=5)


# --- splits, batches, metrics, baselines -------------------------------------------------------
def test_splits_are_stratified_disjoint_and_the_same_for_every_seed():
    task = get_task("classify", seed=0)
    sizes = {s: np.bincount(y) for s, (_, _, y) in task.split.items()}
    assert sizes["train"].tolist() == [25] * 9 and sizes["valid"].tolist() == [5] * 9
    assert sizes["test"].sum() == 370                        # the official test split
    assert not set(task.ids["train"]) & set(task.ids["valid"])
    assert task.ids == get_task("classify", seed=3).ids
    digits = get_task("classify", data="mnist")
    for s, n in (("train", 400), ("valid", 50), ("test", 50)):
        assert np.bincount(digits.split[s][2]).tolist() == [n] * 10
    assert len(set(digits.ids["train"]) | set(digits.ids["valid"]) | set(digits.ids["test"])) \
        == 5000
    x, lengths, _ = digits.split["train"]
    assert x.shape == (28, 4000, 28) and np.all(lengths == 28) and np.abs(x).max() == K.CLIP


def test_features_are_standardised_with_training_statistics_and_padded():
    task = get_task("classify")
    x, lengths, _ = task.split["train"]
    steps = x[np.arange(x.shape[0])[:, None] < lengths]     # (sum T_i, 12), no padding
    np.testing.assert_allclose(steps.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(steps.std(0), 1, atol=1e-12)
    assert np.all(x[np.arange(x.shape[0])[:, None] >= lengths] == 0)
    xt, lt, _ = task.split["test"]
    j = 7
    np.testing.assert_allclose(xt[:lt[j], j], (task.raw["test"][j] - task.mu) / task.sd)


def test_batches_are_epochs_of_every_sequence_and_a_pure_function_of_the_step():
    task = get_task("classify", seed=1)
    epoch = np.concatenate([task.batch_indices(s, 25) for s in range(1, 10)])   # 225 sequences
    assert sorted(epoch.tolist()) == list(range(225))
    assert not np.array_equal(epoch, np.concatenate([task.batch_indices(s, 25)
                                                     for s in range(10, 19)]))
    b = get_task("classify", seed=1).train_batch(4, 25)
    idx = task.batch_indices(4, 25)
    x, lengths, y = task.split["train"]
    assert np.array_equal(b.y, y[idx]) and np.array_equal(b.lengths, lengths[idx])
    assert b.x.shape == (lengths[idx].max(), 25, 12)
    np.testing.assert_array_equal(b.x, x[:b.x.shape[0], idx])


def test_noise_augments_the_training_batches_only():
    clean, noisy = get_task("classify"), get_task("classify", noise=0.5)
    a, b = clean.train_batch(3, 32), noisy.train_batch(3, 32)
    assert np.array_equal(a.y, b.y) and 0.45 < np.std(b.x - a.x) < 0.55
    assert np.array_equal(noisy.split["valid"][0], clean.split["valid"][0])
    np.testing.assert_array_equal(noisy.train_batch(3, 32).x, b.x)     # the same each time
    for bad, why in ((-1, "noise must be a number >= 0"), ("loud", "noise must be a number"),
                     (float("nan"), "noise must be a finite number")):
        with pytest.raises(ValueError, match=why):
            get_task("classify", noise=bad)


def test_metrics_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 5)) * 2
    logits[:, 4] -= 20                                       # class 4 is never predicted
    y = rng.integers(0, 5, 200)
    logits[np.arange(100), y[:100]] += 3                     # better than chance
    logp = K.log_softmax(logits)
    m = K.classification_metrics(logp, y)
    pred = logp.argmax(-1)
    assert m["accuracy"] == accuracy_score(y, pred)
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0.0))
    assert m["nll"] == pytest.approx(log_loss(y, np.exp(logp), labels=range(5)))


def test_baselines():
    task = get_task("classify")
    y = task.split["test"][2]
    base = task.baselines()
    # majority: 30 training utterances a speaker, so the first class and ln 9
    assert base["majority"]["accuracy"] == pytest.approx(np.mean(y == 0))
    assert base["majority"]["nll"] == pytest.approx(np.log(9))
    p, r = np.mean(y == 0), 1.0
    assert base["majority"]["f1"] == pytest.approx(2 * p * r / (p + r) / 9)
    assert base["logistic_mean_std"]["accuracy"] > 0.9       # the speakers differ in timbre
    assert set(base["majority"]) == set(base["logistic_mean_std"]) == {"accuracy", "f1", "nll"}


# --- training -------------------------------------------------------------------------------
def test_numpy_engine_learns_the_speakers_from_a_subset(tmp_path):
    task = get_task("classify", train_size=90)
    assert np.bincount(task.split["train"][2]).tolist() == [10] * 9
    result = fit(task, task.model_config(hidden_size=24),
                 TrainConfig(steps=60, batch_size=16, lr=1e-2, eval_every=20),
                 tmp_path / "run", engine="numpy")
    rows = RunFolder(result["run"]).read_metrics()
    train = [r["loss"] for r in rows if r["split"] == "train"]
    valid = [r["loss"] for r in rows if r["split"] == "valid"]
    assert train[-1] < 0.5 * train[0] and valid[-1] < 0.3 * np.log(9)   # ln 9 at the start
    test, base = result["metrics"]["test"], result["baselines"]
    assert test["accuracy"] > 0.85 and base["majority"]["accuracy"] < 0.1
    assert test["nll"] < base["majority"]["nll"]
    for png in result["figures"]:
        assert matplotlib.image.imread(png).ndim == 3
    assert {p.rsplit("/", 1)[1] for p in result["figures"]} == {"confusion.png", "reading.png",
                                                                 "loss.png"}


def test_running_predictions_are_the_predictions_on_each_prefix(tmp_path):
    from lstmlab.numpy.model import SequenceModel
    from lstmlab.train.engines import predictor_for

    task = get_task("classify")
    predictor = predictor_for(SequenceModel(task.model_config(hidden_size=8, dtype="float64")))
    x, lengths, _ = task.split["test"]
    j = int(np.argmax(lengths))
    running = task.running_logp(predictor, j)
    T = lengths[j]
    for t in (1, T // 2, T):
        alone = task._logp(predictor, x[:t, j:j + 1], np.array([t]))[0]
        np.testing.assert_allclose(running[t - 1], alone, atol=1e-12)
    whole = task._logp(predictor, x, lengths)                # padded among the others
    np.testing.assert_allclose(running[-1], whole[j], atol=1e-12)


def test_order_matters_the_lstm_beats_the_order_blind_baseline_and_predicts(tmp_path):
    csv = _csv(tmp_path, _ramps())
    task = get_task("classify", csv=str(csv))
    assert task.classes == ["down", "up"]
    result = fit(task, task.model_config(hidden_size=16, bidirectional=True),
                 TrainConfig(steps=80, batch_size=16, lr=2e-2, eval_every=40),
                 tmp_path / "run", engine="torch")
    test, base = result["metrics"]["test"], result["baselines"]
    assert base["logistic_mean_std"]["accuracy"] < 0.8       # the mean and std cannot tell
    assert test["accuracy"] == 1.0 and test["f1"] == 1.0
    # new sequences without labels, through `lstmlab predict`
    unlabelled = "\n".join(",".join(line.split(",")[:1] + line.split(",")[2:])
                           for line in _ramps(20, seed=9).splitlines())
    out = _cli("predict", tmp_path / "run", "--input", _csv(tmp_path, unlabelled, "new.csv"),
               "--json")
    assert out.exit_code == 0, out.output
    p = json.loads(out.stdout)
    assert p["sequences"] == 20 and "accuracy" not in p
    assert [p["predictions"][f"s{j}"]["label"] for j in range(20)] == ["up", "down"] * 10
    assert all(0.5 < v["probability"] <= 1 for v in p["predictions"].values())
    labelled = _cli("predict", tmp_path / "run", "--input",
                    _csv(tmp_path, _ramps(20, seed=9), "labelled.csv"))     # as text
    assert labelled.exit_code == 0, labelled.output
    lines = labelled.stdout.splitlines()
    assert lines[0].startswith("s0   up  (probability ") and len(lines) == 21
    assert lines[-1] == "accuracy against the file's labels: 100.0%"
    out = _cli("predict", tmp_path / "run", "--input",
               _csv(tmp_path, "id,a,b,c\nq,1,2,3\n", "wrong.csv"), "--json")
    assert out.exit_code == 2
    assert "3 feature columns (a, b, c); this model reads 2 (level, noise)" in \
        json.loads(out.stdout)["error"]


def _cli(*args):
    """`lstmlab ARGS` in this process (no interpreter to start)."""
    from click.testing import CliRunner

    from lstmlab.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_cli_trains_on_a_csv_and_rejects_a_bad_one(tmp_path):
    def train(csv, out):
        return _cli("train", "classify", "--csv", csv, "--steps", 4, "--eval-every", 2,
                    "--hidden-size", 4, "--engine", "numpy", "--out", out, "--json")

    out = train(_csv(tmp_path, _ramps(40)), tmp_path / "run")
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)
    assert set(r["metrics"]["test"]) == {"accuracy", "f1", "nll"}
    assert set(r["baselines"]) == {"majority", "logistic_mean_std"}
    out = train(_csv(tmp_path, "id,label,x\na,p,1\na,q,2\n", "bad.csv"), tmp_path / "r2")
    assert out.exit_code == 2 and "has label 'q' here" in json.loads(out.stdout)["error"]


def test_registered_with_defaults_that_suit_every_variant():
    cls = TASKS["classify"]
    assert cls.defaults.engine == "torch" and cls.metric == "accuracy"
    assert not cls.lower_is_better
    task = get_task("classify")
    for v in lstmlab.VARIANTS:                           # as `lstmlab train classify --variant v`
        cfg = task.model_config(**{**cls.defaults.model, "variant": v})
        assert (cfg.variant, cfg.input_size, cfg.output_size, cfg.readout) == (v, 12, 9, "last")

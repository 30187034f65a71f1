"""The `translate` task: the corpus is unambiguous and split by date, the baselines score what
hand computation says, a small encoder-decoder learns, and a run predicts, re-loads in the
other engine and exports (or refuses ONNX with one line)."""

import datetime
import json

import matplotlib.image
import numpy as np
import pytest

from lstmlab.config import TrainConfig
from lstmlab.tasks import TASKS, get_task
from lstmlab.tasks import translate as TR
from lstmlab.train import fit
from lstmlab.train.runs import RunFolder

SMALL = {"embedding": 16, "test_size": 200, "valid_size": 100}


def test_registered_with_exact_match_as_its_ranking_metric():
    cls = TASKS["translate"]
    assert cls.metric == "exact_match" and not cls.lower_is_better and cls.loss == "xent"
    cfg = get_task("translate", **SMALL).model_config(**cls.defaults.model)
    assert cfg.architecture == "seq2seq" and cfg.vocab_size == TR.SRC_VOCAB
    assert cfg.output_size == TR.TGT_VOCAB and cfg.input_size == 16


def test_surface_forms_by_hand():
    d = datetime.date(2026, 11, 21)                    # a Saturday
    written = {name: TR.FORMS[name](d) for name in TR.FORM_NAMES}
    for name in ("the 21st of November, 2026", "November 21, 2026", "21 Nov 2026",
                 "21/11/2026", "2026.11.21", "Saturday, 21 November 2026", "Sat, Nov 21, 2026",
                 "21-Nov-2026", "20261121", "nov 21 '26"):
        assert written[name] == name                    # each form is named by this date
    assert TR.FORMS["5/3/2026"](datetime.date(1953, 3, 5)) == "5/3/1953"
    assert [TR._ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    assert TR.render(d, 0, 1) == "the 21st of november, 2026"
    assert TR.render(d, 3, 2) == "21 NOV 2026"


def test_every_written_date_has_one_reading():
    """All 36,525 dates in all forms, in any case: no string stands for two dates, and every
    character is in the source alphabet."""
    seen = {}
    for d in TR.all_dates():
        for name in TR.FORM_NAMES:
            s = TR.FORMS[name](d).lower()
            assert seen.setdefault(s, d) == d, f"{s!r} reads as {seen[s]} and {d}"
    alphabet = set(TR.SOURCE_CHARS)
    assert all(set(s) <= alphabet and set(s.upper()) <= alphabet for s in seen)
    assert len(TR.all_dates()) == 36525


def test_split_by_date_and_the_same_for_every_seed():
    a, b = get_task("translate", seed=0), get_task("translate", seed=7)
    n = {k: len(v) for k, v in a.dates.items()}
    assert sum(n.values()) == 36525
    assert abs(n["test"] / 36525 - 0.10) < 0.01 and abs(n["valid"] / 36525 - 0.05) < 0.01
    assert a.dates == b.dates
    test = set(a.dates["test"]) | set(a.dates["valid"])
    assert not test & set(a.dates["train"])
    held_out = {d.isoformat() for d in test}
    for step in (1, 2, 3):                             # no held-out date in any training batch
        batch = a.train_batch(step, 256)
        got = TR.decode_ids(batch.y)
        assert not held_out & set(got)
    # every held-out date is scored once, in one form; seeds draw different forms
    assert sorted(a.split["test"][1]) == sorted(d.isoformat() for d in a.dates["test"])
    assert a.split["test"][0] != b.split["test"][0]


def test_batches_are_a_pure_function_of_seed_and_step_and_targets_round_trip():
    task = get_task("translate", seed=3, **SMALL)
    b1, b2 = task.train_batch(5, 16), task.train_batch(5, 16)
    assert np.array_equal(b1.x, b2.x) and np.array_equal(b1.y, b2.y)
    assert not np.array_equal(task.train_batch(6, 16).x, b1.x)
    assert b1.y.shape == (TR.TGT_LEN, 16) and np.all(b1.y[-1] == TR.EOS)
    assert np.all(b1.target_in[0] == TR.BOS) and np.array_equal(b1.target_in[1:], b1.y[:-1])
    assert b1.x.shape[0] == b1.lengths.max() and np.all(b1.x[b1.lengths.max() - 1:].max(0) >= 0)
    for j, n in enumerate(b1.lengths):                 # PAD exactly past each end
        assert np.all(b1.x[:n, j] > 0) and np.all(b1.x[n:, j] == TR.PAD)
    y, _ = TR.encode_targets(["2026-11-21", "1950-01-01"])
    assert TR.decode_ids(y) == ["2026-11-21", "1950-01-01"]
    assert TR.decode_ids(np.array([[5], [2], [6]])) == ["2"]   # cut at EOS


def test_scores_and_copy_digits_by_hand():
    s = TR.Translate._scores(["2026-11-21", "2026-11-2", "2026-11-211", "2026-12-21"],
                             ["2026-11-21"] * 4)
    assert s["exact_match"] == 0.25
    # right positions of 11: all, 9 (last digit and EOS missing), 10 (EOS), 10 (one digit)
    assert s["char_accuracy"] == pytest.approx((11 + 9 + 10 + 10) / 44)
    fb = "1999-01-01"
    assert TR.copy_digits("21/11/2026", fb) == "2026-11-21"
    assert TR.copy_digits("2026.11.21", fb) == "2026-11-21"
    assert TR.copy_digits("5/3/1953", fb) == "1953-03-05"
    assert TR.copy_digits("20261121", fb) == "2026-11-21"
    assert TR.copy_digits("the 21st of November, 2026", fb) == "2026-01-21"   # month unknown
    assert TR.copy_digits("nov 21 '26", fb) == "1999-01-21"                  # century unknown


def test_baselines_have_the_metric_names_and_are_honest():
    task = get_task("translate", **SMALL)
    base = task.baselines()
    assert set(base) == {"majority", "copy_digits"}
    for b in base.values():
        assert set(b) == {"exact_match", "char_accuracy", "nll"}
    assert base["majority"]["exact_match"] < 0.02
    # copy_digits gets the numeric forms right (6 of 15 forms have day, month and year in digits)
    assert 0.3 < base["copy_digits"]["exact_match"] < 0.5
    # a uniform guess over the 11 output ids that can occur costs ln 11 nats; majority is below
    assert base["majority"]["nll"] < np.log(11)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A tiny encoder-decoder trained with the glass-box engine (fast at this size)."""
    task = get_task("translate", seed=0, **SMALL)
    model = task.model_config(hidden_size=16, bidirectional=True)
    path = tmp_path_factory.mktemp("runs") / "translate"
    result = fit(task, model, TrainConfig(steps=120, batch_size=32, lr=2e-2, schedule="constant",
                                          eval_every=60), path, engine="numpy")
    return task, result, path


def test_a_small_model_learns_and_draws(small_run):
    task, result, path = small_run
    rows = RunFolder(path).read_metrics()
    train = [r["loss"] for r in rows if r["split"] == "train"]
    valid = [r["exact_match"] for r in rows if r["split"] == "valid"]
    assert train[-1] < 0.6 * train[0] and valid[-1] > valid[0]
    test, base = result["metrics"]["test"], result["baselines"]
    assert set(test) == set(base["majority"])
    assert test["exact_match"] > base["majority"]["exact_match"] + 0.5
    assert test["exact_match"] > base["copy_digits"]["exact_match"] + 0.2   # 0.79 vs 0.40
    assert test["char_accuracy"] > base["majority"]["char_accuracy"] + 0.2
    assert test["nll"] < base["majority"]["nll"] / 2
    names = sorted(p.rsplit("/", 1)[-1] for p in result["figures"])
    assert names == ["attention.png", "loss.png"]
    for png in result["figures"]:
        assert matplotlib.image.imread(png).ndim == 3


def test_the_run_reloads_in_the_torch_engine_with_the_same_metrics(small_run):
    pytest.importorskip("torch")
    from lstmlab.train import evaluate_run

    _, result, path = small_run
    again = evaluate_run(path, engine="torch")
    for k, v in result["metrics"]["test"].items():
        assert again["metrics"]["test"][k] == pytest.approx(v, abs=1e-5), k


def test_the_torch_engine_trains_it(tmp_path):
    pytest.importorskip("torch")
    from lstmlab.train.engines import make_engine

    task = get_task("translate", seed=1, **SMALL)
    eng = make_engine("torch", task.model_config(hidden_size=8, variant="gru"),
                      TrainConfig(batch_size=16, lr=2e-2), "xent")
    losses = [eng.train_step(task.train_batch(s, 16), 2e-2, None, s)[0] for s in range(1, 31)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    ids, attn = eng.predictor().decode(*TR.encode_sources(["21 Nov 2026"]), 12)
    assert ids.shape[1] == 1 and attn.shape == (1, ids.shape[0], 11)


def test_predict_translates_each_line_and_refuses_bad_files(small_run, tmp_path):
    from lstmlab.train import load_run

    _, _, path = small_run
    task, predictor, _ = load_run(path)
    f = tmp_path / "dates.txt"
    f.write_text("21 Nov 2026\n\n  the 3rd of May, 1990  \n")
    out = task.predict(predictor, f)
    assert out["count"] == 2
    lines = out["translations"].split("\n")
    assert lines[0].startswith("21 Nov 2026  ->  ")
    assert lines[1].startswith("the 3rd of May, 1990  ->  ")
    bad = {"missing.txt": None, "empty.txt": b"\n  \n",
           "latin1.txt": "3 d\xe9c 2026".encode("latin-1"), "accent.txt": "3 déc 2026\n".encode(),
           "long.txt": b"1" * 60}
    for name, data in bad.items():
        p = tmp_path / name
        if data is not None:
            p.write_bytes(data)
        with pytest.raises(ValueError) as e:
            task.predict(predictor, p)
        assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_cli_predict_export_and_one_line_errors(small_run, tmp_path):
    from click.testing import CliRunner

    from lstmlab.cli import main

    _, _, path = small_run
    f = tmp_path / "d.txt"
    f.write_text("2026.11.21\n")
    runner = CliRunner()
    r = runner.invoke(main, ["predict", str(path), "--input", str(f), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] == 1
    r = runner.invoke(main, ["predict", str(path), "--input", str(tmp_path / "nope.txt")])
    assert r.exit_code == 2
    r = runner.invoke(main, ["export", str(path), "--format", "onnx"])
    assert r.exit_code == 2 and "ONNX export covers sequence models only" in r.output
    r = runner.invoke(main, ["export", str(path), "--format", "safetensors", "--out",
                             str(tmp_path / "m.safetensors"), "--json"])
    assert r.exit_code == 0, r.output
    import lstmlab

    m = lstmlab.load(tmp_path / "m.safetensors", engine="numpy")
    assert type(m).__name__ == "Seq2Seq"


def test_bad_options_are_one_line_errors():
    with pytest.raises(ValueError, match="test_size must be an integer"):
        get_task("translate", test_size=-1)
    with pytest.raises(ValueError, match="embedding must be an integer"):
        get_task("translate", embedding=0)

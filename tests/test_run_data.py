"""A run trained on the user's file carries what it needs: it evaluates, predicts, generates
and exports after the file is moved, never reads another file that took its name, and
refuses to resume on changed data."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lstmlab.config import TrainConfig
from lstmlab.io.export import export_run
from lstmlab.tasks import get_task
from lstmlab.tasks.rundata import task_of_run, task_to_resume
from lstmlab.train import evaluate_run, fit, load_run
from lstmlab.train.runs import RunFolder
from tests.test_tasks_classify import _ramps
from tests.test_tasks_sentiment import _reviews


def lstmlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lstmlab", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _series(n=400, seed=0):
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / 10) + 0.3 * np.random.default_rng(seed).standard_normal(n)


def _write(path, values):
    path.write_text("when,load\n" + "".join(f"{k},{v:.5f}\n" for k, v in enumerate(values)))
    return path


def _train(task, run, steps=10):
    return fit(task, task.model_config(hidden_size=8),
               TrainConfig(steps=steps, batch_size=8, lr=1e-2, eval_every=steps), run)


@pytest.fixture
def forecast_run(tmp_path, monkeypatch):
    """A forecast run trained on data/s.csv given as a relative path; the file is then moved."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    csv = _write(tmp_path / "data" / "s.csv", _series())
    task = get_task("forecast", csv="data/s.csv", column="load", horizon=3, season=10, context=20)
    result = _train(task, tmp_path / "run")
    (tmp_path / "moved").mkdir()
    shutil.move(csv, tmp_path / "moved" / "s.csv")
    return tmp_path / "run", csv, result


def test_the_run_keeps_its_preprocessing_and_the_files_absolute_path_and_hash(forecast_run):
    run, csv, _ = forecast_run
    state = json.loads((run / "preprocessing.json").read_text())
    assert state["sources"]["csv"]["path"] == str(csv) and csv.is_absolute()
    assert len(state["sources"]["csv"]["sha256"]) == 64
    assert state["options"]["csv"] == str(csv) and state["options"]["data"] == ""
    assert {"mu", "sd", "r_scale", "base", "context", "season", "column"} <= set(state)
    assert json.loads((run / "config.json").read_text())["task_options"]["csv"] == str(csv)


def test_a_forecast_run_works_after_its_csv_moved(forecast_run, tmp_path):
    run, csv, result = forecast_run
    assert not csv.exists()
    assert evaluate_run(run)["metrics"] == result["metrics"]
    assert evaluate_run(run)["baselines"] == result["baselines"]
    # a bare column of numbers, no header: the last context + season are used
    recent = tmp_path / "recent.txt"
    recent.write_text("".join(f"{v}\n" for v in _series()[-30:]))
    out = lstmlab("predict", run, "--input", recent, "--json", cwd=tmp_path / "moved")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["forecast"]) == 3
    recent.write_text("".join(f"{v}\n" for v in _series()[-29:]))
    out = lstmlab("predict", run, "--input", recent)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "29 values; this model needs the last 30 (context 20 + season 10)" in out.stderr
    task, predictor, _ = load_run(run)
    recent.write_text("reading\n" + "".join(f"{v}\n" for v in _series()[-30:]))
    assert len(task.predict(predictor, recent)["forecast"]) == 3      # its only column
    recent.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="has no column 'load'; its columns are: a, b"):
        task.predict(predictor, recent)
    recent.write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="2 columns and no header row; give one number a line"):
        task.predict(predictor, recent)
    out = lstmlab("predict", run, "--text", "12.5")
    assert out.returncode == 2 and out.stderr == ("error: task 'forecast' reads a file, not one "
                                                  "text: give --input FILE instead of --text\n")
    assert export_run(run, "onnx").is_file()


def test_another_file_at_the_path_is_never_scored_and_resuming_refuses_it(forecast_run):
    run, csv, result = forecast_run
    _write(csv, _series(seed=1) * 2)                             # another file, the same name
    assert evaluate_run(run)["metrics"] == result["metrics"]     # the run's own test split
    out = lstmlab("train", "forecast", "--resume", "--out", run)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith(f"error: {csv} is not the file this run trained on")
    csv.write_text("not,a series\n")                             # unreadable too: the hash first
    with pytest.raises(ValueError, match="is not the file this run trained on"):
        task_to_resume(RunFolder(run).read_config(), run)
    csv.unlink()
    with pytest.raises(ValueError, match=f"^{csv}, the data this run trained on, is gone"):
        task_to_resume(RunFolder(run).read_config(), run)


def test_resuming_on_the_same_file_goes_on(forecast_run):
    run, csv, _ = forecast_run
    shutil.move(csv.parent.parent / "moved" / "s.csv", csv)
    out = lstmlab("train", "forecast", "--resume", "--out", run, "--json")
    assert out.returncode == 0, out.stderr


def test_a_charlm_run_generates_and_evaluates_after_its_text_moved(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat; the dog sat on the log.\n" * 60, encoding="utf-8")
    task = get_task("charlm", text=str(text), seq_len=20)
    result = _train(task, tmp_path / "run")
    text.rename(tmp_path / "elsewhere.txt")
    assert evaluate_run(tmp_path / "run")["metrics"] == result["metrics"]
    restored, predictor, _ = load_run(tmp_path / "run")
    assert restored.alphabet == task.alphabet
    out = restored.generate(predictor, tmp_path / "gen", length=30, temperature=0.5, top_k=0,
                            prompt="the ", seed=0)
    assert len(out["text"]) == 34 and set(out["text"]) <= set(task.alphabet)
    with pytest.raises(ValueError, match="keeps the test text only"):
        restored.train_batch(1, 4)
    assert export_run(tmp_path / "run", "onnx").is_file()


def test_a_sentiment_run_predicts_after_its_csv_moved(tmp_path):
    texts, labels = _reviews(120)
    csv = tmp_path / "reviews.csv"
    csv.write_text("review,opinion\n" + "".join(f'"{t}",{y}\n' for t, y in zip(texts, labels)))
    task = get_task("sentiment", csv=str(csv), text_column="review", label_column="opinion",
                    embedding=8)
    result = _train(task, tmp_path / "run")
    csv.unlink()
    again = evaluate_run(tmp_path / "run")
    assert again["metrics"] == result["metrics"] and again["baselines"] == result["baselines"]
    restored, predictor, _ = load_run(tmp_path / "run")
    assert restored.words == task.words and restored.classes == ["neg", "pos"]
    assert restored.predict(predictor, text="a fine film")["predictions"][0]["label"] in ("neg", "pos")


def test_a_classify_run_predicts_after_its_csv_moved(tmp_path):
    csv = tmp_path / "seqs.csv"
    csv.write_text(_ramps(60), encoding="utf-8")
    task = get_task("classify", csv=str(csv))
    result = _train(task, tmp_path / "run")
    (tmp_path / "keep.csv").write_text(csv.read_text())
    csv.unlink()
    assert evaluate_run(tmp_path / "run")["metrics"] == result["metrics"]
    restored, predictor, _ = load_run(tmp_path / "run")
    np.testing.assert_array_equal(restored.mu, task.mu)
    out = restored.predict(predictor, tmp_path / "keep.csv")
    assert out["sequences"] == 60


def test_a_run_of_built_in_data_rebuilds_from_its_options(tmp_path):
    task = get_task("sine", test_size=4)
    _train(task, tmp_path / "run", steps=2)
    assert not (tmp_path / "run" / "data.safetensors").exists()
    state = json.loads((tmp_path / "run" / "preprocessing.json").read_text())
    assert state["sources"] == {} and state["options"]["test_size"] == 4
    restored = task_of_run(RunFolder(tmp_path / "run").read_config(), tmp_path / "run")
    assert restored.stored is None and restored.opts == task.opts


def test_a_music_run_generates_after_its_folder_moved(tmp_path):
    from tests.test_tasks_music import _small_folder

    folder = _small_folder(tmp_path / "chorales", n=8)
    task = get_task("music", folder=str(folder), window=16, transpose=0)
    result = _train(task, tmp_path / "run", steps=4)
    folder.rename(tmp_path / "elsewhere")
    assert evaluate_run(tmp_path / "run")["metrics"] == result["metrics"]
    restored, predictor, _ = load_run(tmp_path / "run")
    assert restored.corpus == task.corpus
    out = restored.generate(predictor, tmp_path / "gen", length=8, temperature=1.0, top_k=0,
                            prompt=None, seed=0)
    assert out["events"] == 8 and (tmp_path / "gen" / "generated.mid").is_file()


def test_a_run_written_before_runs_kept_their_data_still_loads(forecast_run):
    run, csv, result = forecast_run
    shutil.move(csv.parent.parent / "moved" / "s.csv", csv)
    (run / "preprocessing.json").unlink()
    (run / "data.safetensors").unlink()
    config = json.loads((run / "config.json").read_text())
    config["task_options"]["data"] = "seattle-temps"            # as such configs were
    (run / "config.json").write_text(json.dumps(config))
    assert evaluate_run(run)["metrics"] == result["metrics"]

"""The run commands end to end: train, evaluate, predict, export, demo; exit codes and
one-line errors for a user's mistakes."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import lstmlab, one_line_error

SMALL = ["--hidden-size", "8", "--steps", "30", "--batch-size", "8", "--eval-every", "10",
         "-o", "test_size=16"]




@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "sine"
    r = lstmlab("train", "sine", *SMALL, "--out", path, "--json")
    assert r.returncode == 0, r.stderr
    return path, json.loads(r.stdout)


def test_train_prints_the_contract_json(run):
    path, result = run
    assert {"run", "task", "engine", "variant", "seconds", "metrics", "baselines"} <= set(result)
    assert result["task"] == "sine" and result["engine"] == "numpy" and result["variant"] == "lstm"
    assert set(result["metrics"]["test"]) == {"mse", "free_run_mse"}
    assert set(result["baselines"]) == {"persistence", "zero"}


def test_evaluate_reproduces_train_and_crosses_engines(run):
    path, result = run
    r = lstmlab("evaluate", path, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["metrics"] == result["metrics"]
    r = lstmlab("evaluate", path, "--engine", "torch", "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)["metrics"]["test"]
    for k, v in result["metrics"]["test"].items():
        assert abs(t[k] - v) <= 1e-5 * max(1.0, abs(v))


def test_predict_continues_the_users_series(run, tmp_path):
    path, _ = run
    f = tmp_path / "wave.csv"
    f.write_text("value\n" + "\n".join(f"{np.sin(2 * np.pi * t / 20):.6f}" for t in range(80)))
    r = lstmlab("predict", path, "--input", f, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["steps_read"] == 80 and len(out["forecast"]) == 50
    assert np.all(np.abs(out["forecast"]) < 2.0)


@pytest.mark.parametrize("content, expect", [("1\n2\nabc\n", "line 3"), ("1\nnan\n3\n", "line 2"),
                                             ("", "holds 0 number")])
def test_predict_bad_input_is_one_line(run, tmp_path, content, expect):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    assert expect in one_line_error(lstmlab("predict", run[0], "--input", f))


def test_export_safetensors_and_onnx(run, tmp_path):
    import onnxruntime as ort

    import lstmlab as lab

    path, _ = run
    r = lstmlab("export", path, "--format", "safetensors", "--out", tmp_path / "m.safetensors", "--json")
    assert r.returncode == 0, r.stderr
    model = lab.load(tmp_path / "m.safetensors")
    r = lstmlab("export", path, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for T, B in ((7, 3), (20, 1)):
        x = np.random.default_rng(T).standard_normal((T, B, 1)).astype(np.float32)
        y = sess.run(["y"], {"x": x})[0]
        np.testing.assert_allclose(y, model(x)[0], atol=1e-5, rtol=0)


def test_corrupted_model_file_exits_2_and_runs_nothing(run, tmp_path):
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(run[0], path)
    (path / "model.safetensors").write_bytes(pickle.dumps({"a": 1}))
    err = one_line_error(lstmlab("evaluate", path))
    assert "not a readable safetensors file" in err
    (path / "model.safetensors").write_bytes(b"")
    r = lstmlab("evaluate", path, "--json")
    assert r.returncode == 2 and "is empty" in json.loads(r.stdout)["error"]


@pytest.mark.parametrize("args, expect", [
    (["train", "sinus"], "did you mean 'sine'"),
    (["train", "sine", "--variant", "lsmt"], "did you mean 'lstm'"),
    (["train", "sine", "--steps", "0"], "steps must be a positive integer"),
    (["train", "sine", "-o", "noise"], "NAME=VALUE"),
    (["train", "sine", "-o", "colour=3"], "has no option"),
    (["train", "sine", "--engine", "numpy", "--zoneout", "0.1"], "torch engine"),
    (["evaluate", "/nonexistent/run"], "not an lstmlab run folder"),
    (["train", "forecast", "--csv", "/nonexistent.csv", "--column", "x"], "does not exist"),
    (["train", "forecast", "--data", "tides"], "built in: seattle-temps, sunspots"),
    (["train", "adding", "--seq-len", "1"], "seq_len"),
    (["generate", "/nonexistent/run"], "not an lstmlab run folder"),
    (["generate", "/nonexistent/run", "--temperature", "0"], "--temperature must be a positive"),
])
def test_user_mistakes_exit_2_with_one_line(args, expect):
    assert expect in one_line_error(lstmlab(*args))


@pytest.mark.parametrize("content, expect", [
    ("", "is empty"),
    ("t,load\n0,1\n1,oops\n", "line 3, column 'load': 'oops' is not a number"),
    ("t,load\n" + "".join(f"{k},{k % 7}\n" for k in range(40)), "too short"),
])
def test_forecast_bad_csv_exits_2(tmp_path, content, expect):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert expect in one_line_error(lstmlab("train", "forecast", "--csv", path, "--column", "load",
                                            "--out", tmp_path / "run"))
    assert not (tmp_path / "run").exists()                       # nothing half-made is left


def test_resume_refuses_other_settings(run):
    err = one_line_error(lstmlab("train", "sine", "--out", run[0], "--resume", "--hidden-size", "9"))
    assert "--hidden-size 9 (the run has 8)" in err


def test_demo_trains_both_engines_and_draws(tmp_path):
    r = lstmlab("demo", "--steps", "20", "--out", tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)["runs"]
    assert [x["engine"] for x in runs] == ["numpy", "torch"]
    for x in runs:
        names = {p.rsplit("/", 1)[1] for p in x["figures"]}
        assert {"forecast.png", "gates.png", "loss.png"} <= names


def test_a_missing_optional_package_is_a_one_line_hint(tmp_path):
    """As on a core install: importing torch fails, the command says which extra to install."""
    (tmp_path / "torch.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')")
    import os
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "lstmlab", "train", "sine", "--engine", "torch",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env)
    assert "pip install 'lstmlab[torch]'" in one_line_error(r)


def test_compare_trains_each_variant_and_seed_then_reads_them_back(tmp_path):
    args = ["compare", "sine", "--variants", "lstm,rnn_tanh", "--seeds", "2", *SMALL,
            "--out", tmp_path, "--json"]
    r = lstmlab(*args)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metric"] == "mse" and [x["variant"] for x in out["results"]] == ["lstm", "rnn_tanh"]
    for x in out["results"]:
        assert len(x["values"]) == 2 and x["values"][0] != x["values"][1]   # seeds differ
        assert x["mean"] == pytest.approx(np.mean(x["values"]))
    lstm, rnn = out["results"]
    assert lstm["num_params"] == 4 * (8 * 1 + 8 * 8 + 2 * 8) + 9 and rnn["num_params"] == 8 + 64 + 16 + 9
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    mtime = (tmp_path / "lstm-s0" / "model.safetensors").stat().st_mtime
    again = json.loads(lstmlab(*args).stdout)                      # finished runs are not retrained
    assert [x["values"] for x in again["results"]] == [x["values"] for x in out["results"]]
    assert (tmp_path / "lstm-s0" / "model.safetensors").stat().st_mtime == mtime


def test_compare_checks_every_variant_before_training(tmp_path):
    err = one_line_error(lstmlab("compare", "sine", "--variants", "lstm,lsmt", "--out", tmp_path))
    assert "did you mean 'lstm'" in err and not list(tmp_path.iterdir())

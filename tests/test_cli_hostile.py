"""Hostile and careless use of the command: strict JSON, usage errors, unwritable and
damaged run folders, flags that must not be ignored, two writers, Ctrl-C, piped output."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lstmlab.io.files import read_tensors, save_tensors
from lstmlab.train.runs import RunFolder

TINY = ["--hidden-size", "8", "--steps", "20", "--batch-size", "8", "--eval-every", "10",
        "-o", "test_size=16"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def lstmlab(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "lstmlab", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "lstmlab", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def one_line_error(r, code=2):
    assert r.returncode == code, r.stdout + r.stderr
    assert r.stdout == "" and r.stderr.strip().count("\n") == 0, r.stderr
    return r.stderr


def json_error(r, code=2):
    assert r.returncode == code, r.stdout + r.stderr
    return json.loads(r.stdout)["error"]


def strict_loads(text):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "sine"
    r = lstmlab("train", "sine", *TINY, "--out", path, "--json")
    assert r.returncode == 0, r.stderr
    return path


def copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "copy")
    return tmp_path / "copy"


def wait_for_checkpoint(run: RunFolder, proc):
    while proc.poll() is None and not run.checkpoint.exists():
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()


# --- strict JSON, usage errors ------------------------------------------------------------
@pytest.mark.parametrize("args, expect", [
    (["train", "sine", "--colour", "red"], "No such option"),                 # bad option
    (["train"], "Missing argument 'TASK'"),                                   # missing argument
    (["train", "sine", "--engine", "jax"], "'jax' is not one of"),            # bad choice
    (["train", "sine", "--steps", "many"], "'many' is not a valid integer"),  # bad int
])
def test_usage_errors_are_one_line_or_a_json_object(args, expect):
    assert expect in one_line_error(lstmlab(*args))
    r = lstmlab(*args, "--json")
    assert expect in json_error(r) and r.stderr == ""


def test_strict_json_replaces_nan_and_says_where():
    from lstmlab.train.runs import strict_json

    notes = []
    out = strict_json({"metrics": {"test": {"mse": float("nan"), "mae": np.float32(0.5)}},
                       "values": [1.0, float("inf")]}, notes)
    assert out == {"metrics": {"test": {"mse": None, "mae": 0.5}}, "values": [1.0, None]}
    assert len(notes) == 2 and "metrics.test.mse is nan" in notes[0] and "values[1]" in notes[1]


def test_nan_metrics_are_null_in_files_and_in_json_output(tmp_path):
    """A diverged run's NaN test metric, read back by compare: null with a note, strict JSON."""
    args = ["compare", "sine", "--variants", "lstm", "--seeds", "1", *TINY, "--out", tmp_path,
            "--json"]
    assert lstmlab(*args).returncode == 0
    run = RunFolder(tmp_path / "lstm-s0")
    rows = run.read_metrics()
    rows[-1]["mse"] = float("nan")                               # as a diverged model scores
    run.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = lstmlab(*args)
    assert r.returncode == 0, r.stderr
    out = strict_loads(r.stdout)
    assert out["results"][0]["mean"] is None and out["results"][0]["values"] == [None]
    assert any("results[0].mean is nan" in n for n in out["notes"])
    strict_loads((tmp_path / "compare.json").read_text())
    run.log({"step": 30, "split": "test", "mse": float("inf")})
    assert run.read_metrics()[-1]["mse"] is None
    strict_loads(run.metrics.read_text().splitlines()[-1])


# --- unwritable --out ---------------------------------------------------------------------
def test_an_impossible_out_is_one_line(run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    err = one_line_error(lstmlab("train", "sine", *TINY, "--out", blocker / "run"))
    assert f"cannot write {blocker / 'run'}" in err and "is a file, not a folder" in err
    assert "cannot write /proc/lstmlab-run" in one_line_error(
        lstmlab("train", "sine", *TINY, "--out", "/proc/lstmlab-run"))
    err = one_line_error(lstmlab("export", run, "--format", "onnx", "--out", blocker / "m.onnx"))
    assert f"cannot write {blocker / 'm.onnx'}" in err
    r = lstmlab("export", run, "--format", "safetensors", "--out", "/proc/version", "--json")
    assert "cannot write /proc/version" in json_error(r)


def test_generate_into_an_impossible_out_is_one_line(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    path = tmp_path / "charlm"
    r = lstmlab("train", "charlm", "--text", text, "--steps", "2", "--eval-every", "2",
                "--hidden-size", "8", "--batch-size", "4", "--engine", "numpy", "--out", path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "a-file").write_text("x")
    err = one_line_error(lstmlab("generate", path, "--length", "5", "--out",
                                 tmp_path / "a-file" / "samples"))
    assert "cannot write" in err and "a-file is a file, not a folder" in err


# --- damaged run folders --------------------------------------------------------------------
def _no_task(p):
    cfg = json.loads((p / "config.json").read_text())
    del cfg["task"]
    (p / "config.json").write_text(json.dumps(cfg))


def _checkpoint_meta(key, value):
    def damage(p):
        tensors, meta = read_tensors(p / "checkpoint.safetensors", "checkpoint")
        meta = {k: v for k, v in meta.items() if k != key}
        if value is not None:
            meta[key] = value
        save_tensors(p / "checkpoint.safetensors", tensors, meta)
    return damage


def _no_optimizer_tensors(p):
    tensors, meta = read_tensors(p / "checkpoint.safetensors", "checkpoint")
    save_tensors(p / "checkpoint.safetensors",
                 {k: v for k, v in tensors.items() if not k.startswith("optim/")}, meta)


def _row_without_step(p):
    lines = (p / "metrics.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    del row["step"]
    (p / "metrics.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")


def _checkpoint_is_a_folder(p):
    (p / "checkpoint.safetensors").unlink()
    (p / "checkpoint.safetensors").mkdir()


@pytest.mark.parametrize("damage, command, expect", [
    (_no_task, "evaluate", "config.json is damaged: it has no 'task'"),
    (lambda p: (p / "config.json").write_text("[1, 2]"), "evaluate",
     "config.json is damaged: it holds a JSON list"),
    (lambda p: (p / "model.safetensors").unlink() or (p / "model.safetensors").mkdir(),
     "evaluate", "model.safetensors is a directory"),
    (_checkpoint_meta("optim", None), "resume", "checkpoint.safetensors is damaged: its metadata "
                                                "has no 'optim'"),
    (_checkpoint_meta("progress", "{step"), "resume", "checkpoint.safetensors is damaged: its "
                                                      "'progress' metadata is not valid JSON"),
    (_checkpoint_meta("progress", '{"step": 10, "mood": 1}'), "resume",
     "checkpoint.safetensors does not fit this run"),
    (_no_optimizer_tensors, "resume", "checkpoint.safetensors is damaged: it holds no optimizer"),
    (_checkpoint_is_a_folder, "resume", "checkpoint.safetensors is a directory"),
    (_row_without_step, "resume", "metrics.jsonl is damaged: line 1 is not an object with an "
                                  "integer 'step'"),
    (lambda p: (p / "metrics.jsonl").write_text((p / "metrics.jsonl").read_text() + '{"step": 3,\n'),
     "resume", "metrics.jsonl is damaged: line 6 is not valid JSON"),
])
def test_a_damaged_run_folder_is_one_line_naming_the_file(run, tmp_path, damage, command, expect):
    path = copy(run, tmp_path)
    damage(path)
    args = ["evaluate", path] if command == "evaluate" else ["train", "sine", "--resume",
                                                             "--out", path]
    err = one_line_error(lstmlab(*args))
    assert expect in err and str(path) in err


# --- flags that were ignored ------------------------------------------------------------------
def test_demo_refuses_zero_steps():
    assert "steps must be a positive integer" in one_line_error(lstmlab("demo", "--steps", "0",
                                                                        timeout=60))


def test_compare_honours_seed_and_refuses_variant(tmp_path):
    r = lstmlab("compare", "sine", "--variants", "lstm", "--seeds", "1", "--seed", "7", *TINY,
                "--out", tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["seeds"] == [7]
    assert json.loads((tmp_path / "lstm-s7" / "config.json").read_text())["seed"] == 7
    err = one_line_error(lstmlab("compare", "sine", "--variant", "gru", "--out", tmp_path / "x"))
    assert "--variant" in err and "--variants" in err


def test_resume_refuses_other_task_options(run):
    err = one_line_error(lstmlab("train", "sine", "--resume", "--out", run, "-o", "noise=0.5"))
    assert "-o noise=0.5 (the run has 0.0)" in err


# --- two writers, Ctrl-C, piped output -------------------------------------------------------
def test_a_second_training_into_the_same_folder_is_refused_until_the_first_dies(tmp_path):
    path = tmp_path / "run"
    args = ["train", "sine", "--hidden-size", "8", "--steps", "2000", "--batch-size", "8",
            "--eval-every", "10", "-o", "test_size=16", "--out", path]
    first = start(*args)
    try:
        wait_for_checkpoint(RunFolder(path), first)
        for extra in ([], ["--resume"]):
            err = one_line_error(lstmlab(*args, *extra))
            assert f"{path} is being written by another lstmlab process (pid {first.pid})" in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # the kernel released the lock with the process: a resume goes on (and is refused only
    # for its settings, which shows it got past the lock)
    err = one_line_error(lstmlab("train", "sine", "--resume", "--out", path, "--steps", "30"))
    assert "--steps 30 (the run has 2000)" in err


def test_ctrl_c_says_where_the_checkpoint_is_and_how_to_resume(tmp_path):
    path = tmp_path / "run"
    proc = start("train", "sine", "--hidden-size", "8", "--steps", "2000", "--batch-size", "8",
                 "--eval-every", "10", "-o", "test_size=16", "--out", path)
    wait_for_checkpoint(RunFolder(path), proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    step = json.loads(read_tensors(path / "checkpoint.safetensors")[1]["progress"])["step"]
    assert last.startswith("interrupted: at step ") and "Traceback" not in err
    assert f"the last checkpoint (step {step}) is {path / 'checkpoint.safetensors'}" in last
    assert last.endswith(f"continue with: lstmlab train sine --resume --out {path}")
    assert not list(path.glob(".*.tmp"))


def test_piped_stderr_gets_plain_progress_lines(tmp_path):
    r = lstmlab("train", "sine", *TINY, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    steps = [line.split("step ")[1].split(" ")[0] for line in lines]
    assert steps[-1] == "20/20" and "10/20" in steps and len(lines) <= 12
    assert "it/s, eta" in lines[-1] and "valid" in lines[-1]


# --- variants ---------------------------------------------------------------------------------
def test_variants_table_has_whole_sentences_and_name_prints_the_equations():
    rows = {v["variant"]: v for v in json.loads(lstmlab("variants", "--json").stdout)["variants"]}
    assert rows["gru"]["summary"].endswith("(PyTorch nn.GRU, ONNX GRU with linear_before_reset=1).")
    assert rows["lstm1997"]["summary"].endswith("and the original squashing functions.")
    assert all(v["summary"].endswith(".") for v in rows.values())
    r = lstmlab("variants", "gru")
    assert r.returncode == 0 and "n = tanh(W_n x + b_in + r * (R_n h + b_hn))" in r.stdout
    r = lstmlab("variants", "cifg+peepholes", "--json")
    assert "f = 1 - i" in json.loads(r.stdout)["doc"]
    assert "did you mean 'lstm'" in one_line_error(lstmlab("variants", "lsmt"))

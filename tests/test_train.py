"""The training loop: it learns, it keeps whole files when killed, it resumes exactly, and
it stops on a diverging loss without touching what it saved."""

import json
import os
import signal
import subprocess
import sys
import time
import weakref

import matplotlib.image
import numpy as np
import pytest

from lstmlab.config import TrainConfig
from lstmlab.io.files import read_tensors
from lstmlab.tasks import get_task
from lstmlab.tasks.sine import Sine
from lstmlab.train import TrainingDiverged, TrainingInterrupted, fit
from lstmlab.train.callbacks import Callback
from lstmlab.train.runs import RunFolder
from tests.conftest import Crash, crash_at

SMALL = dict(steps=60, batch_size=8, eval_every=10)


def _small_run(tmp_path, engine="numpy", **kw):
    task = get_task("sine", seed=0, test_size=16)
    return fit(task, task.model_config(hidden_size=8), TrainConfig(**{**SMALL, **kw}),
               tmp_path / "run", engine=engine)


def test_numpy_run_learns_and_leaves_its_files(tmp_path):
    result = _small_run(tmp_path)
    run = RunFolder(result["run"])
    rows = run.read_metrics()
    valid = [r["loss"] for r in rows if r["split"] == "valid"]
    assert len(valid) == 6 and valid[-1] < 0.5 * valid[0]         # the loss falls
    assert [r["split"] for r in rows][-1] == "test"
    cfg = json.loads(run.config.read_text())
    assert cfg["engine"] == "numpy" and cfg["train"]["steps"] == 60 and cfg["model"]["hidden_size"] == 8
    assert set(result) >= {"run", "task", "engine", "variant", "seconds", "metrics", "baselines"}
    assert result["metrics"]["test"]["mse"] < result["baselines"]["zero"]["mse"]
    for name in ("forecast.png", "gates.png", "loss.png"):
        assert (run.figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    read_tensors(run.model)
    read_tensors(run.checkpoint)


def test_same_seed_same_numbers(tmp_path):
    a = _small_run(tmp_path / "a", steps=20)
    b = _small_run(tmp_path / "b", steps=20)
    assert a["metrics"] == b["metrics"]


def test_ctrl_c_inside_a_finalizer_still_stops_the_training(tmp_path):
    """Ctrl-C that lands while a finalizer runs (the NumPy engine gives its buffers back to
    its pool in one) stops the training after that step: Python would print a KeyboardInterrupt
    raised there and carry on. The handler is the previous one again afterwards."""
    class CtrlCInAFinalizer(Callback):
        def on_step(self, step, loss, lr):
            if step == 3:
                class Owner:
                    pass
                weakref.finalize(Owner(), os.kill, os.getpid(), signal.SIGINT)  # runs at once

    before = signal.getsignal(signal.SIGINT)
    task = get_task("sine", seed=0, test_size=16)
    with pytest.raises(TrainingInterrupted) as e:
        fit(task, task.model_config(hidden_size=8), TrainConfig(**SMALL), tmp_path / "run",
            callbacks=[CtrlCInAFinalizer()])
    assert e.value.step in (3, 4) and e.value.checkpoint_step is None
    assert signal.getsignal(signal.SIGINT) is before


def test_a_run_folder_is_not_overwritten(tmp_path):
    _small_run(tmp_path, steps=10)
    with pytest.raises(ValueError, match="already holds a run"):
        _small_run(tmp_path, steps=10)


class _Diverging(Sine):
    def train_batch(self, step, batch_size):
        b = super().train_batch(step, batch_size)
        if step == 25:
            b.y = np.full_like(b.y, np.inf)
        return b


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, engine):
    task = _Diverging(seed=0, test_size=16)
    run = RunFolder(tmp_path / "run")
    with pytest.raises(TrainingDiverged) as e:
        fit(task, task.model_config(hidden_size=8), TrainConfig(**SMALL), run.path, engine=engine)
    msg = str(e.value)
    assert "\n" not in msg and "step 25" in msg and "step 20" in msg
    tensors, meta = read_tensors(run.checkpoint)
    assert json.loads(meta["progress"])["step"] == 20
    assert max(r["step"] for r in run.read_metrics()) == 20
    read_tensors(run.model)


# --- killed at random moments, then resumed ------------------------------------------------
CLI = [sys.executable, "-m", "lstmlab", "train", "sine", "--hidden-size", "8", "--steps", "300",
       "--batch-size", "8", "--eval-every", "10", "-o", "test_size=16", "--json"]


def _check_whole(run: RunFolder):
    """Every file the run has is complete: parseable, loadable, decodable."""
    if run.config.exists():
        json.loads(run.config.read_text())
    run.read_metrics()                                           # every line is whole JSON
    for f in (run.model, run.checkpoint):
        if f.exists():
            read_tensors(f)
    for png in run.figures.glob("*.png") if run.figures.exists() else ():
        matplotlib.image.imread(png)


@pytest.mark.parametrize("engine, kills", [("numpy", 5), ("torch", 3)])
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tmp_path, engine, kills):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    args = CLI + ["--engine", engine]
    ref = subprocess.run(args + ["--out", str(tmp_path / "ref")], capture_output=True, text=True,
                         env=env, check=True)
    expected = json.loads(ref.stdout)["metrics"]["test"]

    run = RunFolder(tmp_path / "killed")
    rng = np.random.default_rng(7)
    targets = sorted(rng.choice(np.arange(20, 290, 10), size=kills, replace=False))
    killed_at = []                                               # checkpoint step after each kill
    for target in targets:
        p = subprocess.Popen(args + ["--out", str(run.path)] + (["--resume"] if run.exists() else []),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        while p.poll() is None and max((r["step"] for r in run.read_metrics()), default=0) < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.03))                       # a random moment after it
        p.send_signal(signal.SIGKILL)
        p.wait()
        _check_whole(run)
        killed_at.append(json.loads(read_tensors(run.checkpoint)[1]["progress"])["step"])
    # the kills landed in the middle of training, at different places
    assert len({s for s in killed_at if 0 < s < 300}) == kills, killed_at
    done = subprocess.run(args + ["--out", str(run.path), "--resume"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)["metrics"]["test"]
    if engine == "numpy":
        assert got == expected
    else:
        assert got.keys() == expected.keys()
        assert all(abs(got[k] - expected[k]) <= 1e-6 for k in got)
    rows = run.read_metrics()
    assert [r["step"] for r in rows if r["split"] == "valid"] == list(range(10, 301, 10))
    assert not list(run.path.glob(".*.tmp"))


# --- schedules, early stopping, truncated BPTT across windows ----------------------------
def test_learning_rate_schedules():
    cos = TrainConfig(steps=100, lr=1.0, schedule="cosine")
    assert cos.lr_at(1) == 1.0 and abs(cos.lr_at(51) - 0.5) < 1e-12 and cos.lr_at(100) < 1e-3
    step = TrainConfig(steps=100, lr=1.0, schedule="step")
    assert [step.lr_at(s) for s in (50, 51, 76)] == [1.0, pytest.approx(0.1), pytest.approx(0.01)]
    assert TrainConfig(schedule="plateau", lr=0.4).lr_at(9, plateau_factor=0.25) == 0.1


class _Flat(Sine):
    """Validation never improves after the first evaluation."""
    def evaluate(self, predictor, split):
        m = super().evaluate(predictor, split)
        return {**m, "loss": 1.0} if split == "valid" else m


def test_early_stopping_and_plateau(tmp_path):
    task = _Flat(seed=0, test_size=16)
    result = fit(task, task.model_config(hidden_size=8),
                 TrainConfig(**{**SMALL, "steps": 200, "patience": 3, "schedule": "plateau",
                                "plateau_patience": 2}), tmp_path / "run")
    rows = RunFolder(result["run"]).read_metrics()
    assert result["stopped_early"] and result["best_step"] == 10
    assert max(r["step"] for r in rows if r["split"] == "valid") == 40     # 1 + 3 evaluations
    lrs = [r["lr"] for r in rows if r["split"] == "train"]
    assert lrs[0] == lrs[2] and lrs[3] == pytest.approx(lrs[0] / 2)       # halved after 2 flat


class _Stream(Sine):
    """One long wave per sequence, cut into windows: the state crosses the windows."""
    def train_batch(self, step, batch_size):
        k = (step - 1) % 5                                       # 5 windows of 20 steps a stream
        rng = np.random.default_rng([self.seed, 0, (step - 1) // 5])
        period, phase = rng.uniform(12, 40, batch_size), rng.uniform(0, 6.3, batch_size)
        t = np.arange(k * 20, k * 20 + 21)[:, None]
        wave = np.sin(2 * np.pi * t / period + phase)
        from lstmlab.tasks import Batch
        return Batch(x=wave[:-1, :, None], y=wave[1:, :, None], carry=k > 0)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_truncated_bptt_carries_state_and_resumes_exactly(tmp_path, engine):
    task, cfg = _Stream(seed=0, test_size=16), TrainConfig(**{**SMALL, "eval_every": 7})
    model = task.model_config(hidden_size=8)
    whole = fit(task, model, cfg, tmp_path / "whole", engine=engine)
    with pytest.raises(Crash):                                  # dies mid-stream, after step 16
        fit(task, model, cfg, tmp_path / "cut", engine=engine, callbacks=[crash_at(17)])
    tensors, meta = read_tensors(RunFolder(tmp_path / "cut").checkpoint)
    assert json.loads(meta["progress"])["step"] == 14 and "carry/0" in tensors
    resumed = fit(task, model, cfg, tmp_path / "cut", engine=engine, resume=True)
    assert resumed["metrics"] == whole["metrics"]

    class _Reset(_Stream):                                       # the same windows, state dropped
        def train_batch(self, step, batch_size):
            b = super().train_batch(step, batch_size)
            b.carry = False
            return b

    reset = fit(_Reset(seed=0, test_size=16), model, cfg, tmp_path / "reset", engine=engine)
    assert reset["metrics"] != whole["metrics"]


def test_live_files_follow_the_training(tmp_path):
    """`--live` (the Live callback): live.json says where the training is, and
    live_gates.json holds the gates of the first validation example at the last evaluation."""
    from lstmlab.inspect import Subject, activations
    from lstmlab.inspect.analyses import first_steps
    from lstmlab.train import Live
    from lstmlab.train.loop import load_run

    task = get_task("sine", test_size=4)
    run = tmp_path / "run"
    seen = []

    class Watch(Live):
        def on_eval(self, step, metrics):
            super().on_eval(step, metrics)
            seen.append(json.loads((run / "live.json").read_text()))

    result = fit(task, task.model_config(hidden_size=20), TrainConfig(steps=30, eval_every=10, batch_size=8),
                 run, callbacks=[Watch(run, task, "numpy")])
    assert [s["step"] for s in seen] == [10, 20, 30]
    assert all(s["state"] == "running" and s["steps"] == 30 and s["valid_loss"] > 0 for s in seen)
    assert seen[-1]["eta_seconds"] == 0 and seen[0]["steps_per_second"] > 0
    assert json.loads((run / "live.json").read_text())["state"] == "finished"
    gates = json.loads((run / "live_gates.json").read_text())
    assert gates["step"] == 30
    f = np.array(gates["groups"]["l0"]["f"])
    assert f.shape == (Live.GATE_STEPS, Live.GATE_UNITS)          # 60 steps of 20 units: 16 shown
    # the numbers are the model's at that evaluation, which the run kept as its best
    assert result["best_step"] == 30
    _, predictor, _ = load_run(run)
    whole = activations(Subject(predictor, "numpy", task), first_steps(task.examples("valid").take(0), 60))
    np.testing.assert_allclose(f, whole.groups["l0"]["f"][:, 0, :16], rtol=1e-6)

"""The training loop, shared by both engines, and the evaluation of a finished run.

    result = fit(task, model_config, train_config, "runs/sine", engine="numpy")

Each step: the task's batch for that step (a pure function of seed and step), the
schedule's learning rate, one engine update. Every `eval_every` steps: validation, the
metrics log, the best model and a checkpoint. At the end: the best model on the test split,
the task's baselines and figures. Because batches, learning rates and dropout masks depend
only on (seed, step), a run resumed from a checkpoint ends exactly where an uninterrupted
one does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import ModelConfig, TrainConfig
from ..interfaces import Engine
from ..io.files import read_tensors
from ..spec import variant as make_spec
from ..tasks.rundata import check_sources, save_task_data, task_of_run
from ..threads import configure as configure_threads
from . import distributed
from .callbacks import Callback
from .engines import ensemble_predictor, make_engine, predictor_for
from .runs import RunFolder, versions


class TrainingDiverged(ValueError):
    """The loss became NaN or inf; the run folder keeps its last good checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`: says the step reached and where the run can resume from.

    step: the last step trained; checkpoint_step: the step of the last checkpoint, or None
    before the first one; run: the run folder; command: the shell command that resumes it."""

    def __init__(self, run: RunFolder, step: int, checkpoint_step: int | None, task: str):
        self.run, self.step, self.checkpoint_step = run, step, checkpoint_step
        self.command = f"lstmlab train {task} --resume --out {shlex.quote(str(run))}"
        kept = (f"the last checkpoint (step {checkpoint_step}) is {run.checkpoint}"
                if checkpoint_step is not None else "no checkpoint was written yet (it starts over)")
        super().__init__(f"at step {step}; {kept}; continue with: {self.command}")


@dataclasses.dataclass
class Progress:
    """The loop's counters: saved with every checkpoint, restored by --resume."""
    step: int = 0
    best_loss: float = float("inf")
    best_step: int = 0
    bad_evals: int = 0                 # evaluations since the best (early stopping)
    plateau_bad: int = 0               # evaluations since the lr last changed or improved
    plateau_factor: float = 1.0
    seconds: float = 0.0               # training time so far, across resumes
    stopped_early: bool = False


def fit(task, model: ModelConfig, train: TrainConfig, run_dir, engine: str = "numpy",
        device: str | None = None, resume: bool = False, callbacks: Sequence[Callback] = (),
        threads: int | None = None):
    """Train `task` into `run_dir`; returns the result dict the CLI prints.

    The run folder is locked while this runs (a second writer gets a ValueError), and
    Ctrl-C raises `TrainingInterrupted`, which says how to resume. `threads`: CPU threads
    (see lstmlab.threads; None: $LSTMLAB_THREADS, else the cores this process may use)."""
    used = configure_threads(threads, step_work(model, train))   # before the engine loads torch
    run = RunFolder(run_dir)
    reached = _LastStep()
    world = distributed.world()                                  # one of several processes?
    lead = world is None or world.lead
    if not lead:                                                 # rank 0 reports and writes
        callbacks = ()
    with run.lock() if lead else contextlib.nullcontext(), _CtrlC() as ctrl_c:
        try:
            result = _fit(task, model, train, run, engine, device, resume,
                          [*callbacks, reached, ctrl_c], world, used)
            return None if result is None else {**result, "threads": used}
        except KeyboardInterrupt:
            try:
                saved = run.load_checkpoint()
            except ValueError:                               # cut while the first one was made
                saved = None
            raise TrainingInterrupted(run, reached.step, saved[2]["step"] if saved else None,
                                      task.name) from None


def step_work(model: ModelConfig, train: TrainConfig) -> float:
    """Multiply-adds of one training step's recurrent products, roughly: forward and backward
    of (B, I + R) x (I + R, G H) per layer and direction and step (sequence length left out:
    the threads share out each product, not the steps)."""
    H, R = model.hidden_size, model.proj_size or model.hidden_size
    dirs = 2 if model.bidirectional else 1
    gates = make_spec(model.variant).num_gates
    return 3.0 * train.batch_size * (model.input_size + R) * gates * H * model.num_layers * dirs


class _CtrlC(Callback):
    """Ctrl-C (SIGINT) while training is noted and acted on after the step or evaluation under
    way, as KeyboardInterrupt: raised wherever the signal landed, it could fall inside a
    finalizer (a buffer going back to the NumPy engine's pool), where Python only prints it
    and carries on, and the training went on to its end. A second Ctrl-C interrupts at once.
    Only in the main thread (signals are delivered there); the previous handler comes back."""

    def __init__(self):
        self.requested, self.installed, self.previous = False, False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc):
        if self.installed:                                       # None: one not set from Python
            signal.signal(signal.SIGINT, signal.default_int_handler if self.previous is None
                          else self.previous)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def _check(self):
        if self.requested:
            raise KeyboardInterrupt

    def on_step(self, step, loss, lr):
        self._check()

    def on_model(self, step, predictor):
        self._check()


class _LastStep(Callback):
    step = 0

    def on_start(self, total_steps, start_step):
        self.step = start_step

    def on_step(self, step, loss, lr):
        self.step = step


def _fit(task, model, train, run: RunFolder, engine, device, resume, callbacks, world=None,
         threads: int | None = None):
    """The training; with several processes (world), rank 0 alone writes the run folder and
    evaluates, and the others return None."""
    lead = world is None or world.lead
    if lead and run.exists() and not resume:
        raise ValueError(f"{run} already holds a run; pass --resume to continue it, "
                         "or choose another --out")
    if lead and resume and not run.exists():
        raise ValueError(f"{run} holds no run to resume (no config.json)")
    if world is not None:
        world.rows(train.batch_size)                             # refuses a batch it cannot share
    eng: Engine = make_engine(engine, model, train, task.loss, device, world)
    prog, carry = Progress(), None
    if resume:
        saved = None
        if lead:
            check_sources(task, run.path)                        # the same data, or refused
            run.remove_temporaries()
            saved = run.load_checkpoint()
        if world is not None:                                    # every rank restores rank 0's
            saved = world.broadcast(saved)
        if saved is not None:                                    # else: from the beginning
            tensors, optim, counters = saved
            try:                                             # a user's file: checked, one line
                eng.restore(tensors, optim)
                prog = Progress(**counters)
            except (KeyError, TypeError, IndexError, ValueError) as e:
                raise ValueError(f"{run.checkpoint} does not fit this run ({e}); delete it to "
                                 "restart from step 0 with --resume") from None
            arrays = [tensors[k] for k in sorted(tensors) if k.startswith("carry/")]
            carry = eng.arrays_to_state(arrays if world is None else world.share_state(arrays))
        if lead:
            run.truncate_metrics(prog.step)
    elif lead:
        run.write_config({"task": task.name, "task_options": task.opts, "engine": engine,
                          "device": device or "cpu", "model": model.to_dict(),
                          "train": train.to_dict(), "seed": train.seed, "versions": versions(),
                          # the float reductions' order, and so the run, follows the count
                          "threads": threads})
        save_task_data(task, run.path)                           # the run needs no file after
    for cb in callbacks:
        cb.on_start(train.steps, prog.step)

    started, window = time.perf_counter() - prog.seconds, []
    step = prog.step
    while step < train.steps and not prog.stopped_early:
        step += 1
        batch = task.train_batch(step, train.batch_size)
        lr = train.lr_at(step, prog.plateau_factor)
        loss, norm, final = eng.train_step(batch, lr, carry if batch.carry else None, step)
        if not np.isfinite(loss):
            kept = (f"the last good checkpoint (step {prog.step}) is kept in {run}"
                    if run.checkpoint.is_file() else "no checkpoint was written yet")
            raise TrainingDiverged(f"the training loss became {loss} at step {step}; {kept}; "
                                   f"lower --lr (now {train.lr:g}) or check the data")
        carry = final
        window.append((loss, norm))
        for cb in callbacks:
            cb.on_step(step, loss, lr)
        if step % train.eval_every == 0 or step == train.steps:
            prog.step, prog.seconds = step, time.perf_counter() - started
            whole = carry
            if world is not None:                                # the whole batch's, for the checkpoint
                whole = eng.arrays_to_state(world.gather_state(eng.state_to_arrays(carry)))
            if lead:
                _evaluate_and_checkpoint(task, eng, run, train, prog, window, lr, whole, callbacks)
            if world is not None:                                # rank 0's decisions, for all
                prog = world.broadcast(prog)
            window = []

    if not lead:
        world.stop()
        return None
    eng.load_weights(read_tensors(run.model)[0])                 # the best model, for the test
    result = finish(task, eng.predictor(), run, prog.step, engine, model)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["num_params"] = eng.num_params
    result["stopped_early"] = prog.stopped_early
    result["best_step"] = prog.best_step
    for cb in callbacks:
        cb.on_end(result)
    if world is not None:
        world.stop()
    return result


def _evaluate_and_checkpoint(task, eng: Engine, run: RunFolder, train: TrainConfig, prog: Progress,
                             window: list, lr: float, carry, callbacks) -> None:
    valid = task.evaluate(eng.predictor(), "valid")
    losses, norms = np.array(window).T
    finite = np.isfinite(norms)              # not: fp16 steps skipped when the gradients overflowed
    run.log({"step": prog.step, "split": "train", "loss": float(losses.mean()), "lr": lr,
             "grad_norm": float(norms[finite].mean()) if finite.any() else float("nan"),
             **({"skipped_steps": int((~finite).sum())} if not finite.all() else {}),
             "time": round(prog.seconds, 3)})
    run.log({"step": prog.step, "split": "valid", **valid, "time": round(prog.seconds, 3)})
    if valid["loss"] < prog.best_loss:
        prog.best_loss, prog.best_step, prog.bad_evals, prog.plateau_bad = \
            valid["loss"], prog.step, 0, 0
        eng.save_model(run.model)
    else:
        prog.bad_evals += 1
        prog.plateau_bad += 1
        if train.schedule == "plateau" and prog.plateau_bad >= train.plateau_patience:
            prog.plateau_factor, prog.plateau_bad = prog.plateau_factor * 0.5, 0
    if train.patience and prog.bad_evals >= train.patience:
        prog.stopped_early = True
    tensors, optim = eng.checkpoint()
    tensors.update({f"carry/{k}": a for k, a in enumerate(eng.state_to_arrays(carry))})
    run.save_checkpoint(tensors, optim, dataclasses.asdict(prog))
    for cb in callbacks:
        cb.on_eval(prog.step, valid)
    predictor = eng.predictor()
    for cb in callbacks:
        cb.on_model(prog.step, predictor)


def finish(task, predictor, run: RunFolder, step: int, engine: str, model: ModelConfig) -> dict:
    """Test metrics, baselines and figures of a trained model; logs the test row."""
    from ..viz.figures import loss_curve

    test, baselines = task.evaluate(predictor, "test"), task.baselines()
    run.log({"step": step, "split": "test", **test})
    task.figures(predictor, run.figures, test, baselines)
    loss_curve(run.figures / "loss.png", run.read_metrics(), note=task.loss_note,
               title=f"{task.name}: training and validation loss ({engine}, {model.variant})")
    return {"run": str(run.path), "task": task.name, "engine": engine, "variant": model.variant,
            "metrics": {"test": test}, "baselines": baselines,
            "baseline_models": task.baseline_models(), "chosen": task.chosen(),
            "figures": sorted(str(p) for p in Path(run.figures).glob("*.png"))}


def load_run(run_dir, engine: str | None = None, device: str | None = None):
    """(task, predictor, config) of a finished run, in its own engine unless told otherwise."""
    from ..io.files import load

    run = RunFolder(run_dir)
    cfg = run.read_config()
    if run.existing(run.model) is None:
        raise ValueError(f"{run} has no model.safetensors yet; train it until its first evaluation")
    task = task_of_run(cfg, run.path)                            # never the file at that path
    engine = engine or cfg["engine"]
    model = load(run.model, engine=engine, device=device)
    return task, predictor_for(model), cfg


def evaluate_ensemble(run_dirs, engine: str | None = None, device: str | None = None) -> dict:
    """Several runs of one task on the same data (seeds, say) as one model, their outputs
    averaged (engines.ensemble_predictor), on the test split next to the baselines; with
    each member's own score of the task's metric ("members")."""
    start = time.perf_counter()
    loaded = [load_run(d, engine, device) for d in run_dirs]
    task = loaded[0][0]
    same = {k: v for k, v in task.state().items() if k != "seed"}
    for d, (t, _, _) in zip(run_dirs[1:], loaded[1:]):
        if t.name != task.name or {k: v for k, v in t.state().items() if k != "seed"} != same:
            raise ValueError(f"{d} is not a run of the same task on the same data as "
                             f"{run_dirs[0]}: an ensemble averages forecasts of one thing")
    members = [t.evaluate(p, "test")[task.metric] for t, p, _ in loaded]
    test = task.evaluate(ensemble_predictor([p for _, p, _ in loaded]), "test")
    return {"runs": [str(RunFolder(d).path) for d in run_dirs], "task": task.name,
            "engine": engine or loaded[0][2]["engine"], "variant": f"ensemble of {len(loaded)}",
            "seconds": round(time.perf_counter() - start, 3), "metrics": {"test": test},
            "members": {task.metric: members}, "baselines": task.baselines(),
            "baseline_models": task.baseline_models(), "chosen": task.chosen()}


def evaluate_run(run_dir, engine: str | None = None, device: str | None = None) -> dict:
    """Re-evaluate a run's saved model on its task's test split, next to the baselines."""
    start = time.perf_counter()
    task, predictor, cfg = load_run(run_dir, engine, device)
    run = RunFolder(run_dir)
    test = task.evaluate(predictor, "test")
    return {"run": str(run.path), "task": task.name, "engine": engine or cfg["engine"],
            "variant": cfg["model"]["variant"], "seconds": round(time.perf_counter() - start, 3),
            "metrics": {"test": test}, "baselines": task.baselines(),
            "baseline_models": task.baseline_models(), "chosen": task.chosen()}

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

import dataclasses
import time
from pathlib import Path

import numpy as np

from ..config import ModelConfig, TrainConfig
from ..io.files import read_tensors
from ..tasks import get_task
from .callbacks import Callback
from .engines import make_engine, predictor_for
from .runs import RunFolder, versions


class TrainingDiverged(ValueError):
    """The loss became NaN or inf; the run folder keeps its last good checkpoint."""


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
        device: str | None = None, resume: bool = False, callbacks: list[Callback] = ()):
    """Train `task` into `run_dir`; returns the result dict the CLI prints."""
    run = RunFolder(run_dir)
    if run.exists() and not resume:
        raise ValueError(f"{run} already holds a run; pass --resume to continue it, "
                         "or choose another --out")
    if resume and not run.exists():
        raise ValueError(f"{run} holds no run to resume (no config.json)")
    eng = make_engine(engine, model, train, task.loss, device)
    prog, carry = Progress(), None
    if resume:
        run.remove_temporaries()
        saved = run.load_checkpoint()
        if saved is not None:                                    # else: from the beginning
            tensors, optim, counters = saved
            eng.restore(tensors, optim)
            prog = Progress(**counters)
            carry = eng.arrays_to_state([tensors[k] for k in sorted(tensors)
                                         if k.startswith("carry/")])
        run.truncate_metrics(prog.step)
    else:
        run.write_config({"task": task.name, "task_options": task.opts, "engine": engine,
                          "device": device or "cpu", "model": model.to_dict(),
                          "train": train.to_dict(), "seed": train.seed, "versions": versions()})
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
            _evaluate_and_checkpoint(task, eng, run, train, prog, window, lr, carry, callbacks)
            window = []

    eng.load_weights(read_tensors(run.model)[0])                 # the best model, for the test
    result = finish(task, eng.predictor(), run, prog.step, engine, model)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["num_params"] = eng.num_params
    result["stopped_early"] = prog.stopped_early
    result["best_step"] = prog.best_step
    for cb in callbacks:
        cb.on_end(result)
    return result


def _evaluate_and_checkpoint(task, eng, run, train, prog, window, lr, carry, callbacks):
    valid = task.evaluate(eng.predictor(), "valid")
    losses, norms = np.array(window).T
    run.log({"step": prog.step, "split": "train", "loss": float(losses.mean()), "lr": lr,
             "grad_norm": float(norms.mean()), "time": round(prog.seconds, 3)})
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


def finish(task, predictor, run: RunFolder, step: int, engine: str, model: ModelConfig) -> dict:
    """Test metrics, baselines and figures of a trained model; logs the test row."""
    from ..viz.figures import loss_curve

    test, baselines = task.evaluate(predictor, "test"), task.baselines()
    run.log({"step": step, "split": "test", **test})
    task.figures(predictor, run.figures, test, baselines)
    loss_curve(run.figures / "loss.png", run.read_metrics(),
               title=f"{task.name}: training and validation loss ({engine}, {model.variant})")
    return {"run": str(run.path), "task": task.name, "engine": engine, "variant": model.variant,
            "metrics": {"test": test}, "baselines": baselines,
            "figures": sorted(str(p) for p in Path(run.figures).glob("*.png"))}


def load_run(run_dir, engine: str | None = None, device: str | None = None):
    """(task, predictor, config) of a finished run, in its own engine unless told otherwise."""
    from ..io.files import load

    run = RunFolder(run_dir)
    cfg = run.read_config()
    if not run.model.is_file():
        raise ValueError(f"{run} has no model.safetensors yet; train it until its first evaluation")
    task = get_task(cfg["task"], seed=cfg["seed"], **cfg.get("task_options", {}))
    engine = engine or cfg["engine"]
    model = load(run.model, engine=engine, device=device)
    return task, predictor_for(model), cfg


def evaluate_run(run_dir, engine: str | None = None, device: str | None = None) -> dict:
    """Re-evaluate a run's saved model on its task's test split, next to the baselines."""
    start = time.perf_counter()
    task, predictor, cfg = load_run(run_dir, engine, device)
    run = RunFolder(run_dir)
    test = task.evaluate(predictor, "test")
    return {"run": str(run.path), "task": task.name, "engine": engine or cfg["engine"],
            "variant": cfg["model"]["variant"], "seconds": round(time.perf_counter() - start, 3),
            "metrics": {"test": test}, "baselines": task.baselines()}

"""`lstmlab demo`: the seed's two pictures from one command.

Trains the `sine` task with the NumPy engine and, when PyTorch is installed, with the torch
engine (same seed, same initial weights), evaluates both on held-out waves, and leaves two
run folders, each with the forecast figure and the gate heatmap of its trained cell.
"""

from __future__ import annotations

import importlib.util

from .tasks import get_task
from .train import ProgressBar, fit
from .train.runs import default_run_dir


def run_demo(root="runs", steps: int | None = None, quiet: bool = False) -> dict:
    from .config import TrainConfig
    from .tasks.sine import Sine

    engines = ["numpy"]
    notes = []
    if importlib.util.find_spec("torch") is not None:
        engines.append("torch")
    else:
        notes.append("torch engine skipped: PyTorch is not installed (pip install 'lstmlab[torch]')")
    runs = []
    for engine in engines:
        task = get_task("sine", seed=0)
        # steps=0 is the user's (refused by TrainConfig), not "the default": only None is
        train = TrainConfig(**{**Sine.defaults.train, **({} if steps is None else {"steps": steps})})
        model = task.model_config(**Sine.defaults.model)
        run_dir = default_run_dir(root, "demo-sine", engine, model.variant, train.seed)
        bar = ProgressBar(f"sine ({engine})", disable=quiet)
        try:
            runs.append(fit(task, model, train, run_dir, engine=engine, callbacks=[bar]))
        finally:
            bar.close()
    return {"runs": runs, "notes": notes}

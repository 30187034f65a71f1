"""`lstmlab compare`: train several variants with several seeds on one task, side by side.

A small "LSTM: A Search Space Odyssey" (Greff et al. 2017) on the user's machine: each
(variant, seed) trains into its own run folder under the comparison's folder, so an
interrupted comparison picks up where it stopped (finished runs are read, not retrained;
a run killed half-way resumes from its checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..io.atomic import write_text
from ..spec import variant as make_spec
from .loop import fit
from .runs import RunFolder, strict_json


def compare(task_factory, model, train, variants: list[str], seeds: list[int], out_dir,
            engine: str = "numpy", device=None, callbacks_for=None) -> dict:
    """Train every variant with every seed; returns the table as a dict (and draws it).

    task_factory(seed) builds the task; model/train are the shared settings (their variant
    and seed are replaced per run); callbacks_for(variant, seed) gives a run's callbacks.
    """
    from ..viz.figures import compare_bars

    if not variants or not seeds:
        raise ValueError("give at least one variant and one seed")
    names = [make_spec(v).name for v in variants]                # errors before any training
    out = Path(out_dir)
    rows = []
    for name in names:
        results = []
        for seed in seeds:
            task = task_factory(seed)
            run = RunFolder(out / f"{name.replace('+', '_').replace('=', '-')}-s{seed}")
            done = [r for r in run.read_metrics() if r["split"] == "test"]
            if done and run.existing(run.model) is not None:
                results.append(_from_folder(run, done[-1], task))
                continue
            m = dataclasses.replace(model, variant=name)
            t = dataclasses.replace(train, seed=seed)
            r = fit(task, m, t, run.path, engine=engine, device=device, resume=run.exists(),
                    callbacks=callbacks_for(name, seed) if callbacks_for else ())
            results.append({"value": r["metrics"]["test"][task.metric], "seconds": r["seconds"],
                            "num_params": r["num_params"], "run": r["run"]})
        values = [r["value"] for r in results]
        rows.append({"variant": name, "mean": float(np.mean(values)), "std": float(np.std(values)),
                     "values": values, "seconds": float(np.mean([r["seconds"] for r in results])),
                     "num_params": results[0]["num_params"], "runs": [r["run"] for r in results]})
    task = task_factory(seeds[0])
    figure = compare_bars(out / "compare.png", rows, metric=task.metric,
                          lower_is_better=task.lower_is_better,
                          title=f"{task.name}: test {task.metric} by variant "
                                f"({len(seeds)} seed{'s' if len(seeds) > 1 else ''}, {engine})")
    result = {"task": task.name, "engine": engine, "metric": task.metric,
              "lower_is_better": task.lower_is_better, "seeds": list(seeds), "results": rows,
              "figure": str(figure)}
    write_text(out / "compare.json", json.dumps(strict_json(result), indent=2) + "\n")
    return result


def _from_folder(run: RunFolder, test_row: dict, task) -> dict:
    """A finished run's result, read back instead of retrained."""
    from ..io.files import read_tensors

    arrays, _ = read_tensors(run.model)
    times = [r["time"] for r in run.read_metrics() if r["split"] == "valid"]
    value = test_row.get(task.metric)
    return {"value": float("nan") if value is None else value,     # null in the file: NaN
            "seconds": times[-1] if times else 0.0,
            "num_params": int(sum(a.size for a in arrays.values())), "run": str(run.path)}

"""A run folder: the unit a user keeps, compares and exports.

    config.json             resolved configuration, seed, engine, versions
    metrics.jsonl           one JSON object a line: step, split, loss, task metrics, time
    model.safetensors       the best weights so far (by validation loss) + metadata
    checkpoint.safetensors  the latest training state (weights, optimizer, counters): --resume
    figures/*.png           what the task draws

Every write goes through `io.atomic`, so a killed run leaves each file whole: old or new.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from .. import __version__
from ..io.atomic import append_line, write_text
from ..io.files import read_tensors, save_tensors

CHECKPOINT_FORMAT = "lstmlab-checkpoint"


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.model = self.path / "model.safetensors"
        self.checkpoint = self.path / "checkpoint.safetensors"
        self.figures = self.path / "figures"

    def __str__(self):
        return str(self.path)

    def exists(self) -> bool:
        return self.config.is_file()

    def remove_temporaries(self) -> None:
        """Delete what a killed writer left half-done (io.atomic's hidden .tmp files)."""
        for folder in (self.path, self.figures):
            for p in folder.glob(".*.tmp") if folder.is_dir() else ():
                p.unlink(missing_ok=True)

    # --- config ---------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_text(self.config, json.dumps(config, indent=2) + "\n")

    def read_config(self) -> dict:
        if not self.config.is_file():
            raise ValueError(f"{self.path} is not an lstmlab run folder (no config.json); "
                             "give the folder that `lstmlab train` wrote")
        try:
            return json.loads(self.config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.config} is not valid JSON ({e.msg}, line {e.lineno})") from None

    # --- metrics --------------------------------------------------------------------------
    def log(self, row: dict) -> None:
        append_line(self.metrics, json.dumps(row))

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """Keep the training log up to `step`: a resumed run rewrites what came after."""
        rows = [r for r in self.read_metrics() if r["step"] <= step and r["split"] != "test"]
        write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    # --- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, tensors: dict, optim: dict, progress: dict) -> None:
        meta = {"format": CHECKPOINT_FORMAT, "format_version": "1",
                "optim": json.dumps(optim), "progress": json.dumps(progress)}
        save_tensors(self.checkpoint, tensors, meta)

    def load_checkpoint(self) -> tuple[dict, dict, dict] | None:
        """(tensors, optimizer scalars, loop counters), or None before the first checkpoint."""
        if not self.checkpoint.is_file():
            return None
        tensors, meta = read_tensors(self.checkpoint, "checkpoint")
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.checkpoint} is not an lstmlab checkpoint")
        return tensors, json.loads(meta["optim"]), json.loads(meta["progress"])


def versions() -> dict:
    """What produced a run, for config.json."""
    v = {"lstmlab": __version__, "python": platform.python_version(), "numpy": np.__version__}
    try:
        import importlib.metadata as md

        v["torch"] = md.version("torch")
    except Exception:  # noqa: BLE001 - torch is optional
        pass
    return v


def default_run_dir(root, task: str, engine: str, variant: str, seed: int) -> Path:
    """runs/<task>-<engine>-<variant>-s<seed>, with -2, -3, ... if that name is taken."""
    base = Path(root) / f"{task}-{engine}-{variant.replace('+', '_').replace('=', '-')}-s{seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path

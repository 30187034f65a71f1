"""A run folder: the unit a user keeps, compares and exports.

    config.json             resolved configuration, seed, engine, threads, versions
    metrics.jsonl           one JSON object a line: step, split, loss, task metrics, time
    model.safetensors       the best weights so far (by validation loss) + metadata
    checkpoint.safetensors  the latest training state (weights, optimizer, counters): --resume
    figures/*.png           what the task draws
    preprocessing.json      the task's state: options, vocabularies, scalers, label names, and
                            the user's files (absolute path, sha256): see tasks.rundata
    data.safetensors        the data read from the user's files, so the run needs none of them
    .lock                   held by the process training into the folder (flock)

Every write goes through `io.atomic`, so a killed run leaves each file whole: old or new.
Everything read back is checked first: a damaged file is one ValueError naming it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from .. import __version__
from ..io.atomic import append_line, unwritable, write_text
from ..io.files import read_tensors, save_tensors

CHECKPOINT_FORMAT = "lstmlab-checkpoint"

# config.json: key -> (type, what it must be), checked when a run is read
_CONFIG_KEYS = {"task": (str, "a task name"), "engine": (str, "'numpy' or 'torch'"),
                "model": (dict, "an object of model settings"),
                "train": (dict, "an object of training settings"), "seed": (int, "an integer"),
                "task_options": (dict, "an object of task options")}


def strict_json(value, notes: list | None = None, where: str = ""):
    """`value` with every NaN or infinite float replaced by None, so that it is strict JSON
    (JSON has no NaN or Infinity; Python's json writes them anyway). NumPy scalars become
    Python numbers. Each replacement is described in `notes` ("metrics.test.mse is nan")."""
    if isinstance(value, dict):
        return {k: strict_json(v, notes, f"{where}.{k}" if where else str(k))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v, notes, f"{where}[{k}]") for k, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if notes is not None:
            notes.append(f"{where or 'the value'} is {value}, written as null (JSON has no "
                         "NaN or infinity)")
        return None
    return value


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

    @contextlib.contextmanager
    def lock(self):
        """Hold the folder for one writer: a second `lstmlab train` into it gets a ValueError.

        flock on RUN/.lock: the kernel releases it when the process ends, however it ends
        (SIGKILL included), so a killed run never leaves a stale lock. The file stays (it
        holds the writer's pid); removing it would let two writers lock two different files.
        A folder this call created is removed again if nothing but the lock was written."""
        import fcntl

        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise unwritable(self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ValueError(f"{self.path} is being written by another lstmlab process (pid {pid}); "
                             "wait for it to end, or choose another --out") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield self
        finally:
            if created and [p.name for p in self.path.iterdir()] == [".lock"]:
                os.unlink(self.path / ".lock")
                self.path.rmdir()
            os.close(fd)

    def existing(self, path: Path) -> Path | None:
        """`path` if it is a file, None if absent; a directory in its place is refused."""
        if path.is_file():
            return path
        if path.exists():
            raise ValueError(f"{path} is a directory, not a file; remove it (the run folder is "
                             "damaged)")
        return None

    def remove_temporaries(self) -> None:
        """Delete what a killed writer left half-done (io.atomic's hidden .tmp files)."""
        for folder in (self.path, self.figures):
            for p in folder.glob(".*.tmp") if folder.is_dir() else ():
                p.unlink(missing_ok=True)

    # --- config ---------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_text(self.config, json.dumps(strict_json(config), indent=2) + "\n")

    def read_config(self) -> dict:
        """config.json, checked: an object with a task, an engine, model and training settings."""
        if self.existing(self.config) is None:
            raise ValueError(f"{self.path} is not an lstmlab run folder (no config.json); "
                             "give the folder that `lstmlab train` wrote")
        try:
            cfg = json.loads(self.config.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            why = f"{e.msg}, line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8"
            raise ValueError(f"{self.config} is not valid JSON ({why})") from None
        if not isinstance(cfg, dict):
            raise ValueError(f"{self.config} is damaged: it holds a JSON {type(cfg).__name__}, "
                             "not the object `lstmlab train` writes")
        for key, (typ, what) in _CONFIG_KEYS.items():
            if key not in cfg and key != "task_options":
                raise ValueError(f"{self.config} is damaged: it has no {key!r}")
            if key in cfg and (not isinstance(cfg[key], typ) or isinstance(cfg[key], bool)):
                raise ValueError(f"{self.config} is damaged: {key!r} must be {what}, "
                                 f"got {cfg[key]!r:.60}")
        if cfg["engine"] not in ("numpy", "torch"):
            raise ValueError(f"{self.config} is damaged: 'engine' must be 'numpy' or 'torch', "
                             f"got {cfg['engine']!r:.60}")
        return cfg

    # --- metrics --------------------------------------------------------------------------
    def log(self, row: dict) -> None:
        append_line(self.metrics, json.dumps(strict_json(row)))   # a NaN metric: null

    def read_metrics(self) -> list[dict]:
        """The rows of metrics.jsonl, each checked to have a step and a split."""
        if self.existing(self.metrics) is None:
            return []
        rows = []
        try:
            lines = self.metrics.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise ValueError(f"{self.metrics} is damaged: not UTF-8 text") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.metrics} is damaged: line {n} is not valid JSON "
                                 f"({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("step"), int) \
                    or not isinstance(row.get("split"), str):
                raise ValueError(f"{self.metrics} is damaged: line {n} is not an object with an "
                                 "integer 'step' and a 'split'")
            rows.append(row)
        return rows

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
        """(tensors, optimizer scalars, loop counters), or None before the first checkpoint.

        Checked for what a resume needs: the JSON metadata, the model weights, and the
        optimizer state once a step has been taken."""
        if self.existing(self.checkpoint) is None:
            return None
        tensors, meta = read_tensors(self.checkpoint, "checkpoint")
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.checkpoint} is not an lstmlab checkpoint")
        fix = "delete it to restart the run from step 0 with --resume"
        parsed = []
        for key in ("optim", "progress"):
            try:
                value = json.loads(meta[key])
            except KeyError:
                raise ValueError(f"{self.checkpoint} is damaged: its metadata has no {key!r}; "
                                 + fix) from None
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.checkpoint} is damaged: its {key!r} metadata is not "
                                 f"valid JSON ({e.msg}); " + fix) from None
            if not isinstance(value, dict):
                raise ValueError(f"{self.checkpoint} is damaged: its {key!r} metadata is not a "
                                 "JSON object; " + fix)
            parsed.append(value)
        step = parsed[1].get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"{self.checkpoint} is damaged: its progress has no step; " + fix)
        for prefix, what in (("model/", "model weights"), ("optim/", "optimizer state")):
            if (prefix == "model/" or step > 0) and not any(k.startswith(prefix) for k in tensors):
                raise ValueError(f"{self.checkpoint} is damaged: it holds no {what}; " + fix)
        return tensors, parsed[0], parsed[1]


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

"""`lstmlab serve`: the local web laboratory, a thin Starlette layer over the package.

    GET  /                       the page (static/index.html; plotly.js from the plotly wheel)
    GET  /api/meta               tasks, variants, engines, the limits of every setting
    GET  /api/runs               every run folder under the runs folder, with its state
    GET  /api/run?run=NAME       one run: config, metric rows, live status, figures
    POST /api/train              start a training (JSON settings) in its own process
    POST /api/control            {"run", "action": pause | resume | stop | continue}
    PUT  /api/upload?name=FILE   the body becomes RUNS/uploads/FILE, for a task's data option
    GET  /api/file?run=&path=    a file of a run (figures, model, config, metrics)
    GET  /api/export?run=&kind=  metrics.csv | metrics.json | model.safetensors | model.onnx | run.zip
    POST /api/inspect            {"run", "analysis", ...}: lstmlab.inspect's results as JSON
    WS   /ws/run?run=NAME        live: status, new metric rows, the gates at every evaluation
    WS   /ws/stream?run=NAME     a model reading a stream one step at a time (binary frames)

Safety: the server binds to 127.0.0.1 unless told otherwise; it reads and writes only under
its runs folder (names are checked, `..`, absolute paths and symlinks refused); every request
is validated and refused with a 4xx and one line ({"error": ...}); task and variant names are
looked up in the registries, so no request imports or unpickles anything (model files are
safetensors). A training is an ordinary `lstmlab train --live` process writing an ordinary
run folder: a closed page or a killed server leaves it going (or resumable with --resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..train.runs import strict_json

STATIC = Path(__file__).parent / "static"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")      # one folder or file name
NUMBERS = re.compile(r"[-+0-9.eE\s]*(,[-+0-9.eE\s]*)+")    # "0.1, 0.5, 0.9": a series typed
MAX_UPLOAD = 64 * 2**20                                     # bytes in one uploaded file
MAX_BODY = 2**20                                            # bytes in one JSON request
MAX_TRAININGS = 5                                           # training processes at once
MAX_INPUT_CHARS = 5000                                      # an inspected text
PAGE_STEPS = 20_000                                         # saturation, timescales: steps read
# setting -> (type, lowest, highest): what a page may ask a training for
LIMITS: dict[str, tuple[type, float, float]] = {
    "hidden_size": (int, 1, 1024), "num_layers": (int, 1, 4), "proj_size": (int, 0, 1024),
    "batch_size": (int, 1, 1024), "steps": (int, 1, 1_000_000), "eval_every": (int, 1, 1_000_000),
    "lr": (float, 1e-6, 1.0), "clip": (float, 0.0, 1e3), "seed": (int, 0, 2**31 - 1),
    "dropout": (float, 0.0, 0.9), "recurrent_dropout": (float, 0.0, 0.9),
    "zoneout": (float, 0.0, 0.9), "weight_drop": (float, 0.0, 0.9),
    "forget_bias": (float, -10.0, 10.0), "patience": (int, 0, 10_000)}
CHOICES = {"optimizer": ("adam", "sgd", "rmsprop"),
           "schedule": ("cosine", "step", "plateau", "constant"),
           "recurrent_init": ("uniform", "orthogonal", "identity")}
EXPORTS = ("metrics.csv", "metrics.json", "model.safetensors", "model.onnx", "run.zip")
ANALYSES = ("activations", "saturation", "timescales", "connectivity", "ablate", "stepthrough")


class Refused(Exception):
    """A request the server will not do: answered with `status` and {"error": message}."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = " ".join(message.split()), status


def _engines() -> list[str]:
    import importlib.util

    return ["numpy"] + (["torch"] if importlib.util.find_spec("torch") else [])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Lab:
    """The runs folder and the trainings this server started; everything the routes do."""

    def __init__(self, root):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.uploads = self.root / "uploads"
        self.procs: dict[str, subprocess.Popen] = {}
        self.paused: set[str] = set()
        self.subjects: OrderedDict = OrderedDict()   # (run, model mtime) -> (Subject, Lock)
        self.lock = threading.Lock()

    # --- names and paths ----------------------------------------------------------------
    @staticmethod
    def name(value: object) -> str:
        """A run's name as a request gave it, checked: "a" or "a/b", each part letters,
        digits, '.', '_' and '-', never '.' or '..'; the uploads folder is no run."""
        if not isinstance(value, str) or not value:
            raise Refused("give a run name (run=NAME)")
        parts = value.split("/")
        if len(parts) > 2 or not all(NAME.fullmatch(p) and p not in (".", "..") for p in parts):
            raise Refused(f"run name {value[:120]!r} is not a run folder name: letters, digits, "
                          "'.', '_' and '-', at most one '/'", 400)
        if parts[0] == "uploads":
            raise Refused("uploads is the folder of uploaded files, not a run; choose another name")
        return value

    def path(self, name: object, must_exist: bool = True) -> Path:
        """The folder of run `name` (see `name`) under the runs folder, with no symbolic link
        on the way."""
        name = self.name(name)
        parts = name.split("/")
        path = self.root.joinpath(*parts)
        for k in range(1, len(parts) + 1):
            if self.root.joinpath(*parts[:k]).is_symlink():
                raise Refused(f"{name} is a symbolic link; the server reads only real folders "
                              "under its runs folder", 403)
        if must_exist and not ((path / "config.json").is_file() or (path / "serve.log").is_file()):
            raise Refused(f"no run {name!r} in {self.root}", 404)       # serve.log: starting
        return path

    def file(self, name: str, rel) -> Path:
        """A file inside run `name`: relative, no '..', no hidden file, no symlink."""
        run = self.path(name)
        if not isinstance(rel, str) or not rel:
            raise Refused("give a file (path=...)")
        parts = rel.split("/")
        if rel.startswith("/") or not all(NAME.fullmatch(p) and p != ".." for p in parts):
            raise Refused(f"{rel[:120]!r} is not a file of a run: a relative path of plain "
                          "names (e.g. figures/loss.png)", 400)
        path = run.joinpath(*parts)
        for k in range(1, len(parts) + 1):
            if run.joinpath(*parts[:k]).is_symlink():
                raise Refused(f"{rel} is a symbolic link; the server reads only real files", 403)
        if not path.is_file():
            raise Refused(f"run {name!r} has no file {rel!r}", 404)
        return path

    # --- runs -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every run folder at depth 1 or 2 (compare writes one folder of runs)."""
        out = []
        for d in sorted(self.root.iterdir()):
            if d.is_symlink() or not d.is_dir() or not NAME.fullmatch(d.name):
                continue
            if (d / "config.json").is_file() or (d / "serve.log").is_file():
                out.append(d.name)
            else:
                out += [f"{d.name}/{e.name}" for e in sorted(d.iterdir())
                        if e.is_dir() and not e.is_symlink() and NAME.fullmatch(e.name)
                        and (e / "config.json").is_file()]
        return out

    def state(self, name: str, path: Path) -> tuple[str, str | None]:
        """(state, message): running, paused, finished, stopped or failed."""
        proc = self.procs.get(name)
        if proc is not None:
            rc = proc.poll()
            if rc is None:
                return ("paused" if name in self.paused else "running"), None
            self.paused.discard(name)
            if rc != 0:
                return ("stopped" if rc in (130, -signal.SIGINT) else "failed"), _last_error(path)
        live = _read_json(path / "live.json")
        pid = live.get("pid") if isinstance(live, dict) else None
        if isinstance(pid, int) and pid > 0 and live.get("state") == "running" and _pid_alive(pid) \
                and _lock_pid(path) == pid:
            return ("paused" if name in self.paused else "running"), None
        rows = _metrics(path)
        if any(r.get("split") == "test" for r in rows):
            return "finished", None
        if not (path / "config.json").is_file():
            return "failed", _last_error(path) or "the training ended before it wrote its config"
        return "stopped", _last_error(path)

    def summary(self, name: str) -> dict:
        path = self.root / name
        cfg = _read_json(path / "config.json") or {}
        rows = _metrics(path)
        state, message = self.state(name, path)
        test = next((r for r in reversed(rows) if r.get("split") == "test"), None)
        valid = next((r for r in reversed(rows) if r.get("split") == "valid"), None)
        live = _read_json(path / "live.json")
        model = cfg.get("model", {})
        return strict_json({
            "run": name, "task": cfg.get("task"), "engine": cfg.get("engine"),
            "variant": model.get("variant"), "hidden_size": model.get("hidden_size"),
            "num_layers": model.get("num_layers"), "steps": cfg.get("train", {}).get("steps"),
            "step": max((r.get("step", 0) for r in rows), default=0), "state": state,
            "message": message, "test": {k: v for k, v in (test or {}).items()
                                         if k not in ("step", "split", "time")},
            "valid_loss": (valid or {}).get("loss"), "live": live,
            "modified": max((p.stat().st_mtime for p in (path / "metrics.jsonl",
                                                         path / "config.json") if p.is_file()),
                            default=None)})

    def run(self, name: str) -> dict:
        path = self.path(name)
        figures = sorted(p.name for p in (path / "figures").glob("*.png")) \
            if (path / "figures").is_dir() else []
        return {**self.summary(name), "config": _read_json(path / "config.json"),
                "metrics": strict_json(_metrics(path)), "figures": figures,
                "gates": _read_json(path / "live_gates.json"),
                "files": sorted(str(p.relative_to(path)) for p in path.rglob("*")
                                if p.is_file() and not any(s.startswith(".") for s in
                                                           p.relative_to(path).parts))}

    # --- training -------------------------------------------------------------------------
    def start(self, body: dict) -> dict:
        from ..spec import variant
        from ..tasks import TASKS

        body = _object(body)
        task = body.get("task")
        if task not in TASKS:
            raise Refused(f"unknown task {str(task)[:60]!r}; the tasks are {', '.join(TASKS)}")
        cls = TASKS[task]
        engine = body.get("engine") or cls.defaults.engine
        if engine not in _engines():
            raise Refused(f"engine {str(engine)[:30]!r} is not available here; "
                          f"choose {' or '.join(_engines())}")
        name = body.get("name") or f"{task}-{engine}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise Refused(f"run name {str(name)[:60]!r} must be letters, digits, '.', '_' and '-' "
                          "(up to 100)")
        name = self.name(name)
        args = [task, "--out", str(self.root / name), "--engine", engine]
        settings = _object(body.get("settings", {}), "settings")
        for key, value in settings.items():
            args += [f"--{key.replace('_', '-')}", _setting(key, value)]
        if "variant" in body:
            try:
                args += ["--variant", variant(str(body["variant"])[:80]).name]
            except ValueError as e:
                raise Refused(str(e)) from None
        args += self._task_options(cls, _object(body.get("options", {}), "options"))
        path = self.root / name
        with self.lock:
            running = [n for n, p in self.procs.items() if p.poll() is None]
            if len(running) >= MAX_TRAININGS:
                raise Refused(f"{len(running)} trainings are running ({', '.join(running)}); the "
                              f"server runs at most {MAX_TRAININGS} at once: stop one first", 429)
            if path.exists():
                raise Refused(f"a run {name!r} exists already; choose another name", 409)
            path.mkdir()
            self._spawn(name, ["train", *args, "--live", "--json", "--threads", "1"])
        return {"run": name, "state": "running"}

    def _task_options(self, cls, options: dict) -> list[str]:
        from ..tasks.base import check_option

        out = []
        for key, value in options.items():
            if key not in cls.options:
                raise Refused(f"task {cls.name!r} has no option {str(key)[:40]!r}; it has: "
                              f"{', '.join(cls.options) or 'none'}")
            if key in cls.sources:                   # the user's data: an uploaded file only
                if value in ("", None):
                    continue
                if not isinstance(value, str) or not NAME.fullmatch(value) \
                        or not (self.uploads / value).is_file() or (self.uploads / value).is_symlink():
                    raise Refused(f"option {key} must name an uploaded file (PUT /api/upload), "
                                  f"got {str(value)[:60]!r}")
                value = str(self.uploads / value)
            else:
                try:
                    value = check_option(key, value, cls.options[key][0])
                except ValueError as e:
                    raise Refused(str(e)) from None
            out += ["-o", f"{key}={json.dumps(value)}"]
        return out

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / name / "serve.log", "ab")             # noqa: SIM115 - the child's
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        # niced: the page and the stream keep the CPU they need, the trainings take the rest
        nice_cmd = shutil.which("nice")
        nice = [nice_cmd, "-n", "10"] if nice_cmd else []
        try:
            # a session of its own: Ctrl-C on the server does not reach the training
            self.procs[name] = subprocess.Popen([*nice, sys.executable, "-m", "lstmlab", *argv],
                                                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                                env=env, start_new_session=True)
        finally:
            log.close()

    def control(self, body: dict) -> dict:
        body = _object(body)
        name, action = self.name(body.get("run")), body.get("action")
        path = self.path(name)
        state, _ = self.state(name, path)
        if action == "continue":
            if state in ("running", "paused"):
                raise Refused(f"run {name!r} is {state}; it needs no continue", 409)
            if state == "finished":
                raise Refused(f"run {name!r} has finished; start a new run to train more", 409)
            cfg = _read_json(path / "config.json")
            if cfg is None:
                raise Refused(f"run {name!r} never wrote its config; start a new run", 409)
            with self.lock:
                self._spawn(name, ["train", cfg["task"], "--out", str(path), "--resume", "--live",
                                   "--json", "--threads", "1"])
            return {"run": name, "state": "running"}
        if action not in ("pause", "resume", "stop"):
            raise Refused(f"action must be pause, resume, stop or continue, got {str(action)[:30]!r}")
        if state not in ("running", "paused"):
            raise Refused(f"run {name!r} is {state}, not training", 409)
        live = _read_json(path / "live.json")
        proc = self.procs.get(name)
        pid = proc.pid if proc is not None and proc.poll() is None else (
            live.get("pid") if isinstance(live, dict) and isinstance(live.get("pid"), int) else 0)
        if not pid:
            raise Refused(f"run {name!r} is starting; try again in a moment", 409)
        if action == "pause":
            os.kill(pid, signal.SIGSTOP)
            self.paused.add(name)
        elif action == "resume":
            os.kill(pid, signal.SIGCONT)
            self.paused.discard(name)
        else:                                        # Ctrl-C: the run keeps its last checkpoint
            os.kill(pid, signal.SIGINT)
            os.kill(pid, signal.SIGCONT)
            self.paused.discard(name)
        return {"run": name, "state": {"pause": "paused", "resume": "running",
                                       "stop": "stopping"}[action]}

    def upload(self, filename: str, data: bytes) -> dict:
        if not isinstance(filename, str) or not NAME.fullmatch(filename):
            raise Refused(f"file name {str(filename)[:60]!r} must be letters, digits, '.', '_' "
                          "and '-' (e.g. sales.csv)")
        from ..io.atomic import atomic_path

        self.uploads.mkdir(exist_ok=True)
        if (self.uploads / filename).is_symlink():
            raise Refused(f"{filename} is a symbolic link in the uploads folder", 403)
        with atomic_path(self.uploads / filename) as tmp:
            tmp.write_bytes(data)
        return {"file": filename, "bytes": len(data)}

    # --- export ---------------------------------------------------------------------------
    def export(self, name: str, kind: str) -> Response:
        path = self.path(name)
        stem = name.replace("/", "-")
        if kind == "metrics.json":
            return _download(json.dumps(strict_json(_metrics(path)), indent=1).encode(),
                             f"{stem}-metrics.json", "application/json")
        if kind == "metrics.csv":
            rows = strict_json(_metrics(path))
            keys = list(dict.fromkeys(k for r in rows for k in r))
            text = io.StringIO()
            writer = csv.DictWriter(text, keys)
            writer.writeheader()
            writer.writerows(rows)
            return _download(text.getvalue().encode(), f"{stem}-metrics.csv", "text/csv")
        if kind == "model.safetensors":
            return FileResponse(self.file(name, "model.safetensors"),
                                filename=f"{stem}.safetensors")
        if kind == "model.onnx":
            from ..io.export import export_run

            try:
                out = export_run(path, "onnx")
            except ValueError as e:
                raise Refused(str(e)) from None
            except ModuleNotFoundError as e:
                raise Refused(f"ONNX export needs {e.name}: pip install 'lstmlab[onnx]'") from None
            return FileResponse(out, filename=f"{stem}.onnx")
        if kind == "run.zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                for p in sorted(path.rglob("*")):
                    rel = p.relative_to(path)
                    if p.is_file() and not p.is_symlink() and not any(s.startswith(".")
                                                                      for s in rel.parts):
                        z.write(p, f"{stem}/{rel}")
            return _download(buf.getvalue(), f"{stem}.zip", "application/zip")
        raise Refused(f"export kind must be one of {', '.join(EXPORTS)}, got {str(kind)[:40]!r}")

    # --- inspection -----------------------------------------------------------------------
    def subject(self, name: object):
        """The run's model with its task, loaded once and kept (the 4 last used), with a lock:
        an analysis sets hooks on the model, so one at a time per model."""
        from ..inspect import open_subject

        name = self.name(name)
        path = self.path(name)
        model = path / "model.safetensors"
        if not model.is_file():
            raise Refused(f"run {name!r} has no model yet: it is saved at the first evaluation", 409)
        key = (name, model.stat().st_mtime_ns)
        with self.lock:
            if key in self.subjects:
                self.subjects.move_to_end(key)
                return self.subjects[key]
        try:
            found = (open_subject(path), threading.Lock())
        except ValueError as e:
            raise Refused(str(e)) from None
        with self.lock:
            self.subjects[key] = found
            while len(self.subjects) > 4:
                self.subjects.popitem(last=False)
        return found

    def inspect(self, body: dict) -> dict:
        from .. import inspect as ins

        body = _object(body)
        analysis = body.get("analysis")
        if analysis not in ANALYSES:
            raise Refused(f"analysis must be one of {', '.join(ANALYSES)}, got {str(analysis)[:40]!r}")
        subject, lock = self.subject(body.get("run"))
        value = _input(body.get("input", 0), subject)
        with lock:
            try:
                if analysis == "activations":
                    steps = _int(body.get("steps", 200), "steps", 1, MAX_INPUT_CHARS)
                    a = ins.activations(subject, value)
                    H = min(subject.hidden_size(g) for g in subject.layer_groups())
                    units = _units(body.get("units", 32), H)
                    shown = a.first(steps).to_json(units=units)
                    shown.pop("decoder", None)
                    shown["hidden"] = {g: subject.hidden_size(g) for g in shown["groups"]}
                    shown["units"] = units
                    picture = subject.input_picture(np.asarray(a.inputs.x)[:len(shown["steps"]), 0])
                    if picture is not None:                  # speech: the spectrogram it hears
                        image, per_step, label = picture
                        shown["picture"] = {"image": np.round(image, 3).tolist(),
                                            "per_step": per_step, "label": label}
                    return shown
                if analysis == "saturation":
                    return ins.saturation(subject, max_steps=PAGE_STEPS).to_json()
                if analysis == "timescales":
                    return ins.timescales(subject, max_steps=PAGE_STEPS).to_json()
                if analysis == "connectivity":
                    return ins.connectivity(subject, value, steps=_int(body.get("steps", 60),
                                                                       "steps", 2, 200)).to_json()
                if analysis == "ablate":
                    gate = body.get("gate", "h")
                    if not isinstance(gate, str):
                        raise Refused("gate must be a name: h, c, i, f, g, o (GRU: r, z, n)")
                    unit = body.get("unit")
                    r = ins.ablate(subject, value, layer=_int(body.get("layer", 0), "layer", 0, 64),
                                   unit=None if unit is None else _int(unit, "unit", 0, 1 << 20),
                                   gate=gate, value=_float(body.get("value", 0.0), "value"),
                                   metric=bool(body.get("metric", False)))
                    return {**r.to_json(), **_outputs_shown(r.outputs, r.clamped)}
                from ..inspect.stepthrough import step_through

                # a model read out at every step learns from every step: show that loss
                loss = "all" if subject.config.readout == "sequence" else "last"
                return step_through(subject, input=value, t=_int(body.get("t", 0), "t", 0, 1 << 20),
                                    layer=_int(body.get("layer", 0), "layer", 0, 64),
                                    unit=_int(body.get("unit", 0), "unit", 0, 1 << 20),
                                    direction=str(body.get("direction", ""))[:20], loss=loss).to_json()
            except ValueError as e:
                raise Refused(str(e)) from None


def _outputs_shown(before: np.ndarray, after: np.ndarray) -> dict:
    """The first sequence's outputs before and after a clamp, as a page draws them: the
    values where a step has one output, else the size of the change at each step."""
    if before.ndim == 3:                         # (T, B, O): one output per step
        b, a = before[:, 0], after[:, 0]
    else:                                        # (B, O): one per sequence
        b, a = before[:1], after[:1]
    if b.shape[-1] == 1:
        return {"before_outputs": b[:, 0].tolist(), "after_outputs": a[:, 0].tolist()}
    return {"output_change": np.abs(a - b).max(axis=-1).tolist()}


def _metrics(path: Path) -> list[dict]:
    """The rows of metrics.jsonl that parse (a row being written is skipped)."""
    rows = []
    with contextlib.suppress(OSError):
        for line in (path / "metrics.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict):
                    rows.append(row)
    return rows


def _lock_pid(path: Path) -> int | None:
    try:
        return int((path / ".lock").read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _last_error(path: Path) -> str | None:
    """The one-line error a failed or stopped training printed (its --json object)."""
    try:
        lines = (path / "serve.log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and "error" in obj:
                return str(obj["error"])
    return None


def _object(value, what: str = "the request") -> dict:
    if not isinstance(value, dict):
        raise Refused(f"{what} must be a JSON object")
    return value


def _int(value, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise Refused(f"{what} must be a whole number, got {str(value)[:30]!r}")
    if not lo <= value <= hi:
        raise Refused(f"{what} must be between {lo} and {hi}, got {value}")
    return int(value)


def _float(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Refused(f"{what} must be a finite number, got {str(value)[:30]!r}")
    return float(value)


def _units(value, hidden: int) -> list[int]:
    """The units a page asks to see: N (the first N) or a list of unit numbers."""
    if isinstance(value, list):
        if not 0 < len(value) <= 256:
            raise Refused(f"give 1 to 256 units, got {len(value)}")
        return [_int(u, "a unit", 0, hidden - 1) for u in value]
    return list(range(min(_int(value, "units", 1, 4096), hidden)))


def _setting(key, value) -> str:
    """One model or training setting as its CLI argument, checked against LIMITS."""
    if key in CHOICES:
        if value not in CHOICES[key]:
            raise Refused(f"{key} must be one of {', '.join(CHOICES[key])}, got {str(value)[:30]!r}")
        return value
    if key == "bidirectional":
        raise Refused("bidirectional is not offered on the page; use `lstmlab train --bidirectional`")
    if key not in LIMITS:
        raise Refused(f"unknown setting {str(key)[:40]!r}; the settings are "
                      f"{', '.join([*LIMITS, *CHOICES])}")
    typ, lo, hi = LIMITS[key]
    v = _int(value, key, int(lo), int(hi)) if typ is int else _float(value, key)
    if not lo <= v <= hi:
        raise Refused(f"{key} must be between {lo:g} and {hi:g}, got {v:g}")
    return repr(v)


def _input(value, subject):
    """An inspected input: an example number or a text (the task's own input); a series
    task's text must be numbers, since its encode_input also reads a file of that name."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Refused("input must be an example number or a text")
    if isinstance(value, str):
        if not value:
            raise Refused("the input text is empty; type something")
        if len(value) > MAX_INPUT_CHARS:
            raise Refused(f"the input has {len(value)} characters; the page inspects up to "
                          f"{MAX_INPUT_CHARS}")
        if not subject.config.vocab_size and not NUMBERS.fullmatch(value):
            raise Refused("this model reads numbers: give numbers separated by commas "
                          "(e.g. 0.1, 0.5, 0.9) or an example number")
    return value


def _download(data: bytes, filename: str, media: str) -> Response:
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- routes --------------------------------------------------------------------------------
async def _body_json(request: Request) -> dict:
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_BODY:
        raise Refused(f"the request body has {size} bytes; at most {MAX_BODY}", 413)
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Refused(f"the request body has more than {MAX_BODY} bytes", 413)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise Refused(f"the request body is not JSON ({e})") from None
    except RecursionError:                           # "[[[[...": deeper than Python's stack
        raise Refused("the request body nests deeper than any request of the page") from None


def create_app(runs="runs") -> Starlette:
    """The ASGI app serving the runs folder `runs` (created if missing)."""
    lab = Lab(runs)
    plotly_js = _plotly_js()

    async def page(request):
        return FileResponse(STATIC / "index.html")

    async def plotly(request):
        # the installed plotly's own file: a browser may keep it for a day
        return FileResponse(plotly_js, media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    async def meta(request):
        from ..spec import VARIANTS
        from ..tasks import TASKS

        tasks = [{"task": n, "summary": t.summary, "loss": t.loss, "metric": t.metric,
                  "engine": t.defaults.engine, "model": t.defaults.model, "train": t.defaults.train,
                  "sources": list(t.sources),
                  "options": {k: {"default": d, "help": h} for k, (d, h) in t.options.items()}}
                 for n, t in TASKS.items()]
        uploads = sorted(p.name for p in lab.uploads.glob("*") if p.is_file()) \
            if lab.uploads.is_dir() else []
        return JSONResponse(strict_json({
            "tasks": tasks, "variants": list(VARIANTS), "engines": _engines(),
            "limits": {k: [lo, hi] for k, (_, lo, hi) in LIMITS.items()}, "choices": CHOICES,
            "uploads": uploads, "root": str(lab.root), "max_trainings": MAX_TRAININGS}))

    async def runs_list(request):
        return JSONResponse([lab.summary(n) for n in lab.names()])

    async def run_one(request):
        return JSONResponse(lab.run(request.query_params.get("run")))

    async def train(request):
        return JSONResponse(lab.start(await _body_json(request)))

    async def control(request):
        return JSONResponse(lab.control(await _body_json(request)))

    async def upload(request):
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_UPLOAD:
            raise Refused(f"the file has {size} bytes; the server takes up to {MAX_UPLOAD} "
                          "(train on a bigger file with `lstmlab train` instead)", 413)
        chunks, got = [], 0
        async for chunk in request.stream():
            got += len(chunk)
            if got > MAX_UPLOAD:
                raise Refused(f"the file has more than {MAX_UPLOAD} bytes", 413)
            chunks.append(chunk)
        return JSONResponse(lab.upload(request.query_params.get("name"), b"".join(chunks)))

    async def file(request):
        q = request.query_params
        path = lab.file(q.get("run"), q.get("path"))
        return FileResponse(path, filename=path.name if q.get("download") else None)

    async def export(request):
        q = request.query_params
        return await run_in_threadpool(lab.export, q.get("run"), q.get("kind"))

    async def inspect(request):
        body = await _body_json(request)
        return JSONResponse(strict_json(await run_in_threadpool(lab.inspect, body)))

    async def refused(request, exc: Refused):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def not_found(request, exc):
        from starlette.exceptions import HTTPException

        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return JSONResponse({"error": str(getattr(exc, "detail", "")) or "not found"},
                            status_code=status)

    async def ws_run(ws: WebSocket):
        await ws.accept()
        try:
            name = lab.name(ws.query_params.get("run"))
            path = lab.path(name)
        except Refused as e:
            await ws.send_json({"type": "error", "error": e.message})
            await ws.close()
            return
        sent_rows, stamps, checked = 0, dict[str, object](), 0.0
        try:
            while True:
                # a file is read again only when it changed: many open pages stay cheap
                changed = False
                for kind, f in (("metrics", "metrics.jsonl"), ("status", "live.json"),
                                ("gates", "live_gates.json")):
                    with contextlib.suppress(OSError):
                        st = (path / f).stat()
                        if stamps.get(kind) == (st.st_mtime_ns, st.st_size):
                            continue
                        stamps[kind], changed = (st.st_mtime_ns, st.st_size), True
                        if kind == "metrics":
                            rows = _metrics(path)
                            if len(rows) < sent_rows:            # a resume cut the log back
                                sent_rows = 0
                                await ws.send_json({"type": "reset"})
                            if len(rows) > sent_rows:
                                await ws.send_json({"type": "metrics",
                                                    "rows": strict_json(rows[sent_rows:])})
                                sent_rows = len(rows)
                        elif (data := _read_json(path / f)) is not None:
                            await ws.send_json({"type": kind, "data": strict_json(data)})
                if changed or time.monotonic() - checked > 1.0:     # a process may have ended
                    checked = time.monotonic()
                    state, message = lab.state(name, path)
                    if stamps.get("state") != (state, message):
                        stamps["state"] = (state, message)
                        await ws.send_json({"type": "state", "state": state, "message": message})
                await asyncio.sleep(0.25)
        except (WebSocketDisconnect, RuntimeError):
            return

    async def ws_stream(ws: WebSocket):
        await ws.accept()
        try:
            subject, lock = await run_in_threadpool(lab.subject, ws.query_params.get("run"))
            session = StreamSession(subject, lock)
        except Refused as e:
            await ws.send_json({"type": "error", "error": e.message})
            await ws.close()
            return
        except ValueError as e:
            await ws.send_json({"type": "error", "error": " ".join(str(e).split())})
            await ws.close()
            return
        await session.serve(ws)

    routes = [Route("/", page), Route("/vendor/plotly.min.js", plotly),
              Route("/api/meta", meta), Route("/api/runs", runs_list), Route("/api/run", run_one),
              Route("/api/train", train, methods=["POST"]),
              Route("/api/control", control, methods=["POST"]),
              Route("/api/upload", upload, methods=["PUT"]), Route("/api/file", file),
              Route("/api/export", export), Route("/api/inspect", inspect, methods=["POST"]),
              WebSocketRoute("/ws/run", ws_run), WebSocketRoute("/ws/stream", ws_stream),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    handlers: dict[Any, Any] = {Refused: refused, 404: not_found, 405: not_found}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.lab = lab
    return app


class StreamSession:
    """One page's stream into one model: the source (a sine whose frequency, amplitude, noise
    and speed the page sets, a test example replayed, characters typed, or for speech a test
    utterance heard step by step), stepped by lstmlab.inspect's Stream; each step goes out as
    one binary frame of float32:

        [t, input, prediction made the step before (NaN at first), values of every row...]

    after a {"type": "layout"} message naming the rows (group, gate or state) and units. For
    audio (a one-directional speech model), input is the step's loudness (its mean log-mel
    band, standardised) and prediction the probability this step says a character (not the
    blank), and each character the greedy CTC reading emits goes out as {"type": "heard"}."""

    def __init__(self, subject, lock):
        from ..inspect.stream import Stream

        self.subject, self.lock = subject, lock
        self.units = min(32, min(subject.hidden_size(g) for g in subject.layer_groups()))
        self.stream = Stream(subject, units=self.units)
        self.text = bool(subject.config.vocab_size)
        self.audio = subject.task is not None and hasattr(subject.task, "stream_frames")
        self.kind = "text" if self.text else "audio" if self.audio else "series"
        # audio replays a test utterance at the speed it was spoken (one step: `stack` frames)
        speed = 1.0 / subject.task.step_seconds if self.audio else 30.0
        self.source = {"kind": "replay" if self.audio else self.kind if self.text else "sine",
                       "freq": 0.05, "amp": 1.0, "noise": 0.0, "speed": speed}
        self.phase, self.previous, self.rng = 0.0, float("nan"), np.random.default_rng(0)
        self.replay: list = []
        self.last_class, self.heard = "", ""               # audio: the greedy CTC reading so far
        self.rows: list[tuple[str, str]] = []

    def _step(self, value) -> tuple[bytes, dict]:
        with self.lock:
            out = self.stream.step(value).to_json()
        groups = out["groups"]
        if not self.rows:
            self.rows = [(g, k) for g, d in groups.items() for k in d]
        if not groups:                                   # a forecast's first season: no step yet
            groups = {g: {k: [math.nan] * self.units for _, k in self.rows} for g, _ in self.rows}
        pred = out.get("prediction")
        if self.audio:
            said = 1.0 - next((o["p"] for o in pred if o["char"] == ""), 0.0)
            picture, _, _ = self.subject.input_picture(np.asarray(value)[None])
            head = [out["t"], float(picture.mean()), said]
        else:
            numeric = pred if isinstance(pred, (int, float)) else (
                pred[0] if isinstance(pred, list) and pred and isinstance(pred[0], (int, float)) else None)
            x = float(value) if isinstance(value, (int, float)) else float("nan")
            head = [out["t"], x, self.previous]
            self.previous = float("nan") if numeric is None else float(numeric)
        vals = [np.asarray(groups[g][k], "<f4")[:self.units] for g, k in self.rows]
        frame = np.concatenate([np.asarray(head, "<f4"), *vals]).tobytes()
        return frame, out

    def _heard(self, out: dict) -> str | None:
        """Audio: the character this step adds to the greedy CTC reading (the most probable
        class, repeats merged, blanks dropped), or None."""
        best = out["prediction"][0]["char"]
        new = best if best and best != self.last_class else None
        self.last_class = best
        if new is not None:
            self.heard += new
        return new

    def _next_value(self):
        """The source's next step: a number, a frame (audio), or None when a replay is over."""
        s = self.source
        if s["kind"] == "replay":
            return self.replay.pop(0) if self.replay else None
        self.phase += 2 * math.pi * s["freq"]
        return s["amp"] * math.sin(self.phase) + s["noise"] * float(self.rng.standard_normal())

    async def serve(self, ws: WebSocket) -> None:
        await self._layout(ws)
        ticker = None if self.text else asyncio.create_task(self._tick(ws))
        try:
            while True:
                msg = await ws.receive_json()
                try:
                    await self._handle(ws, msg)
                except (Refused, ValueError) as e:
                    text = e.message if isinstance(e, Refused) else " ".join(str(e).split())
                    await ws.send_json({"type": "error", "error": text})
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass
        finally:
            if ticker is not None:
                ticker.cancel()

    async def _layout(self, ws: WebSocket) -> None:
        first = (self.subject.task.examples("test").steps[0][0] if self.text
                 else np.zeros(self.stream.width) if self.audio else 0.0)
        for _ in range(10_000):                          # steps name the rows (a forecast
            if self.rows:                                # reads a season before its first)
                break
            await run_in_threadpool(self._step, first)
        self.stream.reset()
        self.previous = float("nan")
        await ws.send_json({"type": "layout", "rows": self.rows, "units": self.units,
                            "kind": self.kind, "source": self.source,
                            "head": ["t", "loudness", "P(a character)"] if self.audio
                            else ["t", "input", "prediction"]})

    async def _handle(self, ws: WebSocket, msg) -> None:
        msg = _object(msg, "a stream message")
        kind = msg.get("type")
        if kind == "reset":
            self.stream.reset()
            self.phase, self.previous, self.last_class, self.heard = 0.0, float("nan"), "", ""
            await ws.send_json({"type": "reset"})
        elif kind == "config" and not self.text:
            limits = {"speed": (1.0, 120.0)} if self.audio else {
                "freq": (0.001, 0.5), "amp": (0.0, 10.0), "noise": (0.0, 5.0), "speed": (1.0, 120.0)}
            for key, (lo, hi) in limits.items():
                if key in msg:
                    v = _float(msg[key], key)
                    if not lo <= v <= hi:
                        raise Refused(f"{key} must be between {lo:g} and {hi:g}, got {v:g}")
                    self.source[key] = v
            if self.audio and "example" in msg:          # hear a test utterance from its start
                n = _int(msg["example"], "example", 0, 1 << 20)
                frames, said = await run_in_threadpool(self.subject.task.stream_frames, n)
                self.stream.reset()
                self.last_class, self.heard, self.replay = "", "", frames
                await ws.send_json({"type": "reset"})
                await ws.send_json({"type": "utterance", "example": n, "steps": len(frames),
                                    "text": said})
            elif "source" in msg and not self.audio:
                if msg["source"] not in ("sine", "replay"):
                    raise Refused("source must be sine or replay")
                self.source["kind"] = msg["source"]
                if msg["source"] == "replay":
                    self.replay = self._example(_int(msg.get("example", 0), "example", 0, 1 << 20))
        elif kind == "text" and self.text:
            text = msg.get("text")
            if not isinstance(text, str) or not 0 < len(text) <= 100:
                raise Refused("text must be 1 to 100 characters")
            for ch in text:
                frame, out = await run_in_threadpool(self._step, ch)
                await ws.send_bytes(frame)
                await ws.send_json({"type": "text", "t": out["t"], "input": ch,
                                    "prediction": strict_json(out.get("prediction"))})
        else:
            raise Refused(f"unknown stream message {str(kind)[:30]!r} for this model")

    def _example(self, n: int) -> list[float]:
        from ..inspect import inputs_of

        inputs = inputs_of(self.subject, n)
        if inputs.values is None:
            raise Refused("this task's examples have no values to replay")
        return [float(v) for v in inputs.values[:inputs.length(0), 0]]

    async def _tick(self, ws: WebSocket) -> None:
        """Step the source at its speed (steps per second) and send each frame."""
        nxt = time.perf_counter()
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
            while True:
                value = self._next_value()
                if value is not None and (self.audio or math.isfinite(value)):
                    frame, out = await run_in_threadpool(self._step, value)
                    await ws.send_bytes(frame)
                    if self.audio and (char := self._heard(out)) is not None:
                        await ws.send_json({"type": "heard", "t": out["t"], "char": char,
                                            "text": self.heard})
                nxt += 1.0 / self.source["speed"]
                await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
                nxt = max(nxt, time.perf_counter() - 0.5)    # after a stall, do not race


def _plotly_js() -> Path:
    """plotly.min.js from the installed plotly wheel: the page loads nothing from the net."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise ValueError("lstmlab serve needs plotly (for its plotly.js): pip install 'lstmlab[serve]'")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ValueError(f"the installed plotly has no {path}; reinstall it: pip install 'lstmlab[serve]'")
    return path


def check_address(host: str, port: int) -> None:
    """A one-line ValueError when the server could not listen on host:port (uvicorn would
    exit 1 with a log line): a port in use, an address this machine does not have."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            hint = ("choose another --port, or stop what uses it" if e.errno == errno.EADDRINUSE
                    else "check --host")
            raise ValueError(f"cannot listen on {host} port {port} ({e.strerror or e}); {hint}") from None


def serve(runs="runs", host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False) -> None:
    """Serve the lab until Ctrl-C."""
    import uvicorn

    check_address(host, port)
    app = create_app(runs)
    if open_browser:
        import webbrowser

        threading.Timer(1.0, webbrowser.open, (f"http://{host}:{port}/",)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning", ws="websockets-sansio")

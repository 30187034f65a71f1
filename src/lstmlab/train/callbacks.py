"""Hooks the training loop calls, the same for both engines: the progress bar, the live
files the dashboard reads (`Live`), and anything a user adds (subclass `Callback`)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Callback:
    def on_start(self, total_steps: int, start_step: int) -> None: ...
    def on_step(self, step: int, loss: float, lr: float) -> None: ...
    def on_eval(self, step: int, metrics: dict) -> None: ...
    def on_model(self, step: int, predictor) -> None: ...      # after on_eval: the model now
    def on_end(self, result: dict) -> None: ...


def progress_bar(disable: bool = False, console: Console | None = None) -> Progress:
    """A progress bar on stderr: count, rate, elapsed time and ETA, plus a status text."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(),
                    console=console or Console(stderr=True), disable=disable, transient=True)


class ProgressBar(Callback):
    """Steps done, steps per second, ETA, the running training loss and the last validation.

    On a terminal: a live bar on stderr. Otherwise (stderr piped or in a log file, where a
    live bar shows nothing until the end): one plain line at every tenth of the run and at
    least every `every_seconds`, so a long run shows it is alive."""

    def __init__(self, label: str, disable: bool = False, every_seconds: float = 30.0,
                 unit: str = "step"):
        self.label, self.disable, self.every, self.unit = label, disable, every_seconds, unit
        self.bar = self.task = None
        self.loss = None
        self.valid = None
        self.plain = False               # plain lines instead of a live bar
        self.total = self.first = 0      # plain: steps in all, step at the start
        self.started = self.last = 0.0   # plain: perf_counter at the start, at the last line

    def on_start(self, total_steps, start_step):
        console = Console(stderr=True)
        if not self.disable and not console.is_terminal:
            self.plain, self.total, self.first = True, total_steps, start_step
            self.started = time.perf_counter()
            self._line(start_step)
            return
        self.bar = progress_bar(self.disable, console)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=total_steps, completed=start_step, status="")

    def on_step(self, step, loss=None, lr=None):
        """Step `step` done; loss None: work without a loss (made items, say)."""
        if loss is not None:
            self.loss = loss if self.loss is None else 0.95 * self.loss + 0.05 * loss
        if self.plain:
            tenth = step * 10 // self.total > (step - 1) * 10 // self.total
            if tenth or time.perf_counter() - self.last >= self.every:
                self._line(step)
            return
        speed = self.bar.tasks[0].speed
        status = [f"{speed:.0f} it/s" if speed else ""]
        status.append("" if self.loss is None else f"loss {self.loss:.3g}")
        status.append("" if self.valid is None else f"valid {self.valid:.3g}")
        self.bar.update(self.task, completed=step, status=" ".join(p for p in status if p))

    def _line(self, step):
        self.last = time.perf_counter()
        parts = [f"{self.label}: {self.unit} {step}/{self.total} ({100 * step // self.total}%)"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3g}")
        if self.valid is not None:
            parts.append(f"valid {self.valid:.3g}")
        if step > self.first and self.last > self.started:
            rate = (step - self.first) / (self.last - self.started)
            parts.append(f"{rate:.3g} it/s, eta {_duration((self.total - step) / rate)}")
        print(", ".join(parts), file=sys.stderr, flush=True)

    def on_eval(self, step, metrics):
        self.valid = metrics["loss"]

    def on_end(self, result):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class Live(Callback):
    """What a training is doing, in two small files of its run folder that the dashboard
    (`lstmlab serve`) and any other monitor read while it runs (`lstmlab train --live`):

        live.json        state ("running", "finished"), pid, step, steps, smoothed loss, lr,
                         steps per second and ETA; rewritten at most every `every` seconds
        live_gates.json  the gates and states of the first validation example (its first
                         GATE_STEPS steps, first GATE_UNITS units of every layer) at every
                         evaluation: what the dashboard redraws while the network learns

    Both are written atomically, so a reader never sees half a file."""

    GATE_STEPS = 60
    GATE_UNITS = 16

    def __init__(self, run_dir, task, engine: str, every: float = 0.5):
        self.dir, self.task, self.engine, self.every = Path(run_dir), task, engine, every
        self.status: dict = {}
        self.started = self.last = 0.0
        self.first = 0

    def _write(self, force: bool = False) -> None:
        from ..io.atomic import write_text

        now = time.time()
        if not force and now - self.last < self.every:
            return
        self.last = now
        done = self.status["step"] - self.first
        rate = done / (now - self.started) if done > 0 and now > self.started else None
        left = self.status["steps"] - self.status["step"]
        self.status.update(updated=now, steps_per_second=rate,
                           eta_seconds=left / rate if rate else None)
        write_text(self.dir / "live.json", json.dumps(self.status) + "\n")

    def on_start(self, total_steps, start_step):
        self.started, self.first = time.time(), start_step
        self.status = {"state": "running", "pid": os.getpid(), "step": start_step,
                       "steps": total_steps, "loss": None, "lr": None, "valid_loss": None}
        self._write(force=True)

    def on_step(self, step, loss, lr):
        old = self.status["loss"]
        self.status.update(step=step, lr=lr, loss=loss if old is None else 0.95 * old + 0.05 * loss)
        self._write()

    def on_eval(self, step, metrics):
        self.status["valid_loss"] = metrics["loss"]
        self._write(force=True)

    def on_model(self, step, predictor):
        from ..inspect import Subject, activations
        from ..inspect.analyses import first_steps
        from ..io.atomic import write_text

        subject = Subject(predictor, self.engine, self.task)
        if subject.seq2seq:
            inputs = self.task.examples("valid").take(0)
        else:
            inputs = first_steps(self.task.examples("valid").take(0), self.GATE_STEPS)
        shown = activations(subject, inputs).to_json(units=slice(self.GATE_UNITS))
        shown.pop("decoder", None)
        write_text(self.dir / "live_gates.json", json.dumps({"step": step, **shown}) + "\n")

    def on_end(self, result):
        self.status["state"] = "finished"
        self._write(force=True)


def _duration(seconds: float) -> str:
    """12 s, 3 min 05 s, 2 h 07 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"

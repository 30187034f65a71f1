"""Hooks the training loop calls, the same for both engines: progress bar, and anything a
user or the dashboard adds (subclass `Callback`)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class Callback:
    def on_start(self, total_steps: int, start_step: int) -> None: ...
    def on_step(self, step: int, loss: float, lr: float) -> None: ...
    def on_eval(self, step: int, metrics: dict) -> None: ...
    def on_end(self, result: dict) -> None: ...


def progress_bar(disable: bool = False, console: Console | None = None) -> Progress:
    """A progress bar on stderr: count, rate, elapsed time and ETA, plus a status text."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(),
                    console=console or Console(stderr=True), disable=disable, transient=True)


class ProgressBar(Callback):
    """Steps done, steps per second, ETA, the running training loss and the last validation."""

    def __init__(self, label: str, disable: bool = False):
        self.label, self.disable = label, disable
        self.bar = self.task = None
        self.loss = None
        self.valid = ""

    def on_start(self, total_steps, start_step):
        self.bar = progress_bar(self.disable)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=total_steps, completed=start_step, status="")

    def on_step(self, step, loss, lr):
        self.loss = loss if self.loss is None else 0.95 * self.loss + 0.05 * loss
        speed = self.bar.tasks[0].speed
        rate = f"{speed:.0f} it/s " if speed else ""
        self.bar.update(self.task, completed=step,
                        status=f"{rate}loss {self.loss:.3g}{self.valid}")

    def on_eval(self, step, metrics):
        self.valid = f" valid {metrics['loss']:.3g}"

    def on_end(self, result):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

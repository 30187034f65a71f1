"""The one registry of tasks: the CLI, the dashboard and the tests read it."""

from __future__ import annotations

import difflib

from .base import Batch, Predictor, Task
from .charlm import CharLM
from .classify import Classify
from .forecast import Forecast
from .memory import Adding, Copy, TemporalOrder
from .music import Music
from .reber import ContinualReber, Reber
from .sentiment import Sentiment
from .sine import Sine
from .speech import Speech
from .translate import Translate

# in the order `lstmlab tasks` shows them: real data first, then the long-memory benchmarks
TASKS: dict[str, type[Task]] = {t.name: t for t in (
    Sine, Forecast, CharLM, Sentiment, Music, Classify, Translate, Speech,
    Adding, Copy, TemporalOrder, Reber, ContinualReber)}


def get_task(name: str, seed: int = 0, **options) -> Task:
    """The task `name`, built with `options`; a clear error for an unknown name."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; choose one of: {', '.join(TASKS)}")
    return TASKS[name](seed=seed, **options)


__all__ = ["TASKS", "get_task", "Task", "Batch", "Predictor"]

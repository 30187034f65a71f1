"""What a run keeps of its task, so it does not depend on the user's file staying put.

    RUN/preprocessing.json   Task.state(): options, vocabularies, scalers, label names, and
                             each user file's absolute path and sha256 (every run)
    RUN/data.safetensors     Task.stored_arrays(): the data read from the user's files (runs
                             trained on one), so evaluate, predict and generate need no file

A run trained on a user's file is rebuilt from these two, never from whatever file now has
that name. Resuming its training reads the file again, and refuses it if its bytes changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io.atomic import write_text
from ..io.files import read_tensors, save_tensors
from . import TASKS, get_task
from .base import Stored, Task, content_hash

PREPROCESSING = "preprocessing.json"
DATA = "data.safetensors"
DATA_FORMAT = "lstmlab-task-data"


def save_task_data(task: Task, folder) -> None:
    """Write the task's state (and, when it read the user's files, its data) into `folder`."""
    folder = Path(folder)
    if task.source_files:
        save_tensors(folder / DATA, task.stored_arrays(),
                     {"format": DATA_FORMAT, "format_version": "1", "task": task.name})
    write_text(folder / PREPROCESSING, json.dumps(task.state(), indent=1) + "\n")


def read_state(folder) -> dict | None:
    """RUN/preprocessing.json, or None for a run written before lstmlab kept it."""
    path = Path(folder) / PREPROCESSING
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the run folder is damaged") from None
    if not isinstance(state, dict) or not isinstance(state.get("sources"), dict) \
            or not isinstance(state.get("options"), dict):
        raise ValueError(f"{path} is not a task state written by lstmlab (no options or "
                         "sources); the run folder is damaged")
    return state


def _options(config: dict, state: dict | None) -> dict:
    options = dict(config.get("task_options", {}))
    if state is not None and config["task"] in TASKS:
        options.update(TASKS[config["task"]].options_of_state(state))
    if state is None and any(options.get(k) for k in getattr(TASKS.get(config["task"]), "sources", ())):
        # written before runs kept their data: such a config names the built-in data set
        # beside the user's file, and the file was the data
        options.pop("data", None)
    return options


def task_of_run(config: dict, folder) -> Task:
    """The task of a trained run, for evaluate, predict and generate: rebuilt from what the
    run stored when it trained on the user's files (the files themselves are not read), else
    from its options (built-in data)."""
    state = read_state(folder)
    if state is None or not state["sources"]:
        task = get_task(config["task"], seed=config["seed"], **_options(config, state))
        if state is not None:
            task.recall(state)
        return task
    arrays, meta = read_tensors(Path(folder) / DATA, "the run's data file")
    if meta.get("format") != DATA_FORMAT:
        raise ValueError(f"{Path(folder) / DATA} is not an lstmlab task data file")
    try:
        return get_task(config["task"], seed=config["seed"], stored=Stored(state, arrays),
                        **state["options"])
    except (KeyError, IndexError, TypeError) as e:               # a file edited by hand
        raise ValueError(f"{Path(folder) / PREPROCESSING} and {DATA} do not describe a "
                         f"{config['task']} task (missing {e}); the run folder is damaged") from None


def task_to_resume(config: dict, folder) -> Task:
    """The task of a run whose training goes on (--resume): built from the user's files
    again, each checked first to be the file the run trained on."""
    state = read_state(folder)
    for then in (state or {"sources": {}})["sources"].values():
        path = Path(then["path"])
        if not path.exists():
            raise ValueError(f"{path}, the data this run trained on, is gone; resuming reads it "
                             "again: put it back there")
        _check_same(then, content_hash(path))
    return get_task(config["task"], seed=config["seed"], **_options(config, state))


def check_sources(task: Task, folder) -> None:
    """Refuse to go on training a run when the user's file it read has changed: `task` was
    built from the file as it is now."""
    state = read_state(folder)
    for k, then in (state or {"sources": {}})["sources"].items():
        _check_same(then, task.source_files.get(k, {}).get("sha256"))


def _check_same(then: dict, sha256: str | None) -> None:
    if sha256 != then["sha256"]:
        raise ValueError(f"{then['path']} is not the file this run trained on (its sha256 was "
                         f"{then['sha256'][:16]}..., it changed since); resuming needs the same "
                         "data: put the original back, or train a new run")

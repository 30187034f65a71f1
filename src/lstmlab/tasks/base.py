"""What a task is: data, the model's inputs and outputs, a loss, metrics, baselines, figures.

A task imports neither engine. It hands the trainer batches of NumPy arrays and describes
its network as a `ModelConfig`; to evaluate, it calls a `Predictor`, which runs whichever
engine trained the model and speaks NumPy.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import check_memory
from ..config import ModelConfig
from ..interfaces import RunFn, TraceFn


@dataclass
class Batch:
    """One training batch, time-major."""
    x: np.ndarray                      # (T, B, F) features, or (T, B) token ids
    y: np.ndarray                      # targets: (T, B, O) for mse, (T, B) ids for xent;
                                       # no T with readout "last"; ctc: (B, L) ids, padded
    mask: np.ndarray | None = None     # (T, B): 1 where a target counts (padding is 0)
    lengths: np.ndarray | None = None  # (B,) steps per sequence, None when all are T
    carry: bool = False                # True: continue from the previous batch's final state (TBPTT)
    target_in: np.ndarray | None = None  # (T, B) seq2seq decoder inputs (teacher forcing): BOS + y[:-1]
    target_lengths: np.ndarray | None = None  # ctc: (B,) labels per sequence in y


@dataclass
class Predictor:
    """Engine-neutral inference: NumPy arrays in, NumPy arrays out.

    run(x, state=None, lengths=None, final=True) -> (outputs, state; None with final=False:
    the scores that need no final state say so, which spares the torch engine packing the
    batch); trace(x) -> the recurrent stack's
    gates and states per layer, as lstmlab.numpy's `trace`.

    A seq2seq model (config.architecture "seq2seq") differs: run(x, target_in, lengths) ->
    (logits (T, B, V), attention (B, T, S)) with teacher forcing; trace(x, lengths) traces
    the encoder; decode(x, lengths, max_len) -> (ids (T, B), attention (B, T, S)), greedy,
    ids PAD (0) after each sequence's EOS. Token ids: x (S, B) source, target_in (T, B).
    """
    run: RunFn
    trace: TraceFn
    config: ModelConfig
    decode: Callable | None = None     # seq2seq only: greedy decoding, see above
    model: Any = None                  # the engine's model itself, for lstmlab.inspect


@dataclass
class Inputs:
    """Sequences in a task's own terms, encoded as its model reads them, for lstmlab.inspect:
    an example of a split (Task.examples), or the user's text or series (Task.encode_input)."""
    x: np.ndarray                      # (T, B, F) features, or (T, B) token ids; time-major
    steps: list[list[str]]             # per sequence, what each of its steps reads, shown on
                                       # axes and in coloured text: a character, a word, a value
    lengths: np.ndarray | None = None  # (B,) steps per sequence, None when all are T
    values: np.ndarray | None = None   # (T, B) the number each step reads (series), for signals
    target_in: np.ndarray | None = None    # seq2seq: (T2, B) decoder input ids, BOS first
    target_steps: list[list[str]] | None = None   # seq2seq: what each decoder step reads

    @property
    def size(self) -> int:
        """How many sequences."""
        return self.x.shape[1]

    def length(self, b: int = 0) -> int:
        """Steps of sequence b."""
        return int(self.x.shape[0] if self.lengths is None else self.lengths[b])

    def take(self, index) -> Inputs:
        """The sequences at `index` (an int, a slice or an index array), cut to their
        longest length."""
        idx = np.atleast_1d(np.arange(self.size)[index])
        lengths = None if self.lengths is None else self.lengths[idx]
        T = self.x.shape[0] if lengths is None else int(lengths.max())
        tin = None if self.target_in is None else self.target_in[:, idx]
        if tin is not None:                                      # decoder inputs: up to the last non-PAD
            tin = tin[:max(1, int((tin != 0).any(axis=1).nonzero()[0].max()) + 1)]
        return Inputs(
            x=self.x[:T, idx], steps=[self.steps[i] for i in idx],
            lengths=None if lengths is None or (lengths == T).all() else lengths,
            values=None if self.values is None else self.values[:T, idx], target_in=tin,
            target_steps=None if self.target_steps is None else [self.target_steps[i] for i in idx])


# random streams: task data comes from np.random.default_rng([seed, STREAM, ...]), so the
# training batches, the validation and the test data never draw from the same stream
TRAIN, VALID, TEST = 0, 1, 2


def held_out(seed: int, make: Callable, n_valid: int, n_test: int, item_bytes: float) -> dict:
    """{"valid": make(rng, n_valid), "test": make(rng, n_test)}, each from its own stream of
    `seed`, so held-out data is the same for every run with this seed and never training data.

    item_bytes: about what one held-out example takes, to refuse sizes that cannot fit."""
    check_memory(f"{n_valid} validation and {n_test} test examples", (n_valid + n_test) * item_bytes,
                 "lower test_size or the sequence length")
    return {name: make(np.random.default_rng([seed, k]), n)
            for k, name, n in ((VALID, "valid", n_valid), (TEST, "test", n_test))}


def check_option(name: str, value, default):
    """A task option's value, checked against the type of its default (int, float, str or
    bool), so every task refuses `-o test_size=[1]`, `-o test_size=2.7` or `-o jitter=lots`
    with the option's name; a whole float (1e6) counts as an integer. The task checks the
    range."""
    def bad(what):
        return ValueError(f"task option {name} must be {what}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, numbers.Integral):
        if isinstance(value, numbers.Integral) and number:
            return operator.index(value)
        if number and math.isfinite(float(value)) and float(value).is_integer():
            return int(float(value))
        raise bad("an integer")
    if isinstance(default, numbers.Real):
        if not number:
            raise bad("a number")
        if not math.isfinite(float(value)):
            raise bad("a finite number")
        return float(value)
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        # `-o column=2019` arrives as the number 2019 (the CLI reads values as JSON)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return str(value)
        raise bad("a text")
    return value


def content_hash(path) -> str:
    """sha256 (hex) of a file's bytes, or of a folder's files (their names and hashes, sorted)."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.iterdir() if q.is_file()):
            h.update(f"{p.name}\0{content_hash(p)}\n".encode())
        return h.hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Stored:
    """What a run keeps of its task (RUN/preprocessing.json and RUN/data.safetensors), to
    rebuild the task without the user's file: `state` as Task.state() returned it, and the
    arrays of Task.stored_arrays()."""
    state: dict
    arrays: dict


def json_array(obj) -> np.ndarray:
    """A JSON-able object as a uint8 array (UTF-8 JSON), so safetensors can keep it."""
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def from_json_array(a: np.ndarray):
    return json.loads(np.asarray(a, dtype=np.uint8).tobytes().decode("utf-8"))


def check_int(name, value, low, high=None) -> int:
    """A task option that must be an integer in [low, high], or a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


@dataclass
class TaskDefaults:
    """A task's preferred settings; the user's options override them."""
    engine: str = "numpy"                          # "torch" where NumPy would be slow
    model: dict = field(default_factory=dict)      # ModelConfig fields (hidden_size, ...)
    train: dict = field(default_factory=dict)      # TrainConfig fields (steps, lr, ...)


class Task:
    """Base class. A task instance is built from its options (e.g. noise=0.1) and a seed, or,
    for a trained run, from what the run stored of it (`stored`: see Stored, state())."""

    name: str = ""
    summary: str = ""
    loss: str = "mse"                  # "mse", "xent", "gaussian" (mean and log-variance head) or
                                       # "ctc" (label sequences shorter than the input, blank 0)
    metric: str = "mse"                # the test metric that ranks models (compare)
    lower_is_better: bool = True
    loss_note: str = ""                # under loss.png: why training and validation losses differ
    defaults = TaskDefaults()
    options: dict = {}                 # option name -> (default, help), for the CLI
    sources: tuple = ()                # options that name the user's data (a file or folder)
    # what lstmlab inspect looks for units to follow by default (lstmlab.inspect.SIGNALS):
    # what a reader of this task's input keeps track of; "position" is the step's index
    signals: tuple = ("position",)

    def __init__(self, seed: int = 0, *, stored: Stored | None = None, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"task {self.name!r} has no option(s) {unknown}; "
                             f"it has: {', '.join(self.options) or 'none'}")
        self.seed = seed
        self.stored = stored
        self.opts = {k: check_option(k, options[k], d) if k in options else d
                     for k, (d, _) in self.options.items()}
        given = [k for k in self.sources if self.opts[k]]
        if given and self.opts.get("data"):
            if "data" in options:
                raise ValueError(f"--data {self.opts['data']} and --{given[0]} "
                                 f"{self.opts[given[0]]} name two data sources; give one")
            self.opts["data"] = ""                               # the user's file is the data
        # the user's files by their absolute path and content: a run reads the same bytes
        # again or refuses (see tasks.rundata)
        self.source_files = {}
        for k in given:
            path = Path(self.opts[k]).expanduser().resolve()
            self.opts[k] = str(path)
            if stored is not None:
                self.source_files[k] = stored.state["sources"][k]
            elif path.exists():                                  # else the task's reader says so
                self.source_files[k] = {"path": str(path), "sha256": content_hash(path)}

    def state(self) -> dict:
        """What turns the user's input into model input and back, JSON-able: the options, the
        user's files (absolute path and sha256) and what the task adds in preprocessing().
        A run keeps it in RUN/preprocessing.json."""
        return {"task": self.name, "seed": self.seed, "options": dict(self.opts),
                "sources": self.source_files, **self.preprocessing()}

    def preprocessing(self) -> dict:
        """The task's vocabularies, scalers, label names, ...: JSON-able (see state())."""
        return {}

    @classmethod
    def options_of_state(cls, state: dict) -> dict:
        """Options that a run's state (RUN/preprocessing.json) pins when the task is rebuilt
        from the run's options: what its training chose by itself from the data."""
        return {}

    def recall(self, state: dict) -> None:
        """A run on built-in data is rebuilt from its options, which options_of_state pins:
        here the task may take back, from the run's state, what it says of how its training
        chose them (where a season came from, say). Nothing by default."""

    def stored_arrays(self) -> dict[str, np.ndarray]:
        """The data a run keeps when the task reads the user's files, so that evaluate,
        predict and generate work after the file is moved: given back as `stored.arrays`."""
        return {}

    def model_config(self, **settings) -> ModelConfig:
        """The network for this task: its input/output sizes plus the user's settings."""
        raise NotImplementedError

    def train_batch(self, step: int, batch_size: int) -> Batch:
        """The batch for training step `step` (a pure function of seed and step: resumable)."""
        raise NotImplementedError

    def evaluate(self, predictor: Predictor, split: str) -> dict[str, float]:
        """Metrics on "valid" (includes "loss", which early stopping watches) or "test"."""
        raise NotImplementedError

    def baselines(self) -> dict[str, dict[str, float]]:
        """Trivial predictors' metrics on the test split, with the same metric names."""
        raise NotImplementedError

    def baseline_models(self) -> dict[str, str]:
        """What a baseline that chose its own model chose (name: the model, e.g. "ARIMA(0,1,3)
        (0,1,2)[24]"), for the report; {} where every baseline is fixed."""
        return {}

    def chosen(self) -> dict[str, str]:
        """What the task chose by itself from the data, and why (forecast's season, say:
        "24 (from the data: autocorrelation 0.99 at lag 24)"), for the report; {} for none."""
        return {}

    def figures(self, predictor: Predictor, folder, test: dict, baselines: dict) -> list:
        """Draw what this task draws into `folder`; returns the paths.

        test and baselines: the metrics already measured on the test split (evaluate,
        baselines), for the figures to quote without measuring them again."""
        return []

    def generate(self, predictor: Predictor, folder, *, length: int, temperature: float,
                 top_k: int, prompt: str | None, seed: int) -> dict:
        """Sample from a trained model (`lstmlab generate`); files go into `folder`.

        Returns a JSON-able dict: what was generated and the paths of files written."""
        raise ValueError(f"task {self.name!r} does not generate; tasks that do: charlm, music")

    def predict(self, predictor: Predictor, path=None, text: str | None = None) -> dict:
        """Run the model on the user's file (`lstmlab predict RUN --input PATH`) or on one
        text (`--text TEXT`); a JSON-able result. A "lines" entry (a list of str), if any, is
        what the CLI prints without --json. Tasks implement predict_file and predict_text."""
        if (path is None) == (text is None):
            raise ValueError("give exactly one of --input FILE and --text TEXT")
        return self.predict_file(predictor, path) if text is None \
            else self.predict_text(predictor, text)

    def predict_file(self, predictor: Predictor, path) -> dict:
        raise ValueError(f"task {self.name!r} does not take --input files yet")

    # --- inspection (lstmlab.inspect) --------------------------------------------------------
    def examples(self, split: str = "test") -> Inputs:
        """The sequences of a held-out split ("valid" or "test") as the model reads them
        (`lstmlab inspect --example N` picks one; saturation reads many)."""
        raise NotImplementedError

    def encode_input(self, value: str) -> Inputs:
        """The user's input in the task's own terms (`lstmlab inspect --input`): a text for a
        text task; a file (CSV or one number a line) or numbers separated by commas for a
        series task; one sequence. ValueError with one line for anything it cannot encode."""
        raise ValueError(f"task {self.name!r} reads no --input; pick a test example with "
                         f"--example N (0 to {self.examples('test').size - 1})")

    def input_picture(self, x: np.ndarray) -> tuple[np.ndarray, int, str] | None:
        """What one sequence's steps read, as a picture to draw above its gates (speech: the
        spectrogram): (image (rows, T k), k columns a step, what a row is) for the model's
        input x (T, F). None (the default) where the input is shown otherwise (text, series)."""
        return None

    # --- streaming (lstmlab.inspect.Stream) ---------------------------------------------------
    stream_width: int | None = None    # numbers a series stream reads a step (None: input_size)
    stream_window: int = 1             # values, newest last, that encoding one step needs

    def stream_input(self, window: np.ndarray) -> np.ndarray | None:
        """The model's input (F,) for the newest value of a series stream, encoded as
        encode_input encodes a series: window (n, stream_width), the last n <= stream_window
        values read, raw, oldest first. None while too few are read to encode one. The
        default: the value is the model's input as it is."""
        return window[-1]

    def stream_prediction(self, output: np.ndarray, window: np.ndarray | None) -> list | None:
        """What the model's output (O,) after the newest step of a stream says about the next
        step, in the task's own terms (window as stream_input's; None for tokens). None (the
        default) where a task's output is not read step by step."""
        return None

    def predict_text(self, predictor: Predictor, text: str) -> dict:
        if type(self).predict_file is not Task.predict_file:
            raise ValueError(f"task {self.name!r} reads a file, not one text: give "
                             "--input FILE instead of --text")
        raise ValueError(f"task {self.name!r} does not take --text")

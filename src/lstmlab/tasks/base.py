"""What a task is: data, the model's inputs and outputs, a loss, metrics, baselines, figures.

A task imports neither engine. It hands the trainer batches of NumPy arrays and describes
its network as a `ModelConfig`; to evaluate, it calls a `Predictor`, which runs whichever
engine trained the model and speaks NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..config import ModelConfig


@dataclass
class Batch:
    """One training batch, time-major."""
    x: np.ndarray                      # (T, B, F) features, or (T, B) token ids
    y: np.ndarray                      # targets: (T, B, O) for mse, (T, B) ids for xent; no T with readout "last"
    mask: np.ndarray | None = None     # (T, B): 1 where a target counts (padding is 0)
    lengths: np.ndarray | None = None  # (B,) steps per sequence, None when all are T
    carry: bool = False                # True: continue from the previous batch's final state (TBPTT)
    target_in: np.ndarray | None = None  # (T, B) seq2seq decoder inputs (teacher forcing): BOS + y[:-1]


@dataclass
class Predictor:
    """Engine-neutral inference: NumPy arrays in, NumPy arrays out.

    run(x, state=None, lengths=None) -> (outputs, state); trace(x) -> the recurrent stack's
    gates and states per layer, as lstmlab.numpy's `trace`.

    A seq2seq model (config.architecture "seq2seq") differs: run(x, target_in, lengths) ->
    (logits (T, B, V), attention (B, T, S)) with teacher forcing; trace(x, lengths) traces
    the encoder; decode(x, lengths, max_len) -> (ids (T, B), attention (B, T, S)), greedy,
    ids PAD (0) after each sequence's EOS. Token ids: x (S, B) source, target_in (T, B).
    """
    run: Callable
    trace: Callable
    config: ModelConfig
    decode: Callable | None = None     # seq2seq only: greedy decoding, see above


# random streams: task data comes from np.random.default_rng([seed, STREAM, ...]), so the
# training batches, the validation and the test data never draw from the same stream
TRAIN, VALID, TEST = 0, 1, 2


def held_out(seed: int, make: Callable, n_valid: int, n_test: int) -> dict:
    """{"valid": make(rng, n_valid), "test": make(rng, n_test)}, each from its own stream of
    `seed`, so held-out data is the same for every run with this seed and never training data."""
    return {name: make(np.random.default_rng([seed, k]), n)
            for k, name, n in ((VALID, "valid", n_valid), (TEST, "test", n_test))}


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
    """Base class. A task instance is built from its options (e.g. noise=0.1) and a seed."""

    name: str = ""
    summary: str = ""
    loss: str = "mse"                  # "mse", "xent" or "gaussian" (mean and log-variance head)
    metric: str = "mse"                # the test metric that ranks models (compare)
    lower_is_better: bool = True
    defaults = TaskDefaults()
    options: dict = {}                 # option name -> (default, help), for the CLI

    def __init__(self, seed: int = 0, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"task {self.name!r} has no option(s) {unknown}; "
                             f"it has: {', '.join(self.options) or 'none'}")
        self.seed = seed
        self.opts = {k: options.get(k, d) for k, (d, _) in self.options.items()}

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

    def predict(self, predictor: Predictor, path=None, **kw) -> dict:
        """Run the model on the user's file (`lstmlab predict RUN --input PATH`); a JSON-able
        result. Tasks that take one text (`--text TEXT`) get it as predict(predictor, text=TEXT).
        A "lines" entry (a list of str), if any, is what the CLI prints without --json."""
        raise ValueError(f"task {self.name!r} does not take --input files yet")

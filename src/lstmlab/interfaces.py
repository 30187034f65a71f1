"""The interfaces the layers meet at, written down as `typing.Protocol`s for the type checker.

Nothing here runs: each Protocol names the calls one part of the package makes on another,
so that a new cell, engine or predictor is checked against what its callers use.

- `RecurrentCell`: what the NumPy layer's time loop (numpy/recurrent.py) calls on a cell,
  implemented by the fast cells (numpy/cells.py) and the readable reference cells
  (numpy/reference.py).
- `Engine`: what the training loop (train/loop.py) calls on the NumPy or the torch engine.
- `RunFn`, `TraceFn`: the calls a task makes on a trained model through its `Predictor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .spec import CellSpec

if TYPE_CHECKING:                       # tasks.base and train import this module
    from .tasks.base import Batch, Predictor

Array = np.ndarray
# empty(shape, dtype) -> array: scratch space handed out by the model's workspace pool
Empty = Callable[[tuple, Any], np.ndarray]


class RecurrentCell(Protocol):
    """One time step of a cell family, forward and backward, without weights or time loop.

    Shapes: x (T, B, I); a state is a tuple of arrays whose first entry is h (B, R);
    `da` (T, B, G) is the gradient of each step's input: the pre-activations for the fast
    cells (G = gates * H), x itself for the reference cells (G = I).
    """

    spec: CellSpec
    input_size: int
    hidden_size: int
    out_size: int              # width of h (proj_size or hidden_size)
    G: int                     # width of a step's input gradient `da`
    merged: bool               # True: h_prev is written into the step's input rows

    def state_sizes(self) -> tuple[int, ...]: ...
    def prepare(self, p: dict[str, Array]) -> dict[str, Array]: ...
    def project(self, w: dict, x: Array, empty: Empty) -> tuple[Array, Any]: ...
    def alloc(self, T: int, B: int, dtype: Any, empty: Empty) -> dict[str, Any]: ...
    def step(self, w: dict, xp_t: Array, prev: tuple, new: tuple, cache: dict, t: int) -> None: ...
    def step_backward(self, w: dict, dnew: list, prev: tuple, new: tuple, cache: dict, t: int,
                      da: Array) -> Sequence[Array]: ...
    def project_backward(self, w: dict, x: Array, ctx: Any, da: Array, grads: dict) -> Array: ...
    def param_grads(self, w: dict, da: Array, hist: tuple, cache: dict, grads: dict) -> None: ...
    def trace(self, cache: dict, hist: tuple) -> dict[str, Array]: ...


class RunFn(Protocol):
    """A trained model as NumPy in, NumPy out.

    Sequence model: run(x, state=None, lengths=None, final=True) -> (outputs, final state);
    final=False: the final state is not wanted and comes back None (the torch engine then
    runs a batch with lengths on its fused kernel without packing it).
    Seq2seq model: run(x, target_in, lengths=None) -> (logits, attention).
    """

    def __call__(self, x: Array, *args: Any, **kwargs: Any) -> tuple[Array, Any]: ...


class TraceFn(Protocol):
    """The recurrent stack's gates and states, trace(x) (seq2seq: trace(x, lengths=None), the
    encoder's): {"l0": {"i": (T, B, H), ...}, ...}."""

    def __call__(self, x: Array, *args: Any, **kwargs: Any) -> dict[str, dict[str, Array]]: ...


class Engine(Protocol):
    """What the training loop calls; `train/engines.py` has the NumPy and the torch one."""

    name: str

    @property
    def num_params(self) -> int: ...

    def train_step(self, batch: Batch, lr: float, state: Any, step: int) -> tuple[float, float, Any]: ...
    def predictor(self) -> Predictor: ...
    def checkpoint(self) -> tuple[dict, dict]: ...
    def restore(self, tensors: dict, scalars: dict) -> None: ...
    def load_weights(self, arrays: dict) -> None: ...
    def save_model(self, path: Any) -> Path: ...
    def state_to_arrays(self, state: Any) -> list: ...
    def arrays_to_state(self, arrays: list) -> Any: ...

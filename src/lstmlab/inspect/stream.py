"""A trained model reading a stream one step at a time, its state carried from step to step:
what it predicts and every gate and state at each step (the dashboard's Stream view).

    s = Stream(open_subject("runs/sine"), units=32)
    s.step(0.5).to_json()     # {"t": 0, "input": 0.5, "prediction": [0.61], "groups": {...}}
    s.step_many([0.6, 0.7])   # a series replayed
    s.reset()                 # zero state

A step is read in the task's own terms: a number (or a list of `stream_width` numbers) for a
series task, encoded as the task encodes its inputs (Task.stream_input), or one character
for charlm (a token task: one token, as the task's encode_input reads it). A bare model
without its task reads its own input: a vector of input_size numbers, or a token id.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from dataclasses import dataclass

import numpy as np

from .analyses import open_subject
from .subject import STEP_NAMES, _numpy


@dataclass
class StreamStep:
    """One step of a stream.

    input: what was read (a number, a list of numbers, a character, a token id).
    prediction: what the model says about the next step in the task's terms (see
    Task.stream_prediction: sine the next value, forecast the next `horizon` values, charlm
    the 5 most probable characters); a bare model's raw outputs; None where a task's outputs
    are not read step by step, and while a forecast stream reads its first season (the
    model has not read a value yet: groups is empty then).
    groups[group][name]: (H,) or the first `units` units of every gate and state
    (STEP_NAMES) of every layer at this step."""
    t: int
    input: object
    prediction: list | None
    groups: dict[str, dict[str, np.ndarray]]

    def to_json(self) -> dict:
        return {"t": self.t, "input": self.input, "prediction": self.prediction,
                "groups": {g: {n: v.tolist() for n, v in d.items()} for g, d in self.groups.items()}}


class Stream:
    """A model (a Subject, a run folder or a loaded model) reading a stream one step at a
    time; `units` limits each group to its first units (None: all)."""

    def __init__(self, subject, units: int | None = None):
        subject = open_subject(subject)
        c = subject.config
        if subject.seq2seq:
            raise ValueError("a seq2seq model (translate) reads a whole sentence before it "
                             "writes; stream a sequence model instead")
        if c.bidirectional:
            raise ValueError("a bidirectional model also reads each sequence backwards, from its "
                             "end; only a one-directional model can read a stream")
        if units is not None and (isinstance(units, bool) or not isinstance(units, numbers.Integral)
                                  or units < 1):
            raise ValueError(f"units must be a positive integer or None, got {units!r}")
        self.subject, self.units = subject, units
        self.tokens = bool(c.vocab_size)
        task = subject.task
        self.width = c.input_size if task is None or task.stream_width is None else task.stream_width
        self.window: deque = deque(maxlen=1 if task is None else task.stream_window)
        self.state = None
        self.t = 0
        # a plain one-directional LSTM in the NumPy engine reads each step on LSTM.step's
        # shortest path (lstmlab.numpy.kernels); everything else through the predictor
        model = subject.model if subject.engine == "numpy" else None
        self.model = model if model is not None and model.rnn.fast_stream else None

    def reset(self) -> None:
        """Forget everything read: zero state, step 0."""
        self.state, self.t = None, 0
        self.window.clear()

    def step(self, value) -> StreamStep:
        """Read one step (see the module); the state is carried to the next call."""
        x, shown = self._encode(value)
        t, self.t = self.t, self.t + 1
        if x is None:                                            # too few values to encode one yet
            return StreamStep(t, shown, None, {})
        units = self.units
        kept: dict[str, dict[str, np.ndarray]] = {}

        def keep(group, name, v, when):                          # the step's values, batch row 0
            kept.setdefault(group, {})[name] = np.array(_numpy(v)[0, :units])
            return v

        subject = self.subject
        if self.model is not None:                              # the NumPy engine's stream step
            rec: dict = {}
            m, x_t = self.model, subject.as_input(x)[0]          # (1, F), or (1,) token ids
            y, self.state = m.rnn.step(x_t if m.embedding is None else m.embedding(x_t), self.state,
                                       record=rec)
            out = m.head(y)
            for group, values in rec.items():                    # in the order the step makes them
                for name in STEP_NAMES["lstm"]:
                    keep(group, name, values[name], self.t - 1)
        else:
            with subject.edited(keep):
                out, self.state = subject.predictor.run(subject.as_input(x), self.state)
        out = np.asarray(out, np.float64)
        out = out.reshape(-1, out.shape[-1])[-1]                 # (1, 1, O) or (1, O) -> (O,)
        task = subject.task
        if task is None:
            prediction = out.tolist()
        else:
            prediction = task.stream_prediction(out, None if self.tokens else np.array(self.window))
        return StreamStep(t, shown, prediction, kept)

    def step_many(self, values) -> list[StreamStep]:
        """step() for each value in turn (a series replayed; a text, one character a step)."""
        return [self.step(v) for v in values]

    def _encode(self, value) -> tuple[np.ndarray | None, object]:
        """(the model's input (1, 1[, F]) or None while a series task needs more values, the
        value as read)."""
        task = self.subject.task
        if self.tokens:
            if task is None:
                V = self.subject.config.vocab_size
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                        or not 0 <= int(value) < V:
                    raise ValueError(f"a model without its task reads token ids 0 to {V - 1}, "
                                     f"got {value!r}")
                return np.array([[int(value)]]), int(value)
            if not isinstance(value, str):
                raise ValueError(f"the stream reads one token a step as text, got a "
                                 f"{type(value).__name__}")
            x = task.encode_input(value).x                       # the task's own check and message
            if x.shape[0] != 1:
                raise ValueError(f"the stream reads one token a step; {value[:20]!r} is "
                                 f"{x.shape[0]} tokens")
            return x[:, :1], value
        v = np.atleast_1d(np.asarray(_number_list(value), np.float64))
        if v.shape != (self.width,):
            raise ValueError(f"the value has {v.size} numbers, the model reads {self.width} a step")
        self.window.append(v)
        shown = float(v[0]) if v.size == 1 and not isinstance(value, (list, tuple, np.ndarray)) \
            else v.tolist()
        x = v if task is None else task.stream_input(np.array(self.window))
        return (None if x is None else x[None, None, :]), shown


def _number_list(value):
    """value (a number or a list of numbers) as it is, or a one-line ValueError."""
    items = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
    for v in np.asarray(items, dtype=object).reshape(-1):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"a stream step is a finite number or a list of them, got {v!r}")
    return value

"""Per-step signals to look for in a network's units (`top_units`): what a reader of the text
or the series keeps track of, computed from the input alone.

Text signals read what each step reads (Inputs.steps: characters, or words, which count at
their last character); series signals read the values (Inputs.values).
"""

from __future__ import annotations

import numpy as np

from ..tasks.base import Inputs
from ..tasks.kit import text_signals

TEXT_SIGNALS = ("position_in_word", "inside_word", "position_in_line", "position_in_clause",
                "inside_parentheses", "inside_quotes", "uppercase")
SERIES_SIGNALS = ("value", "above_mean", "rising")
SIGNALS = TEXT_SIGNALS + SERIES_SIGNALS + ("position",)   # position: the step's index


def signal_values(signal, inputs: Inputs) -> np.ndarray:
    """(T, B) float64: `signal` (a name of SIGNALS, or values (T,) or (T, B)) at every step
    of `inputs`; what it holds past a sequence's end is not meant to be read."""
    T, B = inputs.x.shape[:2]
    if not isinstance(signal, str):
        v = np.asarray(signal, np.float64)
        v = v[:, None] if v.ndim == 1 else v
        if v.shape not in ((T, B), (T, 1)) or not np.isfinite(v).all():
            raise ValueError(f"a signal must be finite numbers, one per step ({T}), got shape {v.shape}")
        return np.broadcast_to(v, (T, B)).copy()
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}; known: {', '.join(SIGNALS)}")
    out = np.zeros((T, B))
    if signal == "position":
        return out + np.arange(T)[:, None]
    if signal in SERIES_SIGNALS:
        if inputs.values is None:
            raise ValueError(f"the signal {signal!r} reads a series; this input is text: choose one of "
                             f"{', '.join(TEXT_SIGNALS)}")
        v = np.asarray(inputs.values, np.float64)
        lengths = np.full(B, T) if inputs.lengths is None else np.asarray(inputs.lengths)
        for b in range(B):
            s = v[:lengths[b], b]
            if signal == "value":
                out[:lengths[b], b] = s
            elif signal == "above_mean":
                out[:lengths[b], b] = s > s.mean()
            else:
                out[1:lengths[b], b] = np.diff(s) > 0
        return out
    for b, steps in enumerate(inputs.steps):
        if all(len(s) == 1 for s in steps):                     # characters
            out[:len(steps), b] = text_signals("".join(steps))[signal]
        else:                                                    # words: each at its last character
            text = " ".join(steps)
            ends = np.cumsum([len(s) + 1 for s in steps]) - 2
            out[:len(steps), b] = text_signals(text)[signal][ends]
    return out

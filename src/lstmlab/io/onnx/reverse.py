"""ONNX's direction="reverse" for the NumPy engine: a one-direction model run backwards in time.

lstmlab's layers run forward, or both ways (bidirectional); an ONNX node may also run only
backwards. Rather than a third kind of layer, `load_onnx` wraps the forward model: reading
x from its last step to its first is the forward model on x reversed in time, with the
outputs put back in x's order.
"""

from __future__ import annotations

import numpy as np

from ...checks import check_lengths
from ...numpy.recurrent import Recurrent


class TimeReversed:
    """`model` (a one-direction lstmlab.numpy LSTM, GRU or RNN) reading each sequence backwards.

    y, state = m(x, state=None, lengths=None), with x, state and lengths as the model takes
    them: y[t] is the output after reading steps T-1 down to t (each sequence from its own
    last step when lengths are given; zero past its end), the final state the one after
    step 0: ONNX's Y, Y_h (and Y_c) of a direction="reverse" node. A stack of such layers is
    the forward stack on the reversed input, because the reversals between layers cancel.
    The forward model is `m.model` (its params are the ONNX node's weights). The wrapper has
    no other attributes, so no code mistakes it for a forward model (lstmlab.save refuses it).
    """

    def __init__(self, model: Recurrent):
        if not isinstance(model, Recurrent) or model.bidirectional:
            raise ValueError("TimeReversed needs a one-direction lstmlab.numpy LSTM, GRU or RNN")
        self.model = model

    def __repr__(self):
        return f"TimeReversed({self.model!r})"

    def __call__(self, x, state=None, lengths=None):
        """(y, final state), as the forward model returns them, with time running backwards."""
        x = np.asarray(x)
        if x.ndim not in (2, 3):                                 # the model says what is wrong
            return self.model(x, state, lengths)
        time_axis = 1 if self.model.batch_first and x.ndim == 3 else 0
        T = x.shape[time_axis]
        B = x.shape[1 - time_axis] if x.ndim == 3 else 1
        a = check_lengths(lengths, T, B)
        rev = None
        if a is not None:                                        # each sequence within its length
            t = np.arange(T)[:, None]                            # (T, 1)
            rev = np.where(t < a, a - 1 - t, t)                  # (T, B)
        y, state = self.model(self._reverse(x, rev), state, lengths)
        return self._reverse(y, rev), state

    def _reverse(self, a, rev):
        """a ((T, B, F), (B, T, F) or (T, F), as the model lays it out) reversed in time."""
        time_axis = 1 if self.model.batch_first and a.ndim == 3 else 0
        if rev is None:
            return np.flip(a, time_axis)
        tm = np.moveaxis(a, time_axis, 0) if a.ndim == 3 else a[:, None]   # (T, B, F)
        out = np.take_along_axis(tm, rev[:, :, None], axis=0)
        return np.moveaxis(out, 0, time_axis) if a.ndim == 3 else out[:, 0]

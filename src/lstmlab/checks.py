"""Checks at the boundary that both engines share, with the exact messages users see.

They look at NumPy arrays and shapes only, so the NumPy and the torch engine say the same
thing about the same mistake.
"""

from __future__ import annotations

import numpy as np


def check_numbers(a: np.ndarray, what: str) -> np.ndarray:
    """`a` must hold real numbers, without NaN or inf."""
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{what} must hold numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = ~np.isfinite(a)
        raise ValueError(f"{what} contains {int(bad.sum())} NaN or inf value(s), first at "
                         f"index {tuple(int(i) for i in np.argwhere(bad)[0])}; "
                         "clean or impute the data first")
    return a


def state_parts(state, family: str, sizes: tuple, what: str) -> list[tuple[str, object]]:
    """[(name, component)] of a user's state: (h0, c0[, gates0]) for LSTMs, h0 otherwise."""
    if family == "lstm":
        if not isinstance(state, (tuple, list)) or len(state) not in (2, len(sizes)):
            fmt = "(h0, c0, gates0)" if len(sizes) == 3 else "(h0, c0)"
            raise ValueError(f"{what} must be a tuple {fmt} for an LSTM")
        return list(zip(("h0", "c0", "gates0"), state))
    if isinstance(state, (tuple, list)):
        raise ValueError(f"{what} must be one array h0 for a {family.upper()}, "
                         f"not a {type(state).__name__}")
    return [("h0", state)]


def check_state_shape(shape: tuple, want: tuple, unbatched: bool, what: str) -> None:
    if tuple(shape) != tuple(want):
        dims = "(num_layers*num_directions, size)" if unbatched else \
               "(num_layers*num_directions, batch, size)"
        raise ValueError(f"{what} has shape {tuple(shape)}, expected {tuple(want)} {dims}")


def check_lengths(lengths, T: int, B: int) -> np.ndarray | None:
    """lengths as int64 (B,), each in 1..T; None when every sequence has all T steps."""
    if lengths is None:
        return None
    a = np.asarray(lengths)
    if a.ndim != 1 or a.shape[0] != B:
        raise ValueError(f"lengths must be 1-D with one entry per sequence ({B}), "
                         f"got shape {a.shape}")
    if a.dtype.kind not in "iuf" or (a.dtype.kind == "f" and not np.all(a == np.round(a))):
        raise ValueError(f"lengths must be whole numbers, got {a.tolist()}")
    a = a.astype(np.int64)
    if a.min() < 1 or a.max() > T:
        raise ValueError(f"lengths must lie in 1..{T} (the number of steps), got "
                         f"{a.min()}..{a.max()}")
    return None if (a == T).all() else a

"""Checks at the boundary that both engines share, with the exact messages users see.

They look at NumPy arrays and shapes only, so the NumPy and the torch engine say the same
thing about the same mistake.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

from .families import family_of, state_names


def check_numbers(a: np.ndarray, what: str, dtype=None,
                  hint: str = "clean or impute the data first") -> np.ndarray:
    """`a` must hold real numbers, without NaN or inf; with `dtype` (the model's), also none
    beyond that dtype's range, which the cast to it would turn into inf."""
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{what} must hold numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = ~np.isfinite(a)
        raise ValueError(f"{what} contains {int(bad.sum())} NaN or inf value(s), first at "
                         f"index {tuple(int(i) for i in np.argwhere(bad)[0])}; {hint}")
    if dtype is not None and a.dtype.kind == "f" and a.dtype.itemsize > np.dtype(dtype).itemsize:
        big = np.finfo(dtype).max
        bad = np.abs(a) > big
        if bad.any():
            raise ValueError(f"{what} holds {int(bad.sum())} value(s) beyond the range of the model's "
                             f"{np.dtype(dtype)} (|value| > {big:.4g}), first at index "
                             f"{tuple(int(i) for i in np.argwhere(bad)[0])}; rescale them")
    return a


def state_parts(state, spec, what: str) -> list[tuple[str, object]]:
    """[(name, component)] of a user's state for variant `spec`: a tuple (h0, c0[, gates0])
    for LSTMs (fgr's gates0 may be left out: zeros), the array h0 otherwise."""
    fam, names = family_of(spec), tuple(n + "0" for n in state_names(spec))
    if len(fam.state) > 1:
        if not isinstance(state, (tuple, list)) or len(state) not in (len(fam.state), len(names)):
            raise ValueError(f"{what} must be a tuple ({', '.join(names)}) for an {fam.class_name}")
        return list(zip(names, state))
    if isinstance(state, (tuple, list)):
        raise ValueError(f"{what} must be one array h0 for a {fam.class_name}, "
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


# --- values a user gave, and how messages show them ------------------------------------
def shown(value, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: a message names what it refuses but never
    echoes megabytes of it."""
    try:
        text = repr(value)
    except ValueError:                                           # an int too long to print
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def listed(names, limit: int = 4) -> str:
    """Some of `names`, shown, and how many more: bounded however many there are."""
    names = list(names)
    head = ", ".join(shown(n, 40) for n in names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_int(value, name: str, low: int = 1) -> int:
    """`value` must be an integer >= `low` (not a bool, not 2.0)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < low:
        want = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {want}, got {shown(value)}")
    return int(value)


def check_real(value, name: str, low: float | None = None, high: float | None = None, *,
               open_low: bool = False) -> float:
    """`value` must be a finite real number (not a bool), >= `low` (> with open_low) and,
    with `high`, below it."""
    try:
        x = float(value) if isinstance(value, numbers.Real) and \
            not isinstance(value, (bool, np.bool_)) else None
    except OverflowError:                                        # an int beyond any float
        x = None
    if x is None or not (np.isfinite(x) and (low is None or (x > low if open_low else x >= low))
                         and (high is None or x < high)):
        span = ""
        if high is not None:
            span = f" in {'(' if open_low else '['}{low}, {high})"
        elif low is not None:
            span = f" {'>' if open_low else '>='} {low}"
        raise ValueError(f"{name} must be a finite number{span}, got {shown(value)}")
    return x


def check_bool(value, name: str) -> bool:
    """`value` must be True or False (not 1, not "yes")."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {shown(value)}")
    return bool(value)


def check_choice(value, name: str, choices: tuple) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {shown(value)}")
    return value


# --- memory ----------------------------------------------------------------------------
def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(what: str, nbytes: float, hint: str = "ask for less") -> None:
    """Refuse, before allocating anything, what cannot fit in this machine's memory."""
    total = physical_memory()
    if total and nbytes > total:
        raise ValueError(f"{what} would take about {size_text(nbytes)}, more than this machine's "
                         f"{size_text(total)} of memory; {hint}")


def size_text(n: float) -> str:
    """Bytes for people: '3.9 GB'."""
    if n >= 1e18:
        return f"about 10^{_log10(n)} bytes"
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def count_text(n: int) -> str:
    """A count for people: '4,000,020,000' or, for absurd ones, 'about 10^400'."""
    return f"{n:,}" if n < 10**15 else f"about 10^{_log10(n)}"


def _log10(n) -> int:
    return int(n.bit_length() * 0.30103) if isinstance(n, int) else int(np.log10(n))

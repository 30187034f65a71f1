"""Static figures: forecasts, the gates inside a cell, loss curves, cell-state norms and
the confusion matrix of a classifier (two tasks draw it).

Every function draws on its own `matplotlib.figure.Figure` with the Agg canvas (never
pyplot: no global state, no GUI, safe in a server thread), saves a PNG atomically (a
failed draw leaves any old file at `path` untouched) and returns the `Path` it wrote.
Arguments are checked first, so a user's mistake is one `ValueError` with one line.
"""

from __future__ import annotations

import functools
import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator

from ..io.atomic import atomic_path

__all__ = ["forecast_figure", "gate_heatmap", "loss_curve", "cell_state_norm", "confusion_figure"]

DPI = 110            # ~1100 px for a 10-inch figure: sharp on screen, small on disk
WIDTH = 10.0         # inches; every figure has this width so they line up in a report
TITLE_SIZE = 14      # suptitle
SUBTITLE_SIZE = 11   # per-panel titles
METRICS_WIDTH = 100  # characters in a line of metrics under a title
LABEL_SIZE = 10.5    # axis and colorbar labels
TICK_SIZE = 9        # tick labels
LEGEND_SIZE = 9.5

HISTORY_COLOR = "#9e9e9e"
TRUTH_COLOR = "#111111"
FREE_RUN_COLOR = "#d62728"
NEXT_STEP_COLOR = "#1f77b4"
SPLIT_COLORS = {"train": "#1f77b4", "valid": "#ff7f0e", "test": "#2ca02c"}
LINE_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
               "#e377c2", "#17becf"]

# Trace entries in the order they are drawn, with the name a learner reads.
GATE_NAMES = {
    "i": "input gate i", "f": "forget gate f", "g": "block input g", "o": "output gate o",
    "r": "reset gate r", "z": "update gate z", "n": "candidate n",
    "c": "cell state c", "h": "hidden state h",
}
# What each entry does, in words that hold for every variant of its family.
GATE_ROLES = {
    "i": "how much of g is written into the cell",
    "f": "how much of the old cell state is kept",
    "g": "the new value offered to the cell",
    "o": "how much of the cell is shown as h",
    "r": "how much of the previous h the candidate sees",
    "z": "how much of the previous h is kept",
    "n": "the new value proposed for h",
    "c": "the memory carried from step to step",
    "h": "the layer's output at each step",
}
SIGMOID_GATES = {"i", "f", "o", "r", "z"}    # in [0, 1]: fixed colour range, sequential map
GATE_CMAP = colormaps["viridis"].with_extremes(bad="#bdbdbd")   # grey: nan or inf
SIGNED_CMAP = colormaps["RdBu_r"].with_extremes(bad="#bdbdbd")  # diverging, white at 0
VALID_SPLITS = ("valid", "validation", "val")


# --------------------------------------------------------------------------- helpers

def new_figure(height: float) -> Figure:
    """A figure of the house width and resolution, with its own Agg canvas (no pyplot).

    new_figure, style_axes, log_y and save_figure are the building blocks a task's own
    figures use, so every picture lstmlab draws looks alike."""
    layout = ConstrainedLayoutEngine(h_pad=0.06, w_pad=0.06, hspace=0.04, wspace=0.02)
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def style_axes(ax) -> None:
    """The house look: tick and label sizes, a light grid, no top or right spine."""
    ax.tick_params(labelsize=TICK_SIZE)
    ax.xaxis.label.set_size(LABEL_SIZE)
    ax.yaxis.label.set_size(LABEL_SIZE)
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


class _PlainLogFormatter(LogFormatter):
    """Labels the ticks LogFormatter would label, as plain numbers: 0.3, 1, 20, 1e-05."""

    def __call__(self, x, pos=None):
        return f"{x:.3g}" if super().__call__(x, pos) else ""


def _time_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10],
                                                 min_n_ticks=1))        # steps are whole numbers


# Colorbar ticks as plain short numbers, never with a "1e37" multiplier above the bar.
_SHORT = FuncFormatter(lambda v, pos=None: f"{v:.3g}".replace("-", "\u2212"))


def log_y(ax) -> None:
    """A log y axis with plain numbers (0.3, 1, 20): easier to read than 3x10^-1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False,
                                                    minor_thresholds=(1, 0.4)))
    ax.grid(True, which="minor", axis="y", color="#f2f2f2", linewidth=0.6)


def save_figure(fig: Figure, path) -> Path:
    """Write `fig` as PNG to `path`, atomically.

    Characters the font lacks (a user's text: emoji, CJK, control characters) are drawn as
    empty boxes without matplotlib's warning per glyph, which would flood stderr."""
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _drawing(func):
    """Run a figure function with floating-point warnings off, whatever the caller's
    np.seterr: figures of diverged models hold values like 1e300 or inf, and matplotlib's
    own arithmetic on them (log-axis limits, colour normalisation) over- or underflows
    harmlessly; that must not abort the picture."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)
    return wrapper


def _vector(a, what: str, length: int | None = None, length_of: str = "") -> np.ndarray:
    try:
        v = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a 1-D array of numbers") from None
    if v.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {v.shape}")
    if v.size == 0:
        raise ValueError(f"{what} is empty")
    if length is not None and v.size != length:
        raise ValueError(f"{what} has {v.size} values, {length_of} has {length}")
    return v


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)) or isinstance(v, (int, np.integer)):
        return str(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v == 0 or not math.isfinite(v) or 1e-3 <= abs(v) < 1e4:
            return f"{v:.4g}"
        return f"{v:.2e}"
    return str(v)


def _text(title, what: str) -> str:
    if not isinstance(title, str):
        raise ValueError(f"{what} must be a string, got {type(title).__name__}")
    return title


# --------------------------------------------------------------------------- forecast

@_drawing
def forecast_figure(path, *, series, title: str = "", metrics: Mapping | None = None,
                    xlabel: str = "time step (0 = forecast origin, the last value seen)",
                    ylabel: str = "value", forecast_label: str = "free run (own predictions)",
                    baseline_label: str = "baseline") -> Path:
    """Forecasts against the truth: one panel per series, stacked and sharing the time axis.

    series: 1 to 4 dicts with "history" (1-D, the context the model saw), "truth" (1-D, the
    future), "free_run" (len(truth): the model feeding on its own predictions from the end
    of the history), optionally "next_step" (len(truth): one-step-ahead predictions given
    the true previous values), "lower"/"upper" (len(truth): a prediction interval, both
    or neither), "baseline" (len(truth): a baseline's forecast, drawn thin and dashed,
    named by `baseline_label`) and "label" (the panel's title). `forecast_label` names the
    "free_run" line (e.g. "forecast" for a direct multi-step model).
    metrics: optional {name: value}, printed under the title.
    Time is in steps relative to the forecast origin: the history ends at 0, the future
    runs 1 .. len(truth). Returns `path`.
    """
    title = _text(title, "title")
    if isinstance(series, Mapping) or not isinstance(series, Sequence):
        raise ValueError("series must be a list of 1 to 4 dicts")
    if not 1 <= len(series) <= 4:
        raise ValueError(f"series must hold 1 to 4 dicts, got {len(series)}")
    panels = []
    for k, s in enumerate(series):
        if not isinstance(s, Mapping):
            raise ValueError(f"series[{k}] must be a dict, got {type(s).__name__}")
        missing = [key for key in ("history", "truth", "free_run") if key not in s]
        if missing:
            raise ValueError(f"series[{k}] lacks {', '.join(repr(m) for m in missing)}")
        unknown = set(s) - {"history", "truth", "free_run", "next_step", "lower", "upper",
                            "baseline", "label"}
        if unknown:
            raise ValueError(f"series[{k}] has unknown keys {sorted(unknown)}")
        if ("lower" in s) != ("upper" in s):
            raise ValueError(f"series[{k}] needs both 'lower' and 'upper', or neither")
        p: dict[str, Any] = {"history": _vector(s["history"], f"series[{k}]['history']"),
                             "truth": _vector(s["truth"], f"series[{k}]['truth']")}
        n = p["truth"].size
        for key in ("free_run", "next_step", "lower", "upper", "baseline"):
            if key in s and s[key] is not None:
                p[key] = _vector(s[key], f"series[{k}][{key!r}]", n, "truth")
        p["label"] = _text(s.get("label", ""), f"series[{k}]['label']")
        panels.append(p)
    if metrics is not None and not isinstance(metrics, Mapping):
        raise ValueError("metrics must be a dict of {name: value}")

    n_panels = len(panels)
    fig = new_figure(1.2 + 2.5 * n_panels)
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    for ax, p in zip(axes, panels):
        hist, truth = p["history"], p["truth"]
        th = np.arange(1 - hist.size, 1)                  # history ends at the origin, 0
        tf = np.arange(0, truth.size + 1)                  # the future, joined to the origin
        last = hist[-1:]
        if "lower" in p:
            ax.fill_between(tf[1:], p["lower"], p["upper"], color=FREE_RUN_COLOR, alpha=0.15,
                            linewidth=0, label="prediction interval")
        ax.axvline(0, color="#555555", linestyle=":", linewidth=1.3, label="forecast origin")
        ax.plot(th, hist, color=HISTORY_COLOR, linewidth=1.8, label="history (model input)")
        ax.plot(tf, np.concatenate([last, truth]), color=TRUTH_COLOR, linewidth=1.8,
                label="truth")
        if "next_step" in p:
            ax.plot(tf[1:], p["next_step"], color=NEXT_STEP_COLOR, linewidth=1.6,
                    linestyle=(0, (4, 2)), label="next-step prediction (true inputs)")
        if "baseline" in p:
            ax.plot(tf[1:], p["baseline"], color="#7f7f7f", linewidth=1.3,
                    linestyle=(0, (1, 1.5)), label=baseline_label)
        ax.plot(tf, np.concatenate([last, p["free_run"]]), color=FREE_RUN_COLOR,
                linewidth=2.2, label=forecast_label)
        if p["label"]:
            ax.set_title(p["label"], loc="left", fontsize=SUBTITLE_SIZE)
        ax.set_ylabel(ylabel)
        style_axes(ax)
    axes[-1].set_xlabel(xlabel)
    _time_axis(axes[-1])

    # One legend for all panels: the union of what was drawn, in drawing order.
    seen: dict[str, Artist] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    order = ["history", "truth", "free run", "next-step", "prediction", "forecast"]
    seen = dict(sorted(seen.items(), key=lambda kv: next(
        k for k, word in enumerate(order + [""]) if kv[0].startswith(word))))
    fig.legend(seen.values(), seen.keys(), loc="outside lower center",
               ncols=min(len(seen), 3), fontsize=LEGEND_SIZE, frameon=False)
    heading = title or "Forecast"
    if metrics:
        heading += "\n" + "\n".join(textwrap.wrap("    ".join(
            f"{k}:\u00a0{_fmt(v)}".replace(" ", "\u00a0") for k, v in metrics.items()),
            METRICS_WIDTH, break_on_hyphens=False)).replace("\u00a0", " ")
    fig.suptitle(heading, fontsize=TITLE_SIZE if not metrics else SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- gates

def _trace_arrays(trace_layer, sequence):
    if not isinstance(trace_layer, Mapping) or not trace_layer:
        raise ValueError("trace_layer must be a non-empty dict {name: (T, B, H) array}, "
                         "one entry of model.trace(x) such as trace['l0']")
    if not isinstance(sequence, (int, np.integer)) or isinstance(sequence, bool):
        raise ValueError(f"sequence must be an int, got {type(sequence).__name__}")
    out, shape = {}, None
    for name, a in trace_layer.items():
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 3:
            if not 0 <= sequence < a.shape[1]:
                raise ValueError(f"sequence {sequence} is out of range for a batch of "
                                 f"{a.shape[1]}")
            a = a[:, sequence]
        elif a.ndim != 2:                                  # (T, H): an unbatched trace
            raise ValueError(f"trace entry {name!r} must be (T, B, H) or (T, H), "
                             f"got shape {a.shape}")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"trace entry {name!r} is empty, shape {a.shape}")
        if shape is not None and a.shape != shape:
            raise ValueError(f"trace entry {name!r} is {a.shape} (T, H) but the others are "
                             f"{shape}")
        shape = a.shape
        out[name] = a
    order = [n for n in GATE_NAMES if n in out] + sorted(n for n in out if n not in GATE_NAMES)
    return {n: out[n] for n in order}, shape


def _input_features(x, T, sequence):
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("x must be an array of numbers") from None
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim == 3:
        if not 0 <= sequence < x.shape[1]:
            raise ValueError(f"sequence {sequence} is out of range for x's batch of "
                             f"{x.shape[1]}")
        x = x[:, sequence]
    elif x.ndim != 2:
        raise ValueError(f"x must be (T,), (T, I) or (T, B, I), got shape {x.shape}")
    if x.shape[0] != T:
        raise ValueError(f"x has {x.shape[0]} time steps, the trace has {T}")
    if x.shape[1] == 0:
        raise ValueError("x has no features")
    return x


# Units are sorted by the mean of the first of these gates a layer has, highest on top: the
# units that keep their memory longest (forget gate f, GRU update gate z) come first.
SORT_GATES = ("f", "z", "i")


def _unit_order(arrays: dict, sort_units: bool):
    """(order of the units, what they are sorted by or "") for gate_heatmap."""
    H = next(iter(arrays.values())).shape[1]
    if not sort_units:
        return np.arange(H), ""
    key = next((n for n in SORT_GATES if n in arrays), None)
    if key is None:                                        # a plain RNN: by activity
        name = "h" if "h" in arrays else next(reversed(arrays))
        score, by = np.nanmean(np.abs(arrays[name]), axis=0), f"mean |{name}|"
    else:
        score, by = np.nanmean(arrays[key], axis=0), f"mean {key}"
    return np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable"), by


def gate_panel(fig, ax, cax, name: str, data: np.ndarray, extent) -> None:
    """One gate or state as a heatmap on `ax`, data (units, T), with its colorbar on `cax`:
    gates (sigmoids) on the fixed range 0..1, g, n, c and h on a diverging map centred at 0
    with symmetric limits; the entry's name on the left, its role on the right."""
    if name in SIGMOID_GATES:
        im = ax.imshow(data, aspect="auto", interpolation="nearest", extent=extent,
                       cmap=GATE_CMAP, vmin=0.0, vmax=1.0)
    else:
        finite = np.abs(data[np.isfinite(data)])
        lim = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        im = ax.imshow(data, aspect="auto", interpolation="nearest", extent=extent,
                       cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
    ax.set_title(GATE_NAMES.get(name, name), loc="left", fontsize=SUBTITLE_SIZE)
    if name in GATE_ROLES:
        ax.set_title(GATE_ROLES[name], loc="right", fontsize=TICK_SIZE + 0.5,
                     color="#555555", style="italic")
    ax.tick_params(labelsize=TICK_SIZE)
    ax.yaxis.label.set_fontsize(LABEL_SIZE)
    cb = fig.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=TICK_SIZE)
    if name in SIGMOID_GATES:
        cb.set_ticks([0, 0.5, 1], labels=["0 shut", "0.5", "1 open"])
    else:
        cb.ax.yaxis.get_major_locator().set_params(nbins=4)
        cb.ax.yaxis.set_major_formatter(_SHORT)


@_drawing
def gate_heatmap(path, trace_layer, *, x=None, title: str = "", sequence: int = 0,
                 max_units: int = 32, sort_units: bool = True) -> Path:
    """The inside of one recurrent layer over time: one heatmap per gate, then c and h.

    trace_layer: one entry of `model.trace(x)`, e.g. trace["l0"]: {name: (T, B, H) or
    (T, H) array}; the gates present are drawn in the order i, f, g, o (LSTM) or r, z, n
    (GRU), then the cell state c and the hidden state h; a gate a variant lacks is absent.
    x: optional input, (T,), (T, I) or (T, B, I); its first 3 features are drawn on top.
    sequence: which batch element to draw. sort_units: rows sorted by each unit's mean
    forget gate f over the sequence (GRU: update gate z; no f or z: input gate i; a plain
    RNN: mean |h|), highest on top, the unit numbers on the axis; False: in unit order.
    max_units: at most this many units (the first in the order drawn).
    Gates (sigmoids) share the fixed range 0..1; g, n, c and h use a diverging map centred
    at 0 with symmetric limits. Returns `path`.
    """
    title = _text(title, "title")
    if not isinstance(max_units, (int, np.integer)) or isinstance(max_units, bool) \
            or max_units < 1:
        raise ValueError(f"max_units must be a positive int, got {max_units!r}")
    arrays, (T, H) = _trace_arrays(trace_layer, sequence)
    xs = _input_features(x, T, sequence) if x is not None else None
    shown = min(H, int(max_units))
    order, sorted_by = _unit_order(arrays, bool(sort_units))
    order = order[:shown]
    unit_ticks = FuncFormatter(lambda v, pos=None: str(order[int(round(v))])
                               if 0 <= round(v) < shown and abs(v - round(v)) < 1e-6 else "")

    rows = len(arrays) + (xs is not None)
    row_h = 1.05 if shown <= 16 else 1.35
    heights = ([1.0] if xs is not None else []) + [row_h] * len(arrays)
    fig = new_figure(1.0 + sum(heights) + 0.25 * rows)     # inches: panels + their titles
    grid = fig.add_gridspec(rows, 2, width_ratios=[1.0, 0.018], height_ratios=heights)
    first = None
    axes = []
    r = 0
    if xs is not None:
        ax = fig.add_subplot(grid[0, 0])
        first = ax
        for j in range(min(3, xs.shape[1])):
            color = TRUTH_COLOR if xs.shape[1] == 1 else LINE_COLORS[j]
            ax.plot(np.arange(T), xs[:, j], color=color, linewidth=1.6,
                    marker="o" if T <= 40 else None, markersize=3,
                    label=f"x[{j}]")
        more = f" (first 3 of {xs.shape[1]} features)" if xs.shape[1] > 3 else ""
        ax.set_title("input x" + more, loc="left", fontsize=SUBTITLE_SIZE)
        ax.set_ylabel("value")
        if min(3, xs.shape[1]) > 1:                       # above the panel, beside its title
            ax.legend(fontsize=LEGEND_SIZE, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                      ncols=3, frameon=False, borderaxespad=0.1)
        style_axes(ax)
        ax.margins(x=0)
        axes.append(ax)
        r = 1
    extent = (-0.5, T - 0.5, shown - 0.5, -0.5)           # unit 0 on top, steps centred
    for name, a in arrays.items():
        ax = fig.add_subplot(grid[r, 0], sharex=first)
        first = first or ax
        gate_panel(fig, ax, fig.add_subplot(grid[r, 1]), name, a[:, order].T, extent)
        ax.set_ylabel(f"unit, by {sorted_by}" if sorted_by else "unit")
        # the stubs' Locator.set_params takes no options; the default AutoLocator's does
        ax.yaxis.get_major_locator().set_params(integer=True, nbins=4)  # type: ignore[call-arg]
        ax.yaxis.set_major_formatter(unit_ticks)           # the unit's own number
        axes.append(ax)
        r += 1
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("time step")
    axes[-1].xaxis.label.set_fontsize(LABEL_SIZE)
    _time_axis(axes[-1])
    axes[0].set_xlim(-0.5, T - 0.5)

    if sorted_by:
        units = f"the {shown} of {H} units with the highest {sorted_by}" if shown < H \
            else f"{H} units"
    else:
        units = f"units 0-{shown - 1} of {H}" if shown < H else f"{H} units"
    seq = f"sequence {sequence}, " if any(np.ndim(v) == 3 for v in trace_layer.values()) else ""
    heading = f"{title or 'Inside the recurrent layer'}  ({seq}{units})"
    if sorted_by:
        heading += f"\nunits sorted by their {sorted_by} over the sequence, highest on top"
    missing = [n for n in ("i", "f", "o") if "c" in arrays and n not in arrays]
    if missing:                   # an LSTM ablation: the gate it lacks is constant 1
        heading += (f"\nthis variant has no {' and no '.join(GATE_NAMES[n] for n in missing)}"
                    f": {' = '.join(missing)} = 1 at every step")
    fig.suptitle(heading, fontsize=TITLE_SIZE if "\n" not in heading else SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- losses

def _smooth(y, window):
    kernel = np.ones(window) / window
    pad = np.concatenate([np.full(window - 1, y[0]), y])   # causal: no look-ahead
    return np.convolve(pad, kernel, mode="valid")


@_drawing
def loss_curve(path, rows, *, title: str = "", note: str = "") -> Path:
    """Loss against training step, one line per split, from the rows of a metrics.jsonl.

    rows: dicts with "step" (int), "split" ("train", "valid", ...) and "loss" (float);
    rows without a loss (e.g. task metrics only) are skipped, as are non-finite losses.
    The y axis is logarithmic when every loss is positive; the lowest validation loss is
    marked. A long noisy curve is drawn faint with its moving average on top. note: a line
    under the plot, e.g. why the training and validation losses differ in scale (a task's
    `loss_note`). Returns `path`.
    """
    title = _text(title, "title")
    note = _text(note, "note")
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise ValueError("rows must be a list of dicts with 'step', 'split' and 'loss'")
    by_split: dict[str, list[tuple[float, float]]] = {}
    for k, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"rows[{k}] must be a dict, got {type(row).__name__}")
        if row.get("loss") is None:
            continue
        for key in ("step", "split"):
            if key not in row:
                raise ValueError(f"rows[{k}] has a loss but no {key!r}")
        try:
            step, loss = float(row["step"]), float(row["loss"])
        except (TypeError, ValueError):
            raise ValueError(f"rows[{k}]: step and loss must be numbers, got "
                             f"{row['step']!r} and {row['loss']!r}") from None
        if math.isfinite(step) and math.isfinite(loss):
            by_split.setdefault(str(row["split"]), []).append((step, loss))
    if not by_split:
        raise ValueError("rows hold no finite 'loss' values to plot")

    fig = new_figure(5.2)
    ax = fig.add_subplot()
    log = all(loss > 0 for pts in by_split.values() for _, loss in pts)
    extra = [s for s in by_split if s not in SPLIT_COLORS]
    colors = dict(SPLIT_COLORS, **{s: LINE_COLORS[3 + k % 5] for k, s in enumerate(extra)})
    for split, pts in by_split.items():
        pts.sort()
        steps, losses = np.array(pts).T
        color = colors[split]
        if steps.size > 60:                                # noisy: faint raw + moving average
            ax.plot(steps, losses, color=color, alpha=0.3, linewidth=1.0,
                    label=f"{split}, each logged value")
            window = max(2, steps.size // 30)
            ax.plot(steps, _smooth(losses, window), color=color, linewidth=2.0,
                    label=f"{split}, moving average over {window} values")
        else:
            ax.plot(steps, losses, color=color, linewidth=2.0,
                    marker="o" if steps.size <= 30 else None, markersize=4, label=split)
    valid = next((s for s in VALID_SPLITS if s in by_split), None)
    if valid is not None:
        steps, losses = np.array(by_split[valid]).T
        b = int(np.argmin(losses))
        ax.plot([steps[b]], [losses[b]], linestyle="none", marker="*", markersize=16,
                color=colors[valid], markeredgecolor="black", markeredgewidth=0.8, zorder=5,
                label=f"best {valid}: {_fmt(float(losses[b]))} at step {int(steps[b])}")
    if log:
        log_y(ax)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (log scale)" if log else "loss")
    ax.legend(fontsize=LEGEND_SIZE, frameon=False, loc="upper right")
    style_axes(ax)
    fig.suptitle(title or "Training loss", fontsize=TITLE_SIZE)
    if note:
        fig.supxlabel(textwrap.fill(note, 130), fontsize=TICK_SIZE + 0.5, color="#555555",
                      style="italic")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- cell norms

@_drawing
def cell_state_norm(path, norms, *, labels, title: str = "",
                    ylabel: str = "cell-state norm ‖c_t‖ (log scale)") -> Path:
    """The size of the cell state over time for one or more models, on a log axis.

    norms: list of 1-D arrays, e.g. np.linalg.norm(trace["l0"]["c"][:, 0], axis=-1) per
    model; labels: one name per array. Non-finite values (an overflowed state) are left out
    and the legend says from which step. Shows, e.g., lstm1997 (no forget gate) growing
    without bound while lstm stays bounded. Returns `path`.
    """
    title = _text(title, "title")
    if isinstance(norms, np.ndarray) and norms.ndim == 1:
        raise ValueError("norms must be a list of 1-D arrays, one per model; wrap one as "
                         "[norm]")
    if isinstance(norms, Mapping) or not isinstance(norms, (Sequence, np.ndarray)) \
            or len(norms) == 0:
        raise ValueError("norms must be a non-empty list of 1-D arrays, one per model")
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ValueError("labels must be a list of strings, one per array in norms")
    if len(labels) != len(norms):
        raise ValueError(f"labels has {len(labels)} names, norms has {len(norms)} arrays")
    curves = [_vector(n, f"norms[{k}]") for k, n in enumerate(norms)]
    for k, v in enumerate(curves):
        if np.any(v[np.isfinite(v)] < 0):
            raise ValueError(f"norms[{k}] has negative values; a norm is >= 0")
    if not any(np.any(np.isfinite(v) & (v > 0)) for v in curves):
        raise ValueError("norms hold no positive finite values to draw on a log axis")

    fig = new_figure(5.2)
    ax = fig.add_subplot()
    for k, (v, lab) in enumerate(zip(curves, labels)):
        bad = ~np.isfinite(v)
        label = str(lab)
        if bad.any():
            label += f" (overflows at step {int(np.argmax(bad))})"
        shown = np.where(bad | (v <= 0), np.nan, v)        # log axis: leave them out
        ax.plot(np.arange(v.size), shown, color=LINE_COLORS[k % len(LINE_COLORS)],
                linewidth=2.0, label=label)
    log_y(ax)
    _time_axis(ax)
    ax.set_xlabel("time step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=LEGEND_SIZE, frameon=False, loc="best")
    style_axes(ax)
    ax.margins(x=0.01)
    fig.suptitle(title or "How large does the cell state grow?", fontsize=TITLE_SIZE)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- comparisons

@_drawing
def compare_bars(path, rows, *, metric: str, lower_is_better: bool = True,
                 title: str = "") -> Path:
    """One bar per variant: the mean of `metric` over seeds, each seed a dot, the spread as
    an error bar (standard deviation). rows: [{"variant": str, "values": [float, ...]}].
    The best mean is outlined. Returns `path`."""
    title = _text(title, "title")
    if not rows:
        raise ValueError("rows is empty: nothing to compare")
    names = [str(r["variant"]) for r in rows]
    values = [_vector(r["values"], f"values of {r['variant']}") for r in rows]
    means = np.array([v.mean() for v in values])
    stds = np.array([v.std() for v in values])
    log = bool(np.all(np.concatenate(values) > 0)) and \
        np.nanmax(means) / max(np.nanmin(means), 1e-300) > 30
    scored = np.where(np.isnan(means), np.inf if lower_is_better else -np.inf, means)
    best = int(np.argmin(scored) if lower_is_better else np.argmax(scored))   # NaN: never best

    fig = new_figure(4.8)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    bars = ax.bar(x, means, color="#4c78a8", alpha=0.8, width=0.6)
    if not np.isnan(means[best]):
        bars[best].set_edgecolor("black")
        bars[best].set_linewidth(2.0)
    ax.errorbar(x, means, yerr=stds, fmt="none", ecolor="black", capsize=4, linewidth=1.2)
    for k, v in enumerate(values):
        ax.plot(np.full(v.size, x[k]) + np.linspace(-0.12, 0.12, v.size), v, "o",
                color="black", markersize=3.5, alpha=0.8)
    ax.set_xticks(x, names, rotation=20 if max(map(len, names)) > 8 else 0, ha="right"
                  if max(map(len, names)) > 8 else "center")
    if log:
        log_y(ax)
    better = "lower" if lower_is_better else "higher"
    ax.set_ylabel(f"{metric} ({better} is better{', log scale' if log else ''})")
    style_axes(ax)
    ax.grid(False, axis="x")
    fig.suptitle(title or f"{metric} by variant: mean over seeds, dots are single runs",
                 fontsize=TITLE_SIZE)
    return save_figure(fig, path)


@_drawing
def backtest_figure(path, folds, *, metric: str = "MASE", title: str = "",
                    labels: Sequence[str] | None = None) -> Path:
    """A rolling-origin backtest: one group of bars per fold (consecutive blocks of forecast
    origins; or any groups, named by `labels`), one bar per forecaster. folds: [{"fold": k,
    NAME: value, ...}], the same names in every fold, the model first. Lower is better; the
    best bar of each fold is outlined. Returns `path`."""
    title = _text(title, "title")
    if not folds:
        raise ValueError("folds is empty: nothing to draw")
    names = [k for k in folds[0] if k != "fold"]
    values = np.array([[float(f[n]) for n in names] for f in folds])   # (folds, forecasters)
    fig = new_figure(4.2)
    ax = fig.add_subplot()
    x, width = np.arange(len(folds)), 0.8 / len(names)
    for j in range(len(names)):
        bars = ax.bar(x + (j - (len(names) - 1) / 2) * width, values[:, j], width,
                      color=LINE_COLORS[j % len(LINE_COLORS)], alpha=0.85)
        for k in np.flatnonzero(values.argmin(axis=1) == j):
            bars[k].set_edgecolor("black")
            bars[k].set_linewidth(1.8)
    ax.set_xticks(x, list(labels) if labels is not None else [f"fold {f['fold']}" for f in folds])
    log = bool(np.all(values > 0)) and values.max() / values.min() > 10   # one far-off baseline
    if log:
        log_y(ax)
    ax.set_ylabel(f"{metric} (lower is better{', log scale' if log else ''})")
    swatches = [Patch(color=LINE_COLORS[j % len(LINE_COLORS)], alpha=0.85) for j in range(len(names))]
    fig.legend(swatches, names, loc="outside lower center", frameon=False,   # never over a bar
               fontsize=LEGEND_SIZE, ncol=min(len(names), 5))
    style_axes(ax)
    ax.grid(False, axis="x")
    fig.suptitle(title or f"{metric} per backtest fold", fontsize=TITLE_SIZE)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- classifiers

@_drawing
def confusion_figure(path, truth, logp, names, *, title: str, label: str = "class",
                     chance: str = "a uniform guess") -> Path:
    """A classifier on its test sequences: the confusion matrix (counts, coloured by the
    share of the true class, zeros left blank) beside a histogram of the probability it
    gives the true class.

    truth (N,) class ids; logp (N, C) log probabilities; names (C,) the class names;
    label: what a class is called ("speaker", "digit"); chance: what the 1/C line is.
    Returns `path`."""
    from ..tasks.kit import confusion_matrix

    C = len(names)
    counts = confusion_matrix(truth, logp.argmax(-1), C)
    p_true = np.exp(logp[np.arange(truth.size), truth])
    shown = [n if len(n) <= 12 else n[:11] + "…" for n in names]

    fig = new_figure(5.4 if C <= 12 else 7.5)
    grid = fig.add_gridspec(1, 2, width_ratios=[1.25, 1.0])
    left, right = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    im = left.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if C <= 20:
        for i in range(C):
            for j in range(C):
                if counts[i, j]:
                    left.text(j, i, str(counts[i, j]), ha="center", va="center",
                              fontsize=TICK_SIZE if C <= 10 else TICK_SIZE - 2,
                              color="white" if rows[i, j] > 0.5 else "#111111")
    step = max(1, C // 20)
    ticks = np.arange(0, C, step)
    wide = max(map(len, shown)) > 3
    left.set_xticks(ticks, [shown[k] for k in ticks], rotation=45 if wide else 0,
                    ha="right" if wide else "center")
    left.set_yticks(ticks, [shown[k] for k in ticks])
    left.tick_params(labelsize=TICK_SIZE)
    left.set_xlabel(f"predicted {label}", fontsize=LABEL_SIZE)
    left.set_ylabel(f"true {label}", fontsize=LABEL_SIZE)
    left.set_title(f"test sequences by true and predicted {label} (zeros left blank)",
                   loc="left", fontsize=SUBTITLE_SIZE)
    cb = fig.colorbar(im, ax=left, shrink=0.8)
    cb.set_label(f"share of the true {label}'s sequences", fontsize=TICK_SIZE + 1)
    cb.ax.tick_params(labelsize=TICK_SIZE)

    right.hist(p_true, bins=40, range=(0, 1), color="#1f77b4")
    right.axvline(1 / C, color="#d62728", linestyle="--", linewidth=1.4,
                  label=f"{chance}: 1/{C}")
    right.set_xlim(0, 1)
    right.set_yscale("symlog", linthresh=10)                     # the few unsure ones show
    right.set_xlabel(f"probability the model gives the true {label}")
    right.set_ylabel("test sequences (symlog scale)")
    right.set_title("how sure it is", loc="left", fontsize=SUBTITLE_SIZE)
    right.legend(fontsize=LEGEND_SIZE, frameon=False, loc="upper center")
    style_axes(right)
    fig.suptitle(title, fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)

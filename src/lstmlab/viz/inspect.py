"""Figures of what a recurrent network does inside, drawn from lstmlab.inspect's results:
gates over time, text coloured by a unit (PNG and a standalone HTML page), the saturation
scatter, memory timescales, gradient flow, connectivity, ablation and attention.

As in viz.figures: every function draws on its own Agg figure (no pyplot), writes one file
atomically and returns its Path; a user's mistake is one ValueError with one line.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.colors import LogNorm, Normalize, to_hex
from matplotlib.ticker import MaxNLocator

from ..inspect.analyses import (
    AblationTable,
    Activations,
    Connectivity,
    GradientFlow,
    Saturation,
    Timescales,
)
from ..io.atomic import write_text
from .figures import (
    GATE_CMAP,
    GATE_NAMES,
    LABEL_SIZE,
    LEGEND_SIZE,
    LINE_COLORS,
    SIGNED_CMAP,
    SUBTITLE_SIZE,
    TICK_SIZE,
    TITLE_SIZE,
    _drawing,
    _fmt,
    _PlainLogFormatter,
    _text,
    _vector,
    gate_panel,
    log_y,
    new_figure,
    save_figure,
    style_axes,
)

__all__ = ["gates_figure", "text_figure", "text_html", "saturation_figure", "timescales_figure",
           "gradient_flow_figure", "connectivity_figure", "ablation_figure", "attention_figure",
           "layout_text", "draw_text", "draw_attention"]

MAX_LABELLED = 48        # steps: up to this many, each step's own label on the axis
MAX_UNITS = 16           # units a gates figure shows unless told which
TEXT_WIDTH = 100         # columns of coloured text in a figure (the HTML page wraps at 100ch)
MAX_TEXT_STEPS = 3000    # steps of coloured text a figure draws (about 30 rows)
PAD_STEP = "<pad>"       # what a seq2seq decoder reads past its translation's end
HUGE_STEPS = 1e4         # timescales at least this long share the histogram's last bin
SURVIVAL_FLOOR = 1e-6    # survival below this is not drawn (a log axis has no zero)
GATE_COLORS = {"i": "#1f77b4", "f": "#d62728", "o": "#2ca02c", "r": "#9467bd", "z": "#ff7f0e"}


# --------------------------------------------------------------------------- helpers

def _shown(label: str) -> str:
    """A step's label as drawn: blanks made visible, long labels cut."""
    label = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5"}.get(label, label)
    return label if len(label) <= 10 else label[:9] + "\u2026"


def _step_axis(ax, labels: Sequence[str], axis: str = "x") -> None:
    """Each step's own label on `axis` (a character, a word, a value) when there are at most
    MAX_LABELLED steps, else whole step numbers."""
    n = len(labels)
    if 0 < n <= MAX_LABELLED:
        shown = [_shown(str(s)) for s in labels]
        wide = max(map(len, shown)) > 100 / n              # ~100 characters fit across an axis
        mono = dict(fontsize=TICK_SIZE - 1, fontfamily="monospace")
        if axis == "x":
            ax.set_xticks(range(n), shown, rotation=90 if wide else 0, **mono)
        else:
            ax.set_yticks(range(n), shown, **mono)
        ax.tick_params(axis=axis, length=0)
    else:
        (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(
            MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1))


def _sequence(acts: Activations, sequence) -> int:
    if not isinstance(acts, Activations):
        raise ValueError(f"acts must be an lstmlab.inspect.Activations, got {type(acts).__name__}")
    if isinstance(sequence, bool) or not isinstance(sequence, (int, np.integer)):
        raise ValueError(f"sequence must be an int, got {type(sequence).__name__}")
    B = acts.inputs.x.shape[1]
    if not 0 <= sequence < B:
        raise ValueError(f"sequence {sequence} does not exist: the input has sequences 0 to {B - 1}")
    return int(sequence)


def _group_steps(acts: Activations, group: str, sequence: int) -> tuple[int, list[str]]:
    """(valid steps, their labels) of one sequence in `group`: the source's for an encoder or
    a sequence model, the decoder inputs up to its translation's end for a decoder."""
    T = next(iter(acts.groups[group].values())).shape[0]
    if group.startswith("decoder."):
        labels = list((acts.inputs.target_steps or [[]] * (sequence + 1))[sequence][:T])
        labels += [str(t) for t in range(len(labels), T)]
        T = labels.index(PAD_STEP) if PAD_STEP in labels else T
        return max(T, 1), labels[:max(T, 1)]
    if acts.inputs.lengths is not None:
        T = min(T, int(acts.inputs.lengths[sequence]))
    return T, [str(s) for s in acts.inputs.steps[sequence][:T]]


def _named(results, kind, what: str) -> dict:
    """{model name: result}, checked: a dict of `kind`, or one result (named "")."""
    if isinstance(results, kind):
        return {"": results}
    if not isinstance(results, Mapping) or not results:
        raise ValueError(f"{what} must be a non-empty dict {{model name: {kind.__name__}}}")
    for name, r in results.items():
        if not isinstance(r, kind):
            raise ValueError(f"{what}[{name!r}] must be a {kind.__name__}, got {type(r).__name__}")
    return {str(k): v for k, v in results.items()}


def _steps_list(text_steps) -> list[str]:
    """The steps of a text as a list of strings: a str is its characters."""
    if isinstance(text_steps, np.ndarray):
        text_steps = text_steps.tolist()
    if not isinstance(text_steps, Sequence) or not all(isinstance(s, str) for s in text_steps):
        raise ValueError("text_steps must be a list of strings, one per step (a character or a word)")
    if not text_steps:
        raise ValueError("text_steps is empty: there is no text to colour")
    return list(text_steps)


def _symmetric(values: np.ndarray) -> float:
    """The largest finite |value|, the half-range of a diverging colour scale (1 if none)."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


# --------------------------------------------------------------------------- gates

@_drawing
def gates_figure(path, acts: Activations, *, group: str = "l0", units: list[int] | None = None,
                 sequence: int = 0, title: str = "", picture=None) -> Path:
    """Every gate and state of one layer group over one sequence: one heatmap per name in the
    order i, f, g, o, c, h (GRU r, z, n, h; RNN h), the chosen units down, the sequence's
    valid steps across (labelled with what each step reads when there are few).

    acts: lstmlab.inspect.activations(...); group: "l0", "l0_reverse", "encoder.l0", ...;
    units: unit numbers to draw, in this order (default: up to 16 units with the largest
    variance of h over the sequence, the largest on top). Gates use the fixed range 0..1;
    g, n, c and h a diverging map centred at 0. picture: what the steps read, drawn on top
    (Task.input_picture: (image (rows, T k), k columns a step, what a row is); speech's
    spectrogram). Returns `path`."""
    title = _text(title, "title")
    sequence = _sequence(acts, sequence)
    if group not in acts.groups:
        raise ValueError(f"group {group!r} does not exist; the activations have: {', '.join(acts.groups)}")
    T, labels = _group_steps(acts, group, sequence)
    found = acts.groups[group]
    names = [n for n in GATE_NAMES if n in found] + sorted(n for n in found if n not in GATE_NAMES)
    arrays = {n: np.asarray(found[n], np.float64)[:T, sequence] for n in names}   # (T, H) each
    H = arrays[names[0]].shape[1]
    if units is None:
        key = "h" if "h" in arrays else names[-1]
        spread = np.nan_to_num(np.var(arrays[key], axis=0), nan=-1.0)
        chosen = np.argsort(-spread, kind="stable")[:MAX_UNITS]
        which = f"the {len(chosen)} of {H} units that vary most in {key}, most on top" \
            if len(chosen) < H else f"all {H} units, by how much {key} varies, most on top"
    else:
        u = np.asarray(units)
        if isinstance(units, (str, bytes)) or u.ndim != 1 or u.size == 0 or u.dtype.kind not in "iu":
            raise ValueError(f"units must be a non-empty list of unit numbers, got {units!r}")
        if u.min() < 0 or u.max() >= H:
            raise ValueError(f"unit {int(u.max() if u.max() >= H else u.min())} does not exist: "
                             f"{group} has units 0 to {H - 1}")
        chosen, which = u.astype(np.int64), f"units {', '.join(map(str, u.tolist()))} of {H}"
    k = len(chosen)

    row_h = 0.55 + 0.06 * k                                # inches per heatmap
    top = 0 if picture is None else 1
    heights = [1.6] * top + [row_h] * len(names)
    fig = new_figure(1.3 + sum(heights) + 0.3 * len(heights) + (0.5 if T <= MAX_LABELLED else 0))
    grid = fig.add_gridspec(len(heights), 2, width_ratios=[1.0, 0.018], height_ratios=heights)
    extent = (-0.5, T - 0.5, k - 0.5, -0.5)                # first chosen unit on top
    axes: list = []
    if picture is not None:
        image, per_step, label = picture
        image = np.asarray(image, np.float64)[:, :T * per_step]
        ax = fig.add_subplot(grid[0, 0])
        im = ax.imshow(image, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                       extent=(-0.5, image.shape[1] / per_step - 0.5, -0.5, image.shape[0] - 0.5))
        ax.set_title(f"what it reads: {image.shape[0]} rows ({label}), {per_step} columns a step",
                     loc="left", fontsize=SUBTITLE_SIZE)
        ax.set_ylabel(label, fontsize=LABEL_SIZE)
        ax.tick_params(labelsize=TICK_SIZE)
        fig.colorbar(im, cax=fig.add_subplot(grid[0, 1])).ax.tick_params(labelsize=TICK_SIZE)
        axes.append(ax)
    for r, name in enumerate(names, top):
        ax = fig.add_subplot(grid[r, 0], sharex=axes[0] if axes else None)
        gate_panel(fig, ax, fig.add_subplot(grid[r, 1]), name, arrays[name][:, chosen].T, extent)
        every = max(1, math.ceil(k / 8))
        ax.set_yticks(range(0, k, every), [str(u) for u in chosen[::every]])
        ax.set_ylabel("unit")
        axes.append(ax)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    _step_axis(axes[-1], labels)
    axes[-1].set_xlabel("step (what it reads)" if T <= MAX_LABELLED else "time step",
                        fontsize=LABEL_SIZE)
    axes[0].set_xlim(-0.5, T - 0.5)
    heading = f"{title or 'Gates and states over time'}  ({group}, sequence {sequence}, {T} steps)"
    fig.suptitle(heading + f"\n{which}", fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- coloured text

class TextLayout(NamedTuple):
    """Where each step of a text goes: rows (N,), cols (N,) and sizes (N,) in character
    cells, wrapped at `width` columns."""
    rows: np.ndarray
    cols: np.ndarray
    sizes: np.ndarray
    width: int


def layout_text(steps, width: int = TEXT_WIDTH) -> TextLayout:
    """Lay out a text of characters (a str, or a list of one-character steps) or of words (a
    list of longer steps, a space between them) in rows of `width` columns: a row ends after
    a line end and, where it would be too long, before the word that does not fit (for
    characters: after the space before it)."""
    steps = list(steps)
    chars = all(len(s) == 1 for s in steps)
    sizes = [1 if chars else max(1, len(_shown(s))) for s in steps]
    gap = 0 if chars else 1
    rows: list[int] = []
    cols: list[int] = []
    r = c = k = 0
    while k < len(steps):
        e = k + 1                                          # the chunk k..e-1 stays on one row
        if chars:
            while e - 1 < len(steps) - 1 and steps[e - 1] not in (" ", "\n"):
                e += 1
        if c > 0 and c + sum(sizes[k:e]) + gap * (e - k - 1) > width:
            r, c = r + 1, 0
        for j in range(k, e):
            if c > 0 and c + sizes[j] > width:             # a chunk longer than a row: cut it
                r, c = r + 1, 0
            rows.append(r)
            cols.append(c)
            c += sizes[j] + gap
            if steps[j].endswith("\n"):
                r, c = r + 1, 0
        k = e
    return TextLayout(np.array(rows, np.int64), np.array(cols, np.int64),
                      np.array(sizes, np.int64), width)


def draw_text(ax, steps, values, cmap, norm, layout: TextLayout):
    """The text as a grid of character cells, each step's cells filled by the colour of its
    value; `layout` is layout_text(steps). Returns the patches (for a colorbar)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    rows, cols, sizes, width = layout
    n_rows = int(rows.max()) + 1 if rows.size else 1
    boxes = [Rectangle((c, r), w, 1) for r, c, w in zip(rows, cols, sizes)]
    values = np.asarray(values, dtype=np.float64)
    pc = PatchCollection(boxes, cmap=cmap, norm=norm, edgecolor="none")
    pc.set_array(values)
    ax.add_collection(pc)
    for s, r, c, w, col in zip(steps, rows, cols, sizes, cmap(norm(values))):
        light = 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2] > 0.55
        shown = "\u21b5" if s == "\n" else (s if len(s) == 1 else _shown(s))   # a visible line end
        ax.text(c + w / 2, r + 0.55, shown, ha="center", va="center", family="monospace",
                fontsize=8.5, color="#111111" if light else "white",
                in_layout=False)                                 # thousands: layout skips them
    ax.set_xlim(0, width)
    ax.set_ylim(n_rows, 0)
    ax.set_axis_off()
    return pc


@_drawing
def text_figure(path, text_steps: list[str], values: np.ndarray, *, title: str = "",
                label: str = "") -> Path:
    """The text coloured by one unit's activation (Karpathy et al. 2015): each step's
    background on a diverging map centred at 0 (red above, blue below), line breaks kept,
    wrapped at 100 columns, with a colorbar.

    text_steps: (T,) what each step reads, characters or words; values (T,): the unit's
    value at each step; label: what the values are ("l0 unit 7, c"). At most 3000 steps
    are drawn (the title says so). Returns `path`."""
    title, label = _text(title, "title"), _text(label, "label")
    steps = _steps_list(text_steps)
    v = _vector(values, "values", len(steps), "text_steps")
    total = len(steps)
    steps, v = steps[:MAX_TEXT_STEPS], v[:MAX_TEXT_STEPS]
    layout = layout_text(steps)
    n_rows = int(layout.rows.max()) + 1
    lim = _symmetric(v)
    # rows of a fixed height, so a short text is not stretched; the colorbar lies below it
    fig = new_figure(1.5 + 0.27 * n_rows)
    grid = fig.add_gridspec(2, 2, width_ratios=[2.0, 1.0], height_ratios=[0.27 * n_rows, 0.12])
    ax = fig.add_subplot(grid[0, :])
    pc = draw_text(ax, steps, v, SIGNED_CMAP, Normalize(-lim, lim), layout)
    cb = fig.colorbar(pc, cax=fig.add_subplot(grid[1, 1]), orientation="horizontal")
    cb.ax.xaxis.set_major_locator(MaxNLocator(5))
    cb.set_label(label or "value", fontsize=TICK_SIZE + 1)
    cb.ax.tick_params(labelsize=TICK_SIZE)
    heading = textwrap.fill(title, 100) if title else f"The text coloured by {label or 'a unit'}"
    heading += "\nred above 0, blue below, white at 0"
    if total > MAX_TEXT_STEPS:
        heading += f"; the first {MAX_TEXT_STEPS} of {total} steps"
    fig.suptitle(heading, fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 110ch; color: #222; }}
h2 {{ font-size: 1.05em; margin: 1.6em 0 0.3em; }}
.scale {{ font-size: 0.85em; color: #555; }}
.bar {{ display: inline-block; width: 12em; height: 0.8em; vertical-align: middle;
        background: linear-gradient(to right, {low}, #f7f7f7, {high}); }}
.text {{ font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.7;
         max-width: 100ch; }}
.text span {{ padding: 0.1em 0; }}
</style></head><body>
<h1>{title}</h1>
<p class="scale">Each step's background is coloured by the unit's value: red above 0, blue below,
white at 0; hover over a step for its exact value.</p>
{sections}
</body></html>
"""


def text_html(path, text_steps: list[str], units: list[dict]) -> Path:
    """A standalone HTML page (styles inline, no scripts: it opens offline) with the text
    once per unit, each step in a <span> whose background is coloured by the unit's value
    (diverging, centred at 0, scaled per unit) and whose `title` shows the value on hover.

    text_steps: (T,) characters (line breaks kept) or words (separated by spaces);
    units: [{"label": str, "values": (T,) numbers}]. Returns `path`."""
    steps = _steps_list(text_steps)
    if isinstance(units, Mapping) or not isinstance(units, Sequence) or not units:
        raise ValueError('units must be a non-empty list of {"label": str, "values": [one per step]}')
    chars = all(len(s) == 1 for s in steps)
    sections = []
    for k, unit in enumerate(units):
        if not isinstance(unit, Mapping) or "values" not in unit:
            raise ValueError(f'units[{k}] must be a dict with "label" and "values"')
        label = _text(unit.get("label", f"unit {k}"), f"units[{k}]['label']")
        v = _vector(unit["values"], f"units[{k}]['values']", len(steps), "text_steps")
        lim = _symmetric(v)
        colors = SIGNED_CMAP(Normalize(-lim, lim)(v))
        spans = []
        for s, x, col in zip(steps, v, colors):
            light = 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2] > 0.55
            shown = "\u21b5" if s == "\n" else s
            spans.append(f'<span style="background:{to_hex(col)};color:{"#111" if light else "#fff"}" '
                         f'title="{float(x):.6g}">{html.escape(shown)}</span>' + ("\n" if s == "\n" else ""))
        scale = (f'<span class="scale">{_fmt(-lim)} <span class="bar"></span> {_fmt(lim)}</span>')
        sections.append(f"<section><h2>{html.escape(label)} {scale}</h2>\n"
                        f'<div class="text">{("" if chars else " ").join(spans)}</div></section>')
    page = HTML_PAGE.format(title="What single units follow in the text", sections="\n".join(sections),
                            low=to_hex(SIGNED_CMAP(0.0)), high=to_hex(SIGNED_CMAP(1.0)))
    path = Path(path)
    write_text(path, page)
    return path


# --------------------------------------------------------------------------- saturation

@_drawing
def saturation_figure(path, sats: dict[str, Saturation], *, title: str = "") -> Path:
    """Karpathy et al. 2015, Fig. 3: for each layer group (rows) and model (columns), one
    point per unit and sigmoid gate at (fraction of steps nearly shut, fraction nearly
    open), coloured by gate. Points on the diagonal x + y = 1 are saturated at every step;
    near (0, 0) a gate stays in between. Several models side by side compare variants
    (lstm, cifg, nfg, peephole): a gate a model lacks has no points.

    sats: {model name: lstmlab.inspect.saturation(...)}, or one Saturation. Returns `path`."""
    title = _text(title, "title")
    sats = _named(sats, Saturation, "sats")
    groups = list(dict.fromkeys(g for s in sats.values() for g in s.shut))
    if not groups:
        raise ValueError("the saturations hold no gates to draw")
    cols, rows = len(sats), len(groups)
    side = min(4.2, (10.0 - 0.6) / cols)                   # square panels
    fig = new_figure(1.3 + side * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    seen: dict = {}
    for c, (model, sat) in enumerate(sats.items()):
        for r, g in enumerate(groups):
            ax = axes[r, c]
            ax.plot([0, 1], [1, 0], color="#888888", linestyle="--", linewidth=1.0, zorder=1)
            if g not in sat.shut:
                ax.text(0.5, 0.5, f"{model or 'this model'} has no {g}", ha="center",
                        va="center", fontsize=TICK_SIZE, color="#777777", transform=ax.transAxes)
            origin = sum(int(np.sum((shut == 0) & (sat.open[g][k] == 0)))
                         for k, shut in sat.shut.get(g, {}).items())
            if origin > 1:                                 # they hide one another
                ax.text(0.98, 0.98, f"{origin} points at (0, 0):\nnever saturated", ha="right",
                        va="top", fontsize=TICK_SIZE - 1, color="#555555", transform=ax.transAxes)
            for k, shut in sat.shut.get(g, {}).items():
                seen[k] = ax.scatter(shut, sat.open[g][k], s=22, alpha=0.75, zorder=2,
                                     color=GATE_COLORS.get(k, LINE_COLORS[len(seen) % 8]),
                                     edgecolors="white", linewidths=0.4)
            ax.set_xlim(-0.03, 1.03)
            ax.set_ylim(-0.03, 1.03)
            ax.set_aspect("equal")
            heading = " ".join(p for p in (model, g) if p)
            ax.set_title(f"{heading}  ({sat.steps} steps)", loc="left", fontsize=SUBTITLE_SIZE - 1)
            if r == rows - 1:
                ax.set_xlabel(f"fraction shut (< {sat.low:g})")
            if c == 0:
                ax.set_ylabel(f"fraction open (> {sat.high:g})")
            style_axes(ax)
    fig.legend(list(seen.values()), [GATE_NAMES.get(k, k) for k in seen], loc="outside lower center",
               ncols=len(seen) + 1, fontsize=LEGEND_SIZE, frameon=False)
    fig.suptitle((title or "How often each gate saturates (one point per unit)")
                 + "\ndashed: saturated at every step", fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- timescales

def _series(results: dict, groups_of) -> list[tuple[str, str, object]]:
    """(label, group, result) per model and group: the model's name, and the group where the
    model has several or no name."""
    out = []
    for model, res in results.items():
        gs = list(groups_of(res))
        for g in gs:
            parts = ([model] if model else []) + ([g] if len(gs) > 1 or not model else [])
            out.append((" ".join(parts), g, res))
    return out


@_drawing
def timescales_figure(path, ts: dict[str, Timescales], *, title: str = "") -> Path:
    """How long each unit remembers, per model (and layer group): left, the histogram of the
    units' mean timescale -1/ln f in steps (log x; horizons of 10^4 steps or more, or
    infinite, share the last bin and are counted in the legend); right, survival curves,
    the fraction of c_t left after k steps (the mean over units, and the band from the 10%
    to the 90% quantile), on a log y axis.

    ts: {model name: lstmlab.inspect.timescales(...)}, or one Timescales. Returns `path`."""
    title = _text(title, "title")
    ts = _named(ts, Timescales, "ts")
    series = _series(ts, lambda t: t.mean)
    if not series:
        raise ValueError("the timescales hold no layer groups to draw")
    taus = [np.asarray(t.mean[g], np.float64) for _, g, t in series]        # type: ignore[attr-defined]
    allv = np.concatenate(taus)
    ok = allv[np.isfinite(allv) & (allv > 0)]
    lo = max(min(float(ok.min()) if ok.size else 1.0, HUGE_STEPS / 3), 1e-3)
    hi = min(max(float(ok.max()) if ok.size else 1.0, lo * 3), HUGE_STEPS)
    bins = np.logspace(math.log10(lo) - 0.02, math.log10(hi) + 0.02, 26)

    fig = new_figure(4.8)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.15]})
    floored = False
    for n, (label, g, t) in enumerate(series):
        color = LINE_COLORS[n % len(LINE_COLORS)]
        tau = np.asarray(t.mean[g], np.float64)                             # type: ignore[attr-defined]
        huge = int(np.sum(~(tau < HUGE_STEPS)))                             # inf and nan count too
        shown = np.clip(np.nan_to_num(tau, nan=bins[-1], posinf=bins[-1]), bins[0], bins[-1] * 0.999)
        note = f", {huge} at \u2265 {HUGE_STEPS:g} steps (last bin)" if huge else ""
        left.hist(shown, bins=bins, histtype="step", linewidth=2.0, color=color,
                  label=f"{label}: {tau.size} units{note}")
        surv = np.asarray(t.survival[g], np.float64)                        # type: ignore[attr-defined]
        k = np.arange(1, surv.shape[0] + 1)
        mean = surv.mean(axis=1)
        floored = floored or bool(np.any(~(surv >= SURVIVAL_FLOOR)))
        band = np.clip(np.nan_to_num(surv, nan=0.0), SURVIVAL_FLOOR, 1.0)
        right.fill_between(k, np.quantile(band, 0.1, axis=1), np.quantile(band, 0.9, axis=1),
                           color=color, alpha=0.18, linewidth=0)
        right.plot(k, np.where(mean >= SURVIVAL_FLOOR, mean, np.nan), color=color, linewidth=2.0,
                   marker="o" if k.size == 1 else None, label=f"{label}: mean over units")
    left.set_xscale("log")
    left.xaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    left.xaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    gates = sorted({t.gate for t in ts.values()})
    left.set_xlabel(f"mean timescale -1/ln {' or '.join(gates)}, steps (log scale)")
    left.set_ylabel("units")
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title("memory horizon of each unit", loc="left", fontsize=SUBTITLE_SIZE)
    left.legend(fontsize=LEGEND_SIZE - 1, frameon=False, loc="best")
    right.axhline(math.exp(-1), color="#888888", linestyle=":", linewidth=1.0)
    right.text(0.99, math.exp(-1), "1/e", va="bottom", ha="right", fontsize=TICK_SIZE, color="#666666",
               transform=right.get_yaxis_transform())
    log_y(right)
    right.set_ylim(SURVIVAL_FLOOR * 0.8 if floored else None, 1.2)
    right.set_xlabel("k, steps later")
    right.set_ylabel("fraction of the state left after k steps (log)")
    right.set_title("survival: mean, band 10%-90% of units", loc="left", fontsize=SUBTITLE_SIZE)
    right.legend(fontsize=LEGEND_SIZE - 1, frameon=False, loc="lower left")
    for ax in (left, right):
        style_axes(ax)
    heading = title or "How long each unit remembers, from its forget gate"
    if floored:
        heading += f"\nsurvival below {SURVIVAL_FLOOR:g} not drawn (the band is cut there)"
    fig.suptitle(heading, fontsize=TITLE_SIZE if "\n" not in heading else SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- gradients

@_drawing
def gradient_flow_figure(path, flows: dict[str, GradientFlow], *, title: str = "") -> Path:
    """How the gradient of the last output reaches back through time: |dL/dh_t| (solid) and,
    for an LSTM, |dL/dc_t| (dashed) against the step t, on a log y axis, one colour per
    model (and layer group), the first/last ratio in the legend. Steps where a gradient is
    exactly 0 (vanished below the smallest double) are left out and counted in the legend.

    flows: {model name: lstmlab.inspect.gradient_flow(...)}, e.g. {"lstm": ..., "rnn_tanh":
    ...} on the same sequence, or one GradientFlow. Returns `path`."""
    title = _text(title, "title")
    flows = _named(flows, GradientFlow, "flows")
    series = _series(flows, lambda f: f.dh)
    if not series:
        raise ValueError("the gradient flows hold no layer groups to draw")
    fig = new_figure(5.0)
    ax = fig.add_subplot()
    drawn = False
    longest: list[str] = []
    for n, (label, g, f) in enumerate(series):
        color = LINE_COLORS[n % len(LINE_COLORS)]
        for key, style in (("dh", "-"), ("dc", "--")):
            values = getattr(f, key).get(g)
            if values is None:
                continue
            v = np.asarray(values, np.float64)
            drawn = drawn or bool(np.any(v > 0))
            if key == "dh":
                ratio = f.ratio(g)                                          # type: ignore[attr-defined]
                notes = [f"first/last {_fmt(ratio) if math.isfinite(ratio) else 'undefined'}"]
                zero = int(np.sum(~(v > 0)))
            else:                 # dL/dc at the last step is 0: no later step carries it back
                notes, zero = [], int(np.sum(~(v[:-1] > 0)))
            if zero:
                notes.append(f"{zero} of {v.size} steps exactly 0, left out")
            what = "|dL/dh_t|" if key == "dh" else "|dL/dc_t|"
            label_notes = f" ({'; '.join(notes)})" if notes else ""
            ax.plot(np.arange(v.size), np.where(v > 0, v, np.nan), color=color, linestyle=style,
                    linewidth=2.0 if key == "dh" else 1.5, marker="o" if v.size == 1 else None,
                    label=f"{label} {what}{label_notes}")
        if len(f.steps) > len(longest):                                     # type: ignore[attr-defined]
            longest = list(f.steps)                                         # type: ignore[attr-defined]
    log_y(ax)
    if not drawn:                                          # nothing positive: a plain log axis
        ax.set_ylim(1e-3, 1.0)
        ax.text(0.5, 0.5, "every gradient is exactly 0", ha="center", va="center",
                transform=ax.transAxes, fontsize=SUBTITLE_SIZE, color="#777777")
    _step_axis(ax, longest)
    ax.set_xlabel("step t (what it reads)" if 0 < len(longest) <= MAX_LABELLED else "step t")
    ax.set_ylabel("gradient norm (log scale)")
    ax.legend(fontsize=LEGEND_SIZE - 0.5, frameon=False, loc="best")
    style_axes(ax)
    ax.margins(x=0.01)
    has_c = any(g in f.dc for _, g, f in series)                           # type: ignore[attr-defined]
    fig.suptitle((title or "How much gradient reaches each step (L: the last step's output)")
                 + ("\nsolid: hidden state h; dashed: cell state c (0 at the last step, not drawn)"
                    if has_c else "\nthe hidden state h at each step"), fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- connectivity

def _is_text(steps: Sequence[str]) -> bool:
    """Whether the steps read characters or words (drawn as text), not numbers."""
    def number(s):
        try:
            float(s)
        except ValueError:
            return False
        return True
    return bool(steps) and not all(number(s) for s in steps)


@_drawing
def connectivity_figure(path, conn: Connectivity, *, title: str = "") -> Path:
    """How strongly the output at step t depends on the input at step s (Distill,
    "Memorization in RNNs"): the (T_out, T_in) matrix as an image, each row divided by its
    largest value and coloured on a log scale (grey: exactly 0, e.g. the future), step
    labels on the axes when there are few. One output per sequence (a single row): bars over
    the input steps, and the input text coloured by them. Returns `path`."""
    title = _text(title, "title")
    if not isinstance(conn, Connectivity):
        raise ValueError(f"conn must be an lstmlab.inspect.Connectivity, got {type(conn).__name__}")
    m = np.asarray(conn.matrix, np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"conn.matrix must be a non-empty (T_out, T_in) array, got shape {m.shape}")
    steps = [str(s) for s in conn.steps][:m.shape[1]]
    peak = np.max(np.where(np.isfinite(m), m, 0.0), axis=1, keepdims=True)
    rel = np.where(peak > 0, m / np.where(peak > 0, peak, 1.0), 0.0)      # each row's max is 1
    positive = rel[np.isfinite(rel) & (rel > 0)]
    vmin = max(float(positive.min()) if positive.size else 1e-3, 1e-8)
    vmin = min(vmin, 0.1)
    norm = LogNorm(vmin=vmin, vmax=1.0, clip=True)
    shown = np.ma.masked_where(~(rel > 0), rel)
    heading = title or "How much each output depends on each input"
    if m.shape[0] > 1:
        T_out, T_in = m.shape
        fig = new_figure(min(8.5, 2.2 + 0.1 * T_out) + (0.6 if T_in <= MAX_LABELLED else 0))
        ax = fig.add_subplot()
        im = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=GATE_CMAP, norm=norm)
        _step_axis(ax, steps)
        _step_axis(ax, steps[:T_out], axis="y")
        ax.set_xlabel("input step s")
        ax.set_ylabel("output at step t")
        ax.tick_params(labelsize=TICK_SIZE)
        cb = fig.colorbar(im, ax=ax, shrink=0.9)
        cb.set_label("|dy_t / dx_s|, / its row's largest (log)", fontsize=TICK_SIZE + 1)
        cb.ax.tick_params(labelsize=TICK_SIZE)
        heading += "\ngrey: exactly 0 (the future cannot matter)"
        if positive.size and positive.min() < vmin:
            heading += f"; darkest: {vmin:.0e} or less"
    else:
        text = _is_text(steps) and len(steps) <= MAX_TEXT_STEPS
        layout = layout_text(steps) if text else None
        text_h = 0.27 * (int(layout.rows.max()) + 1) if layout is not None else 0.0
        fig = new_figure(3.6 + text_h + (0.3 if text else 0))
        grid = fig.add_gridspec(2 if text else 1, 1, height_ratios=[2.6, max(text_h, 0.3)] if text else None)
        ax = fig.add_subplot(grid[0, 0])
        r = rel[0]
        ax.bar(np.arange(r.size), np.where(r > 0, r, np.nan), width=0.9 if r.size <= 200 else 1.0,
               color=GATE_CMAP(norm(np.where(r > 0, r, vmin))))
        log_y(ax)
        ax.set_ylim(vmin * 0.8, 1.3)
        _step_axis(ax, steps)
        ax.set_xlabel("input step s")
        ax.set_ylabel("|dy / dx_s|, / largest (log)")
        style_axes(ax)
        ax.set_xlim(-0.6, r.size - 0.4)                    # a first bar of 0 keeps its place
        if layout is not None:
            tax = fig.add_subplot(grid[1, 0])
            draw_text(tax, steps, np.where(r > 0, r, vmin), GATE_CMAP, norm, layout)
            tax.set_title("the input, coloured as the bars", loc="left", fontsize=SUBTITLE_SIZE)
        heading += " (the one output per sequence)"
        if positive.size and positive.min() < vmin:
            heading += f"\nbars below {vmin:.0e} of the largest not drawn"
    fig.suptitle(heading, fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- ablation

def _check_table(table) -> None:
    if not isinstance(table, AblationTable):
        raise ValueError(f"table must be an lstmlab.inspect.AblationTable, got {type(table).__name__}")
    if not table.rows:
        raise ValueError("the ablation table has no rows: no unit was clamped")


@_drawing
def ablation_figure(path, table: AblationTable, *, top: int = 20, title: str = "",
                    of: int | None = None) -> Path:
    """What switching off each unit costs: one horizontal bar per unit, the change in the
    task's test metric when that unit's gate or state is clamped (to table.value at every
    step), the most harmful on top (the table's order); red bars made the metric worse,
    blue ones better. At most `top` units; the baseline metric is in the title. of: the
    layer's units, when the table clamped only some of them. Returns `path`."""
    title = _text(title, "title")
    _check_table(table)
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    rows = table.rows[:int(top)]
    change = np.array([float(r["change"]) for r in rows])
    worse = change > 0 if table.lower_is_better else change < 0
    several = len({r["group"] for r in table.rows}) > 1
    names = [f"{r['group']} unit {r['unit']}" if several else f"unit {r['unit']}" for r in rows]
    fig = new_figure(1.6 + 0.24 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y, np.nan_to_num(change), color=np.where(worse, "#d62728", "#1f77b4"), height=0.7)
    ax.set_yticks(y, names)
    ax.invert_yaxis()                                      # the most harmful on top
    ax.axvline(0, color="#444444", linewidth=0.8)
    direction = "positive" if table.lower_is_better else "negative"
    ax.set_xlabel(f"change in test {table.metric} ({direction} = worse)")
    style_axes(ax)
    ax.grid(False, axis="y")
    n = len(table.rows)
    some = of is not None and n < of
    clamped = f"{n} units singled out of {of}" if some else f"{n} units"
    shown = f"the {len(rows)} most harmful of {clamped}" if len(rows) < n else \
        f"the {clamped}" if some else f"all {clamped}"
    heading = title or f"Clamping one unit at a time: {table.gate} = {_fmt(table.value)} at every step"
    heading += "\n" + textwrap.fill(
        f"{shown}; baseline test {table.metric} {_fmt(table.baseline)} "
        f"({'lower' if table.lower_is_better else 'higher'} is better); red: worse, blue: better", 100)
    fig.suptitle(heading, fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- attention

def draw_attention(ax, attn: np.ndarray, source: Sequence[str], output: Sequence[str]):
    """An attention matrix (output steps down, source steps across) on the 0..1 gate map,
    each axis labelled with its steps. Returns the image (for a colorbar)."""
    im = ax.imshow(np.asarray(attn, np.float64), aspect="auto", interpolation="nearest",
                   cmap=GATE_CMAP, vmin=0, vmax=1)
    _step_axis(ax, list(source))
    _step_axis(ax, list(output), axis="y")
    return im


ATTENTION_GATES = ("f", "z", "i", "r")    # the gate a seq2seq figure shows, the first it has


@_drawing
def attention_figure(path, acts: Activations, *, sequence: int = 0, title: str = "") -> Path:
    """One seq2seq translation: the attention (decoder steps down, source steps across), with
    the encoder's forget gate (GRU: update gate; RNN: h) for its most varying units above it
    on the same source axis, and the decoder's to its right on the same decoder axis.

    acts: lstmlab.inspect.activations(...) of a seq2seq run (acts.attention (B, T2, S));
    the decoder steps are labelled with what each reads (<bos>, then its own output) up to
    its translation's end. Returns `path`."""
    title = _text(title, "title")
    sequence = _sequence(acts, sequence)
    if acts.attention is None:
        raise ValueError("these activations have no attention: attention_figure draws a seq2seq "
                         "run (translate)")
    enc = next((g for g in acts.groups if g.startswith("encoder.")), None)
    dec = next((g for g in acts.groups if g.startswith("decoder.")), None)
    if enc is None or dec is None:
        raise ValueError("these activations lack the encoder's or the decoder's groups")
    S, src = _group_steps(acts, enc, sequence)
    T2, out = _group_steps(acts, dec, sequence)
    T2 = min(T2, acts.attention.shape[1])
    attn = np.asarray(acts.attention[sequence], np.float64)[:T2, :S]
    gate = next((k for k in ATTENTION_GATES if k in acts.groups[enc]), "h")
    e = np.asarray(acts.groups[enc][gate], np.float64)[:S, sequence]      # (S, H)
    d = np.asarray(acts.groups[dec][gate], np.float64)[:T2, sequence]     # (T2, H)
    ue = np.argsort(-np.var(e, axis=0), kind="stable")[:8]
    ud = np.argsort(-np.var(d, axis=0), kind="stable")[:8]
    if gate == "h":
        lim = _symmetric(np.concatenate([e.ravel(), d.ravel()]))
        cmap, norm = SIGNED_CMAP, Normalize(-lim, lim)
    else:
        cmap, norm = GATE_CMAP, Normalize(0.0, 1.0)

    top_h, main_h = 0.35 + 0.13 * len(ue), 1.0 + 0.2 * T2
    fig = new_figure(top_h + main_h + 1.9)
    grid = fig.add_gridspec(2, 3, width_ratios=[1.0, 0.25 + 0.02 * len(ud), 0.025],
                            height_ratios=[top_h, main_h])
    ax = fig.add_subplot(grid[1, 0])
    im = draw_attention(ax, attn, src, out[:T2])
    ax.set_xlabel("source step (what the encoder reads)")
    ax.set_ylabel("decoder step (what it reads)")
    ax.set_title("attention: where each decoder step looks", loc="left", fontsize=SUBTITLE_SIZE)
    cb = fig.colorbar(im, cax=fig.add_subplot(grid[1, 2]))
    cb.set_label("attention weight", fontsize=TICK_SIZE + 1)
    cb.ax.tick_params(labelsize=TICK_SIZE)

    top = fig.add_subplot(grid[0, 0], sharex=ax)
    gim = top.imshow(e[:, ue].T, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
    top.set_yticks(range(len(ue)), [str(u) for u in ue], fontsize=TICK_SIZE - 1)
    top.set_ylabel("unit", fontsize=LABEL_SIZE)
    top.tick_params(labelbottom=False, length=0)
    top.set_title(f"encoder {GATE_NAMES.get(gate, gate)} ({enc})", loc="left", fontsize=SUBTITLE_SIZE)
    side = fig.add_subplot(grid[1, 1], sharey=ax)
    side.imshow(d[:, ud], aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
    side.set_xticks(range(len(ud)), [str(u) for u in ud], fontsize=TICK_SIZE - 1)
    side.set_xlabel("unit", fontsize=LABEL_SIZE)
    side.tick_params(labelleft=False, length=0)
    side.set_title(f"decoder {gate}", loc="left", fontsize=SUBTITLE_SIZE)
    gcb = fig.colorbar(gim, cax=fig.add_subplot(grid[0, 2]))
    gcb.set_label(gate, fontsize=TICK_SIZE + 1)
    gcb.ax.tick_params(labelsize=TICK_SIZE - 1)
    fig.suptitle((title or f"Sequence {sequence}: attention and gates")
                 + f"\nunits: the 8 that vary most over the sequence, of {e.shape[1]}",
                 fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)

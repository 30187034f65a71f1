"""`lstmlab inspect`: every analysis of one run (or a comparison of several), drawn and
summarised.

report(runs, ...) writes the figures into a folder, the full numbers into `inspect.json`
and the activations of the inspected input into `activations.safetensors`, and returns a
JSON-able summary: the paths and the numbers the figures show.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io.atomic import write_text
from . import analyses as an
from .signals import SIGNALS
from .subject import Subject

MAX_INPUT_STEPS = 5000   # steps of one input that activations and gradient flow read
GATES_STEPS = 200        # steps a gates figure shows: enough to see a pattern, few to read it
CONNECTIVITY_STEPS = 200  # steps the connectivity figure reads (it runs one copy per step)
SIGNAL_STEPS = 20_000    # test steps top_units reads by default: seconds, not minutes
ABLATE_UNITS = 64        # wider layers: the ablation table clamps only the units singled out

Progress = Callable[[str, int, int], None]     # (what, done, total)


def report(runs: list, *, input=None, example: int | None = None, units: list[int] | None = None,
           signals: list[str] | None = None, out=None, engine: str | None = None,
           ablate: bool | None = None, layer: int = 0, progress: Progress | None = None,
           correlation: str = "pearson", signal_steps: int | None = SIGNAL_STEPS) -> dict:
    """Inspect one run, or compare several runs of one task (saturation, timescales and
    gradient flow side by side). `input` (a text, a path, numbers) or `example` (a test
    example; default 0) is what the per-input figures show; `layer` the layer whose units
    the ablation table switches off; `correlation` how top_units measures a unit following
    a signal ("pearson" or "spearman") over `signal_steps` steps of the test split (None: all
    of it). Returns the summary."""
    if not runs:
        raise ValueError("give at least one run folder")
    if input is not None and example is not None:
        raise ValueError("give --input or --example, not both")
    subjects = [an.open_subject(r, engine) for r in runs]
    tasks = {s.task.name for s in subjects if s.task is not None}
    if len(tasks) > 1:
        raise ValueError(f"runs of different tasks ({', '.join(sorted(tasks))}) cannot be compared; "
                         "inspect them one at a time")
    unknown = [sig for sig in signals or () if sig not in SIGNALS]
    if unknown:
        raise ValueError(f"unknown signal {unknown[0]!r}; known: {', '.join(SIGNALS)}")
    if signal_steps is not None and signal_steps < 1:
        raise ValueError(f"signal steps must be at least 1, got {signal_steps}")
    if correlation not in an.CORRELATIONS:
        raise ValueError(f"unknown correlation {correlation!r}; choose one of {', '.join(an.CORRELATIONS)}")
    for s in subjects:
        an.check_clamp(s, layer, None, "h")                      # the layer exists
        H = s.config.hidden_size
        bad = [u for u in units or () if not 0 <= u < H]
        if bad:
            raise ValueError(f"unit {bad[0]} does not exist: {s.name} has units 0 to {H - 1}")
    if out is None:
        out = (Path(runs[0]) / "inspect" if len(runs) == 1
               else Path(runs[0]).parent / f"inspect-{next(iter(tasks), 'runs')}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    what = input if input is not None else (example if example is not None else 0)
    step = _Stepper(progress)
    if len(subjects) == 1:
        summary = _one(subjects[0], what, units, signals, correlation, signal_steps, out, ablate,
                       layer, step)
    else:
        summary = _compare(subjects, what, units, out, step)
    write_text(out / "inspect.json", _dumps(summary))
    summary["summary"] = str(out / "inspect.json")
    return summary


class _Stepper:
    """Tells `progress` which analysis runs (and how far an ablation table is)."""

    def __init__(self, progress: Progress | None):
        self.progress = progress

    def __call__(self, what: str, done: int = 0, total: int = 1) -> None:
        if self.progress is not None:
            self.progress(what, done, total)


def _one(subject: Subject, what, units, signals, correlation, signal_steps, out: Path, ablate, layer,
         step) -> dict:
    from ..io.files import save_tensors
    from ..viz import inspect as fig

    cfg = subject.config
    figures: dict[str, str] = {}
    numbers: dict = {}
    notes: list[str] = []
    step("activations")
    chosen = an.inputs_of(subject, what).take(0)
    if chosen.length() > MAX_INPUT_STEPS:                    # a long stream: its start
        notes.append(f"the input's first {MAX_INPUT_STEPS} of {chosen.length()} steps")
        chosen = an.first_steps(chosen, MAX_INPUT_STEPS)
    acts = an.activations(subject, chosen)
    inputs = acts.inputs
    seq = 0
    T = inputs.length()
    numbers["input"] = {"steps": T, "read": _shown(inputs.steps[seq])}
    save_tensors(out / "activations.safetensors",
                 {f"{g}/{n}": np.ascontiguousarray(v[:, seq]) for g, d in acts.groups.items()
                  for n, v in d.items()}, {"steps": json.dumps(inputs.steps[seq][:T])})
    window = acts.first(GATES_STEPS)
    if T > GATES_STEPS:
        notes.append(f"gates: the first {GATES_STEPS} of the input's {T} steps")
    picture = subject.input_picture(np.asarray(inputs.x)[:min(T, GATES_STEPS), seq])   # speech
    for g in acts.groups:
        if g.startswith("decoder.") or g.startswith("encoder."):
            continue
        p = fig.gates_figure(out / f"gates_{g}.png", window, group=g, units=units, picture=picture,
                             title=f"{subject.name}: gates and states of {g} ({cfg.variant})")
        figures[f"gates_{g}"] = str(p)
    numbers["activations"] = {g: {n: {"mean": float(v[:T, seq].mean()), "min": float(v[:T, seq].min()),
                                      "max": float(v[:T, seq].max())} for n, v in d.items()}
                              for g, d in acts.groups.items()}
    if subject.seq2seq:
        p = fig.attention_figure(out / "attention.png", acts,
                                 title=f"{subject.name}: encoder and decoder gates and the attention")
        figures["attention"] = str(p)
        numbers["attention"] = acts.attention[seq].tolist() if acts.attention is not None else None
        numbers["translation"] = "".join(s for s in (inputs.target_steps or [[]])[seq][1:]
                                         if not s.startswith("<"))

    step("saturation")
    try:
        sat = an.saturation(subject)
        figures["saturation"] = str(fig.saturation_figure(
            out / "saturation.png", {subject.name: sat},
            title=f"{subject.name}: how often each gate is shut (< {sat.low}) or open (> {sat.high})"))
        numbers["saturation"] = sat.to_json()
    except ValueError as e:
        notes.append(f"saturation: {e}")
    step("timescales")
    try:
        ts = an.timescales(subject)
        figures["timescales"] = str(fig.timescales_figure(
            out / "timescales.png", {subject.name: ts}, title=f"{subject.name}: memory of each unit"))
        numbers["timescales"] = {"gate": ts.gate, "steps": ts.steps,
                                 "median": {g: float(np.median(v)) for g, v in ts.mean.items()},
                                 "mean": {g: v.tolist() for g, v in ts.mean.items()}}
    except ValueError as e:
        notes.append(f"timescales: {e}")
    if not subject.seq2seq:
        step("gradient flow")
        flow = an.gradient_flow(subject, inputs.take(seq))
        figures["gradient_flow"] = str(fig.gradient_flow_figure(
            out / "gradient_flow.png", {subject.name: flow},
            title=f"{subject.name}: |dL/dh_t| back through time"))
        numbers["gradient_flow"] = flow.to_json()
        step("connectivity")
        try:
            conn = an.connectivity(subject, inputs.take(seq), steps=CONNECTIVITY_STEPS)
            if conn.matrix.shape[1] < T:
                notes.append(f"connectivity: the first {CONNECTIVITY_STEPS} steps of the input")
            figures["connectivity"] = str(fig.connectivity_figure(
                out / "connectivity.png", conn,
                title=f"{subject.name}: how much each output depends on each input"))
            np.savetxt(out / "connectivity.csv", conn.matrix, delimiter=",", fmt="%.6g")
            numbers["connectivity"] = {"file": str(out / "connectivity.csv"),
                                       "last_output": conn.matrix[-1].tolist()}
        except ValueError as e:
            notes.append(f"connectivity: {e}")
        _text_units(subject, acts, signals, correlation, signal_steps, units, out, figures, numbers,
                    notes, step)
        _ablation(subject, ablate, layer, units, out, figures, numbers, notes, step)
    return {"run": str(subject.run) if subject.run else None,
            "task": subject.task.name if subject.task else None, "engine": subject.engine,
            "variant": cfg.variant, "folder": str(out), "figures": figures, "numbers": numbers,
            "notes": notes}


def _text_units(subject, acts, signals, method, max_steps, units, out, figures, numbers, notes, step):
    """top_units for each signal over `max_steps` test steps (None: all), measured by the
    correlation `method`; for text, the best unit's activation over the text (PNG), and the
    page with each signal's best unit and the chosen `units` (HTML)."""
    from ..viz import inspect as fig

    inputs = acts.inputs
    text = bool(subject.config.vocab_size)                   # tokens: a text to colour
    task_signals = subject.task.signals if subject.task is not None else ("position",)
    wanted = signals or list(task_signals)
    coef = "r" if method == "pearson" else "\u03c1"                # rho: Spearman's
    found = []
    numbers["top_units"], numbers["top_units_correlation"] = {}, method
    what = f"units following {', '.join(wanted)}"
    step(what)
    for tops in an.units_following(subject, wanted, skip=_cold_start(subject), method=method,
                                   max_steps=max_steps, progress=lambda d, t: step(what, d, t)):
        if tops.note:
            notes.append(f"top_units {tops.signal}: {tops.note}")
            continue
        numbers["top_units"][tops.signal] = tops.rows
        numbers["top_units_steps"] = tops.steps
        if tops.rows:
            found.append((tops.signal, tops.rows[0]))
    if not text or not found:
        return
    seq, T = 0, inputs.length()
    steps = inputs.steps[seq][:T]
    html_units = []
    for sig, row in found:
        values = acts.groups[row["group"]][row["state"]][:T, seq, row["unit"]]
        label = (f"{row['group']} unit {row['unit']} ({row['state']}): follows {sig.replace('_', ' ')}, "
                 f"{coef} = {row['r']:+.2f} on the test text")
        html_units.append({"label": label, "values": values})
    first = next(iter(acts.groups))
    state = "c" if "c" in acts.groups[first] else "h"
    for u in units or ():
        html_units.append({"label": f"{first} unit {u} ({state}), chosen",
                           "values": acts.groups[first][state][:T, seq, u]})
    best_sig, best = max(found, key=lambda f: abs(f[1]["r"]))
    values = acts.groups[best["group"]][best["state"]][:T, seq, best["unit"]]
    figures["text"] = str(fig.text_figure(
        out / "text.png", steps, values, label=f"{best['group']} unit {best['unit']}, {best['state']}",
        title=f"{subject.name}: the text coloured by {best['group']} unit {best['unit']} "
              f"({best['state']}), the unit that best follows {best_sig.replace('_', ' ')} "
              f"({coef} = {best['r']:+.2f} on the test text)"))
    figures["text_html"] = str(fig.text_html(out / "text.html", steps, html_units))


def _cold_start(subject: Subject) -> int:
    """Steps left out at the start of each example when correlating: charlm's examples start
    from a fresh state mid-text, so its first steps read without context."""
    return 100 if subject.task is not None and subject.task.name == "charlm" else 0


def _ablation(subject, ablate, layer, units, out, figures, numbers, notes, step):
    """The ablation table of `layer`: every unit, or for a wide layer (each unit costs one
    evaluation of the test split) the units singled out: --units and the top units found."""
    from ..viz import inspect as fig

    if subject.task is None or ablate is False:
        return
    H = subject.config.hidden_size
    chosen = None
    if H > ABLATE_UNITS and not ablate:
        found = {row["unit"] for rows in numbers.get("top_units", {}).values() for row in rows[:2]
                 if row["group"] == f"l{layer}"}
        chosen = sorted(found | set(units or ()))
        if not chosen:
            notes.append(f"ablation table: left out ({H} units a layer: one test evaluation per unit); "
                         "--ablate draws it for every unit, --units for some")
            return
        notes.append(f"ablation table: the {len(chosen)} units singled out above (of {H}); --ablate "
                     "clamps every unit, one test evaluation each")
    table = an.ablation_table(subject, layer, "h", 0.0, units=chosen, progress=lambda done, total: step(
        "ablation (h = 0, unit by unit)", done, total))
    figures["ablation"] = str(fig.ablation_figure(
        out / "ablation.png", table, of=H,
        title=f"{subject.name}: test {table.metric} with each unit of layer {layer} switched off (h = 0)"))
    numbers["ablation"] = table.to_json()


def _compare(subjects: list[Subject], what, units, out: Path, step) -> dict:
    """Saturation, timescales and gradient flow of several runs side by side."""
    from ..viz import inspect as fig

    names = _names(subjects)
    figures: dict[str, str] = {}
    numbers: dict = {}
    notes: list[str] = []
    sats: dict[str, an.Saturation] = {}
    tss: dict[str, an.Timescales] = {}
    flows: dict[str, an.GradientFlow] = {}
    for name, s in zip(names, subjects):
        step(f"{name}: saturation and timescales")
        try:
            sats[name] = an.saturation(s)
        except ValueError as e:
            notes.append(f"{name} saturation: {e}")
        try:
            tss[name] = an.timescales(s)
        except ValueError as e:
            notes.append(f"{name} timescales: {e}")
        if not s.seq2seq:
            step(f"{name}: gradient flow")
            flows[name] = an.gradient_flow(s, an.inputs_of(s, what).take(0))
        step(f"{name}: activations")
        acts = an.activations(s, what)
        first = next(g for g in acts.groups if not g.startswith("decoder."))
        figures[f"gates_{name}"] = str(fig.gates_figure(
            out / f"gates_{name}.png", acts, group=first, units=units,
            title=f"{name}: gates and states of {first}"))
    if sats:
        figures["saturation"] = str(fig.saturation_figure(
            out / "saturation.png", sats, title="saturation of the gates, run by run"))
        numbers["saturation"] = {n: v.to_json() for n, v in sats.items()}
    if tss:
        figures["timescales"] = str(fig.timescales_figure(
            out / "timescales.png", tss, title="memory of each unit, run by run"))
        numbers["timescales"] = {n: {"median": {g: float(np.median(v)) for g, v in t.mean.items()}}
                                 for n, t in tss.items()}
    if flows:
        figures["gradient_flow"] = str(fig.gradient_flow_figure(
            out / "gradient_flow.png", flows, title="|dL/dh_t| back through time, on the same input"))
        numbers["gradient_flow"] = {n: f.to_json() for n, f in flows.items()}
    task = subjects[0].task
    return {"runs": [str(s.run) for s in subjects], "task": task.name if task else None,
            "folder": str(out), "figures": figures, "numbers": numbers, "notes": notes}


def _names(subjects: list[Subject]) -> list[str]:
    """A short distinct name per run: its variant, or its folder's name where variants repeat."""
    variants = [s.config.variant for s in subjects]
    if len(set(variants)) == len(variants):
        return variants
    return [s.name for s in subjects]


def _shown(steps: list[str], limit: int = 200) -> str:
    """What an input reads, as one string (characters joined, words with spaces), cut."""
    joined = "".join(steps) if all(len(s) == 1 for s in steps) else " ".join(steps)
    return joined if len(joined) <= limit else joined[:limit] + "..."


def _dumps(summary: dict) -> str:
    from ..train.runs import strict_json

    return json.dumps(strict_json(summary), indent=1) + "\n"


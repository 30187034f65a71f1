"""`lstmlab bench`: how fast lstmlab runs on this machine, next to PyTorch and onnxruntime.

    result = run_bench(quick=True)        # the dict `lstmlab bench --json` prints
    for table in tables(result): console.print(table)
    bench_figure("bench.png", result)

Sections (float32, CPU):
  lstm      `lstmlab.numpy.LSTM` against `torch.nn.LSTM`: forward (inference: `model(x)`,
            torch under no_grad) and forward+backward (weight and input gradients) at
            (T, B, I, H) = (100, 32, 32, 128), (200, 64, 64, 256), (50, 1, 16, 64), (1000, 8, 32, 128)
  step      one streaming step at B = 1, I = 32, H = 64, 128, 512, the state fed back:
            `lstmlab.numpy` `step`, `torch.nn.LSTMCell` under no_grad, and onnxruntime on the
            model exported by `lstmlab.io.onnx.export_onnx(initial_state=True)`, one
            `session.run` per step
  variants  the torch engine's peephole, cifg, layernorm and gru_cho forward+backward
            against `nn.LSTM`'s fused kernel at (100, 32, 32, 128); the variants run in a
            process of their own set up as lstmlab's trainings are (lstmlab.threads.configure:
            torch's idle threads sleep, so the variant loops run the batch in parts on all
            cores), the fused kernel there and with torch's defaults, the faster of the two
            the baseline
  peak      the float32 matrix-product rate of each library in its own process (the best
            of a few products of two large square matrices): the lstm rows give their
            GFLOP/s as a percentage of it (see `lstm_flops` for what is counted)
  memory    peak memory of truncated-BPTT training on one sine stream of 10^4 and 10^5
            steps (windows of 100 steps, the final state carried into the next window),
            each length in its own process, NumPy engine: the growth of the peak RSS during
            training and tracemalloc's peak (--quick: 10^3 and 10^4 steps); flat
            when the long stream's peaks are at most 10 % (plus MEMORY_SLACK_MB) above the
            short one's

Method: each side (numpy, torch, onnxruntime) runs in a child process of its own
(`python -m lstmlab.bench worker SIDE PLAN`), which imports only its own library: NumPy's
BLAS threads and torch's OpenMP threads in one process slow each other down, and this
process never imports torch. A child warms every case up, then times as many calls as fit
in the plan's time budget and prints the timings as one JSON line. R rounds run every
side's child once each, interleaved, so that a slow moment of the machine falls on all
sides alike; a figure is the median of all rounds' timings. A side whose library is missing
is reported as not installed and left out, with its ratios.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .threads import usable_cores

# A plan says what a run measures; it travels to the children as JSON.
#   rounds: interleaved rounds; budget_s: timed seconds per case and round (at least
#   min_calls calls); peak_n: side of the square matrices of the peak product.
FULL: dict[str, Any] = {
    "rounds": 5, "budget_s": 0.4, "min_calls": 3,
    "lstm": [[100, 32, 32, 128], [200, 64, 64, 256], [50, 1, 16, 64], [1000, 8, 32, 128]],
    "step": {"input": 32, "hidden": [64, 128, 512], "steps_per_call": 200},
    "variants": {"shape": [100, 32, 32, 128], "names": ["peephole", "cifg", "layernorm", "gru_cho"]},
    "peak_n": 1024,
    # memory: the NumPy engine's (the torch engine's 10^5 steps took 50 s more on 2 cores)
    "memory": {"lengths": [10_000, 100_000], "hidden": 64, "window": 100},
}
# --quick: CI-sized, under a minute on 2 cores: fewer rounds and calls, without the two
# largest shapes, memory at 10^3 and 10^4 steps (tracemalloc slows the training 6x)
QUICK: dict[str, Any] = {
    **FULL, "rounds": 3, "budget_s": 0.1, "min_calls": 2,
    "lstm": [[100, 32, 32, 128], [50, 1, 16, 64]],
    "step": {**FULL["step"], "steps_per_call": 100},
    "memory": {**FULL["memory"], "lengths": [1_000, 10_000]},
}
# the tests': every section, at sizes that take a few seconds
TINY: dict[str, Any] = {
    "rounds": 1, "budget_s": 0.0, "min_calls": 2,
    "lstm": [[5, 2, 3, 4]],
    "step": {"input": 3, "hidden": [4], "steps_per_call": 5},
    "variants": {"shape": [5, 2, 3, 4], "names": ["peephole", "cifg", "layernorm", "gru_cho"]},
    "peak_n": 64,
    "memory": {"lengths": [100, 1000], "hidden": 4, "window": 50},
}

SIDES = ("numpy", "torch", "onnxruntime")
# the packages each side imports -> the extra that installs them
EXTRA = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnx"}
# memory is flat when the long stream's peak is at most 10 % above the short one's, plus
# this much (MiB) for what settles once: the peak RSS grew 0.5-0.6 MiB in 10^4 steps, 1.5-1.6
# in 10^5 and 1.5 in 10^6 (2026-12-01; NumPy's reductions keep a few hundred small objects
# that stop growing, and the allocator's arenas settle). Growth with the stream is far
# larger: keeping one state of 64 units a step would be 22 MiB more in 10^5 steps.
MEMORY_SLACK_MB = 2.0
# a median this many times the fastest call means the calls did not run alike (a busy
# machine, threads spinning against another process): the run says so
NOISY = 2.0


def lstm_flops(T: int, B: int, I: int, H: int, gates: int = 4, backward: bool = False) -> int:
    """Floating-point operations of one LSTM layer over (T, B, I) with H units, counting the
    matrix products only (the gates' elementwise work is a few percent of it):

      forward:  each step multiplies x_t (B, I) by W^T (I, G*H) and h (B, H) by R^T (H, G*H),
                B*G*H*(I + H) multiply-adds of 2 operations: 2*T*B*G*H*(I + H) in all
                (G = 4 gate blocks for an LSTM, 3 for cifg and a GRU)
      backward: dW = dgates^T x and dR = dgates^T h (the weights' gradients) and
                dx = dgates W and dh = dgates R (the input's and the recurrence's): twice
                the forward's products, so forward+backward is 3 times the forward
    """
    forward = 2 * T * B * gates * H * (I + H)
    return 3 * forward if backward else forward


def plan_for(quick: bool = False, tiny: bool = False, threads: int | None = None) -> dict:
    """The plan a run follows: FULL, QUICK or TINY, with the thread count for the children."""
    return {**(TINY if tiny else QUICK if quick else FULL), "threads": threads}


# --------------------------------------------------------------------------- the parent

def run_bench(quick: bool = False, threads: int | None = None, out=None, *, tiny: bool = False,
              progress=None) -> dict:
    """Run every section and return the result (what `lstmlab bench --json` prints).

    threads: the children's thread count (OMP/OPENBLAS/MKL_NUM_THREADS, torch.set_num_threads,
    onnxruntime's intra-op threads); None leaves the libraries' defaults. out: a folder for
    bench.json and bench.png, checked before anything runs. progress(what, done, total) is
    called before each child process. tiny: the tests' smallest sizes.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    folder = _writable_folder(out) if out is not None else None
    plan = plan_for(quick, tiny, threads)
    memory = plan["memory"]
    jobs = [(kind, side) for _ in range(plan["rounds"])
            for kind, side in [*(("worker", side) for side in SIDES), ("variants", "torch")]]
    jobs += [("memory", f"numpy {n}") for n in memory["lengths"]]
    report = progress or (lambda what, done, total: None)

    started = time.perf_counter()
    rounds: dict[str, list[dict]] = {side: [] for side in (*SIDES, "variants")}
    missing: dict[str, str] = {}                  # side -> the package it lacks
    mem: list[dict] = []
    for k, (kind, what) in enumerate(jobs):
        report(f"{kind} {what}", k, len(jobs))
        side, *length = what.split()
        if side in missing:
            continue
        answer = _child([kind, side, *length], plan)
        if "missing" in answer:
            missing[side] = answer["missing"]
        elif kind in ("worker", "variants"):
            rounds[side if kind == "worker" else kind].append(answer)
        else:
            mem.append(answer)
    report("done", len(jobs), len(jobs))

    result: dict[str, Any] = {
        "machine": machine(),
        "libraries": _libraries(rounds, missing),
        "settings": {"quick": quick, "rounds": plan["rounds"], "threads": threads,
                     "budget_s": plan["budget_s"], "seconds": time.perf_counter() - started},
        "peak": {side: _peak(rounds[side], plan) for side in ("numpy", "torch")},
    }
    result["lstm"] = _lstm_section(rounds, plan, result["peak"])
    result["step"] = _step_section(rounds, plan)
    result["variants"] = _variants_section(rounds, plan)
    result["memory"] = _memory_section(mem, plan)
    noisy = _noisy(result)
    if noisy:
        which = "1 figure has" if len(noisy) == 1 else f"{len(noisy)} figures have"
        result["notes"] = [f"{which} a median over {NOISY:g}x the fastest call "
                           f"({', '.join(noisy[:3])}{', ...' if len(noisy) > 3 else ''}): the "
                           "machine was busy or its threads competed; run again on an idle machine "
                           "or with --threads 1"]
    if folder is not None:
        result["files"] = {"json": str(folder / "bench.json"), "figure": str(folder / "bench.png")}
        from .io.atomic import write_text
        from .train.runs import strict_json

        bench_figure(folder / "bench.png", result)
        write_text(folder / "bench.json", json.dumps(strict_json(result), indent=2) + "\n")
    return result


def _noisy(value, where: str = "") -> list[str]:
    """Where in the result a timing's median is more than NOISY times its minimum."""
    if isinstance(value, dict):
        if "median" in value and "min" in value:
            return [where] if value["median"] > NOISY * value["min"] else []
        return [w for k, v in value.items() for w in _noisy(v, f"{where}.{k}" if where else k)]
    if isinstance(value, list):
        return [w for k, v in enumerate(value) for w in _noisy(v, f"{where}[{k}]")]
    return []


def _writable_folder(out) -> Path:
    """`out` as a folder that exists (made if needed), or a one-line ValueError."""
    from .io.atomic import unwritable

    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(folder, e) from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {folder}: permission denied")
    return folder


def _child(args: list[str], plan: dict) -> dict:
    """Run `python -m lstmlab.bench ARGS PLAN` and return the JSON object it prints last."""
    env = dict(os.environ)
    if plan["threads"]:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(plan["threads"])
    cmd = [sys.executable, "-m", "lstmlab.bench", *args, json.dumps(plan)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        tail = " | ".join(r.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the benchmark's {' '.join(args)} process failed "
                           f"(exit {r.returncode}): {tail}")
    return json.loads(lines[-1])


def machine() -> dict:
    """The CPU model (/proc/cpuinfo where there is one), the cores this process may use, the
    cores of the machine, the operating system and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": usable_cores(), "machine_cores": os.cpu_count(),
            "system": platform.platform(), "python": platform.python_version()}


def _libraries(rounds, missing) -> dict:
    """Each side's version and thread count, or a note that says how to install it."""
    libs = {}
    for side in SIDES:
        if side in missing:
            pkg = missing[side]
            libs[side] = {"installed": False,
                          "note": f"{pkg} is not installed: pip install 'lstmlab[{EXTRA[pkg]}]'"}
        else:
            first = rounds[side][0]
            libs[side] = {"installed": True, "version": first["version"], "threads": first["threads"]}
    return libs


def _stats(samples: list[float], unit: float) -> dict:
    """Median and minimum of timings in seconds, in `unit` (1e-3: ms, 1e-6: µs)."""
    return {"median": statistics.median(samples) / unit, "min": min(samples) / unit,
            "timings": len(samples)}


def _pooled(side_rounds: list[dict], *path) -> list[float]:
    """One case's timings from every round: path leads into each child's answer."""
    samples: list[float] = []
    for answer in side_rounds:
        v = answer
        for key in path:
            v = v[key]
        samples += v
    return samples


def _ratio(a: dict | None, b: dict | None):
    return a["median"] / b["median"] if a is not None and b is not None else None


def _peak(side_rounds: list[dict], plan: dict) -> dict | None:
    if not side_rounds:
        return None
    return {"gflops": max(a["peak_gflops"] for a in side_rounds), "n": plan["peak_n"]}


def _lstm_section(rounds, plan, peak) -> dict:
    rows = []
    for k, (T, B, I, H) in enumerate(plan["lstm"]):
        row: dict = {"shape": [T, B, I, H],
                     "flops": {"fwd": lstm_flops(T, B, I, H),
                               "fwd_bwd": lstm_flops(T, B, I, H, backward=True)}}
        for side in ("numpy", "torch"):
            if not rounds[side]:
                row[side] = None
                continue
            row[side] = {}
            for mode in ("fwd", "fwd_bwd"):
                s = _stats(_pooled(rounds[side], "lstm", k, mode), 1e-3)
                s["gflops"] = row["flops"][mode] / (s["median"] * 1e-3) / 1e9
                s["percent_of_peak"] = 100 * s["gflops"] / peak[side]["gflops"]
                row[side][mode] = s
        row["ratio"] = {mode: _ratio(*(row[side] and row[side][mode] for side in ("numpy", "torch")))
                        for mode in ("fwd", "fwd_bwd")}
        rows.append(row)
    return {"unit": "ms", "ratio": "numpy / torch (below 1: numpy is faster)", "rows": rows}


def _step_section(rounds, plan) -> dict:
    I = plan["step"]["input"]
    rows = []
    for k, H in enumerate(plan["step"]["hidden"]):
        row: dict = {"hidden": H, "flops": lstm_flops(1, 1, I, H)}
        for side in SIDES:
            row[side] = _stats(_pooled(rounds[side], "step", k), 1e-6) if rounds[side] else None
            if row[side] is not None:
                row[side]["gflops"] = row["flops"] / (row[side]["median"] * 1e-6) / 1e9
        row["ratio"] = {"numpy/torch": _ratio(row["numpy"], row["torch"]),
                        "numpy/onnxruntime": _ratio(row["numpy"], row["onnxruntime"])}
        rows.append(row)
    return {"unit": "µs", "batch": 1, "input": I, "rows": rows,
            "ratio": "numpy / other (below 1: numpy is faster)"}


def _variants_section(rounds, plan) -> dict:
    from .spec import variant

    T, B, I, H = plan["variants"]["shape"]
    lab = rounds["variants"]
    # nn.LSTM with torch's defaults and as lstmlab's trainings set torch up: the faster is the baseline
    both = {"torch_defaults": _stats(_pooled(rounds["torch"], "fused"), 1e-3) if rounds["torch"] else None,
            "training_setup": _stats(_pooled(lab, "fused"), 1e-3) if lab else None}
    timed = {k: v for k, v in both.items() if v is not None}
    baseline = min(timed, key=lambda k: timed[k]["median"]) if timed else None
    fused = timed.get(baseline) if baseline else None
    rows = []
    for name in plan["variants"]["names"]:
        s = _stats(_pooled(lab, "variants", name), 1e-3) if lab else None
        flops = lstm_flops(T, B, I, H, variant(name).num_gates, backward=True)
        if s is not None:
            s["gflops"] = flops / (s["median"] * 1e-3) / 1e9
        rows.append({"variant": name, "fwd_bwd": s, "flops": flops, "ratio": _ratio(s, fused)})
    return {"unit": "ms", "shape": [T, B, I, H], "fused": fused, "fused_by_setup": both,
            "baseline": baseline, "setup": lab[0]["setup"] if lab else None, "rows": rows,
            "ratio": "variant / nn.LSTM fused, the faster of its two setups (below 1: the "
                     "variant is faster)"}


def _memory_section(runs, plan) -> dict:
    short, long_ = runs[0], runs[-1]
    flat = all(long_[key] <= 1.1 * short[key] + MEMORY_SLACK_MB
               for key in ("rss_growth_mb", "tracemalloc_peak_mb"))
    m = plan["memory"]
    return {"unit": "MiB", "input": 1, "hidden": m["hidden"], "window": m["window"],
            "lengths": m["lengths"], "rows": [{"engine": "numpy", "runs": runs, "flat": flat}],
            "flat": f"the longer stream's peak at most 10 % + {MEMORY_SLACK_MB:g} MiB above "
                    "the shorter's, for each measure"}


# --------------------------------------------------------------------------- output

def _fmt(v, spec: str, suffix: str = "") -> str:
    return "—" if v is None else f"{v:{spec}}{suffix}"


def tables(result: dict) -> list:
    """The result as rich tables, one per section (headers of two lines, so that they fit in
    80 columns)."""
    from rich.table import Table

    libs = result["libraries"]

    def cell(side, m, spec=".2f", key="median"):
        if not libs[side]["installed"]:
            return "not installed"
        return _fmt(m and m[key], spec)

    lstm = Table("(T, B, I, H)", "numpy\nfwd", "torch\nfwd", "ratio", "numpy\nfwd+bwd",
                 "torch\nfwd+bwd", "ratio",
                 title="lstmlab.numpy.LSTM vs torch.nn.LSTM, float32: median ms,\n"
                       "ratio numpy/torch (below 1: numpy is faster)")
    for r in result["lstm"]["rows"]:
        n, t = r["numpy"] or {}, r["torch"] or {}
        lstm.add_row(str(tuple(r["shape"])), cell("numpy", n.get("fwd")), cell("torch", t.get("fwd")),
                     _fmt(r["ratio"]["fwd"], ".2f", "×"), cell("numpy", n.get("fwd_bwd")),
                     cell("torch", t.get("fwd_bwd")), _fmt(r["ratio"]["fwd_bwd"], ".2f", "×"))

    peaks = ", ".join(f"{side} {p['gflops']:.1f}" for side, p in result["peak"].items() if p)
    rate = Table("(T, B, I, H)", "pass", "numpy\nGFLOP/s", "% of\npeak", "torch\nGFLOP/s", "% of\npeak",
                 title=f"achieved GFLOP/s (matrix products only);\nfloat32 matmul peak: {peaks} GFLOP/s")
    for r in result["lstm"]["rows"]:
        for mode, label in (("fwd", "fwd"), ("fwd_bwd", "fwd+bwd")):
            cells = []
            for side in ("numpy", "torch"):
                m = r[side] and r[side][mode]
                cells += [cell(side, m, ".1f", "gflops"), cell(side, m, ".0f", "percent_of_peak")]
            rate.add_row(str(tuple(r["shape"])), label, *cells)

    st = result["step"]
    step = Table("H", "numpy\nstep", "torch\nLSTMCell", "onnx-\nruntime", "numpy/\ntorch",
                 "numpy/\nonnxruntime",
                 title=f"one streaming step, B = 1, I = {st['input']}, the state fed back:\nmedian µs")
    for r in st["rows"]:
        step.add_row(str(r["hidden"]), *(cell(side, r[side], ".1f") for side in SIDES),
                     _fmt(r["ratio"]["numpy/torch"], ".2f", "×"),
                     _fmt(r["ratio"]["numpy/onnxruntime"], ".2f", "×"))

    va = result["variants"]
    by = va.get("fused_by_setup") or {}
    setups = ", ".join(f"{k.replace('_', ' ')} {v['median']:.2f}" for k, v in by.items() if v)
    var = Table("variant", "fwd+bwd ms", "nn.LSTM\nfused ms", "ratio",
                title=f"lstmlab.torch variants vs nn.LSTM (fused),\n"
                      f"fwd+bwd at {tuple(va['shape'])}: median ms",
                caption=f"variants as lstmlab trains ({va.get('setup') or '—'}); nn.LSTM: "
                        f"{setups or '—'} ms, the faster the baseline")
    for r in va["rows"]:
        var.add_row(r["variant"], cell("torch", r["fwd_bwd"]), cell("torch", va["fused"]),
                    _fmt(r["ratio"], ".2f", "×"))

    me = result["memory"]
    mem = Table("engine", *(f"{n:,} steps\nRSS / tracemalloc" for n in me["lengths"]), "flat",
                title=f"truncated-BPTT training on one stream (I = 1, H = {me['hidden']},\n"
                      f"windows of {me['window']}): peak memory growth, MiB")
    for r in me["rows"]:
        cells = [f"{run['rss_growth_mb']:.1f} / {run['tracemalloc_peak_mb']:.2f}" for run in r["runs"]]
        mem.add_row(r["engine"], *cells, "yes" if r["flat"] else "NO")
    return [lstm, rate, step, var, mem]


def summary(result: dict) -> str:
    """The machine, the libraries and their threads, and how the figures were taken."""
    m, libs, s = result["machine"], result["libraries"], result["settings"]
    parts = []
    for side in SIDES:
        lib = libs[side]
        threads = {"numpy": "BLAS threads", "torch": "threads", "onnxruntime": "intra-op threads"}[side]
        parts.append(f"{side} {lib['version']} ({threads}: {lib['threads'] or 'default'})"
                     if lib["installed"] else lib["note"])
    return (f"{m['cpu']}, {m['cores']} cores usable of {m['machine_cores']}; " + "; ".join(parts)
            + f". Medians of {s['rounds']} interleaved rounds, each side in its own process "
              f"({s['seconds']:.0f} s)." + "".join(f"\nnote: {n}" for n in result.get("notes", [])))


def bench_figure(path, result: dict) -> Path:
    """Bars of the time ratios of each section (below the line at 1: lstmlab is faster)."""
    import numpy as np

    from .viz.figures import SUBTITLE_SIZE, TITLE_SIZE, new_figure, save_figure, style_axes

    lstm, step, va = result["lstm"]["rows"], result["step"]["rows"], result["variants"]["rows"]
    panels = [
        ("lstmlab.numpy.LSTM / torch.nn.LSTM", [str(tuple(r["shape"])) for r in lstm],
         {"forward": [r["ratio"]["fwd"] for r in lstm],
          "forward+backward": [r["ratio"]["fwd_bwd"] for r in lstm]}),
        ("streaming step (B = 1): lstmlab.numpy / other", [f"H = {r['hidden']}" for r in step],
         {"/ torch.nn.LSTMCell": [r["ratio"]["numpy/torch"] for r in step],
          "/ onnxruntime": [r["ratio"]["numpy/onnxruntime"] for r in step]}),
        (f"lstmlab.torch variant / nn.LSTM fused, forward+backward {tuple(result['variants']['shape'])}",
         [r["variant"] for r in va], {"variant / fused": [r["ratio"] for r in va]}),
    ]
    fig = new_figure(9.0)
    axes = fig.subplots(len(panels), 1)
    colours = ["#4c78a8", "#f58518"]
    for ax, (title, labels, series) in zip(axes, panels):
        x = np.arange(len(labels))
        width = min(0.35, 0.8 / len(series))
        top = 1.0
        for k, (label, values) in enumerate(series.items()):
            heights = np.array([np.nan if v is None else v for v in values], dtype=float)
            where = x + (k - (len(series) - 1) / 2) * width
            bars = ax.bar(where, heights, width, label=label, color=colours[k])
            for text in ax.bar_label(bars, labels=["" if np.isnan(h) else f"{h:.2f}" for h in heights],
                                     fontsize=8, padding=2):     # readable across the dashed line
                text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.85})
            for w in where[np.isnan(heights)]:                  # a side that was not measured
                ax.text(w, 0.03, "not installed", rotation=90, ha="center", va="bottom",
                        fontsize=7, color="#666666", transform=ax.get_xaxis_transform())
            top = max([top, *(v for v in values if v is not None)])
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.axhline(1.0, color="black", linewidth=1.0, linestyle="--", label="as fast")
        ax.set_ylim(0, top * 1.18)
        ax.set_xticks(x, labels)
        ax.set_ylabel("time ratio")
        ax.set_title(title, fontsize=SUBTITLE_SIZE)
        style_axes(ax)
        ax.grid(False, axis="x")
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("lstmlab bench: time ratios (below the dashed line, lstmlab is faster)",
                 fontsize=TITLE_SIZE)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- the children

def _timings(fn, budget: float, min_calls: int, inner: int = 1) -> list[float]:
    """Seconds per call of fn() (per step when fn runs `inner` of them) after one warm-up
    call (which may compile or allocate): as many calls as fit in `budget` seconds, at least
    `min_calls` and at most 1000."""
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < max(min_calls, 1) or (spent < budget and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        spent += seconds
        times.append(seconds / inner)
    return times


def _alternating_timings(fns: dict, budget: float, min_calls: int, block: int = 4) -> dict:
    """_timings of several functions taken in turns of `block` calls each (the first call of a
    turn not timed: it finds the caches holding the other function's data), so that a machine
    that slows down or speeds up meanwhile moves them all alike, while each is timed warm as
    in a training loop: {name: seconds}. `budget` is each function's share. (Alternating call
    by call instead made the fused kernel 20% slower and favoured the variants.)"""
    times: dict = {name: [] for name in fns}
    spent, timed = 0.0, 0                                       # timed: calls of each so far
    while timed < max(min_calls, 1) or (spent < budget * len(fns) and timed < 1000):
        timed += block - 1
        for name, fn in fns.items():
            fn()
            for _ in range(block - 1):
                t0 = time.perf_counter()
                fn()
                seconds = time.perf_counter() - t0
                spent += seconds
                times[name].append(seconds)
    return times


def _best_gflops(matmul, a, b, n: int, repeats: int = 5) -> float:
    """The matrix-product rate: 2 n^3 operations in the fastest of `repeats` products."""
    matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _blas_threads():
    from threadpoolctl import threadpool_info

    return next((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), None)


def _numpy_worker(plan: dict) -> dict:
    import numpy as np

    import lstmlab.numpy

    budget, calls = plan["budget_s"], plan["min_calls"]
    rng = np.random.default_rng(0)
    n = plan["peak_n"]
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    out: dict = {"version": np.__version__, "threads": _blas_threads(),
                 "peak_gflops": _best_gflops(np.matmul, a, b, n), "lstm": [], "step": []}
    for T, B, I, H in plan["lstm"]:
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        dy = rng.standard_normal((T, B, H)).astype(np.float32)
        m = lstmlab.numpy.LSTM(I, H, dtype=np.float32, seed=0)

        def fwd_bwd(m=m, x=x, dy=dy):
            _, _, cache = m.forward(x)
            m.backward(cache, dy)

        out["lstm"].append({"fwd": _timings(lambda m=m, x=x: m(x), budget, calls),
                            "fwd_bwd": _timings(fwd_bwd, budget, calls)})
    I, inner = plan["step"]["input"], plan["step"]["steps_per_call"]
    for H in plan["step"]["hidden"]:
        m = lstmlab.numpy.LSTM(I, H, dtype=np.float32, seed=0)
        x_t = rng.standard_normal((1, I)).astype(np.float32)
        state = [m.initial_state(1)]

        def steps(m=m, x_t=x_t, state=state):
            s = state[0]
            for _ in range(inner):
                _, s = m.step(x_t, s)
            state[0] = s

        out["step"].append(_timings(steps, budget, calls, inner))
    return out


def _torch_worker(plan: dict) -> dict:
    import torch

    if plan["threads"]:
        torch.set_num_threads(plan["threads"])
    torch.manual_seed(0)
    budget, calls = plan["budget_s"], plan["min_calls"]
    n = plan["peak_n"]
    out: dict = {"version": torch.__version__, "threads": torch.get_num_threads(),
                 "peak_gflops": _best_gflops(torch.mm, torch.randn(n, n), torch.randn(n, n), n),
                 "lstm": [], "step": []}

    for T, B, I, H in plan["lstm"]:
        x, dy = torch.randn(T, B, I), torch.randn(T, B, H)
        mod = torch.nn.LSTM(I, H)

        def fwd(mod=mod, x=x):
            with torch.no_grad():
                mod(x)

        out["lstm"].append({"fwd": _timings(fwd, budget, calls),
                            "fwd_bwd": _timings(_fwd_bwd_of(mod, x, dy), budget, calls)})
    I, inner = plan["step"]["input"], plan["step"]["steps_per_call"]
    for H in plan["step"]["hidden"]:
        cell = torch.nn.LSTMCell(I, H)
        x_t = torch.randn(1, I)
        state = [(torch.zeros(1, H), torch.zeros(1, H))]

        def steps(cell=cell, x_t=x_t, state=state):
            s = state[0]
            with torch.no_grad():
                for _ in range(inner):
                    s = cell(x_t, s)
            state[0] = s

        out["step"].append(_timings(steps, budget, calls, inner))
    T, B, I, H = plan["variants"]["shape"]
    x, dy = torch.randn(T, B, I), torch.randn(T, B, H)
    out["fused"] = _timings(_fwd_bwd_of(torch.nn.LSTM(I, H), x, dy), budget, calls)
    return out


def _fwd_bwd_of(mod, x, dy):
    """A call of forward and backward through `mod` (x's gradient wanted too)."""
    xg = x.clone().requires_grad_(True)

    def fwd_bwd():
        mod.zero_grad(set_to_none=True)
        xg.grad = None
        y, _ = mod(xg)
        y.backward(dy)

    return fwd_bwd


def _variants_worker(plan: dict) -> dict:
    """The torch engine's variants and nn.LSTM's fused kernel, taking turns, in a process set
    up as lstmlab's trainings are (threads.configure before torch loads)."""
    from .threads import configure

    count = configure(plan["threads"])
    import torch

    import lstmlab.torch

    torch.manual_seed(0)
    T, B, I, H = plan["variants"]["shape"]
    x, dy = torch.randn(T, B, I), torch.randn(T, B, H)
    cases = {"fused": _fwd_bwd_of(torch.nn.LSTM(I, H), x, dy)}   # the variants take turns with it
    for name in plan["variants"]["names"]:
        cls = lstmlab.torch.GRU if lstmlab.variant(name).family == "gru" else lstmlab.torch.LSTM
        cases[name] = _fwd_bwd_of(cls(I, H, variant=name), x, dy)
    timed = _alternating_timings(cases, plan["budget_s"], plan["min_calls"])
    policy = os.environ.get("OMP_WAIT_POLICY", "torch's default")
    return {"fused": timed.pop("fused"), "variants": timed,
            "setup": f"{count} threads, OMP_WAIT_POLICY={policy}"}


def _onnxruntime_worker(plan: dict) -> dict:
    import tempfile

    import numpy as np
    import onnx  # noqa: F401 - the export needs it: a missing one is reported as such
    import onnxruntime as ort

    import lstmlab.numpy
    from lstmlab.io.onnx import export_onnx

    opts = ort.SessionOptions()
    if plan["threads"]:
        opts.intra_op_num_threads = opts.inter_op_num_threads = plan["threads"]
    out: dict = {"version": ort.__version__, "threads": plan["threads"], "step": []}
    I, inner = plan["step"]["input"], plan["step"]["steps_per_call"]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for H in plan["step"]["hidden"]:
            m = lstmlab.numpy.LSTM(I, H, dtype=np.float32, seed=0)
            path = export_onnx(m, Path(folder) / f"lstm{H}.onnx", initial_state=True)
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            zeros = np.zeros((1, 1, H), np.float32)
            # one step: x (T = 1, B = 1, I), the state (layers, B, H) fed back
            feed = {"x": rng.standard_normal((1, 1, I)).astype(np.float32), "h0": zeros, "c0": zeros}

            def steps(session=session, feed=feed):
                for _ in range(inner):
                    _, feed["h0"], feed["c0"] = session.run(["y", "h_n", "c_n"], feed)

            out["step"].append(_timings(steps, plan["budget_s"], plan["min_calls"], inner))
    return out


def _rss_mb() -> float:
    """This process's peak resident memory so far, MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _windows(length: int, window: int):
    """The sine stream in windows: (x, target), each (n, 1, 1) float32, target = x one step
    ahead; made window by window, so that no array grows with the stream's length."""
    import numpy as np

    for t0 in range(0, length, window):
        n = min(window, length - t0)
        wave = np.sin(0.1 * np.arange(t0, t0 + n + 1)).astype(np.float32)   # (n + 1,)
        yield wave[:-1, None, None], wave[1:, None, None]


def _numpy_window_step(hidden: int, lr: float):
    """step(x, target, state) -> state: one window of truncated BPTT on lstmlab.numpy (forward,
    backward, plain SGD), the final state returned to carry into the next window."""
    import numpy as np

    import lstmlab.numpy as ln

    model, head = ln.LSTM(1, hidden, dtype=np.float32, seed=0), ln.Linear(hidden, 1, seed=0)
    opts = [ln.SGD(model.params, lr), ln.SGD(head.params, lr)]

    def step(x, target, state):
        y, state, cache = model.forward(x, state)                       # y (n, 1, H)
        pred, head_cache = head.forward(y)                              # (n, 1, 1)
        _, dpred = ln.mse_loss(pred, target)
        head_grads, dy = head.backward(head_cache, dpred)
        grads, _, _ = model.backward(cache, dy)
        opts[0].step(grads)
        opts[1].step(head_grads)
        return state

    return step


def _torch_window_step(hidden: int, lr: float):
    """_numpy_window_step's twin on lstmlab.torch (the state detached between windows)."""
    import torch

    import lstmlab.torch as lt

    torch.manual_seed(0)
    model, head = lt.LSTM(1, hidden), torch.nn.Linear(hidden, 1)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr)

    def step(x, target, state):
        y, state = model(torch.from_numpy(x), state)
        loss = torch.nn.functional.mse_loss(head(y), torch.from_numpy(target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return tuple(s.detach() for s in state)

    return step


def _train_stream(step, length: int, window: int, at=None) -> None:
    """Truncated BPTT over the first `length` steps of the sine stream, window by window, the
    state carried; at(steps) after each window when given."""
    state = None
    for k, (x, target) in enumerate(_windows(length, window), 1):
        state = step(x, target, state)
        if at is not None:
            at(min(k * window, length))


def _memory_worker(length: int, plan: dict) -> dict:
    """Train on one stream of `length` steps by truncated BPTT: each window forward, backward
    and an SGD update, its final state carried into the next window. Measured after a first
    window, which loads and compiles what the engine runs on."""
    import tracemalloc

    m = plan["memory"]
    step = _numpy_window_step(m["hidden"], 0.01)
    _train_stream(step, m["window"], m["window"])
    before = _rss_mb()
    tracemalloc.start()                          # it sees NumPy's arrays: NumPy reports them
    t0 = time.perf_counter()
    _train_stream(step, length, m["window"])
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"steps": length, "rss_growth_mb": _rss_mb() - before, "tracemalloc_peak_mb": peak,
            "seconds": seconds}


def stream_memory(engine: str, marks: list[int], hidden: int = 64, window: int = 100,
                  progress=None) -> list[dict]:
    """Truncated-BPTT training of one engine ("numpy" or "torch") on one sine stream of
    marks[-1] steps, the state carried from window to window, in this process: at each mark
    (steps), the growth of the peak RSS since the first window (which loads and compiles what
    the engine runs on) and the seconds so far. Flat memory: the growth stops. progress(steps)
    after every window, if given (benchmarks/long_stream.py)."""
    step = {"numpy": _numpy_window_step, "torch": _torch_window_step}[engine](hidden, 0.01)
    _train_stream(step, window, window)
    before, t0, rows = _rss_mb(), time.perf_counter(), []

    def at(steps: int) -> None:
        if steps in marks:
            rows.append({"steps": steps, "rss_growth_mb": _rss_mb() - before,
                         "seconds": time.perf_counter() - t0})
        if progress is not None:
            progress(steps)

    _train_stream(step, max(marks), window, at)
    return rows


def _child_main(argv: list[str]) -> None:
    """`python -m lstmlab.bench worker SIDE PLAN`, `... variants torch PLAN` or `... memory
    numpy LENGTH PLAN`: print one JSON line; {"missing": PACKAGE} when the side's library is
    not installed."""
    kind, side, *rest = argv
    plan = json.loads(rest[-1])
    try:
        if kind == "memory":
            answer = _memory_worker(int(rest[0]), plan)
        elif kind == "variants":
            answer = _variants_worker(plan)
        else:
            answer = {"numpy": _numpy_worker, "torch": _torch_worker,
                      "onnxruntime": _onnxruntime_worker}[side](plan)
    except ModuleNotFoundError as e:
        if e.name not in EXTRA:
            raise
        answer = {"missing": e.name}
    print(json.dumps(answer))


if __name__ == "__main__":
    _child_main(sys.argv[1:])

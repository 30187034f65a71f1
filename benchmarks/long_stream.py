"""Very long streams: truncated BPTT over 10^6 steps of one stream, in both engines, memory flat.

Each engine trains an LSTM (1 input, 64 units, a linear head, plain SGD) on one sine stream
window by window (100 steps each), the final state carried into the next window, in a process
of its own (lstmlab.bench.stream_memory), and reports the growth of its peak resident memory
since the first window at 10^4, 10^5 and 10^6 steps. Flat: the growth stops (lstmlab.bench's
rule: the last at most 10 % plus MEMORY_SLACK_MB above the first). That the carried state
resumes exactly from a checkpoint is tested in tests/test_train.py and test_tasks_charlm.py.

    .venv/bin/python benchmarks/long_stream.py [--steps 10000,100000,1000000]
        [--engines numpy,torch] [--out DIR]

About 30 s for the NumPy engine and 30-60 s for the torch engine on 2 cores. --out writes
long_stream.json and long_stream.png (the growth against the steps).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lstmlab.bench import MEMORY_SLACK_MB

CHILD = """
import json, sys
from lstmlab.bench import stream_memory
marks = json.loads(sys.argv[2])
def progress(steps):
    if steps % 10_000 == 0:
        print(steps, file=sys.stderr, flush=True)
print(json.dumps(stream_memory(sys.argv[1], marks, progress=progress)))
"""


def measure(engine: str, marks: list[int], bar: Progress) -> list[dict]:
    """stream_memory in a child process, its progress on `bar`."""
    task = bar.add_task(engine, total=max(marks))
    p = subprocess.Popen([sys.executable, "-c", CHILD, engine, json.dumps(marks)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None and p.stdout is not None
    for line in p.stderr:
        if line.strip().isdigit():
            bar.update(task, completed=int(line))
    out = p.stdout.read()
    if p.wait() != 0:
        raise SystemExit(f"the {engine} child failed (exit {p.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def figure(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for engine, rows in results.items():
        ax.plot([r["steps"] for r in rows], [r["rss_growth_mb"] for r in rows], "o-", label=engine)
    ax.set_xscale("log")
    ax.set_xlabel("steps of the stream (truncated BPTT, windows of 100)")
    ax.set_ylabel("peak RSS growth since the first window, MiB")
    ax.set_ylim(bottom=0, top=max(5.0, 1.2 * max(r["rss_growth_mb"] for rows in results.values()
                                                   for r in rows)))
    ax.set_title("memory of training on one long stream: flat when the line levels off")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="10000,100000,1000000")
    ap.add_argument("--engines", default="numpy,torch")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    marks = [int(v) for v in args.steps.split(",")]
    if any(m % 100 for m in marks):
        raise SystemExit("--steps: each mark must be a multiple of the window, 100")
    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}"),
                  TextColumn("steps"), TimeRemainingColumn(), console=console) as bar:
        results = {e: measure(e, marks, bar) for e in args.engines.split(",")}
    table = Table("engine", *(f"{m:,} steps\nMiB (s)" for m in marks), "flat",
                  title="truncated BPTT on one sine stream (1 -> 64 units, windows of 100):\n"
                        "peak RSS growth since the first window")
    for engine, rows in results.items():
        first, last = rows[0]["rss_growth_mb"], rows[-1]["rss_growth_mb"]
        flat = last <= 1.1 * first + MEMORY_SLACK_MB
        table.add_row(engine, *(f"{r['rss_growth_mb']:.1f} ({r['seconds']:.0f})" for r in rows),
                      "yes" if flat else "NO")
    console.print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "long_stream.json").write_text(json.dumps(results, indent=2) + "\n")
        figure(args.out / "long_stream.png", results)
        console.print(f"wrote {args.out / 'long_stream.json'} and {args.out / 'long_stream.png'}")


if __name__ == "__main__":
    main()

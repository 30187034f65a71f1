"""Data larger than memory: `lstmlab prepare` and training from the file it writes.

charlm: writes a text of random letters, spaces and line ends (English letter frequencies) of
each size given, prepares it (`lstmlab prepare charlm --text`, read as a stream three times),
then trains `lstmlab train charlm -o prepared=DIR` (the default model: 256 units, batches of
64 x 100 characters).

forecast: writes a one-column CSV of each number of values given (an hourly-like series:
a daily cycle, a random walk and noise, in whole units), prepares it (`lstmlab prepare
forecast --csv`, read once as a stream, season 24), then trains `lstmlab train forecast -o
prepared=DIR` (the default model: 64 units, batches of 64 windows of a week), scoring 10,000
validation and 10,000 test origins.

Each training runs for 100 steps in a child process; the table prints each stage's seconds
and the process's peak resident memory (its own, from wait4), so the sizes can be compared:
issue 15 asks for at most 200 MB more at 1 GB of text than at 10 MB, and the same for a
series of 10^8 values.

    .venv/bin/python benchmarks/large_data.py [--texts 10e6,1e9] [--series 1e6,1e8]
                                              [--steps 100] [--keep DIR]

About 10 minutes and 4 GB of disk on 2 cores (the data and its prepared files, in a
temporary folder removed afterwards unless --keep is given).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

# English letter frequencies (%), then the space and the line end
LETTERS = b"etaoinshrdlcumwfgypbvkjxqz \n"
WEIGHTS = np.array([12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4,
                    2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1, 18.0, 1.2])


def write_text(path: Path, size: int, seed: int = 0) -> None:
    """`size` bytes of random letters, spaces and line ends, written 8 MB at a time."""
    rng, p = np.random.default_rng(seed), WEIGHTS / WEIGHTS.sum()
    alphabet = np.frombuffer(LETTERS, dtype=np.uint8)
    with open(path, "wb") as f:
        for start in range(0, size, 1 << 23):
            f.write(alphabet[rng.choice(len(alphabet), min(1 << 23, size - start), p=p)].tobytes())


def run(args: list[str]) -> tuple[dict, float, float]:
    """(the JSON it printed, seconds, peak RSS MiB) of `python -m lstmlab ARGS --json`."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "lstmlab", *args, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"lstmlab {' '.join(args)} failed: {out.strip()[-300:]}")
    return json.loads(out.strip().splitlines()[-1]), time.perf_counter() - t0, usage.ru_maxrss / 1024


def write_series(path: Path, n: int, seed: int = 0) -> None:
    """A one-column CSV of `n` whole numbers: a daily cycle (24 steps), a random walk and
    noise, written a million values at a time."""
    rng, level = np.random.default_rng(seed), 0.0
    with open(path, "w") as f:
        f.write("load\n")
        for start in range(0, n, 1 << 20):
            t = np.arange(start, min(n, start + (1 << 20)))
            walk = level + np.cumsum(rng.normal(0, 2, len(t)))
            level = float(walk[-1])
            y = np.round(1000 + 300 * np.sin(2 * np.pi * t / 24) + walk + rng.normal(0, 30, len(t)))
            f.write("\n".join(map(str, y.astype(np.int64).tolist())) + "\n")


def charlm_row(folder: Path, size: int, steps: int, console) -> dict:
    text, prepared, runs = folder / f"text-{size}.txt", folder / f"text-{size}", folder / f"run-text-{size}"
    console.print(f"charlm, {size / 1e6:,.0f} MB: writing the text ...")
    write_text(text, size)
    console.print("  preparing ...")
    info, prep_s, prep_mb = run(["prepare", "charlm", "--text", str(text), "--out", str(prepared)])
    text.unlink()
    console.print(f"  training {steps} steps ...")
    result, train_s, train_mb = run([
        "train", "charlm", "-o", f"prepared={prepared}", "-o", "test_chars=100000",
        "--steps", str(steps), "--eval-every", str(steps), "--out", str(runs)])
    return {"task": "charlm", "data": f"{size / 1e6:,.0f} MB of text", "size": info["characters"],
            "prepare_s": prep_s, "prepare_peak_mb": prep_mb, "train_s": train_s,
            "train_peak_mb": train_mb, "test": f"{result['metrics']['test']['bits_per_char']:.3f} bits/char"}


def forecast_row(folder: Path, n: int, steps: int, console) -> dict:
    csv, prepared, runs = folder / f"series-{n}.csv", folder / f"series-{n}", folder / f"run-series-{n}"
    console.print(f"forecast, {n:,} values: writing the CSV ...")
    write_series(csv, n)
    console.print(f"  preparing {csv.stat().st_size / 1e6:,.0f} MB ...")
    info, prep_s, prep_mb = run(["prepare", "forecast", "--csv", str(csv), "--column", "load",
                                 "-o", "season=24", "--out", str(prepared)])
    csv.unlink()
    console.print(f"  training {steps} steps ...")
    result, train_s, train_mb = run([
        "train", "forecast", "-o", f"prepared={prepared}", "-o", "season=24", "--horizon", "24",
        "--steps", str(steps), "--eval-every", str(steps), "--out", str(runs)])
    test, naive = result["metrics"]["test"], result["baselines"]["seasonal_naive"]
    return {"task": "forecast", "data": f"{n:,} values", "size": info["values"],
            "prepare_s": prep_s, "prepare_peak_mb": prep_mb, "train_s": train_s,
            "train_peak_mb": train_mb,
            "test": f"MASE {test['mase']:.3f}, s. naive {naive['mase']:.3f}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", default="10e6,1e9", help="charlm text sizes in bytes, comma-separated "
                                                         "(empty: none)")
    ap.add_argument("--series", default="1e6,1e8", help="forecast series lengths in values, "
                                                         "comma-separated (empty: none)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--keep", type=Path, default=None, help="keep the prepared data and runs here")
    args = ap.parse_args()

    def sizes(arg: str) -> list[int]:
        return [int(float(v)) for v in arg.split(",") if v.strip()]

    console = Console(width=120)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="lstmlab-large-data-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    try:
        rows += [charlm_row(folder, size, args.steps, console) for size in sizes(args.texts)]
        rows += [forecast_row(folder, n, args.steps, console) for n in sizes(args.series)]
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    table = Table("task", "data", "prepare s", "prepare\npeak MiB", f"train {args.steps} steps s",
                  "train\npeak MiB", "test", title="training from prepared data (lstmlab prepare): "
                                                    "peak resident memory")
    for r in rows:
        table.add_row(r["task"], r["data"], f"{r['prepare_s']:.1f}", f"{r['prepare_peak_mb']:.0f}",
                      f"{r['train_s']:.1f}", f"{r['train_peak_mb']:.0f}", r["test"])
    console.print(table)
    for task in ("charlm", "forecast"):
        mine = [r for r in rows if r["task"] == task]
        if len(mine) > 1:
            console.print(f"{task}: training's peak with {mine[-1]['data']}: "
                          f"{mine[-1]['train_peak_mb'] - mine[0]['train_peak_mb']:+.0f} MiB against "
                          f"{mine[0]['data']}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

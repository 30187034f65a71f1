"""A text larger than memory: `lstmlab prepare charlm` and training from its file of ids.

Writes a text of random letters, spaces and line ends (English letter frequencies) of each
size given, prepares it (`lstmlab prepare charlm --text`, read as a stream three times), then
trains `lstmlab train charlm -o prepared=DIR` for 100 steps (the default model: 256 units,
batches of 64 x 100 characters) in a child process, and prints each stage's seconds and the
training process's peak resident memory (its own, from wait4), so the sizes can be compared:
issue 15 asks for at most 200 MB more at 1 GB than at 10 MB.

    .venv/bin/python benchmarks/large_text.py [--sizes 10e6,1e9] [--steps 100] [--keep DIR]

About 3 minutes and 2.2 GB of disk for 1 GB on 2 cores (the text and its ids, in a
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10e6,1e9", help="text sizes in bytes, comma-separated")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--keep", type=Path, default=None, help="keep the texts and runs here")
    args = ap.parse_args()
    sizes = [int(float(v)) for v in args.sizes.split(",")]
    console = Console()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="lstmlab-large-text-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for size in sizes:
            text, prepared = folder / f"text-{size}.txt", folder / f"prepared-{size}"
            runs = folder / f"run-{size}"
            console.print(f"{size / 1e6:,.0f} MB: writing the text ...")
            t0 = time.perf_counter()
            write_text(text, size)
            written = time.perf_counter() - t0
            console.print("  preparing ...")
            info, prep_s, prep_mb = run(["prepare", "charlm", "--text", str(text), "--out", str(prepared)])
            console.print(f"  training {args.steps} steps ...")
            result, train_s, train_mb = run([
                "train", "charlm", "-o", f"prepared={prepared}", "-o", "test_chars=100000",
                "--steps", str(args.steps), "--eval-every", str(args.steps), "--out", str(runs)])
            rows.append({"bytes": size, "characters": info["characters"], "write_s": written,
                         "prepare_s": prep_s, "prepare_peak_mb": prep_mb, "train_s": train_s,
                         "train_peak_mb": train_mb,
                         "test_bits_per_char": result["metrics"]["test"]["bits_per_char"]})
            if args.keep is None:
                text.unlink()
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    table = Table("text", "prepare s", "prepare\npeak MiB", f"train {args.steps} steps s",
                  "train\npeak MiB", "test bits\nper char",
                  title="charlm from a prepared text (lstmlab prepare): peak resident memory")
    for r in rows:
        table.add_row(f"{r['bytes'] / 1e6:,.0f} MB", f"{r['prepare_s']:.1f}", f"{r['prepare_peak_mb']:.0f}",
                      f"{r['train_s']:.1f}", f"{r['train_peak_mb']:.0f}", f"{r['test_bits_per_char']:.3f}")
    console.print(table)
    if len(rows) > 1:
        console.print(f"training's peak at {rows[-1]['bytes'] / 1e6:,.0f} MB: "
                      f"{rows[-1]['train_peak_mb'] - rows[0]['train_peak_mb']:+.0f} MiB against "
                      f"{rows[0]['bytes'] / 1e6:,.0f} MB")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

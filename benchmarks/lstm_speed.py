"""Speed of `lstmlab.numpy.LSTM` against `torch.nn.LSTM` (float32, CPU).

Times the forward pass and the forward+backward pass (gradients of the weights and of
the input) at (T, B, I, H) = (100, 32, 32, 128) and (200, 64, 64, 256), and prints the
median (and min) in milliseconds with the ratio numpy/torch.

Each (engine, shape) runs in its own child process, which imports only its own engine:
NumPy's BLAS threads and torch's OpenMP threads slow each other down inside one process.

    .venv/bin/python benchmarks/lstm_speed.py [--shapes small|large|all] [--repeats N]
                                              [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = {"small": (100, 32, 32, 128), "large": (200, 64, 64, 256)}
DEFAULT_REPEATS = {"small": 200, "large": 60}  # the whole script takes about a minute on 2 cores
WARMUP = 3


def _time(fn, repeats: int) -> dict:
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times)}


def _blas_threads():
    """OpenBLAS's thread count in this process (threadpoolctl if present, else ctypes)."""
    try:
        from threadpoolctl import threadpool_info
        return next((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), None)
    except ImportError:
        pass
    import ctypes
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
    for lib in libs:
        for sym in ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
                    "openblas_get_num_threads64_"):
            fn = getattr(ctypes.CDLL(lib), sym, None)
            if fn is not None:
                return fn()
    return None


def worker_numpy(T, B, I, H, repeats, threads):  # threads: set by the parent's OPENBLAS_NUM_THREADS
    import numpy as np

    import lstmlab.numpy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    m = lstmlab.numpy.LSTM(I, H, dtype=np.float32, seed=0)

    def fwd_bwd():
        y, _, cache = m.forward(x)
        m.backward(cache, dy)

    return {"version": np.__version__, "threads": _blas_threads(),
            "fwd": _time(lambda: m(x), repeats), "fwd_bwd": _time(fwd_bwd, repeats)}


def worker_torch(T, B, I, H, repeats, threads):
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    dy = torch.randn(T, B, H)
    mod = torch.nn.LSTM(I, H)
    xg = x.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            mod(x)

    def fwd_bwd():
        mod.zero_grad(set_to_none=True)
        xg.grad = None
        y, _ = mod(xg)
        y.backward(dy)

    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "fwd": _time(fwd, repeats), "fwd_bwd": _time(fwd_bwd, repeats)}


def run_child(engine, shape, repeats, threads) -> dict:
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    cmd = [sys.executable, __file__, "--worker", engine, "--shape", *map(str, shape),
           "--repeats", str(repeats)] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lstmlab.numpy.LSTM vs torch.nn.LSTM, float32: median ms, ratio = numpy/torch")
    for col in ("(T, B, I, H)", "numpy fwd", "torch fwd", "ratio",
                "numpy fwd+bwd", "torch fwd+bwd", "ratio"):
        table.add_column(col, justify="left" if col.startswith("(") else "right")
    for r in report["results"]:
        n, t = r["numpy"], r["torch"]
        table.add_row(str(tuple(r["shape"])),
                      f"{n['fwd']['median_ms']:.1f}", f"{t['fwd']['median_ms']:.1f}",
                      f"{r['ratio_fwd']:.2f}×",
                      f"{n['fwd_bwd']['median_ms']:.1f}", f"{t['fwd_bwd']['median_ms']:.1f}",
                      f"{r['ratio_fwd_bwd']:.2f}×")
    m = report["meta"]
    console = Console(width=max(100, Console().width))
    console.print(table)
    repeats = ", ".join(f"{n} {k}" for k, n in m["repeats"].items())
    print(f"numpy {m['numpy_version']} (BLAS threads: {m['numpy_threads']}), "
          f"torch {m['torch_version']} (threads: {m['torch_threads']}); "
          f"repeats: {repeats} (mins: --json)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", choices=("small", "large", "all"), default="all")
    p.add_argument("--repeats", type=int, help="timed calls per figure "
                   f"(default: {DEFAULT_REPEATS['small']} small, {DEFAULT_REPEATS['large']} large)")
    p.add_argument("--threads", type=int, help="threads for both engines (default: libraries' own)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--worker", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--shape", type=int, nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.worker:  # child process: time one engine at one shape, print one JSON line
        fn = worker_numpy if a.worker == "numpy" else worker_torch
        print(json.dumps(fn(*a.shape, a.repeats, a.threads)))
        return

    names = list(SHAPES) if a.shapes == "all" else [a.shapes]
    results, meta = [], {"repeats": {}}
    for name in names:
        shape, repeats = SHAPES[name], a.repeats or DEFAULT_REPEATS[name]
        meta["repeats"][name] = repeats
        r = {"shape": list(shape)}
        for engine in ("numpy", "torch"):
            print(f"timing {engine} at {shape} ({repeats} repeats) ...", file=sys.stderr)
            child = run_child(engine, shape, repeats, a.threads)
            meta[f"{engine}_version"] = child.pop("version")
            meta[f"{engine}_threads"] = child.pop("threads")
            r[engine] = child
        for k in ("fwd", "fwd_bwd"):
            r[f"ratio_{k}"] = r["numpy"][k]["median_ms"] / r["torch"][k]["median_ms"]
        results.append(r)

    report = {"meta": meta, "results": results}
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()

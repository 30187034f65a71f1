"""Trainings at once on the same cores: each one's time against its time alone.

Trains `lstmlab train sine --steps 300` (a real training: data, updates, validation, test,
figures) once alone, then N copies at once as separate processes, for each engine, with
lstmlab's thread setting (LSTMLAB_THREADS unset: see lstmlab.threads) and without it
(LSTMLAB_THREADS=off: PyTorch's and OpenBLAS's own defaults, lstmlab's behaviour before),
and prints each run's seconds (the `seconds` of its result: training, test and figures;
not the imports) and the ratio of the slowest copy to the run alone. With N trainings on C
cores the ideal ratio is max(1, N/C); threads spinning against each other made it 30-100x.

    .venv/bin/python benchmarks/concurrent_training.py [--copies N] [--steps S]
        [--engines torch,numpy] [--modes default,off] [--limit SECONDS] [--json]

A group (one run alone, or N at once) that passes --limit seconds is stopped and shown as
"> limit"; the `off` rows on a busy machine usually are, so the whole script takes 3 to 6
minutes on 2 cores. The thread variables of the calling shell (OMP_NUM_THREADS, ...) are not
passed on: each mode sets its own. Other work on the machine counts against every row: run
it on a quiet machine, and read the ratios rather than the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# what the children must not inherit: each mode decides the threads itself
THREAD_VARS = ("LSTMLAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
MODES = {"default": None, "off": "off"}    # mode -> LSTMLAB_THREADS (None: unset); or a count


def run_group(copies: int, engine: str, mode: str, steps: int, limit: float) -> list[dict]:
    """Start `copies` trainings at once; wait for all (or kill all at `limit` seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    value = MODES.get(mode, mode)
    if value is not None:
        env["LSTMLAB_THREADS"] = value
    folder = tempfile.mkdtemp(prefix="lstmlab-concurrent-")
    try:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "lstmlab", "train", "sine", "--engine", engine,
             "--steps", str(steps), "--eval-every", str(steps), "--out", f"{folder}/run{i}",
             "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True) for i in range(copies)]   # a session each: killed whole
        started, stopped = time.perf_counter(), False
        results: list[dict] = []
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=max(0.1, started + limit - time.perf_counter()))
            except subprocess.TimeoutExpired:
                stopped = True
                for q in procs:
                    if q.poll() is None:
                        os.killpg(q.pid, signal.SIGKILL)
                p.communicate()
            if stopped:                         # this one or an earlier one passed the limit
                results.append({"seconds": None, "wall": None})
                continue
            if p.returncode != 0:
                sys.exit(f"a training failed (exit {p.returncode}): {stderr.decode()[-400:]}")
            out = json.loads(stdout)
            results.append({"seconds": out["seconds"], "threads": out.get("threads"),
                            "wall": round(time.perf_counter() - started, 2)})
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _secs(r: dict, limit: float) -> str:
    return f"> {limit:.0f}" if r["seconds"] is None else f"{r['seconds']:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=2, help="trainings at once (default 2)")
    ap.add_argument("--steps", type=int, default=300, help="training steps of each (default 300)")
    ap.add_argument("--engines", default="torch,numpy")
    ap.add_argument("--modes", default="default,off",
                    help="LSTMLAB_THREADS per row: default (unset), off, or a count")
    ap.add_argument("--limit", type=float, default=60.0,
                    help="seconds a group may take before it is stopped (default 60)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for engine in args.engines.split(","):
        for mode in args.modes.split(","):
            alone = run_group(1, engine, mode, args.steps, args.limit)[0]
            together = run_group(args.copies, engine, mode, args.steps, args.limit)
            worst = None if any(r["seconds"] is None for r in together) else max(
                r["seconds"] for r in together)
            ratio = (None if alone["seconds"] is None or worst is None
                     else round(worst / alone["seconds"], 2))
            rows.append({"engine": engine, "mode": mode, "threads": alone.get("threads"),
                         "alone": alone, "together": together, "ratio": ratio})
            if not args.json:
                print(f"  {engine:6} {mode:8} done", file=sys.stderr, flush=True)
    machine = {"cores": cores, "copies": args.copies, "steps": args.steps, "limit": args.limit,
               "load_before": load_before,
               "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}))
        return
    load = ("" if load_before is None else
            f" (load average {load_before:.1f} before, {machine['load_after']:.1f} after)")
    print(f"{args.copies} trainings at once on {cores} cores, lstmlab train sine --steps "
          f"{args.steps}: seconds of each run{load}")
    print(f"{'engine':8}{'LSTMLAB_THREADS':18}{'threads':>8}{'alone s':>10}   "
          f"{'at once s (each)':20}{'ratio':>8}")
    for r in rows:
        label = {"default": "unset (default)", "off": "off (before)"}.get(r["mode"], r["mode"])
        each = ", ".join(_secs(t, args.limit) for t in r["together"])
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        if r["ratio"] is None and r["alone"]["seconds"] is not None:
            ratio = f"> {args.limit / r['alone']['seconds']:.1f}"
        threads = "-" if r["threads"] in (None, 0) else str(r["threads"])
        print(f"{r['engine']:8}{label:18}{threads:>8}{_secs(r['alone'], args.limit):>10}   "
              f"{each:20}{ratio:>8}")


if __name__ == "__main__":
    main()

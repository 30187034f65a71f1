"""Does `lstmlab serve` keep answering under load? Two scenarios, each against a real server
process (`python -m lstmlab serve`) on a fresh runs folder, driven by Debian's chromium:

    tabs       one training running, N_TABS browser tabs watching it (Train view, live
               curves and gates over the WebSocket)
    trainings  N_TRAININGS trainings at once, one tab watching

In each it prints the slowest and median page load (navigation until the page is ready,
every tab opened one after another while the others stay open), the slowest /api/runs
answer, and the stream's frame rate (frames drawn and received per second in one more tab
streaming a noisy sine into a NumPy model with H = 128 at 60 steps/s, over 5 s). The browser
runs on the same machine as the server and the trainings, and headless chromium counts every
tab as visible, so each of them draws.

    .venv/bin/python benchmarks/serve_load.py                 # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/serve_load.py --tabs 20 --trainings 5 --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

TRAINING = {"task": "sine", "engine": "numpy", "settings": {"hidden_size": 64, "steps": 100_000,
                                                          "eval_every": 100}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def _runs(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/runs", timeout=60) as r:
        return json.load(r)


def _timed_get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
    return time.perf_counter() - start


def _load(page, url: str) -> float:
    start = time.perf_counter()
    page.goto(url, timeout=120_000)
    page.wait_for_function("window.lab && window.lab.ready", timeout=120_000)
    return time.perf_counter() - start


def _stream_fps(browser, base: str, seconds: float = 5.0) -> tuple[float, float]:
    page = browser.new_page()
    page.goto(f"{base}/#stream")
    page.wait_for_function("window.lab && window.lab.ready", timeout=120_000)
    page.select_option("#s-run", "stream-h128")
    page.click("#s-connect")
    page.wait_for_function("window.lab.framesDrawn > 0", timeout=120_000)
    page.eval_on_selector("#s-speed", "el => { el.value = 60; el.dispatchEvent(new Event('input')); }")
    page.wait_for_timeout(500)
    a = page.evaluate("[window.lab.framesDrawn, window.lab.framesReceived, performance.now()]")
    page.wait_for_timeout(seconds * 1000)
    b = page.evaluate("[window.lab.framesDrawn, window.lab.framesReceived, performance.now()]")
    page.close()
    elapsed = (b[2] - a[2]) / 1000
    return (b[0] - a[0]) / elapsed, (b[1] - a[1]) / elapsed          # drawn, received


def scenario(browser, base: str, runs: Path, tabs: int, trainings: int) -> dict:
    names = [_post(f"{base}/api/train", {**TRAINING, "name": f"load-{trainings}-{tabs}-{k}"})["run"]
             for k in range(trainings)]
    deadline = time.time() + 120
    while not all((runs / n / "live.json").is_file() for n in names):      # all of them running
        if time.time() > deadline:
            raise SystemExit("the trainings did not start in 120 s")
        time.sleep(0.5)
    pages, loads = [], []
    for _ in range(tabs):
        page = browser.new_page()
        loads.append(_load(page, f"{base}/#train"))
        print(f"  {trainings} training(s): tab {len(loads)} ready in {loads[-1]:.2f} s",
              file=sys.stderr, flush=True)
        if names:
            page.select_option("#t-run", names[0])
        pages.append(page)
    time.sleep(3)                                                 # every tab streaming
    api = max(_timed_get(f"{base}/api/runs") for _ in range(5))
    fps, received = _stream_fps(browser, base)
    curves = min(p.evaluate("window.lab.curvePoints || 0") for p in pages)
    for p in pages:
        p.close()
    for n in names:
        _post(f"{base}/api/control", {"run": n, "action": "stop"})
    deadline = time.time() + 60
    while any(r["state"] in ("running", "paused") for r in _runs(base) if r["run"] in names):
        if time.time() > deadline:
            raise SystemExit("the trainings did not stop in 60 s")
        time.sleep(0.5)
    return {"tabs": tabs, "trainings": trainings, "slowest_load_s": max(loads),
            "median_load_s": statistics.median(loads), "slowest_api_runs_s": api,
            "stream_fps": fps, "stream_received_per_s": received,
            "fewest_curve_points_in_a_tab": curves}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tabs", type=int, default=20)
    ap.add_argument("--trainings", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="serve-load-"))
    subprocess.run([sys.executable, "-m", "lstmlab", "train", "sine", "--out", str(runs / "stream-h128"),
                    "--hidden-size", "128", "--steps", "20", "--eval-every", "10", "--json",
                    "--threads", "1"], check=True, capture_output=True)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "lstmlab", "serve", "--runs", str(runs),
                              "--port", str(port)], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                _timed_get(f"{base}/api/meta")
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("the server did not start in 30 s") from None
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            results = [scenario(browser, base, runs, 1, 0) | {"name": "idle (one tab, no training)"}]
            results.append(scenario(browser, base, runs, args.tabs, 1)
                           | {"name": f"{args.tabs} tabs on one training"})
            results.append(scenario(browser, base, runs, 1, args.trainings)
                           | {"name": f"{args.trainings} trainings at once"})
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
        subprocess.run(["pkill", "-f", str(runs)], check=False)
        shutil.rmtree(runs, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'load':32} {'slowest page':>13} {'median page':>12} {'/api/runs':>10} "
          f"{'stream: drawn/s':>16} {'received/s':>11}")
    for r in results:
        print(f"{r['name']:32} {r['slowest_load_s']:>11.2f} s {r['median_load_s']:>10.2f} s "
              f"{r['slowest_api_runs_s'] * 1000:>7.0f} ms {r['stream_fps']:>16.1f} "
              f"{r['stream_received_per_s']:>11.1f}")


if __name__ == "__main__":
    main()

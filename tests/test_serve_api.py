"""`lstmlab serve`'s API and its safety, driven in-process by Starlette's test client and, for
what only a real server shows (a killed server, a page that vanishes), as a subprocess:
it binds to 127.0.0.1; names and paths outside the runs folder are refused; every request
is validated with a 4xx and one line; nothing is imported or unpickled on request; the
exports load; a training goes start, pause, resume, stop, continue, finish, and outlives
its page and its server."""

import ast
import csv
import inspect
import io
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

import lstmlab
from lstmlab.config import TrainConfig
from lstmlab.serve import app as app_module
from lstmlab.serve import create_app, serve
from lstmlab.tasks import get_task
from lstmlab.train import fit
from tests.conftest import lstmlab as cli
from tests.conftest import one_line_error

# a sine run through the API: small enough to finish in seconds, long enough to control
TRAINING = {"task": "sine", "settings": {"hidden_size": 8, "batch_size": 8, "steps": 300,
                                         "eval_every": 50}, "options": {"test_size": 16}}


def _fit(task, path):
    return fit(task, task.model_config(hidden_size=8),
               TrainConfig(steps=20, batch_size=8, eval_every=10), path)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A runs folder with a sine and a charlm run, a run without a model yet, and links
    planted to the outside: a run folder and a run's file."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "runs"
    _fit(get_task("sine", test_size=16), root / "sine")
    text = base / "small.txt"
    text.write_text("In the beginning (so it is written) was the word.\n" * 60, encoding="utf-8")
    _fit(get_task("charlm", text=str(text), seq_len=20, valid_chars=200), root / "charlm")
    _fit(get_task("forecast", context=12, horizon=3, stat_baselines="none"), root / "forecast")
    (root / "bare").mkdir()
    (root / "bare" / "config.json").write_bytes((root / "sine" / "config.json").read_bytes())
    outside = base / "outside"
    outside.mkdir()
    (outside / "config.json").write_text('{"secret": "outside the runs folder"}')
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "sine" / "leak.json").symlink_to(outside / "config.json")
    return root


@pytest.fixture
def client(root):
    return TestClient(create_app(root))


def refused(r, status=400) -> str:
    """The one-line error of a refused request."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and body["error"] and "\n" not in body["error"], body
    return body["error"]


def wait(condition, what: str, timeout: float = 60.0):
    """condition()'s first true value, polled until `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout:g} s for {what}")


# --- binding ---------------------------------------------------------------------------------
def test_the_server_binds_to_localhost_unless_told():
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    r = cli("serve", "--help")
    assert r.returncode == 0, r.stderr
    assert "[default: 127.0.0.1]" in " ".join(r.stdout.split())


# --- paths -----------------------------------------------------------------------------------
@pytest.mark.parametrize("query, status", [
    ("run=..", 400), ("run=/etc", 400), ("run=%2e%2e%2fx", 400), ("run=..%2F..%2Fetc", 400),
    ("run=sine/figures/x", 400), ("run=.%2E", 400), ("run=", 400), ("run=link", 403),
    ("run=nothing", 404)])
def test_run_names_outside_the_runs_folder_are_refused(client, query, status):
    refused(client.get(f"/api/run?{query}"), status)
    refused(client.get(f"/api/export?{query}&kind=run.zip"), status)
    refused(client.get(f"/api/file?{query}&path=config.json"), status)
    name = dict([query.split("=")])["run"]
    body = {"run": urllib.parse.unquote(name), "analysis": "activations"}
    refused(client.post("/api/inspect", json=body), status)
    refused(client.post("/api/control", json={**body, "action": "stop"}), status)
    for ws_url in (f"/ws/run?{query}", f"/ws/stream?{query}"):
        with client.websocket_connect(ws_url) as ws:
            msg = ws.receive_json()
        assert msg["type"] == "error" and "\n" not in msg["error"], ws_url


def test_a_linked_folder_is_not_listed(client):
    assert {r["run"] for r in client.get("/api/runs").json()} == {"sine", "charlm", "forecast", "bare"}


@pytest.mark.parametrize("path, status", [
    ("../config.json", 400), ("..%2Fconfig.json", 400), ("/etc/passwd", 400),
    ("%2Fetc%2Fpasswd", 400), (".lock", 400), ("figures/../../charlm/config.json", 400),
    ("", 400), ("leak.json", 403), ("nothing.json", 404)])
def test_files_outside_a_run_are_refused(client, path, status):
    error = refused(client.get(f"/api/file?run=sine&path={path}"), status)
    assert "outside the runs folder" not in error


def test_a_runs_file_downloads_as_it_is_on_disk(client, root):
    for rel in ["config.json", "metrics.jsonl", "model.safetensors",
                *(f"figures/{p.name}" for p in (root / "sine" / "figures").glob("*.png"))]:
        r = client.get(f"/api/file?run=sine&path={rel}")
        assert r.status_code == 200 and r.content == (root / "sine" / rel).read_bytes(), rel


# --- validation ------------------------------------------------------------------------------
def _train(**change):
    return json.dumps({**TRAINING, **change}).encode()


def _settings(**change):
    return _train(settings={**TRAINING["settings"], **change})


@pytest.mark.parametrize("body, words", [
    (b'{"task": "sine",', "not JSON"), (b"\xff\xfe", "not JSON"), (b"[" * 100_000, "nests deeper"),
    (b'["sine"]', "JSON object"), (_train(task="os"), "unknown task"),
    (_train(task="../x"), "unknown task"), (_train(task="pickle"), "unknown task"),
    (_train(task="os.system"), "unknown task"), (_train(variant="nope"), "nope"),
    (_train(engine="os"), "not available"),
    (_settings(hidden_size=5000), "between 1 and 1024"), (_settings(hidden_size=0), "between"),
    (_settings(hidden_size=1.5), "whole number"), (_settings(hidden_size="big"), "whole number"),
    (_settings(hidden_size=True), "whole number"), (_settings(lr=-1), "lr must be between"),
    (b'{"task": "sine", "settings": {"lr": NaN}}', "finite number"),
    (_settings(lr=float("inf")), "finite number"),
    (_settings(hiden_size=8), "unknown setting 'hiden_size'"),
    (_settings(optimizer="os"), "optimizer must be one of"), (_train(settings=[1]), "JSON object"),
    (_train(options={"colour": 1}), "no option 'colour'"),
    (_train(options={"test_size": "all"}), "must be an integer"),
    (_train(task="charlm", options={"text": "never-uploaded.txt"}), "uploaded file"),
    (_train(task="charlm", options={"text": "/etc/passwd"}), "uploaded file"),
    (_train(task="charlm", options={"text": "../sine/config.json"}), "uploaded file"),
    (_train(name="../x"), "run name"), (_train(name="a/b"), "run name"),
    (_train(name=".hidden"), "run name"), (_train(name=7), "run name")])
def test_a_bad_training_request_is_refused_and_starts_nothing(client, root, body, words):
    before = sorted(root.iterdir())
    assert words in refused(client.post("/api/train", content=body))
    assert client.app.state.lab.procs == {} and sorted(root.iterdir()) == before


def test_an_existing_run_name_is_a_conflict(client, root):
    before = (root / "sine" / "config.json").read_bytes()
    assert "exists already" in refused(client.post("/api/train", content=_train(name="sine")), 409)
    assert client.app.state.lab.procs == {} and (root / "sine" / "config.json").read_bytes() == before


def test_too_many_trainings_is_429(client, root, monkeypatch):
    monkeypatch.setattr(app_module, "MAX_TRAININGS", 0)
    assert "at most 0 at once" in refused(client.post("/api/train", content=_train(name="more")), 429)
    assert not (root / "more").exists() and client.app.state.lab.procs == {}


def test_uploads_are_limited_and_named(client, root, monkeypatch):
    monkeypatch.setattr(app_module, "MAX_UPLOAD", 100)
    refused(client.put("/api/upload?name=big.txt", content=b"x" * 101), 413)
    refused(client.put("/api/upload?name=big.txt", content=iter([b"x" * 60, b"x" * 60])), 413)
    assert not (root / "uploads" / "big.txt").exists()
    for name in ["..%2Fsine%2Fconfig.json", "%2Ftmp%2Fx", ".bashrc", ""]:
        refused(client.put(f"/api/upload?name={name}", content=b"1\n2\n"))
    assert not (root / "uploads" / ".bashrc").exists()
    r = client.put("/api/upload?name=small.txt", content=b"x" * 100)
    assert r.status_code == 200 and (root / "uploads" / "small.txt").read_bytes() == b"x" * 100


@pytest.mark.parametrize("body, words, status", [
    ({"run": "sine", "analysis": "pickle"}, "analysis must be one of", 400),
    ({"run": "sine", "analysis": "ablate", "unit": 99}, "unit 99 does not exist", 400),
    ({"run": "sine", "analysis": "stepthrough", "unit": 99}, "unit 99 is out of range", 400),
    ({"run": "sine", "analysis": "activations", "input": 10**6}, "past the test split", 400),
    ({"run": "sine", "analysis": "activations", "input": True}, "example number or a text", 400),
    ({"run": "sine", "analysis": "activations", "input": "abc"}, "reads numbers", 400),
    ({"run": "sine", "analysis": "activations", "input": "/etc/passwd"}, "reads numbers", 400),
    ({"run": "sine", "analysis": "activations", "units": 0}, "units must be between", 400),
    ({"run": "sine", "analysis": "activations", "units": [1, 8]}, "a unit must be between 0 and 7", 400),
    ({"run": "sine", "analysis": "activations", "units": []}, "give 1 to 256 units", 400),
    ({"run": "charlm", "analysis": "activations", "input": "zebra"}, "never saw", 400),
    ({"run": "bare", "analysis": "activations"}, "no model yet", 409)])
def test_a_bad_inspection_is_refused(client, body, words, status):
    assert words in refused(client.post("/api/inspect", json=body), status)


def test_activations_of_chosen_units_are_those_units(client):
    ask = {"run": "sine", "analysis": "activations", "input": 0, "steps": 5}
    every = client.post("/api/inspect", json={**ask, "units": 8}).json()
    two = client.post("/api/inspect", json={**ask, "units": [6, 2]}).json()
    assert every["units"] == list(range(8)) and two["units"] == [6, 2]
    for name, m in two["groups"]["l0"].items():
        assert [[row[6], row[2]] for row in every["groups"]["l0"][name]] == m, name


def test_a_series_input_is_numbers_never_a_file_on_the_server(client, tmp_path):
    """A series task's encode_input also reads a file of that name: the server must not."""
    numbers = tmp_path / "series.txt"
    numbers.write_text("".join(f"{np.sin(t / 3):.4f}\n" for t in range(30)))
    body = {"run": "sine", "analysis": "activations", "input": str(numbers)}
    refused(client.post("/api/inspect", json=body))
    r = client.post("/api/inspect", json={**body, "input": "0.1, 0.5, 0.9, 0.2"})
    assert r.status_code == 200 and r.json()["steps"] == ["0.1", "0.5", "0.9", "0.2"]


def test_a_stream_needs_a_model(client):
    with client.websocket_connect("/ws/stream?run=bare") as ws:
        msg = ws.receive_json()
    assert msg["type"] == "error" and "no model yet" in msg["error"]


@pytest.mark.parametrize("query, words", [("kind=model.pkl", "export kind must be one of"),
                                          ("kind=", "export kind"), ("", "export kind")])
def test_an_unknown_export_is_refused(client, query, words):
    assert words in refused(client.get(f"/api/export?run=sine&{query}"))


@pytest.mark.parametrize("body, status", [({"run": "sine", "action": "pause"}, 409),
                                          ({"run": "sine", "action": "continue"}, 409),
                                          ({"run": "sine", "action": "kill"}, 400)])
def test_a_run_that_is_not_training_takes_no_control(client, body, status):
    refused(client.post("/api/control", json=body), status)


# --- no import, no pickle --------------------------------------------------------------------
def test_the_server_has_no_way_to_import_or_unpickle_from_a_request():
    tree = ast.parse(Path(app_module.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom)}
    assert not imported & {"pickle", "dill", "marshal", "shelve", "joblib"}
    called = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None)
              for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not called & {"import_module", "__import__", "eval", "exec"}
    assert "allow_pickle" not in Path(app_module.__file__).read_text()


class _Planted:
    """Unpickling this writes the file `marker`: the proof that something was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_a_pickle_in_place_of_a_model_is_refused_unread(root, tmp_path):
    import shutil

    runs, marker = tmp_path / "runs", tmp_path / "unpickled.txt"
    shutil.copytree(root / "sine", runs / "pickled", symlinks=True)
    (runs / "pickled" / "model.safetensors").write_bytes(pickle.dumps(_Planted(marker)))
    c = TestClient(create_app(runs))
    for analysis in ("activations", "stepthrough"):
        refused(c.post("/api/inspect", json={"run": "pickled", "analysis": analysis}))
    refused(c.get("/api/export?run=pickled&kind=model.onnx"))
    with c.websocket_connect("/ws/stream?run=pickled") as ws:
        assert ws.receive_json()["type"] == "error"
    assert not marker.exists()


# --- exports ---------------------------------------------------------------------------------
def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_metrics_export_as_json_and_csv(client, root):
    rows = _rows(root / "sine")
    r = client.get("/api/export?run=sine&kind=metrics.json")
    assert r.status_code == 200 and r.json() == rows
    r = client.get("/api/export?run=sine&kind=metrics.csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert r.status_code == 200 and len(table) == len(rows) > 2
    for got, row in zip(table, rows):
        assert got["step"] == str(row["step"]) and got["split"] == row["split"]
        assert (float(got["loss"]) if got["loss"] else None) == row.get("loss")


def test_the_model_exports_load(client, root, tmp_path):
    import onnxruntime as ort

    model = lstmlab.load(root / "sine" / "model.safetensors")
    r = client.get("/api/export?run=sine&kind=model.safetensors")
    assert r.status_code == 200
    (tmp_path / "m.safetensors").write_bytes(r.content)
    got = lstmlab.load(tmp_path / "m.safetensors")
    assert got.params.keys() == model.params.keys()
    for k, v in model.params.items():
        np.testing.assert_array_equal(got.params[k], v)
    r = client.get("/api/export?run=sine&kind=model.onnx")
    assert r.status_code == 200
    sess = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((7, 3, 1)).astype(np.float32)
    np.testing.assert_allclose(sess.run(["y"], {"x": x})[0], model(x)[0], atol=1e-5, rtol=0)


def test_the_run_zip_holds_the_run_and_no_dotfile_or_link(client, root):
    r = client.get("/api/export?run=sine&kind=run.zip")
    assert r.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert {"sine/config.json", "sine/metrics.jsonl", "sine/model.safetensors"} <= set(names)
    assert not any(part.startswith(".") for n in names for part in n.split("/"))
    assert "sine/leak.json" not in names and (root / "sine" / ".lock").exists()


# --- a training through the API --------------------------------------------------------------
def _step(run: Path) -> int:
    try:
        return json.loads((run / "live.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def _stop_all(lab):
    """Ends the trainings a test's server started (by their pid), if any are left."""
    for proc in lab.procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_training_starts_pauses_resumes_stops_continues_and_finishes(tmp_path):
    c = TestClient(create_app(tmp_path / "runs"))
    lab, run = c.app.state.lab, tmp_path / "runs" / "life"
    try:
        state = lambda: c.get("/api/run?run=life").json()["state"]    # noqa: E731
        # 1,000 steps (5 s a 300 here): the run must still be training when it is stopped,
        # however long the checks before take
        body = _train(name="life", settings={**TRAINING["settings"], "steps": 1000})
        r = c.post("/api/train", content=body)
        assert r.status_code == 200 and r.json() == {"run": "life", "state": "running"}
        wait(lambda: (run / "model.safetensors").is_file(), "the first checkpoint")
        with c.websocket_connect("/ws/run?run=life") as ws:
            seen = set()
            wait(lambda: seen.add(ws.receive_json()["type"]) or {"metrics", "status", "state"} <= seen,
                 "the live messages")
        assert state() == "running"
        assert c.post("/api/control", json={"run": "life", "action": "pause"}).json()["state"] == "paused"
        assert state() == "paused"
        time.sleep(0.2)                                  # a write under way lands
        paused = _step(run)
        time.sleep(1.0)
        assert _step(run) == paused < 1000
        assert c.post("/api/control", json={"run": "life", "action": "resume"}).status_code == 200
        wait(lambda: _step(run) > paused, "the step to grow again")
        assert _step(run) < 1000
        assert c.post("/api/control", json={"run": "life", "action": "stop"}).status_code == 200
        wait(lambda: state() == "stopped", "the run to stop")
        assert (run / "checkpoint.safetensors").is_file()
        assert not any(r["split"] == "test" for r in _rows(run))
        r = c.post("/api/control", json={"run": "life", "action": "continue"})
        assert r.status_code == 200, r.text
        wait(lambda: state() == "finished", "the run to finish", timeout=120)
    finally:
        _stop_all(lab)
    assert _rows(run)[-1]["split"] == "test"
    r = cli("evaluate", run, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["metrics"]["test"].keys() == {"mse", "free_run_mse"}


# --- a real server: killed, and a page that vanishes -----------------------------------------
@pytest.fixture
def server(tmp_path):
    """(base URL, the server process, its runs folder): `lstmlab serve` on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "server.log", "wb")                  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "lstmlab", "serve", "--runs", tmp_path / "runs",
                             "--port", str(port)], stdout=log, stderr=log,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: proc.poll() is not None or _get(url + "/api/meta") is not None, "the server")
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        yield url, proc, tmp_path / "runs"
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def _post(url, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _training(run: Path) -> int | None:
    """The pid of the process training into `run`, if it is alive (not a zombie, which its
    parent, a killed server, never reaps)."""
    try:
        pid = json.loads((run / "live.json").read_text())["pid"]
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError):
        return None
    alive = stat.rsplit(")", 1)[1].split()[0] not in "ZX"
    return pid if alive and str(run.resolve()).encode() in cmdline else None


def _kill_training(run: Path):
    """Ends the training a test's server started into `run`, if it is still going."""
    pid = _training(run)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)


def test_a_killed_server_leaves_the_training_going_and_resumable(server):
    url, proc, runs = server
    run = runs / "orphan"
    try:
        assert _post(url + "/api/train", _train(name="orphan"))["state"] == "running"
        wait(lambda: (run / "checkpoint.safetensors").is_file(), "the first checkpoint")
        pid = json.loads((run / "live.json").read_text())["pid"]
        proc.kill()
        proc.wait()
        step = _step(run)
        wait(lambda: _step(run) > step, "the training to go on without its server")
        assert _training(run) == pid
        os.kill(pid, signal.SIGINT)                      # Ctrl-C, as in a terminal
        wait(lambda: _training(run) is None, "the training to end on Ctrl-C")
    finally:
        _kill_training(run)
    assert not any(r["split"] == "test" for r in _rows(run))
    r = cli("train", "sine", "--out", run, "--resume", "--json")
    assert r.returncode == 0, r.stderr
    assert _rows(run)[-1]["split"] == "test" and _rows(run)[-2]["step"] == 300


def test_a_page_closed_abruptly_leaves_the_training_to_finish(server):
    url, proc, runs = server
    try:
        assert _post(url + "/api/train", _train(name="page"))["state"] == "running"
        wait(lambda: (runs / "page" / "live.json").is_file(), "the training to start")
        s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=30)
        s.sendall(b"GET /ws/run?run=page HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        got = b""
        while b'"state"' not in got:                    # the page is told the run's state
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        assert got.startswith(b"HTTP/1.1 101")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST: no goodbye
        s.close()
        wait(lambda: (_get(url + "/api/run?run=page") or {}).get("state") == "finished",
             "the training to finish", timeout=120)
    finally:
        _kill_training(runs / "page")
    assert proc.poll() is None and _rows(runs / "page")[-1]["split"] == "test"


def _frames(ws, n: int) -> list[np.ndarray]:
    """The next n binary frames of a stream (float32: t, input, prediction, the rows' units)."""
    out = []
    while len(out) < n:
        msg = ws.receive()
        if msg.get("bytes") is not None:
            out.append(np.frombuffer(msg["bytes"], "<f4"))
    return out


def _next_json(ws) -> dict:
    """The next text message of a stream, past the binary frames before it."""
    while True:
        msg = ws.receive()
        if msg.get("text") is not None:
            return json.loads(msg["text"])


@pytest.mark.parametrize("run", ["sine", "forecast"])
def test_a_series_stream_sends_frames_of_its_layout(client, run):
    with client.websocket_connect(f"/ws/stream?run={run}") as ws:
        layout = ws.receive_json()
        assert layout["type"] == "layout" and layout["kind"] == "series"
        assert [tuple(r) for r in layout["rows"]] == [("l0", k) for k in ("i", "f", "g", "c", "o", "h")]
        ws.send_json({"type": "config", "speed": 120, "noise": 0.2, "freq": 0.1})
        frames = _frames(ws, 30)
        assert all(f.size == 3 + 6 * layout["units"] for f in frames)
        t = [int(f[0]) for f in frames]
        assert t == list(range(t[0], t[0] + 30))              # one frame a step, in order
        later = frames[-1]
        assert np.isfinite(later[1]) and np.isfinite(later[2])   # an input and a prediction
        assert np.isfinite(later[3:]).all()                       # every gate (after a season)
        ws.send_json({"type": "config", "speed": 1000})
        assert _next_json(ws) == {"type": "error", "error": "speed must be between 1 and 120, got 1000"}
        ws.send_json({"type": "reset"})
        assert _next_json(ws) == {"type": "reset"}
        assert int(_frames(ws, 1)[0][0]) < 5                  # counted from 0 again


def test_a_text_stream_steps_once_per_character(client):
    with client.websocket_connect("/ws/stream?run=charlm") as ws:
        layout = ws.receive_json()
        assert layout["kind"] == "text"
        ws.send_json({"type": "text", "text": "In"})
        frame = _frames(ws, 1)[0]
        step = ws.receive_json()
        assert step["type"] == "text" and step["input"] == "I" and len(step["prediction"]) == 5
        assert frame[0] == 0 and frame.size == 3 + 6 * layout["units"]
        assert int(_frames(ws, 1)[0][0]) == 1
        assert ws.receive_json()["input"] == "n"
        ws.send_json({"type": "text", "text": "\u00e9"})        # not in the text
        msg = ws.receive_json()
        assert msg["type"] == "error" and "\n" not in msg["error"]


@pytest.mark.parametrize("live", ['{"state": "running", "pid": "1"}', '{"state": "running", "pid": -1}',
                                  '[1, 2]', '{"state": "running", "pid": 1', ''])
def test_a_damaged_live_file_reads_as_a_stopped_run(root, tmp_path, live):
    shutil.copytree(root / "sine", tmp_path / "runs" / "damaged", symlinks=True)
    (tmp_path / "runs" / "damaged" / "live.json").write_text(live)
    (tmp_path / "runs" / "damaged" / "metrics.jsonl").write_text("")     # no test row
    c = TestClient(create_app(tmp_path / "runs"))
    [run] = c.get("/api/runs").json()
    assert run["state"] == "stopped"
    assert "not training" in refused(c.post("/api/control", json={"run": "damaged", "action": "pause"}),
                                     409)


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("serve", "--runs", tmp_path / "runs", "--port", port)
    assert "Address already in use); choose another --port" in one_line_error(r)
    assert not (tmp_path / "runs").exists()                        # nothing made for nothing

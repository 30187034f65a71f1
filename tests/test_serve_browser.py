"""The dashboard in a real browser: Debian's chromium driven by Playwright, against the server
on 127.0.0.1 with runs trained here. Every view loads with no console error and no request
leaving 127.0.0.1 (a route guard aborts and fails any other host); a training started on
the page streams its curve and gates and ends as a run that `lstmlab evaluate` accepts;
typing into Inspect changes the heatmaps; the stream draws at least 20 frames a second with
the NumPy engine at H = 128; step-through shows lstmlab.numpy's trace; an export downloads
a file that lstmlab.load reads.

Screenshots of every view go to $LSTMLAB_SCREENSHOTS when set (README's come from there),
else to a temporary folder."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import uvicorn
from playwright.sync_api import sync_playwright

from lstmlab.serve import create_app
from lstmlab.tasks import get_task
from lstmlab.train.loop import fit
from tests.conftest import lstmlab

TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, "
        "and void; and darkness was upon the face of the deep.\n") * 20
VIEWS = ("train", "runs", "inspect", "stream", "step")


def _train(runs: Path, name: str, task, **model):
    from lstmlab.config import TrainConfig

    fit(task, task.model_config(**model), TrainConfig(steps=20, eval_every=10, batch_size=8, lr=0.01),
        runs / name, engine="numpy")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    text = tmp_path_factory.mktemp("text") / "genesis.txt"
    text.write_text(TEXT, encoding="utf-8")
    _train(runs, "sine-h128", get_task("sine", test_size=4), hidden_size=128)
    _train(runs, "charlm-tiny", get_task("charlm", text=str(text), seq_len=20), hidden_size=16)
    return runs


@pytest.fixture(scope="module")
def server(runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(runs), host="127.0.0.1", port=port,
                                        log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "the server did not start in 20 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("LSTMLAB_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser, server):
    """A page whose every request must stay on 127.0.0.1, and that must log no error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    leaving, errors = [], []

    def guard(route):
        if urlparse(route.request.url).hostname != "127.0.0.1":
            leaving.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    pg = context.new_page()
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("websocket", lambda ws: None if urlparse(ws.url).hostname == "127.0.0.1"
          else leaving.append(ws.url))
    pg.server = server
    yield pg
    context.close()
    assert not leaving, f"the page asked for something beyond 127.0.0.1: {leaving}"
    assert not errors, f"the page logged errors: {errors}"


def _open(page, view):
    page.goto(f"{page.server}/#{view}")
    page.wait_for_function("window.lab && window.lab.ready")


def _start_sine(page, name: str, **settings):
    """Fill the Train form for a sine run with these settings and start it."""
    page.select_option("#t-task", "sine")
    for key, value in settings.items():
        page.fill(f"#train-form input[name={key}]", str(value))
    page.fill("#t-name", name)
    page.click("#t-start")


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_loads(page, view):
    _open(page, view)
    assert page.locator(f"#view-{view}").is_visible()
    assert page.locator("#toast").is_hidden()


def test_a_training_started_on_the_page_streams_its_curve_and_ends_as_a_run(page, runs, shots):
    _open(page, "train")
    _start_sine(page, "from-the-page", hidden_size=16, steps=300, eval_every=50)
    page.wait_for_function("window.lab.curvePoints >= 2", timeout=60_000)
    first = page.evaluate("window.lab.curvePoints")
    page.wait_for_function(f"window.lab.curvePoints > {first}", timeout=60_000)   # it grows
    page.wait_for_function("(window.lab.gatesDrawn || 0) >= 1", timeout=60_000)
    page.screenshot(path=shots / "train.png")
    page.wait_for_function("window.lab.state === 'finished'", timeout=120_000)
    assert page.locator("#t-gates canvas").count() == 6           # i f g c o h of layer 0
    r = lstmlab("evaluate", runs / "from-the-page", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert '"mse"' in r.stdout


def test_closing_the_page_leaves_the_training_going(browser, server, runs):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server}/#train")
    page.wait_for_function("window.lab && window.lab.ready")
    _start_sine(page, "page-closed", hidden_size=8, steps=400, eval_every=100)
    page.wait_for_function("window.lab.curvePoints >= 1", timeout=60_000)
    context.close()                                              # the page goes away
    deadline = time.time() + 120
    while '"split": "test"' not in _read(runs / "page-closed" / "metrics.jsonl"):
        assert time.time() < deadline, "the training did not finish after its page closed"
        time.sleep(0.5)


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def test_typing_into_inspect_changes_the_heatmaps(page, shots):
    _open(page, "inspect")
    page.select_option("#i-run", "charlm-tiny")
    page.click("#i-text")
    page.keyboard.type("In the")
    page.wait_for_function("(window.lab.inspectCount || 0) >= 1 && window.lab.inspected.steps.length === 6")
    before = page.evaluate("document.querySelector('#i-heatmaps canvas').toDataURL()")
    page.keyboard.type(" beginning")
    page.wait_for_function("window.lab.inspected.steps.length === 16")
    after = page.evaluate("document.querySelector('#i-heatmaps canvas').toDataURL()")
    assert before != after
    assert page.locator("#i-coloured span").count() == 16        # the text, coloured by a unit
    page.fill("#i-units", "3, 7")                                # chosen units
    page.fill("#i-unit", "7")
    page.click("#i-go")
    page.wait_for_function("window.lab.inspected.units.join() === '3,7'")
    assert page.evaluate("document.querySelector('#i-heatmaps canvas').height") == 2
    assert page.locator("#i-coloured span").count() > 0
    page.fill("#i-units", "24")
    page.fill("#i-unit", "0")
    page.dispatch_event("#i-text", "input")                      # the typed text again
    page.wait_for_function("lab.inspected.units.length === 16 && lab.inspected.steps.length === 16")
    page.click("#i-sat")
    page.wait_for_selector("#i-saturation .main-svg")
    page.click("#i-time")
    page.wait_for_selector("#i-timescales .main-svg")
    page.click("#i-conn")
    page.wait_for_selector("#i-connectivity .main-svg")
    page.fill("#a-unit", "3")
    page.select_option("#a-gate", "c")
    page.click("#a-go")
    page.wait_for_selector("#a-plot .main-svg")
    assert page.inner_text("#a-result").startswith("clamped l0 c unit 3 to 0: the outputs changed by")
    page.screenshot(path=shots / "inspect.png", full_page=True)


def test_the_stream_draws_twenty_frames_a_second_at_h128(page, shots):
    _open(page, "stream")
    page.select_option("#s-run", "sine-h128")
    page.click("#s-connect")
    page.wait_for_function("window.lab.stream.layout !== null && window.lab.framesDrawn > 0")
    page.eval_on_selector("#s-speed", "el => { el.value = 60; el.dispatchEvent(new Event('input')); }")
    page.eval_on_selector("#s-noise", "el => { el.value = 0.1; el.dispatchEvent(new Event('input')); }")
    page.wait_for_timeout(500)
    start = page.evaluate("[window.lab.framesDrawn, window.lab.framesReceived, performance.now()]")
    page.wait_for_timeout(3000)
    end = page.evaluate("[window.lab.framesDrawn, window.lab.framesReceived, performance.now()]")
    seconds = (end[2] - start[2]) / 1000
    drawn, received = (end[0] - start[0]) / seconds, (end[1] - start[1]) / seconds
    print(f"\nstream, NumPy engine, H = 128: {drawn:.1f} frames/s drawn, {received:.1f} received "
          f"over {seconds:.1f} s (source at 60 steps/s)")
    assert drawn >= 20, f"{drawn:.1f} frames/s drawn"
    page.screenshot(path=shots / "stream.png", full_page=True)


def test_characters_typed_into_a_charlm_stream(page):
    _open(page, "stream")
    page.select_option("#s-run", "charlm-tiny")
    page.click("#s-connect")
    page.wait_for_function("window.lab.stream.layout !== null && window.lab.stream.layout.kind === 'text'")
    page.click("#s-type")
    page.keyboard.type("And God")
    page.wait_for_function("window.lab.streamText === 'And God' && window.lab.framesDrawn > 0")
    shown = page.inner_text("#s-next")
    assert shown.startswith("next character:") and shown.count("%") == 5
    page.click("#s-reset")
    page.wait_for_function("window.lab.stream.history.length === 0")


def test_step_through_shows_the_numpy_trace(page, runs, shots):
    import lstmlab as ll

    _open(page, "step")
    page.select_option("#p-run", "sine-h128")
    page.fill("#p-t", "3")
    page.fill("#p-unit", "5")
    page.click("#p-go")
    page.wait_for_function("window.lab.stepped && window.lab.stepped.t === 3")
    model = ll.load(runs / "sine-h128" / "model.safetensors", engine="numpy")
    task = get_task("sine", test_size=4)
    x = task.examples("test").take(0).x
    trace = model.rnn.trace(x.astype(np.float32))["l0"]
    for name in ("i", "f", "g", "o", "c", "h"):
        shown = float(page.locator(f"#p-forward td.val[data-q='{name}']").inner_text())
        assert shown == pytest.approx(float(trace[name][3, 0, 5]), rel=1e-4, abs=1e-6), name
    page.click("#p-next")
    page.wait_for_function("window.lab.stepped.t === 4")
    page.screenshot(path=shots / "step.png", full_page=True)


def test_an_export_downloads_a_model_that_loads(page, runs, shots):
    import lstmlab as ll

    _open(page, "runs")
    page.click("#r-table tbody tr[data-run='sine-h128'] td:nth-child(2)")
    page.wait_for_selector("#r-figures img")
    page.check("#r-table tbody tr[data-run='sine-h128'] input")
    page.check("#r-table tbody tr[data-run='charlm-tiny'] input")
    page.wait_for_selector("#r-overlay .main-svg")
    with page.expect_download() as info:
        page.click("#r-downloads a[href*='kind=model.safetensors']")
    path = Path(info.value.path())
    loaded = ll.load(path, engine="numpy")
    saved = ll.load(runs / "sine-h128" / "model.safetensors", engine="numpy")
    for k, v in saved.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    page.screenshot(path=shots / "runs.png", full_page=True)

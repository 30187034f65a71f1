"""lstmlab.threads: the thread count a training chooses, and that it reaches every pool.

Whatever applies threads runs in a child process, so this one keeps its own settings."""

import json
import os
import subprocess
import sys

import pytest

from lstmlab import threads

THREAD_VARS = ("LSTMLAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "OMP_WAIT_POLICY")

# snap(count): the count configure() returned, torch's (None: not loaded), the pools' counts
# (None: no such pool loaded) and OpenMP's wait policy, collected and printed at the end
PRELUDE = """
import json, os, sys
from threadpoolctl import threadpool_info
import lstmlab.threads as t
snaps = []
def snap(count):
    pools = {p["user_api"]: p["num_threads"] for p in threadpool_info()}
    torch = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    snaps.append({"count": count, "torch": torch, "blas": pools.get("blas"),
                  "openmp": pools.get("openmp"), "wait": os.environ.get("OMP_WAIT_POLICY")})
"""


def child(code: str, **env) -> list[dict]:
    """Run `code` after PRELUDE in a fresh interpreter whose environment has no thread
    variables but `env`; returns its snapshots."""
    full = {k: v for k, v in os.environ.items() if k not in THREAD_VARS} | env
    r = subprocess.run([sys.executable, "-c", PRELUDE + code + "\nprint(json.dumps(snaps))"],
                       env=full, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_count_reaches_torch_blas_and_openmp():
    cores = len(os.sched_getaffinity(0))
    default, chosen, torch_loaded, by_env, default_again = child(
        "snap(t.configure())\n"
        "snap(t.configure(3))\n"
        "import torch, lstmlab.torch\n"        # lstmlab.torch's import hands torch the 3
        "snap(None)\n"
        "os.environ['LSTMLAB_THREADS'] = '2'\n"
        "snap(t.configure())\n"                # torch loaded: applied at once
        "del os.environ['LSTMLAB_THREADS']\n"
        "snap(t.configure())")
    # OpenMP's threads are told to sleep before torch's libgomp reads the environment; the
    # default gives OpenBLAS one thread, a chosen count gives it that count
    assert default == {"count": cores, "torch": None, "blas": 1, "openmp": None, "wait": "PASSIVE"}
    assert chosen == {"count": 3, "torch": None, "blas": 3, "openmp": None, "wait": "PASSIVE"}
    assert torch_loaded == {"count": None, "torch": 3, "blas": 3, "openmp": 3, "wait": "PASSIVE"}
    assert by_env == {"count": 2, "torch": 2, "blas": 2, "openmp": 2, "wait": "PASSIVE"}
    assert default_again == {"count": cores, "torch": cores, "blas": 1, "openmp": cores,
                             "wait": "PASSIVE"}


def test_torch_loaded_first_gets_the_count_without_the_wait_policy():
    [out] = child("import torch\nsnap(t.configure())", LSTMLAB_THREADS="3")
    assert out == {"count": 3, "torch": 3, "blas": 3, "openmp": 3, "wait": None}


def test_the_default_is_the_cores_this_process_may_use():
    # pinned to one core of several: one thread, not os.cpu_count()
    [out] = child("os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\nsnap(t.configure())")
    assert out["count"] == 1


def test_off_leaves_the_libraries_alone():
    [before, after] = child("snap(None)\nsnap(t.configure())", LSTMLAB_THREADS="off")
    assert after == {**before, "count": 0} and after["wait"] is None


def test_the_order_of_the_sources(monkeypatch):
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    assert threads.decide() == (threads.usable_cores(), False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.decide() == (4, True)
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")          # nested levels: OpenMP's, not ours
    assert threads.decide() == (threads.usable_cores(), False)
    monkeypatch.setenv("LSTMLAB_THREADS", " 5 ")
    assert threads.decide() == (5, True)
    assert threads.decide(2) == (2, True)
    monkeypatch.setenv("LSTMLAB_THREADS", "OFF")
    assert threads.decide() == (None, True)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "2 threads"])
def test_a_bad_lstmlab_threads_is_one_line(monkeypatch, value):
    monkeypatch.setenv("LSTMLAB_THREADS", value)
    with pytest.raises(ValueError) as e:
        threads.configure()
    assert str(e.value) == f"LSTMLAB_THREADS must be a whole number of threads >= 1, or off, got {value!r}"


@pytest.mark.parametrize("value", [0, -2, True, 2.0, "2"])
def test_a_bad_argument_is_one_line(value):
    with pytest.raises(ValueError, match=r"^threads must be a whole number >= 1, got "):
        threads.configure(value)


def lstmlab(*args, **env):
    full = {k: v for k, v in os.environ.items() if k not in THREAD_VARS} | env
    return subprocess.run([sys.executable, "-m", "lstmlab", *args], env=full, capture_output=True,
                          text=True, timeout=300)


def test_a_training_takes_its_count_from_threads_or_the_environment(tmp_path):
    r = lstmlab("train", "sine", "--steps", "2", "--eval-every", "2", "--out", str(tmp_path / "a"),
                "--threads", "1", "--json", LSTMLAB_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["threads"] == 1
    r = lstmlab("train", "sine", "--steps", "2", "--out", str(tmp_path / "b"), LSTMLAB_THREADS="two")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "LSTMLAB_THREADS must be a whole number of threads >= 1, or off, got 'two'" in r.stderr
    assert not (tmp_path / "b").exists()
    r = lstmlab("train", "sine", "--steps", "2", "--out", str(tmp_path / "c"), "--threads", "0")
    assert r.returncode == 2 and "--threads" in r.stderr


def test_a_small_model_gets_one_thread_unless_a_count_is_chosen(monkeypatch):
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    small, large = threads.SMALL_WORK / 2, threads.SMALL_WORK * 2
    assert threads.decide(work=small) == (1, False)
    assert threads.decide(work=large) == (threads.usable_cores(), False)
    assert threads.decide(3, work=small) == (3, True)
    monkeypatch.setenv("LSTMLAB_THREADS", "2")
    assert threads.decide(work=small) == (2, True)


def test_step_work_counts_the_recurrent_products():
    from lstmlab.config import ModelConfig, TrainConfig
    from lstmlab.train.loop import step_work

    m = ModelConfig(input_size=1, output_size=1, hidden_size=32)
    # forward and backward (3 products) of (32, 1 + 32) x (33, 4 * 32) per step
    assert step_work(m, TrainConfig(batch_size=32)) == 3 * 32 * 33 * 4 * 32
    gru2 = ModelConfig(input_size=1, output_size=1, hidden_size=32, variant="gru", num_layers=2,
                       bidirectional=True)
    assert step_work(gru2, TrainConfig(batch_size=32)) == 3 * 32 * 33 * 3 * 32 * 2 * 2

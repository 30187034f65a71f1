"""Training on several processes (lstmlab.train.distributed): `--nproc 2` (gloo on loopback)
trains like one process with the same global batch and seed, a killed rank stops the job
with one clear line, and --resume continues with another number of processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from lstmlab.tasks.base import Batch
from lstmlab.threads import usable_cores
from lstmlab.train.distributed import World
from tests.conftest import lstmlab, one_line_error

SINE = ["sine", "--engine", "torch", "--steps", "6", "--eval-every", "3", "--batch-size", "8"]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same_training(one: Path, two: Path, weights_atol: float) -> None:
    """The two runs logged the same losses (float rounding apart) and ended with the same weights."""
    a, b = _rows(one), _rows(two)
    assert [(r["step"], r["split"]) for r in a] == [(r["step"], r["split"]) for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "grad_norm", "mse", "nll"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-6), (ra["step"], ra["split"], key)
    wa, wb = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=0, atol=weights_atol, err_msg=k)


def test_two_processes_train_sine_like_one(tmp_path):
    r1 = lstmlab("train", *SINE, "--threads", "1", "--out", tmp_path / "one", "--json")
    r2 = lstmlab("train", *SINE, "--nproc", "2", "--out", tmp_path / "two", "--json")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    out = json.loads(r2.stdout)                                   # rank 0 alone prints
    assert out["run"] == str(tmp_path / "two")
    if not os.environ.get("LSTMLAB_THREADS") and not os.environ.get("OMP_NUM_THREADS"):
        assert out["threads"] == max(1, usable_cores() // 2)          # the cores shared out
    _same_training(tmp_path / "one", tmp_path / "two", 1e-4)


def test_two_processes_train_charlm_like_one_with_the_state_carried(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "the", "lamb", "river", "stone"])
    (tmp_path / "t.txt").write_text(" ".join(rng.choice(words, 5000)))
    args = ["charlm", "--engine", "torch", "--steps", "8", "--eval-every", "4", "--batch-size", "4",
            "--hidden-size", "16", "-o", f"text={tmp_path / 't.txt'}", "-o", "seq_len=20",
            "-o", "valid_chars=500", "--json"]
    r1 = lstmlab("train", *args, "--threads", "1", "--out", tmp_path / "one")
    r2 = lstmlab("train", *args, "--nproc", "2", "--out", tmp_path / "two")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    _same_training(tmp_path / "one", tmp_path / "two", 1e-4)
    # the checkpoint holds the whole batch's carried state, gathered from both ranks
    carry = {k: v for k, v in load_file(tmp_path / "two" / "checkpoint.safetensors").items()
             if k.startswith("carry/")}
    one = load_file(tmp_path / "one" / "checkpoint.safetensors")
    assert carry and all(v.shape[1] == 4 for v in carry.values())
    for k, v in carry.items():
        np.testing.assert_allclose(v, one[k], atol=1e-4)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: no ps needed)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()   # after "(comm)": state, ppid
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)


def test_a_killed_rank_stops_the_job_and_resume_continues_on_one_process(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "lstmlab", "train", "sine", "--engine", "torch", "--steps", "600",
           "--eval-every", "10", "--batch-size", "8", "--hidden-size", "8", "--out", str(run),
           "--nproc", "2"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoint.safetensors").is_file() and job.poll() is None:
            assert time.time() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.05)
        ranks = {_rank_of(kid): kid for kid in _children(job.pid)}
        assert set(ranks) >= {0, 1}
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.time()
        _, err = job.communicate(timeout=60)
        assert time.time() - killed < 30                              # stopped, no hang
    finally:
        job.kill()
    last = err.strip().splitlines()[-1]
    assert job.returncode == 1 and "Traceback" not in err
    assert "rank 1 of 2 was killed by SIGKILL" in last
    assert f"lstmlab train sine --resume --out {run}" in last
    done = [r["step"] for r in _rows(run) if r["split"] == "train"]
    assert 0 < done[-1] < 600                                          # stopped mid-way
    r = lstmlab("train", "sine", "--resume", "--out", run, "--json")   # now on one process
    assert r.returncode == 0, r.stderr
    steps = [r["step"] for r in _rows(run) if r["split"] == "train"]
    assert steps == list(range(10, 601, 10))                           # each evaluation once


def test_nproc_refuses_what_it_cannot_do(tmp_path):
    err = one_line_error(lstmlab("train", "sine", "--engine", "numpy", "--nproc", "2"))
    assert "--engine torch" in err
    err = one_line_error(lstmlab("train", *SINE[:-1], "5", "--nproc", "2", "--out", tmp_path / "r"))
    assert "--batch-size 5 does not divide among 2 processes" in err
    assert not (tmp_path / "r").exists()                               # nothing written


def test_a_rank_takes_its_share_of_every_batch_field():
    T, B = 3, 4
    batch = Batch(x=np.arange(T * B).reshape(T, B), y=np.arange(B * 5).reshape(B, 5),
                  mask=np.ones((T, B)), lengths=np.array([3, 2, 1, 3]),
                  target_lengths=np.array([5, 4, 3, 2]))
    part = World(rank=1, size=2, local_rank=1).shard(batch, y_batch_axis=0)   # CTC: y is (B, L)
    assert part.x.tolist() == batch.x[:, 2:].tolist() and part.y.tolist() == batch.y[2:].tolist()
    assert part.lengths.tolist() == [1, 3] and part.target_lengths.tolist() == [3, 2]
    assert part.mask.shape == (T, 2) and part.target_in is None
    whole = [np.arange(2 * B * 3).reshape(2, B, 3)]
    assert World(1, 2, 1).share_state(whole)[0].tolist() == whole[0][:, 2:].tolist()
    with pytest.raises(ValueError, match="choose a multiple of 3"):
        World(0, 3, 0).rows(4)

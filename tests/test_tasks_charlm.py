"""The charlm task: its text, vocabulary, streams, scoring, baselines, errors, a short run on
each engine, figures and generation."""

import json
import math
import subprocess
import sys
from collections import Counter

import matplotlib.image
import numpy as np
import pytest

from lstmlab.config import TrainConfig
from lstmlab.numpy.model import SequenceModel
from lstmlab.tasks import TASKS, get_task
from lstmlab.tasks import charlm as C
from lstmlab.tasks.datasets import ArrayFile, king_james
from lstmlab.train import fit, load_run
from lstmlab.train.engines import predictor_for
from lstmlab.train.runs import RunFolder
from tests.conftest import Crash, crash_at, one_line_error


@pytest.fixture(scope="module")
def kjv():
    return king_james()


@pytest.fixture(scope="module")
def small_text(kjv, tmp_path_factory):
    """The first 30,000 characters of Genesis as a user's file."""
    path = tmp_path_factory.mktemp("text") / "genesis.txt"
    path.write_text(kjv[:30_000], encoding="utf-8")
    return path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lstmlab", *map(str, args)],
                          capture_output=True, text=True)


# --- the built-in text ------------------------------------------------------------------------
def test_king_james_text_is_verses_without_numbers(kjv):
    assert TASKS["charlm"].name == "charlm"
    assert 4_100_000 < len(kjv) < 4_200_000
    assert kjv.startswith("In the beginning God created the heaven")
    assert kjv.endswith("The grace of our Lord Jesus Christ be with you all. Amen.\n")
    assert not any(ch.isdigit() for ch in kjv)                 # verse numbers are gone
    assert "  " not in kjv and kjv.count("\n") > 23_000       # one verse a line
    assert len(set(kjv)) == 63                                 # DATA.md: 63 symbols
    # a row that merged two verses ("1:14-15") reads as one line, its inner number dropped
    assert "and years: And let them be for lights" in kjv


def test_contiguous_splits_and_vocabulary(kjv):
    task = get_task("charlm")
    n, (a, b) = len(kjv), (int(0.9 * len(kjv)), int(0.95 * len(kjv)))
    assert task.decode(task.ids["train"]) == kjv[:a] and task.text["test"] == kjv[b:]
    assert task.decode(task.ids["valid"]) == kjv[a:a + 50_000]   # capped for quick validation
    assert task.ids["train"].dtype == np.uint8                 # 64 symbols: a byte each
    assert task.vocab_size == 64 and task.alphabet == "".join(sorted(set(kjv[:a])))
    assert task.decode(task.ids["test"]) == kjv[b:]            # nothing unknown in the test
    assert n - b == len(task.ids["test"])


def test_unseen_characters_share_the_reserved_id(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abab" * 500 + "xyz" * 40, encoding="utf-8")   # x, y, z only after training
    task = get_task("charlm", text=str(path), seq_len=10)
    assert task.alphabet == "ab" and task.vocab_size == 3
    assert task.encode("abxz").tolist() == [1, 2, 0, 0]
    assert task.decode([1, 0, 2]) == "a\ufffdb"
    assert set(task.ids["test"].tolist()) == {0}
    # the unigram baseline gives the reserved id its add-one count: 1 / (N_train + 3)
    n = len(task.ids["train"])
    assert task.baselines()["unigram"]["nll"] == pytest.approx(math.log(n + 3))


# --- bad input: one line each ----------------------------------------------------------------
@pytest.mark.parametrize("content, expect", [
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b"In the beginning \xe9tait", "is not UTF-8: byte 0xe9 at offset 17"),
    (b"In the beginning God created the heaven and the earth.\n", "has 55 characters, "
     "shorter than one training sequence: charlm needs at least 113"),
])
def test_bad_text_is_one_clear_line(tmp_path, content, expect):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=expect) as e:
        get_task("charlm", text=str(path))
    assert "\n" not in str(e.value)


def test_bad_options_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        get_task("charlm", text=str(tmp_path / "nowhere.txt"))
    with pytest.raises(ValueError, match="seq_len must be an integer at least 1"):
        get_task("charlm", seq_len=0)
    assert C.min_chars(100) == 113 and C._splits_ok(113, 100) and not C._splits_ok(112, 100)


def test_the_cli_turns_a_bad_file_into_exit_code_2(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café ".encode("latin-1") * 100)
    out = _cli("train", "charlm", "--text", path, "--steps", 1)
    assert out.returncode == 2
    assert "is not UTF-8" in out.stderr and len(out.stderr.strip().splitlines()) == 1


# --- training streams --------------------------------------------------------------------------
def test_windows_continue_their_streams_and_wrap_each_epoch(small_text):
    task = get_task("charlm", text=str(small_text), seq_len=50)
    W, J, free = task._layout(8)
    L = len(task.ids["train"]) - 1
    assert 8 * W * 50 <= L - 49 and J == 49 and free == L - W * 50
    batches = [task.train_batch(s, 8) for s in range(1, 2 * W + 2)]
    assert [b.carry for b in batches] == ([False] + [True] * (W - 1)) * 2 + [False]
    for b in batches:
        assert b.x.shape == (50, 8) and np.array_equal(b.x[1:], b.y[:-1])
    for a, b in zip(batches, batches[1:]):
        if b.carry:                                            # the next window of each stream
            assert np.array_equal(b.x[0], a.y[-1])
    starts = task.stream_starts(0, 8)
    assert np.all(np.diff(starts) >= W * 50)                   # the streams do not overlap
    assert starts[-1] + W * 50 <= L
    assert not np.array_equal(task.stream_starts(1, 8), starts)   # a new shift each epoch
    # a pure function of (seed, step): another instance, another order of calls
    other = get_task("charlm", text=str(small_text), seq_len=50)
    for s in (W + 1, 3, 1):
        assert np.array_equal(other.train_batch(s, 8).x, batches[s - 1].x)


def test_a_short_text_still_fills_a_batch(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("the cat sat on the mat. " * 6, encoding="utf-8")   # 144 characters
    task = get_task("charlm", text=str(path), seq_len=20)
    b = task.train_batch(1, 16)                                # more streams than text: overlap
    assert b.x.shape == (20, 16) and not b.carry and not task.train_batch(2, 16).carry
    starts, n = task.stream_starts(0, 16), len(task.ids["train"])
    assert starts.min() >= 0 and starts.max() + 21 <= n       # every window inside the text
    for j in (0, 15):
        assert task.decode(b.x[:, j]) == task.decode(task.ids["train"][starts[j]:starts[j] + 20])
    pred = _small_model(task)                                  # figures of an 8-character test
    paths = task.figures(pred, tmp_path, task.evaluate(pred, "test"), task.baselines())
    assert [p.name for p in paths] == ["surprisal.png", "cells.png"]


# --- scoring ------------------------------------------------------------------------------------
def _small_model(task, hidden=8, seed=3):
    return predictor_for(SequenceModel(task.model_config(hidden_size=hidden), seed=seed))


def _nll_of(pred, ids):
    """-ln p of each next id, reading `ids` as one sequence from a zero state."""
    out, _ = pred.run(ids[:-1, None])
    logp = C.log_softmax(np.asarray(out[:, 0], dtype=np.float64))
    return -logp[np.arange(len(ids) - 1), ids[1:]]


def test_parallel_streams_score_what_separate_runs_score(small_text):
    task = get_task("charlm", text=str(small_text))
    pred = _small_model(task)
    ids = task.ids["test"]                                     # 1,500 characters
    n = len(ids) - 1
    one, right = task.score(pred, "test", streams=1)           # 6 chunks of 256 steps
    np.testing.assert_allclose(one, _nll_of(pred, ids), rtol=1e-5)
    assert one.shape == right.shape == (n,)
    cut, _ = task.score(pred, "test", streams=7)               # padded: 7 pieces of 215
    P = -(-n // 7)
    expect = np.concatenate([_nll_of(pred, ids[a:a + P + 1]) for a in range(0, n, P)])
    np.testing.assert_allclose(cut, expect, rtol=1e-5)
    m = task.evaluate(pred, "valid")
    assert set(m) == {"bits_per_char", "nll", "accuracy", "loss"}
    assert m["bits_per_char"] == pytest.approx(m["nll"] / math.log(2)) and m["loss"] == m["nll"]


def test_baselines_by_hand(small_text):
    task = get_task("charlm", text=str(small_text))
    base = task.baselines()
    V = task.vocab_size
    assert base["uniform"] == pytest.approx({"bits_per_char": math.log2(V), "nll": math.log(V),
                                             "accuracy": 1 / V}, rel=1e-12)
    counts = Counter(task.decode(task.ids["train"]))
    total = sum(counts.values()) + V
    target = task.text["test"][1:]
    nll = -np.mean([math.log((counts[ch] + 1) / total) for ch in target])
    assert base["unigram"]["nll"] == pytest.approx(nll)
    assert base["unigram"]["accuracy"] == pytest.approx(target.count(" ") / len(target))
    assert base["unigram"]["bits_per_char"] < base["uniform"]["bits_per_char"]


# --- training, figures, generation -------------------------------------------------------------
@pytest.fixture(scope="module")
def torch_run(small_text, tmp_path_factory):
    task = get_task("charlm", text=str(small_text), seq_len=50, valid_chars=1000)
    cfg = TrainConfig(steps=120, batch_size=16, lr=1e-2, eval_every=40)
    return fit(task, task.model_config(hidden_size=64), cfg,
               tmp_path_factory.mktemp("runs") / "torch", engine="torch")


def test_a_short_torch_run_beats_the_baselines_and_draws(torch_run):
    rows = RunFolder(torch_run["run"]).read_metrics()
    valid = [r["bits_per_char"] for r in rows if r["split"] == "valid"]
    assert valid[-1] < valid[0]
    test, base = torch_run["metrics"]["test"], torch_run["baselines"]
    assert test["bits_per_char"] < base["unigram"]["bits_per_char"] - 0.5, (test, base)
    assert test["accuracy"] > base["unigram"]["accuracy"]
    for b in base.values():
        assert set(b) == set(test)
    names = sorted(p.rsplit("/", 1)[-1] for p in torch_run["figures"])
    assert names == ["cells.png", "loss.png", "surprisal.png"]
    for png in torch_run["figures"]:
        assert matplotlib.image.imread(png).ndim == 3


def test_the_numpy_engine_trains(small_text, tmp_path, monkeypatch):
    monkeypatch.chdir(small_text.parent)                       # a relative --text path
    task = get_task("charlm", text=small_text.name, seq_len=20, valid_chars=500)
    cfg = TrainConfig(steps=30, batch_size=8, lr=2e-2, eval_every=10)
    result = fit(task, task.model_config(hidden_size=16), cfg, tmp_path / "np", engine="numpy")
    rows = RunFolder(result["run"]).read_metrics()
    train = [r["loss"] for r in rows if r["split"] == "train"]
    assert train[-1] < train[0] - 0.5
    test, base = result["metrics"]["test"], result["baselines"]
    assert test["bits_per_char"] < base["unigram"]["bits_per_char"] - 0.2   # 4.1 vs 4.5
    saved = RunFolder(result["run"]).read_config()["task_options"]["text"]
    assert saved == str(small_text.resolve())                  # the run finds it from anywhere


def test_training_killed_mid_stream_resumes_exactly(small_text, tmp_path):
    def task():
        return get_task("charlm", text=str(small_text), seq_len=20, valid_chars=300)
    model, cfg = task().model_config(hidden_size=8), TrainConfig(steps=12, batch_size=4,
                                                                 eval_every=3)
    whole = fit(task(), model, cfg, tmp_path / "whole")
    with pytest.raises(Crash):                                 # dies with a state carried
        fit(task(), model, cfg, tmp_path / "cut", callbacks=[crash_at(8)])
    resumed = fit(task(), model, cfg, tmp_path / "cut", resume=True)
    assert resumed["metrics"] == whole["metrics"]


def test_generate_primes_samples_and_writes(torch_run, tmp_path):
    run = torch_run["run"]
    out = _cli("generate", run, "--length", 60, "--prompt", "And God said", "--seed", 3,
               "--temperature", 0.8, "--out", tmp_path / "g", "--json")
    assert out.returncode == 0, out.stderr
    g = json.loads(out.stdout)
    assert g["text"].startswith("And God said") and len(g["text"]) == 12 + 60
    assert (tmp_path / "g" / "sample.txt").read_text(encoding="utf-8") == g["text"]
    task, pred, _ = load_run(run)
    assert set(g["text"]) <= set(task.alphabet)                # never the reserved id
    again = task.generate(pred, tmp_path / "h", length=60, temperature=0.8, top_k=0,
                          prompt="And God said", seed=3)
    assert again["text"] == g["text"]                          # the seed fixes the sample
    other = task.generate(pred, tmp_path / "h", length=60, temperature=0.8, top_k=0,
                          prompt="And God said", seed=4)
    assert other["text"] != g["text"]


def test_generate_top_1_is_greedy_and_bad_prompts_are_one_line(torch_run, tmp_path):
    task, pred, _ = load_run(torch_run["run"])
    hot = task.generate(pred, tmp_path, length=30, temperature=5.0, top_k=1, prompt="And",
                        seed=1)
    cold = task.generate(pred, tmp_path, length=30, temperature=1.0, top_k=1, prompt="And",
                         seed=2)
    ids = task.encode("And")
    for _ in range(30):                                        # the most probable, each step
        out, _ = pred.run(ids[:, None])
        ids = np.append(ids, int(np.argmax(out[-1, 0, 1:])) + 1)
    assert hot["text"] == cold["text"] == task.decode(ids)
    plain = task.generate(pred, tmp_path, length=20, temperature=1.0, top_k=0, prompt=None,
                          seed=0)
    assert plain["prompt"] == "" and len(plain["text"]) == 20
    with pytest.raises(ValueError, match=r"never saw in training: 'é' '€'"):
        task.generate(pred, tmp_path, length=5, temperature=1.0, top_k=0, prompt="café €",
                      seed=0)
    out = _cli("generate", torch_run["run"], "--prompt", "é", "--length", 5)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


# --- a text larger than memory: lstmlab prepare charlm, -o prepared ---------------------------
def test_prepared_ids_equal_the_text_read_whole(small_text, tmp_path):
    from lstmlab.tasks.charlm import prepare

    info = prepare(small_text, tmp_path / "p")
    whole = get_task("charlm", text=str(small_text), seq_len=10, valid_chars=2000)
    mapped = get_task("charlm", prepared=str(tmp_path / "p"), seq_len=10, valid_chars=2000)
    assert info["characters"] == 30_000 and mapped.codes.tolist() == whole.codes.tolist()
    train = mapped.ids["train"]                                       # read from the file, not held
    assert isinstance(train, ArrayFile) and len(train) == len(whole.ids["train"])
    assert train.read(0, len(train)).tolist() == whole.ids["train"].tolist()
    for split in ("valid", "test"):
        assert mapped.ids[split].tolist() == whole.ids[split].tolist(), split
    assert mapped.text["test"] == whole.text["test"]
    assert mapped.train_counts.tolist() == whole.train_counts.tolist()
    for step in (1, 7):
        a, b = whole.train_batch(step, 4), mapped.train_batch(step, 4)
        assert (a.x == b.x).all() and (a.y == b.y).all() and a.carry == b.carry
    # test_chars: the first N characters of the test split, in both
    short = get_task("charlm", prepared=str(tmp_path / "p"), seq_len=10, test_chars=100)
    assert short.ids["test"].tolist() == whole.ids["test"][:100].tolist()


def test_the_stream_reads_like_the_whole_file(tmp_path):
    """BOM, CRLF split between two reads, a lone CR, multi-byte characters across reads."""
    from lstmlab.tasks.charlm import read_text, text_chunks

    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffab\r\ncd\re\u00e9\u4e2d\r\n\r\nfin".encode())
    bad = tmp_path / "bad.txt"
    bad.write_bytes("ab\u00e9".encode() + b"\xff rest")
    for size in (1, 2, 3, 64):                                       # the \u00e9 split across reads
        with pytest.raises(ValueError, match="byte 0xff at offset 4 "):
            list(text_chunks(bad, size))
    for size in (1, 2, 3, 5, 1 << 20):
        pieces = list(text_chunks(path, size))
        assert "".join(p for p, _ in pieces) == read_text(path) == "ab\ncd\ne\u00e9\u4e2d\n\nfin"
        assert pieces[-1][1] == path.stat().st_size                  # bytes read, for the bar


def test_prepare_refuses_what_it_cannot_use(tmp_path, small_text):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9 au lait " * 100)
    err = one_line_error(_cli("prepare", "charlm", "--text", bad, "--out", tmp_path / "b"))
    assert "not UTF-8: byte 0xe9 at offset 3" in err
    assert not (tmp_path / "b" / "prepared.json").exists()
    r = _cli("prepare", "charlm", "--text", small_text, "--out", tmp_path / "p", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["characters"] == 30_000
    assert "already holds prepared data" in one_line_error(
        _cli("prepare", "charlm", "--text", small_text, "--out", tmp_path / "p"))
    assert "--size does not apply" in one_line_error(
        _cli("prepare", "charlm", "--text", small_text, "--out", tmp_path / "q", "--size", "5"))
    assert "needs --text" in one_line_error(_cli("prepare", "charlm", "--out", tmp_path / "q"))
    (tmp_path / "p" / "ids.bin").write_bytes(b"\x01" * 10)            # damaged: cut short
    err = one_line_error(_cli("train", "charlm", "-o", f"prepared={tmp_path / 'p'}", "--steps", "1",
                              "--out", tmp_path / "r"))
    assert "holds no data prepared by `lstmlab prepare charlm`" in err
    err = one_line_error(_cli("train", "charlm", "-o", f"prepared={tmp_path / 'p'}", "-o",
                              f"text={small_text}", "--steps", "1", "--out", tmp_path / "r"))
    assert "two texts" in err

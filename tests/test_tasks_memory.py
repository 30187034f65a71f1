"""The long-memory tasks: their data are what the papers define, their baselines are computed
right, and a small model trained on each learns (the adding problem: solves it)."""

import re

import matplotlib.image
import numpy as np
import pytest

import lstmlab
from lstmlab.config import TrainConfig
from lstmlab.tasks import TASKS, get_task
from lstmlab.tasks import memory as M
from lstmlab.tasks import reber as R
from lstmlab.train import fit
from lstmlab.train.runs import RunFolder
from tests.conftest import Crash, crash_at

NAMES = ["adding", "copy", "temporal-order", "reber", "continual-reber"]
# small versions of every task, for the training tests
SMALL_OPTIONS = {"adding": {"seq_len": 10, "test_size": 64},
                 "copy": {"delay": 5, "test_size": 64},
                 "temporal-order": {"seq_len": 20, "test_size": 64},
                 "reber": {"test_size": 64},
                 "continual-reber": {"window": 20, "reset_every": 4, "test_symbols": 3000,
                                     "valid_symbols": 500}}

# the inner Reber grammar as a regular expression, written independently of reber.py's graph
_INNER = r"B(?:TS*X(?:S|X(?:T*VPX)*T*V(?:V|PS))|P(?:T*VPX)*T*V(?:V|PS))E"
EMBEDDED_REBER = re.compile(rf"B(?:T{_INNER}T|P{_INNER}P)E")


def test_the_tasks_are_registered():
    for name in NAMES:
        assert name in TASKS and TASKS[name].name == name
        assert TASKS[name].defaults.engine == "torch"


@pytest.mark.parametrize("name", NAMES)
def test_the_defaults_suit_every_variant(name):
    task = get_task(name, seed=0, **SMALL_OPTIONS[name])
    for v in lstmlab.VARIANTS:                                 # as `lstmlab train NAME --variant v`
        cfg = task.model_config(**{**TASKS[name].defaults.model, "variant": v})
        assert cfg.variant == v


def test_copy_and_temporal_order_bias_the_forget_gate_unless_told_otherwise():
    for name in ("copy", "temporal-order"):
        task = get_task(name, seed=0, **SMALL_OPTIONS[name])
        assert task.model_config(hidden_size=8).forget_bias == M.FORGET_BIAS
        assert task.model_config(hidden_size=8, variant="peephole").forget_bias == M.FORGET_BIAS
        assert task.model_config(hidden_size=8, forget_bias=1.0).forget_bias == 1.0
        assert task.model_config(hidden_size=8, forget_bias=None).forget_bias is None
        for v in ("lstm1997", "nfg", "gru", "rnn_tanh"):       # nothing to bias
            assert task.model_config(hidden_size=8, variant=v).forget_bias is None
        with pytest.raises(ValueError, match="forget_bias"):
            task.model_config(hidden_size=8, variant="gru", forget_bias=1.0)
    assert get_task("adding").model_config().forget_bias is None


# --- adding --------------------------------------------------------------------------------
def test_adding_two_markers_one_per_half_and_the_target_is_their_sum():
    T, n = 11, 500
    x, y, first, second = M.adding_sequences(np.random.default_rng(3), n, T)
    assert x.shape == (T, n, 2) and y.shape == (n, 1)
    values, markers = x[..., 0], x[..., 1]
    assert np.all((values >= 0) & (values <= 1))
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert np.all(markers.sum(0) == 2)
    assert np.all(markers[:T // 2].sum(0) == 1) and np.all(markers[T // 2:].sum(0) == 1)
    assert np.allclose(y[:, 0], (values * markers).sum(0))
    assert np.array_equal(np.argmax(markers[:T // 2], 0), first)
    assert first.min() == 0 and second.max() == T - 1          # the extremes are reachable


def test_adding_batches_are_a_pure_function_of_seed_and_step():
    a, b = get_task("adding", seed=1), get_task("adding", seed=1)
    assert np.array_equal(a.train_batch(7, 4).x, b.train_batch(7, 4).x)
    assert not np.array_equal(a.train_batch(7, 4).x, a.train_batch(8, 4).x)
    assert not np.array_equal(a.train_batch(7, 4).x, get_task("adding", seed=2).train_batch(7, 4).x)


def test_adding_baselines():
    task = get_task("adding", seed=0, seq_len=8, test_size=20000)
    base = task.baselines()
    y = task.split["test"][1][:, 0]
    assert base["mean"]["mse"] == pytest.approx(np.mean((y - 1.0) ** 2), rel=1e-12)
    assert base["mean"]["mse"] == pytest.approx(1 / 6, abs=0.005)          # var of U1 + U2
    assert base["second_value"]["mse"] == pytest.approx(1 / 12, abs=0.003)  # var of U1


# --- copy ----------------------------------------------------------------------------------
def test_copy_sequences_as_arjovsky_et_al():
    T, n = 7, 300
    x, y = M.copy_sequences(np.random.default_rng(0), n, T)
    assert x.shape == y.shape == (T + 20, n)
    data = x[:10]
    assert data.min() >= 1 and data.max() <= 8
    assert np.all(x[10:T + 9] == M.BLANK)                      # T - 1 blanks
    assert np.all(x[T + 9] == M.DELIMITER)
    assert np.all(x[T + 10:] == M.BLANK)
    assert np.all(y[:T + 10] == M.BLANK)
    assert np.array_equal(y[T + 10:], data)                    # the output is the input's data


def test_copy_memoryless_baseline_is_the_papers_and_the_metrics_agree():
    task = get_task("copy", seed=0, delay=30, test_size=50)
    base = task.baselines()["memoryless"]
    assert base["nll"] == pytest.approx(10 * np.log(8) / 50)
    # the memoryless predictor written out: blank for sure, then 1/8 for each data symbol
    x, y = task.split["test"]
    probs = np.zeros(y.shape + (10,))
    probs[:-10, :, M.BLANK] = 1.0
    probs[-10:, :, 1:9] = 1 / 8
    with np.errstate(divide="ignore"):
        m = task._metrics(np.log(probs), y)
    assert m["nll"] == pytest.approx(base["nll"]) and m["recall_nll"] == pytest.approx(np.log(8))
    # a perfect predictor
    perfect = np.full(y.shape + (10,), -50.0)
    np.put_along_axis(perfect, y[..., None], 0.0, axis=-1)
    m = task._metrics(M.log_softmax(perfect), y)
    assert m["accuracy"] == 1.0 and m["exact_match"] == 1.0 and m["nll"] < 1e-15


# --- temporal order ------------------------------------------------------------------------
@pytest.mark.parametrize("relevant", [2, 3])
def test_temporal_order_sequences(relevant):
    L, n = 100, 400
    x, lengths, classes, where = M.order_sequences(np.random.default_rng(1), n, L, relevant)
    assert lengths.min() >= L and lengths.max() <= L + L // 10 and x.shape[0] == lengths.max()
    assert set(np.unique(classes)) == set(range(2 ** relevant))
    for j in range(n):
        s = x[:lengths[j], j]
        assert s[0] == M.E_ID and s[-1] == M.B_ID
        rel = np.flatnonzero(s >= M.X_ID)
        assert np.array_equal(rel, where[:, j]) and np.all(np.diff(rel) > 0)
        assert np.all((s[1:-1] >= 2) | (np.arange(1, len(s) - 1)[:, None] == rel).any(1))
        bits = s[rel] - M.X_ID                                   # X = 0, Y = 1
        assert classes[j] == int("".join(map(str, bits)), 2)
        assert np.all(x[lengths[j]:, j] == M.E_ID)               # padding
    if relevant == 2:                                            # experiment 6a's positions
        assert where[0].min() >= 10 and where[0].max() <= 20
        assert where[1].min() >= 50 and where[1].max() <= 60


def test_temporal_order_majority_baseline():
    task = get_task("temporal-order", seed=0, test_size=40)
    base = task.baselines()["majority"]
    classes = task.split["test"][2]
    assert base["accuracy"] == np.mean(classes == 0)
    assert base["nll"] == pytest.approx(np.log(4))
    with pytest.raises(ValueError, match="relevant must be an integer between 2 and 3"):
        get_task("temporal-order", relevant=4)


# --- the embedded Reber grammar ------------------------------------------------------------
def test_every_generated_string_is_grammatical_and_corruptions_are_not():
    strings = R.embedded_strings(np.random.default_rng(5), 3000)
    assert len(strings) == 3000
    text = [R.decode(s) for s in strings]
    assert all(R.accepts(s) for s in strings)
    assert all(EMBEDDED_REBER.fullmatch(t) for t in text)      # the independent regex agrees
    assert 9 <= min(map(len, text)) and 11 < np.mean(list(map(len, text))) < 13
    assert {t[1] for t in text} == {"T", "P"}
    for t in text[:200]:
        wrong = t[:-2] + ("P" if t[-2] == "T" else "T") + "E"   # forgot the second symbol
        assert not R.accepts(wrong) and not EMBEDDED_REBER.fullmatch(wrong)
    assert not R.accepts(text[0] + text[1])                    # two strings are not one
    assert not R.accepts(text[0][:-1]) and not R.accepts("") and not R.accepts("BTBTXE")
    rng = np.random.default_rng(0)
    for t in text[:500]:                                       # random one-symbol corruptions
        k = int(rng.integers(len(t)))
        c = t[:k] + rng.choice([s for s in R.SYMBOLS if s != t[k]]) + t[k + 1:]
        assert R.accepts(c) == bool(EMBEDDED_REBER.fullmatch(c)), c


def test_legal_sets_follow_the_grammar():
    x, y, mask, lengths, legal, close = R.string_batch(
        R.embedded_strings(np.random.default_rng(2), 200))
    assert np.all(legal[mask][np.arange(mask.sum()), y[mask]])  # what came was legal
    assert np.all(legal[mask].sum(-1) >= 1) and np.all(legal[mask].sum(-1) <= 2)
    assert not legal[~mask].any()
    assert np.array_equal(close.sum(0), np.ones(200))           # one recall step per string
    cols = np.arange(200)
    assert np.array_equal(y[lengths - 2, cols], x[1])           # closing symbol = branch symbol
    assert np.all(legal[close].sum(-1) == 1)


def test_reber_baselines():
    task = get_task("reber", seed=0, test_size=300)
    base = task.baselines()
    x, y, mask, _, legal, _ = task.split["test"]
    assert base["grammar"]["accuracy"] == 1.0 and base["grammar"]["symbol_accuracy"] == 1.0
    assert base["grammar"]["nll"] == pytest.approx(np.log(legal[mask].sum(-1)).mean())
    assert base["uniform"]["nll"] == pytest.approx(np.log(7))
    assert base["uniform"]["accuracy"] == 0.0 and base["uniform"]["symbol_accuracy"] == 0.0
    # the bigram model cannot know the branch: about half the recalls, few whole strings
    assert 0.3 < base["bigram"]["memory_accuracy"] < 0.7 and base["bigram"]["accuracy"] < 0.2
    assert base["grammar"]["nll"] < base["bigram"]["nll"] < base["uniform"]["nll"]


def test_the_criterion_needs_the_legal_symbols_on_top():
    legal = np.array([[True, True, False], [True, False, False], [True, True, False]])
    p = np.log(np.array([[0.45, 0.35, 0.2], [0.4, 0.5, 0.1], [0.5, 0.25, 0.25]]))
    right, _ = R.score(p, np.array([0, 0, 1]), legal, np.ones(3, dtype=bool))
    assert right.tolist() == [True, False, False]               # a tie with an illegal is wrong


# --- continual Reber -----------------------------------------------------------------------
def test_continual_windows_continue_each_other_and_reset_on_schedule():
    opts = {"window": 15, "reset_every": 3}
    task = get_task("continual-reber", seed=4, **opts)
    batches = [task.train_batch(s, 5) for s in range(1, 8)]
    assert [b.carry for b in batches] == [False, True, True, False, True, True, False]
    for b in batches:
        assert b.x.shape == b.y.shape == (15, 5) and np.array_equal(b.x[1:], b.y[:-1])
    for a, b in zip(batches, batches[1:]):
        if b.carry:                                            # the next window of each stream
            assert np.array_equal(b.x[0], a.y[-1])
    whole = np.concatenate([batches[0].x, batches[1].x, batches[2].x, batches[2].y[-1:]])
    for j in range(5):                                         # each stream: whole strings
        text = R.decode(whole[:, j])
        pieces = re.findall(r"B.*?E(?=B)", text)               # the strings the next one follows
        assert text.startswith("".join(pieces)) and len(text) - len("".join(pieces)) < 40
        assert len(pieces) >= 2 and all(EMBEDDED_REBER.fullmatch(p) for p in pieces)
    assert np.all(batches[0].x[0] == R.ID["B"]) and np.all(batches[3].x[0] == R.ID["B"])
    assert not np.array_equal(batches[3].x, batches[0].x)     # after the reset: new streams
    # a pure function of (seed, step): another instance, another order of calls
    other = get_task("continual-reber", seed=4, **opts)
    for s in (5, 2, 7):
        b = other.train_batch(s, 5)
        assert np.array_equal(b.x, batches[s - 1].x) and b.carry == batches[s - 1].carry


def test_continual_stream_is_a_sequence_of_grammatical_strings():
    task = get_task("continual-reber", seed=0, test_symbols=5000, valid_symbols=500)
    symbols, states = task.stream("test")
    text = R.decode(symbols)
    cut = np.flatnonzero(states == 0) + 1
    strings = [text[a:b] for a, b in zip(np.r_[0, cut[:-1]], cut)]
    assert len(strings) == cut.size > 300
    assert all(EMBEDDED_REBER.fullmatch(s) for s in strings)


def test_continual_metrics_and_baselines():
    task = get_task("continual-reber", seed=0, test_symbols=4000, valid_symbols=500)
    base = task.baselines()
    symbols, states = task.stream("test")
    complete = int(np.sum(states == 0))
    assert base["grammar"]["accuracy"] == 1.0
    assert base["grammar"]["strings_until_error"] == complete
    assert base["uniform"]["strings_until_error"] == 0
    assert base["uniform"]["nll"] == pytest.approx(np.log(7))
    # the grammar's predictor with one mistake inside string 17: 17 strings before it
    logp = R.reference_logp(R.LEGAL[states[:-1]], symbols[:-1], np.zeros((7, 7)))["grammar"]
    start17 = np.flatnonzero(np.r_[0, states[:-1]] == 0)[17]   # where string 17 begins
    bad = logp.copy()
    bad[start17 + 3] = np.log(np.full(7, 1 / 7))               # a uniform guess in the middle
    m = task._metrics(bad, "test")
    assert m["strings_until_error"] == 17
    assert m["accuracy"] == pytest.approx(1 - 1 / (len(symbols) - 1))
    assert m["string_accuracy"] == pytest.approx(1 - 1 / complete)


# --- training through lstmlab.train.fit ------------------------------------------------------
def _fit(tmp_path, name, engine, steps=40, eval_every=10, **model):
    task = get_task(name, seed=0, **SMALL_OPTIONS[name])
    cfg = TrainConfig(steps=steps, batch_size=16, lr=1e-2, eval_every=eval_every)
    result = fit(task, task.model_config(hidden_size=model.pop("hidden_size", 16), **model),
                 cfg, tmp_path / f"{name}-{engine}", engine=engine)
    return task, result, RunFolder(result["run"]).read_metrics()


@pytest.mark.parametrize("name, engine", [
    ("adding", "numpy"), ("adding", "torch"), ("copy", "torch"), ("temporal-order", "torch"),
    ("reber", "numpy"), ("reber", "torch"), ("continual-reber", "numpy"),
    ("continual-reber", "torch")])
def test_a_short_run_learns_and_draws(tmp_path, name, engine):
    task, result, rows = _fit(tmp_path, name, engine)
    train = [r["loss"] for r in rows if r["split"] == "train"]
    valid = [r["loss"] for r in rows if r["split"] == "valid"]
    assert train[-1] < train[0] and min(valid[1:]) < valid[0]
    test, base = result["metrics"]["test"], result["baselines"]
    for b in base.values():                                    # the same metric names
        assert set(b) == set(test)
    assert "loss" not in test and all(np.isfinite(v) for v in test.values())
    assert len(result["figures"]) >= 2                         # the task's own and the loss curve
    for png in result["figures"]:
        assert matplotlib.image.imread(png).ndim == 3


def test_continual_training_killed_mid_stream_resumes_exactly(tmp_path):
    task = get_task("continual-reber", seed=0, **SMALL_OPTIONS["continual-reber"])
    model, cfg = task.model_config(hidden_size=8), TrainConfig(steps=12, batch_size=4, eval_every=3)
    whole = fit(task, model, cfg, tmp_path / "whole")
    with pytest.raises(Crash):                                # dies in a stream's 3rd window
        fit(get_task("continual-reber", seed=0, **SMALL_OPTIONS["continual-reber"]), model, cfg,
            tmp_path / "cut", callbacks=[crash_at(8)])
    resumed = fit(get_task("continual-reber", seed=0, **SMALL_OPTIONS["continual-reber"]),
                  model, cfg, tmp_path / "cut", resume=True)
    assert resumed["metrics"] == whole["metrics"]


def test_lstm1997_streams_through_continual_reber(tmp_path):
    _, result, _ = _fit(tmp_path, "continual-reber", "torch", steps=8, eval_every=8,
                        variant="lstm1997")
    assert any(p.endswith("cell_state.png") for p in result["figures"])


def test_lstm_solves_the_adding_problem_with_short_sequences(tmp_path):
    task = get_task("adding", seed=0, seq_len=10, test_size=500)
    cfg = TrainConfig(steps=500, batch_size=32, lr=1e-2, eval_every=250)
    result = fit(task, task.model_config(hidden_size=32), cfg, tmp_path / "run", engine="torch")
    mse, base = result["metrics"]["test"]["mse"], result["baselines"]["mean"]["mse"]
    assert mse < 0.1 * base, (mse, base)

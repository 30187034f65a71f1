"""lstmlab.inspect's analyses: hand-computed cases, both engines alike, and what they refuse.

Models are small and untrained, built in-process in float64 with the same weights in both
engines, on the sine task (features) and on charlm over a tiny text (tokens).
"""

import math

import numpy as np
import pytest
import torch

from lstmlab import inspect
from lstmlab.inspect.analyses import F_MAX, saturation_of, timescales_of
from lstmlab.models import network_class
from lstmlab.tasks import get_task
from lstmlab.tasks.memory import adding_sequences
from lstmlab.train.engines import predictor_for
from tests.conftest import assert_close, raises_one_line

TEXT = ("In the beginning (God) created the heaven and the earth.\nAnd the earth was without form, "
        "and void; and darkness (was) upon the face of the deep.\n") * 12
TOL = 1e-9


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return {"sine": get_task("sine", test_size=3), "charlm": get_task("charlm", text=str(path), seq_len=10),
            "sine1": get_task("sine", test_size=1)}


def _pair(task, variant, hidden=4, dtype="float64", **settings):
    """(numpy Subject, torch Subject) holding the same weights."""
    mc = task.model_config(hidden_size=hidden, variant=variant, dtype=dtype, **settings)
    nm = network_class(mc, "numpy")(mc, seed=0)
    tm = network_class(mc, "torch")(mc, seed=1)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in nm.params.items()})
    return (inspect.Subject(predictor_for(nm), "numpy", task),
            inspect.Subject(predictor_for(tm), "torch", task))


# --- hand-computed cases -------------------------------------------------------------------------
def test_saturation_of_counts_only_steps_inside_each_sequence():
    # (T=3, B=2, H=2); sequence 1 has one step: its steps 1 and 2 are padding
    f = np.array([[[0.05, 0.95], [0.95, 0.5]],
                  [[0.5, 0.99], [0.01, 0.01]],
                  [[0.2, 0.05], [0.99, 0.99]]])
    i = np.full((3, 2, 2), 0.5)
    g = np.full((3, 2, 2), 0.0)                                # not a sigmoid gate: not counted
    shut, opened, steps = saturation_of({"l0": {"i": i, "f": f, "g": g}}, np.array([3, 1]))
    assert steps == 4
    assert set(shut["l0"]) == set(opened["l0"]) == {"i", "f"}
    np.testing.assert_array_equal(shut["l0"]["f"], [1, 1])
    np.testing.assert_array_equal(opened["l0"]["f"], [1, 2])
    np.testing.assert_array_equal(shut["l0"]["i"], [0, 0])
    np.testing.assert_array_equal(opened["l0"]["i"], [0, 0])
    # without lengths every step counts; other thresholds; a GRU's r and z
    shut, opened, steps = saturation_of({"l0": {"z": f, "n": g}}, None, 0.3, 0.97, family="gru")
    assert steps == 6 and set(shut["l0"]) == {"z"}
    np.testing.assert_array_equal(shut["l0"]["z"], [3, 2])
    np.testing.assert_array_equal(opened["l0"]["z"], [1, 2])


def test_timescales_of_by_hand():
    # (T=3, B=2, H=2); sequence 1 has two steps; unit 1 of sequence 0 starts with f == 1
    f = np.array([[[0.5, 1.0], [0.9, 0.5]],
                  [[0.25, 0.9], [0.5, 0.5]],
                  [[0.5, 0.8], [0.1, 0.1]]])
    tau, n, surv, counts = timescales_of(f, np.array([3, 2]))
    h = lambda v: -1.0 / math.log(v)                           # noqa: E731
    assert n == 5
    np.testing.assert_allclose(tau, [h(.5) + h(.25) + h(.5) + h(.9) + h(.5),
                                     h(F_MAX) + h(.9) + h(.8) + h(.5) + h(.5)], rtol=1e-12)
    assert h(F_MAX) > 1e6                                       # f == 1 is a long, finite horizon
    # K = T - 1 = 2; k = 1: f_{t+1} for t = 0, 1 where step t+1 is inside the sequence
    np.testing.assert_array_equal(counts, [3, 1])
    np.testing.assert_allclose(surv[0], [.25 + .5 + .5, .9 + .8 + .5], rtol=1e-12)
    np.testing.assert_allclose(surv[1], [.25 * .5, .9 * .8], rtol=1e-12)   # only t = 0 of seq 0
    tau1, n1, surv1, counts1 = timescales_of(f, None, horizon=1)
    assert n1 == 6 and surv1.shape == (1, 2)
    np.testing.assert_array_equal(counts1, [4])
    np.testing.assert_allclose(surv1[0], [.25 + .5 + .5 + .1, .9 + .8 + .5 + .1], rtol=1e-12)


def test_saturation_and_timescales_read_the_recorded_gates(tasks):
    s, _ = _pair(tasks["sine"], "lstm")
    x = tasks["sine"].examples()
    _, groups, _ = s.record(x)
    sat = inspect.saturation(s)
    shut, opened, steps = saturation_of(groups, x.lengths)
    assert sat.steps == steps == x.x.shape[0] * x.size
    for k in ("i", "f", "o"):
        np.testing.assert_allclose(sat.shut["l0"][k], shut["l0"][k] / steps)
        np.testing.assert_allclose(sat.open["l0"][k], opened["l0"][k] / steps)
    ts = inspect.timescales(s, horizon=5)
    tau, n, surv, counts = timescales_of(groups["l0"]["f"], None, 5)
    np.testing.assert_allclose(ts.mean["l0"], tau / n)
    np.testing.assert_allclose(ts.survival["l0"], surv / counts[:, None])
    assert ts.survival["l0"].shape == (5, 4)


# --- both engines give the same numbers ---------------------------------------------------------
CASES = [("sine", "lstm", {}), ("sine", "peephole", {"bidirectional": True}),
         ("sine", "gru", {}), ("sine", "rnn_tanh", {"num_layers": 2}),
         ("charlm", "lstm", {}), ("charlm", "cifg", {"num_layers": 2}), ("charlm", "gru", {}),
         ("charlm", "rnn_tanh", {})]


def _same(a, b, what, tol=TOL):
    assert set(a) == set(b), what
    for g in a:
        if isinstance(a[g], dict):
            _same(a[g], b[g], f"{what} {g}", tol)
        else:
            assert_close(a[g], b[g], tol, f"{what} {g}")


@pytest.mark.parametrize("task,variant,settings", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_every_analysis_is_the_same_in_both_engines(tasks, task, variant, settings):
    sn, st = _pair(tasks[task], variant, **settings)
    family = sn.config.spec.family

    an, at = inspect.activations(sn, 0), inspect.activations(st, 0)
    _same(an.groups, at.groups, "activations")
    assert_close(an.outputs, at.outputs, TOL, "outputs")
    names = {"lstm": {"i", "f", "g", "c", "o", "h"}, "gru": {"r", "z", "n", "h"}, "rnn": {"h"}}[family]
    assert all(set(d) == names for d in an.groups.values())

    if family == "rnn":
        for engine_subject in (sn, st):
            assert "no gates" in raises_one_line(inspect.saturation, engine_subject)
            assert "timescales" in raises_one_line(inspect.timescales, engine_subject)
    else:
        a, b = inspect.saturation(sn), inspect.saturation(st)
        assert a.steps == b.steps
        _same(a.shut, b.shut, "shut")
        _same(a.open, b.open, "open")
        a, b = inspect.timescales(sn, horizon=4), inspect.timescales(st, horizon=4)
        _same(a.mean, b.mean, "timescales")
        _same(a.survival, b.survival, "survival")

    a, b = inspect.gradient_flow(sn, 0), inspect.gradient_flow(st, 0)
    _same(a.dh, b.dh, "dh")
    _same(a.dc, b.dc, "dc")
    _same(a.units, b.units, "units")
    assert (set(a.dc) == set(a.dh)) == (family == "lstm")
    assert all(np.all(np.isfinite(v)) and v.max() > 0 for v in a.dh.values())

    a, b = inspect.connectivity(sn, 0), inspect.connectivity(st, 0)
    assert_close(a.matrix, b.matrix, TOL, "connectivity")

    gate = {"lstm": "c", "gru": "z", "rnn": "h"}[family]
    a = inspect.ablate(sn, 0, layer=0, unit=1, gate=gate, value=0.0, steps=(2, None))
    b = inspect.ablate(st, 0, layer=0, unit=1, gate=gate, value=0.0, steps=(2, None))
    assert_close(a.clamped, b.clamped, TOL, "clamped")
    assert a.max_change > 1e-6 and abs(a.max_change - b.max_change) <= TOL
    assert a.metric == b.metric == tasks[task].metric
    assert abs(a.before - b.before) <= TOL and abs(a.after - b.after) <= TOL

    if task == "charlm" or family == "rnn":                    # sine's free run makes it slow
        a, b = inspect.ablation_table(sn, gate="h"), inspect.ablation_table(st, gate="h")
        assert abs(a.baseline - b.baseline) <= TOL and len(a.rows) == len(b.rows) == 4
        by_unit = {r["unit"]: r for r in b.rows}
        for r in a.rows:
            assert abs(r["metric"] - by_unit[r["unit"]]["metric"]) <= TOL
        changes = [r["change"] for r in a.rows]
        assert changes == sorted(changes, reverse=tasks[task].lower_is_better)

    signal = "position_in_word" if task == "charlm" else "value"
    a, b = inspect.top_units(sn, signal, k=3), inspect.top_units(st, signal, k=3)
    assert a.steps == b.steps and len(a.rows) == 3
    assert [(r["group"], r["unit"], r["state"]) for r in a.rows] == \
           [(r["group"], r["unit"], r["state"]) for r in b.rows]
    assert_close([r["r"] for r in a.rows], [r["r"] for r in b.rows], TOL, "r")


def test_float32_models_agree_to_float32_tolerance(tasks):
    sn, st = _pair(tasks["charlm"], "peephole", dtype="float32")
    _same(inspect.activations(sn, 0).groups, inspect.activations(st, 0).groups, "activations", 1e-5)
    a, b = inspect.gradient_flow(sn, 0), inspect.gradient_flow(st, 0)
    for g in a.dh:
        assert_close(a.dh[g], b.dh[g], 1e-4 * a.dh[g].max(), "dh")
        assert_close(a.dc[g], b.dc[g], 1e-4 * a.dc[g].max(), "dc")
    a, b = inspect.ablate(sn, 0, unit=0, gate="o"), inspect.ablate(st, 0, unit=0, gate="o")
    assert_close(a.clamped, b.clamped, 1e-5, "clamped")
    assert abs(a.after - b.after) <= 1e-5


# --- ablation with what the unit already does ----------------------------------------------------
@pytest.mark.parametrize("engine", [0, 1], ids=["numpy", "torch"])
@pytest.mark.parametrize("variant,gate,direction", [
    ("lstm", "h", "forward"), ("lstm", "c", "forward"), ("lstm", "f", "forward"),
    ("peephole", "o", "forward"), ("gru", "z", "forward"), ("rnn_tanh", "h", "forward"),
    ("lstm", "c", "reverse"), ("gru", "h", "reverse")])
def test_clamping_a_unit_to_its_own_trace_changes_nothing(tasks, variant, gate, direction, engine):
    s = _pair(tasks["sine1"], variant, bidirectional=direction == "reverse")[engine]
    group = "l0" if direction == "forward" else "l0_reverse"
    trace = inspect.activations(s, 0).groups[group][gate][:, 0, 2]         # (T,), the input's order
    r = inspect.ablate(s, 0, layer=0, unit=2, gate=gate, value=trace, direction=direction)
    assert r.max_change <= 1e-12
    assert abs(r.after - r.before) <= 1e-12
    moved = inspect.ablate(s, 0, layer=0, unit=2, gate=gate, value=trace + 0.1, metric=False,
                           direction=direction, steps=(100, 120))
    assert moved.max_change > 1e-6 and moved.after is None
    # only the outputs that read the clamped steps change: forward from step 100, reverse up to 119
    change = np.abs(moved.clamped - moved.outputs)[:, 0, 0]
    if direction == "forward":
        assert np.all(change[:100] == 0) and change[100] > 0
    else:
        assert np.all(change[120:] == 0) and change[119] > 0


# --- gradient flow and connectivity --------------------------------------------------------------
def test_gradient_vanishes_back_through_an_rnn_more_than_an_lstm():
    task = get_task("adding", seq_len=60, test_size=1)
    x = adding_sequences(np.random.default_rng(0), 1, 60)[0]
    ratio = {}
    for variant in ("rnn_tanh", "lstm"):
        mc = task.model_config(hidden_size=8, variant=variant, dtype="float64")
        flows = [inspect.gradient_flow(network_class(mc, e)(mc, seed=0), x[:, 0]) for e in ("numpy", "torch")]
        _same(flows[0].dh, flows[1].dh, variant)
        dh = flows[0].dh["l0"]
        assert dh.shape == (60,) and np.all(np.isfinite(dh)) and dh[-1] > 0
        ratio[variant] = flows[0].ratio()
        if variant == "rnn_tanh":                              # fades toward the start
            assert ratio[variant] < 1e-6
            assert np.all(dh[:20].max() < dh[40:].min())
    assert ratio["lstm"] > 100 * ratio["rnn_tanh"]


@pytest.mark.parametrize("variant", ["lstm", "gru"])
def test_connectivity_is_causal_for_one_direction(tasks, variant):
    for s in _pair(tasks["charlm"], variant):
        m = inspect.connectivity(s, "And the earth (was)").matrix
        T = len("And the earth (was)")
        assert m.shape == (T, T)
        assert np.all(m[np.triu_indices(T, 1)] == 0)           # no output reads a later input
        assert np.all(np.diag(m) > 0)


# --- top_units ------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", [0, 1], ids=["numpy", "torch"])
def test_top_units_finds_a_planted_unit(tasks, engine):
    s = _pair(tasks["sine"], "lstm", num_layers=2)[engine]
    signal = inspect.activations(s, 0).groups["l1"]["h"][:, 0, 2]
    top = inspect.top_units(s, signal, 0, k=2)
    assert (top.rows[0]["group"], top.rows[0]["unit"], top.rows[0]["state"]) == ("l1", 2, "h")
    assert abs(top.rows[0]["r"] - 1.0) <= 1e-12 and abs(top.rows[1]["r"]) < 1.0 - 1e-9
    # flipped, it is found as strongly, with r = -1
    assert abs(inspect.top_units(s, -signal, 0, k=1).rows[0]["r"] + 1.0) <= 1e-12


@pytest.mark.parametrize("engine", [0, 1], ids=["numpy", "torch"])
def test_spearman_finds_a_unit_that_only_rises_with_the_signal(tasks, engine):
    """A unit that rises with the signal along a curve (a counter that saturates) is followed
    perfectly by rank (rho = 1), not by a straight line (r < 1); Pearson still finds it."""
    s = _pair(tasks["sine"], "lstm", num_layers=2)[engine]
    unit = inspect.activations(s, 0).groups["l0"]["c"][:, 0, 3]
    signal = np.exp(4 * (unit - unit.min()) / np.ptp(unit))      # the same order, bent
    rank = inspect.top_units(s, signal, 0, k=1, method="spearman")
    assert (rank.rows[0]["group"], rank.rows[0]["unit"], rank.rows[0]["state"]) == ("l0", 3, "c")
    assert abs(rank.rows[0]["r"] - 1.0) <= 1e-12 and rank.to_json()["method"] == "spearman"
    line = inspect.top_units(s, signal, 0, k=5)
    assert all(abs(row["r"]) < 0.99 for row in line.rows)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_top_units_read_chunk_by_chunk_as_in_one_go(tasks, monkeypatch, method):
    """Over the whole test split, one sequence a chunk gives what one call gives; a given
    (T, B) signal is cut to each chunk's sequences, so a unit planted in it is still found."""
    from lstmlab.inspect import analyses

    s = _pair(tasks["sine"], "lstm", num_layers=2)[0]
    whole = inspect.top_units(s, "value", max_steps=None, k=6, skip=2, method=method)
    planted = inspect.activations(s, None).groups["l1"]["c"][:, :, 1]          # (T, B)
    monkeypatch.setattr(analyses, "CHUNK_STEPS", 1)
    assert len(list(analyses._chunks(inspect.inputs_of(s, None), None))) == 3
    chunked = inspect.top_units(s, "value", max_steps=None, k=6, skip=2, method=method)
    assert chunked.steps == whole.steps == 3 * (tasks["sine"].examples("test").length(0) - 2)
    assert [(r["group"], r["unit"], r["state"]) for r in chunked.rows] == \
           [(r["group"], r["unit"], r["state"]) for r in whole.rows]
    assert_close([r["r"] for r in chunked.rows], [r["r"] for r in whole.rows], 1e-12, "r")
    top = inspect.top_units(s, planted, max_steps=None, k=1, method=method).rows[0]
    assert (top["group"], top["unit"], top["state"]) == ("l1", 1, "c") and abs(top["r"] - 1) <= 1e-12
    assert "one per step" in raises_one_line(inspect.top_units, s, planted[:, :2], max_steps=None)


def test_ranks_are_spearmans():
    from scipy.stats import spearmanr

    from lstmlab.tasks.kit import correlations, ranks

    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (50, 3)).astype(float)                # many ties
    f = rng.integers(0, 6, 50).astype(float)
    assert ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    for j in range(3):
        assert abs(correlations(ranks(a), ranks(f))[j] - spearmanr(a[:, j], f).statistic) <= 1e-12


# --- what the analyses refuse ---------------------------------------------------------------------
def test_bad_inputs_get_one_line_naming_what_exists(tasks):
    s, _ = _pair(tasks["sine"], "lstm")
    assert "past the test split, which has examples 0 to 2" in raises_one_line(inspect.inputs_of, s, 3)
    assert "0 to 2" in raises_one_line(inspect.activations, s, -1)
    msg = raises_one_line(inspect.top_units, s, "nonsense")
    assert "unknown signal 'nonsense'" in msg and "position_in_word" in msg
    assert "one per step (149)" in raises_one_line(inspect.top_units, s, np.ones(7), 0)
    msg = raises_one_line(inspect.top_units, s, "value", method="kendall")
    assert "choose one of pearson, spearman" in msg
    assert "layer(s) 0 to 0" in raises_one_line(inspect.ablate, s, 0, layer=1, unit=0)
    assert "layer(s) 0 to 0" in raises_one_line(inspect.ablate, s, 0, layer=-1, unit=0)
    assert "units 0 to 3" in raises_one_line(inspect.ablate, s, 0, layer=0, unit=4)
    msg = raises_one_line(inspect.ablate, s, 0, layer=0, unit=0, gate="z")
    assert "no 'z'" in msg and "i, f, g, c, o, h" in msg
    assert "not bidirectional" in raises_one_line(inspect.ablate, s, 0, unit=0, direction="reverse")
    assert "x has 3 features, the model expects 1" in raises_one_line(inspect.inputs_of, s, np.zeros((5, 3)))
    assert "(T, F) or (T, B, F)" in raises_one_line(inspect.inputs_of, s, np.zeros((5, 1, 1, 1)))
    assert "(T, F) or (T, B, F)" in raises_one_line(inspect.inputs_of, s, np.zeros((0, 1)))

    bare = inspect.Subject(s.predictor, "numpy")                    # a model without its task
    assert "as an array" in raises_one_line(inspect.activations, bare, 0)

    nfg, _ = _pair(tasks["sine"], "nfg")
    msg = raises_one_line(inspect.ablate, nfg, 0, layer=0, unit=0, gate="f")
    assert "nfg cell has no 'f'" in msg and "i, g, c, o, h" in msg
    assert "no forget gate" in raises_one_line(inspect.timescales, nfg)
    assert "no 'f'" in raises_one_line(inspect.ablation_table, nfg, gate="f")

    tok, _ = _pair(tasks["charlm"], "lstm")
    ids = np.zeros((4, 1, 2), np.int64)
    assert "(T,) or (T, B) token ids" in raises_one_line(inspect.inputs_of, tok, ids)
    assert "never saw" in raises_one_line(inspect.activations, tok, "In the beginning Z")


def test_mixed_lengths_and_the_reverse_direction_in_both_engines(tasks):
    sn, st = _pair(tasks["sine"], "lstm", num_layers=2, bidirectional=True)
    x = np.random.default_rng(1).standard_normal((6, 3, 1))
    inputs = inspect.inputs_of(sn, x)
    inputs.lengths = np.array([6, 4, 2])
    an, at = inspect.activations(sn, inputs), inspect.activations(st, inputs)
    _same(an.groups, at.groups, "activations")
    for d in an.groups.values():
        for v in d.values():
            assert np.all(v[4:, 1] == 0) and np.all(v[2:, 2] == 0) and np.all(v[:2] != 0)
    kw = dict(layer=0, unit=[0, 3], gate="f", value=1.0, steps=(1, 3), direction="reverse", metric=False)
    a, b = inspect.ablate(sn, inputs, **kw), inspect.ablate(st, inputs, **kw)
    assert_close(a.clamped, b.clamped, TOL, "clamped")
    assert a.max_change > 1e-6 and a.clamp["units"] == [0, 3]
    change = np.abs(a.clamped - a.outputs)[..., 0]                         # (T, B)
    assert np.all(change[4:, 1] == 0) and np.all(change[2:, 2] == 0)   # past each end: nothing


def test_timescales_follow_each_direction_in_its_own_time_order(tasks):
    """A reverse cell carries c_t on to step t-1: its survival multiplies f_{t-1} ... f_{t-k}."""
    s, _ = _pair(tasks["sine"], "lstm", bidirectional=True)
    inputs = inspect.inputs_of(s, np.random.default_rng(2).standard_normal((8, 3, 1)))
    inputs.lengths = np.array([8, 5, 3])
    _, groups, _ = s.record(inputs)
    ts = inspect.timescales(s, inputs, horizon=3)
    t = np.arange(8)[:, None]
    rev = np.where(t < inputs.lengths, inputs.lengths - 1 - t, t)            # (T, B)
    for g, f in (("l0", groups["l0"]["f"]),
                 ("l0_reverse", np.take_along_axis(groups["l0_reverse"]["f"], rev[..., None], axis=0))):
        tau, n, surv, counts = timescales_of(f, inputs.lengths, 3)
        np.testing.assert_allclose(ts.mean[g], tau / n, rtol=1e-12, err_msg=g)
        np.testing.assert_allclose(ts.survival[g], surv / counts[:, None], rtol=1e-12, err_msg=g)


def test_layers_are_counted_in_number_order(tasks):
    s, _ = _pair(tasks["sine"], "rnn_tanh", hidden=3, num_layers=11)
    x = np.zeros((3, 1, 1))
    assert inspect.ablate(s, x, layer=2, unit=0, metric=False).clamp["group"] == "l2"
    assert inspect.ablate(s, x, layer=10, unit=0, metric=False).clamp["group"] == "l10"


# --- signals -------------------------------------------------------------------------------------
def test_signal_values_by_hand():
    from lstmlab.tasks.base import Inputs

    values = np.array([[1.0, 2.0], [3.0, 1.0], [2.0, 0.0], [5.0, 0.0]])      # (T=4, B=2), lengths 4, 2
    series = Inputs(x=values[..., None], steps=[list("1325"), list("21")], lengths=np.array([4, 2]),
                    values=values)
    sv = inspect.signal_values
    np.testing.assert_array_equal(sv("value", series), [[1, 2], [3, 1], [2, 0], [5, 0]])
    np.testing.assert_array_equal(sv("above_mean", series), [[0, 1], [1, 0], [0, 0], [1, 0]])
    np.testing.assert_array_equal(sv("rising", series), [[0, 0], [1, 0], [0, 0], [1, 0]])
    np.testing.assert_array_equal(sv("position", series)[:2], [[0, 0], [1, 1]])
    assert "reads a series" in raises_one_line(sv, "value", Inputs(x=np.zeros((2, 1)), steps=[list("ab")]))

    chars = Inputs(x=np.zeros((6, 2), np.int64), steps=[list("ab (c)"), list("Xy")], lengths=np.array([6, 2]))
    np.testing.assert_array_equal(sv("position_in_word", chars)[:, 0], [1, 2, 0, 0, 1, 0])
    np.testing.assert_array_equal(sv("inside_parentheses", chars)[:, 0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(sv("uppercase", chars)[:, 1], [1, 0, 0, 0, 0, 0])
    # words count at their last character
    words = Inputs(x=np.zeros((3, 1), np.int64), steps=[["In", "the", "(beginning)"]])
    np.testing.assert_array_equal(sv("position_in_word", words)[:, 0], [2, 3, 0])
    np.testing.assert_array_equal(sv("inside_parentheses", words)[:, 0], [0, 0, 1])
    assert "one per step (3)" in raises_one_line(sv, np.ones(4), words)
    assert "finite" in raises_one_line(sv, np.array([0.0, np.nan, 1.0]), words)


def test_results_are_json(tasks):
    import json

    s, _ = _pair(tasks["charlm"], "lstm")
    for result in (inspect.activations(s, 0), inspect.saturation(s), inspect.timescales(s),
                   inspect.gradient_flow(s, 0), inspect.connectivity(s, "And God"),
                   inspect.ablate(s, 0, unit=1), inspect.ablation_table(s, gate="c"),
                   inspect.top_units(s, "position_in_line")):
        text = json.dumps(result.to_json(), allow_nan=False)
        assert json.loads(text) == result.to_json()


def test_every_tasks_default_signals_exist():
    from lstmlab.tasks import TASKS

    for name, cls in TASKS.items():
        assert cls.signals and set(cls.signals) <= set(inspect.SIGNALS), name


def test_one_long_stream_is_read_up_to_max_steps(tasks):
    sub, _ = _pair(tasks["sine"], "lstm")
    x = np.sin(np.arange(500) / 5.0)[:, None, None]             # one stream of 500 steps
    assert inspect.saturation(sub, x, max_steps=120).steps == 120
    assert inspect.timescales(sub, x, max_steps=120).steps == 120

"""The engines' hooks for lstmlab.inspect: the recurrent stacks' `edit` and the NumPy
backward's `state_grads`.

An identity edit changes nothing and sees every gate and state the variant makes, at the
step `when` names in the input's time order; a clamp changes both engines alike; the NumPy
engine's dL/dh_t is the finite difference of a perturbation of h_t made through `edit`, and
its dL/dc_t (the gradient carried back from later steps) agrees with torch's autograd.
"""

import numpy as np
import pytest
import torch

import lstmlab
import lstmlab.torch as lt
from lstmlab import numpy as lnp
from lstmlab.config import ModelConfig
from lstmlab.families import family_of
from lstmlab.inspect.subject import STEP_NAMES, Subject
from lstmlab.models import network_class
from lstmlab.tasks.base import Inputs
from lstmlab.train.engines import predictor_for
from tests.conftest import assert_close

VARIANTS = list(lstmlab.VARIANTS)
T, B, I, H = 5, 3, 4, 3
LENGTHS = np.array([5, 3, 2])


def _absent(name):
    spec = lstmlab.variant(name)
    if spec.family != "lstm":
        return set()
    out = set()
    if not spec.input_gate:
        out.add("i")
    if not spec.forget_gate and not spec.coupled_gates:
        out.add("f")
    if not spec.output_gate:
        out.add("o")
    return out


def _expected_names(name):
    spec = lstmlab.variant(name)
    return tuple(n for n in STEP_NAMES[spec.family] if n not in _absent(name))


def _stack(engine, name, layers=1, bi=False, dtype=np.float64, **kw):
    cls = family_of(lstmlab.variant(name)).class_name
    mod = lnp if engine == "numpy" else lt
    return getattr(mod, cls)(I, H, num_layers=layers, bidirectional=bi, variant=name, seed=3,
                             dtype=dtype, **kw)


def _np(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def _run(model, engine, x, lengths=None):
    """(y, [final state components]) as float64 NumPy."""
    if engine == "numpy":
        y, state = model(x, None, lengths)
    else:
        with torch.no_grad():
            y, state = model(torch.from_numpy(x), None,
                             None if lengths is None else torch.as_tensor(lengths))
    comps = state if isinstance(state, tuple) else (state,)
    return _np(y), [_np(c) for c in comps]


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, I))


class Seen:
    """An identity edit that keeps what it was handed: (group, name, shape, when) per call."""

    def __init__(self):
        self.calls = []

    def __call__(self, group, name, value, when):
        w = _np(when)
        self.calls.append((group, name, tuple(value.shape), w.copy() if w.ndim else int(w)))
        return value


def _reversed_when(lengths):
    """(T, B): the input-time index the reverse direction's step t reads, per sequence."""
    t = np.arange(T)[:, None]
    return np.where(t < lengths[None], lengths[None] - 1 - t, t)


# --- identity edit: same numbers, every name, every step --------------------------------------
@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_identity_edit_changes_nothing_and_sees_every_step(name, engine, lengths):
    model = _stack(engine, name, bi=True)
    x = _x()
    y0, s0 = _run(model, engine, x, lengths)                   # the fast path
    seen = Seen()
    model.edit = seen
    y1, s1 = _run(model, engine, x, lengths)
    model.edit = None
    assert_close(y1, y0, 1e-10, "outputs")
    assert len(s1) == len(s0)
    for a, b in zip(s1, s0):
        assert_close(a, b, 1e-10, "final state")

    names = _expected_names(name)
    assert {c[0] for c in seen.calls} == {"l0", "l0_reverse"}
    for group in ("l0", "l0_reverse"):
        calls = [c for c in seen.calls if c[0] == group]
        assert len(calls) == T * len(names)
        for t in range(T):                                     # this direction's step t
            step = calls[t * len(names):(t + 1) * len(names)]
            assert tuple(c[1] for c in step) == names, (group, t)
            assert all(c[2] == (B, H) for c in step)
            whens = [c[3] for c in step]
            for w in whens:                                    # one `when` for the whole step
                np.testing.assert_array_equal(w, whens[0])
            w = whens[0]
            if group == "l0":
                assert np.ndim(w) == 0 and w == t
            elif lengths is None:
                assert np.ndim(w) == 0 and w == T - 1 - t
            else:
                assert np.shape(w) == (B,)
                np.testing.assert_array_equal(w, _reversed_when(lengths)[t])


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_edit_sees_h_before_the_projection(engine):
    model = _stack(engine, "lstm", proj_size=2)
    seen = Seen()
    model.edit = seen
    y, _ = _run(model, engine, _x())
    assert y.shape == (T, B, 2)
    assert {c[2] for c in seen.calls if c[1] == "h"} == {(B, H)}


def test_numpy_edit_matches_the_reference_path():
    """The edited run (reference equations) equals fast=False's own run to rounding."""
    x = _x(1)
    ref = _stack("numpy", "peephole", layers=2, bi=True, fast=False)
    model = _stack("numpy", "peephole", layers=2, bi=True)
    model.edit = Seen()
    assert_close(_run(model, "numpy", x, LENGTHS)[0], _run(ref, "numpy", x, LENGTHS)[0], 1e-12, "y")


# --- a clamp changes both engines alike ------------------------------------------------------
def _clamp(group, target, unit, value, start):
    """An edit setting `target` of `unit` in `group` to `value` at input steps >= start."""
    def edit(g, name, v, when):
        if g != group or name != target:
            return v
        inside = np.broadcast_to(_np(when) >= start, (v.shape[0],))
        if isinstance(v, np.ndarray):
            out = v.copy()
            out[inside, unit] = value
            return out
        out = v.clone()
        out[torch.from_numpy(inside.copy()), unit] = value
        return out
    return edit


@pytest.mark.parametrize("name,target", [("lstm", "h"), ("lstm", "c"), ("lstm", "f"), ("peephole", "o"),
                                         ("cifg", "i"), ("gru", "z"), ("gru", "h"), ("rnn_tanh", "h")])
@pytest.mark.parametrize("group", ["l0", "l0_reverse"])
def test_clamp_changes_both_engines_alike(name, target, group):
    x = _x(2)
    out = {}
    for engine in ("numpy", "torch"):
        model = _stack(engine, name, layers=2, bi=True)
        plain = _run(model, engine, x, LENGTHS)
        model.edit = _clamp(group, target, 1, 0.3, 1)
        out[engine] = _run(model, engine, x, LENGTHS)
        model.edit = None
        assert np.abs(out[engine][0] - plain[0]).max() > 1e-4   # the clamp does something
    (yn, sn), (yt, st) = out["numpy"], out["torch"]
    assert_close(yn, yt, 1e-10, "outputs")
    for a, b in zip(sn, st):
        assert_close(a, b, 1e-10, "final state")


# --- backward -----------------------------------------------------------------------------------
def test_backward_refuses_an_edited_forward():
    model = _stack("numpy", "lstm")
    model.edit = Seen()
    y, _, cache = model.forward(_x())
    model.edit = None
    with pytest.raises(ValueError, match="edit") as e:
        model.backward(cache, np.ones_like(y))
    assert "\n" not in str(e.value)
    model.backward(model.forward(_x())[2], np.ones_like(y))   # an unedited one goes through
    # and through a SequenceModel, whose stack had an edit
    mc = ModelConfig(input_size=I, output_size=2, hidden_size=H, readout="sequence", dtype="float64")
    seq = network_class(mc, "numpy")(mc, seed=0)
    seq.rnn.edit = Seen()
    out, _, cache = seq.forward(_x())
    seq.rnn.edit = None
    with pytest.raises(ValueError, match="edit") as e:
        seq.backward(cache, np.ones_like(out))
    assert "\n" not in str(e.value)


def _nudge(group, unit, b, t, eps):
    """An edit adding eps to h of `unit` in sequence b at input step t of `group`."""
    def edit(g, name, v, when):
        if g == group and name == "h" and np.broadcast_to(_np(when), (B,))[b] == t:
            v = v.copy()
            v[b, unit] += eps
        return v
    return edit


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_state_grads_h_is_the_derivative_of_a_nudge_to_h(name):
    model = _stack("numpy", name, layers=2, bi=True)
    x = _x(3)
    dy = np.random.default_rng(4).standard_normal((T, B, 2 * H))
    y, _, cache = model.forward(x, None, LENGTHS)
    sg: dict = {}
    model.backward(cache, dy, state_grads=sg)
    groups = ["l0", "l0_reverse", "l1", "l1_reverse"]
    assert sorted(sg) == sorted(groups)
    for g in groups:
        want = {"h", "c"} if name == "lstm" else {"h"}
        assert set(sg[g]) == want
        assert all(v.shape == (T, B, H) for v in sg[g].values())

    def loss(edit):
        model.edit = edit
        out, _ = model(x, None, LENGTHS)
        model.edit = None
        return float((out * dy).sum())

    eps = 1e-6
    for g, t, b, u in [("l0", 0, 0, 0), ("l0", 2, 1, 2), ("l0_reverse", 0, 2, 1), ("l0_reverse", 3, 0, 0),
                       ("l1", 1, 1, 1), ("l1_reverse", 4, 0, 2), ("l0", 4, 1, 0)]:
        fd = (loss(_nudge(g, u, b, t, eps)) - loss(_nudge(g, u, b, t, -eps))) / (2 * eps)
        got = sg[g]["h"][t, b, u]
        assert abs(got - fd) <= 1e-6 * max(1.0, abs(fd)), (g, t, b, u, got, fd)
    # steps past a sequence's end reach nothing: their gradient is zero
    for g in groups:
        assert np.all(sg[g]["h"][3:, 1] == 0) and np.all(sg[g]["h"][2:, 2] == 0)


def _subject(engine, mc):
    """A Subject of `engine` whose weights are the NumPy model's of seed 5."""
    numpy_model = network_class(mc, "numpy")(mc, seed=5)
    if engine == "numpy":
        return Subject(predictor_for(numpy_model), engine)
    model = network_class(mc, engine)(mc, seed=6)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in numpy_model.params.items()})
    return Subject(predictor_for(model), engine)


def test_state_grads_c_is_carried_back_and_agrees_with_torch():
    mc = ModelConfig(input_size=I, output_size=2, hidden_size=H, readout="sequence", dtype="float64")
    x = _x(5)
    inputs = Inputs(x=x, steps=[[str(t) for t in range(T)]] * B)
    dout = np.random.default_rng(6).standard_normal((T, B, 2))
    res = {e: _subject(e, mc).gradients(inputs, lambda out: dout) for e in ("numpy", "torch")}
    (on, dxn, sn), (ot, dxt, st) = res["numpy"], res["torch"]
    assert_close(on, ot, 1e-10, "outputs")
    assert dxn.shape == (T, B, I)
    assert_close(dxn, dxt, 1e-10, "dL/dx")
    assert set(sn) == set(st) == {"l0"}
    for k in ("h", "c"):
        assert_close(sn["l0"][k], st["l0"][k], 1e-10, k)

    # c_t = f_t c_{t-1} + i_t g_t,  h_t = o_t tanh(c_t): what reaches c_{t-1} from later steps is
    # (what reaches c_t from later steps + what reaches it through h_t) * f_t
    _, rec, _ = _subject("numpy", mc).record(inputs)
    f, o, c = rec["l0"]["f"], rec["l0"]["o"], rec["l0"]["c"]
    dh, dc = sn["l0"]["h"], sn["l0"]["c"]
    total = dc + dh * o * (1.0 - np.tanh(c) ** 2)
    assert_close(dc[:-1], total[1:] * f[1:], 1e-12, "carried dL/dc")
    assert np.all(dc[-1] == 0)                                 # nothing after the last step
    assert np.abs(dc[:-1]).min() > 0


@pytest.mark.parametrize("name", VARIANTS)
def test_state_grads_agree_with_torch_for_every_variant(name):
    """Two layers, both directions, mixed lengths: one (T, B, H) array per group and state,
    in the input's time order, the same in both engines."""
    mc = ModelConfig(input_size=I, output_size=2, hidden_size=H, readout="sequence", dtype="float64",
                     variant=name, num_layers=2, bidirectional=True)
    inputs = Inputs(x=_x(7), steps=[[str(t) for t in range(T)]] * B, lengths=LENGTHS)
    dout = np.random.default_rng(8).standard_normal((T, B, 2))
    res = {e: _subject(e, mc).gradients(inputs, lambda out: dout) for e in ("numpy", "torch")}
    (on, dxn, sn), (ot, dxt, st) = res["numpy"], res["torch"]
    assert_close(on, ot, 1e-10, "outputs")
    assert_close(dxn, dxt, 1e-10, "dL/dx")
    states = {"h", "c"} if lstmlab.variant(name).family == "lstm" else {"h"}
    assert set(sn) == set(st) == {"l0", "l0_reverse", "l1", "l1_reverse"}
    for g in sn:
        assert set(sn[g]) == set(st[g]) == states
        for k in states:
            assert sn[g][k].shape == (T, B, H)
            assert_close(sn[g][k], st[g][k], 1e-10, f"{g} {k}")
            assert np.abs(sn[g][k][:, 0]).max() > 0

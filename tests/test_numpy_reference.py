"""The readable reference cells (lstmlab.numpy.reference) are the oracle of the fast ones.

`fast=False` runs the whole layer on the reference step functions; in float64 it must equal
the fast path to 1e-10 in everything a model returns: outputs, final state, trace, every
gradient, dx and dstate. The reference steps themselves agree with finite differences.
"""

import numpy as np
import pytest

import lstmlab
from lstmlab.families import FAMILIES
from lstmlab.numpy import GRU, LSTM, RNN, reference
from lstmlab.numpy.gradcheck import numeric_gradient, relative_error

from .conftest import assert_close

CLASSES = {name: getattr(lstmlab.numpy, f.class_name) for name, f in FAMILIES.items()}  # by family
TOL = 1e-10

COMPOSED = [
    (lstmlab.variant("cifg", peepholes=True), {}),
    (lstmlab.variant("fgr", peepholes=True), {}),
    (lstmlab.variant("fgr", coupled_gates=True, peepholes=True), {}),
    (lstmlab.variant("layernorm", peepholes=True), {}),
    (lstmlab.variant("layernorm", gate_recurrence=True, input_gate=False), {}),
    (lstmlab.variant("nog", peepholes=True), {}),
    (lstmlab.variant("nig", peepholes=True, input_activation="sigmoid4"), {}),
    (lstmlab.variant("lstm1997", peepholes=True), {}),
    (lstmlab.variant("lstm"), {"proj_size": 2}),
    (lstmlab.variant("peephole", gate_recurrence=True), {"proj_size": 3}),
    (lstmlab.variant("layernorm"), {"proj_size": 2}),
]
CASES = [(spec, {}) for spec in lstmlab.VARIANTS.values()] + COMPOSED


def _parts(state):
    return [state] if isinstance(state, np.ndarray) else list(state)


def _pair(spec, rng, **kw):
    """The same model twice, fast and reference, with weights larger than the init's."""
    models = [CLASSES[spec.family](3, 4, variant=spec, dtype=np.float64, seed=1, fast=fast, **kw)
              for fast in (True, False)]
    new = {k: rng.uniform(-0.6, 0.6, v.shape) for k, v in models[0].params.items()}
    for m in models:
        m.load_state_dict(new)
    return models


def _random_state(model, batch, rng):
    comps = [rng.uniform(-0.8, 0.8, s.shape) for s in _parts(model.initial_state(batch))]
    return comps[0] if model.family != "lstm" else tuple(comps)


@pytest.mark.parametrize("spec,kw", CASES,
                         ids=[s.name + "".join(f"+{k}={v}" for k, v in kw.items()) for s, kw in CASES])
def test_reference_equals_fast_everywhere(spec, kw):
    """2 layers, both directions, different lengths, a random initial state, gradients on y
    and on the final state."""
    rng = np.random.default_rng(0)
    fast, ref = _pair(spec, rng, num_layers=2, bidirectional=True, **kw)
    x = rng.standard_normal((5, 3, 3))
    lengths = np.array([5, 2, 4])
    state = _random_state(fast, 3, rng)

    y, final, cache = fast.forward(x, state, lengths)
    y_r, final_r, cache_r = ref.forward(x, state, lengths)
    assert_close(y_r, y, TOL, "y")
    for k, (a, b) in enumerate(zip(_parts(final_r), _parts(final))):
        assert_close(a, b, TOL, f"final state {k}")

    dy = rng.standard_normal(y.shape)
    dfinal = [rng.standard_normal(s.shape) for s in _parts(final)]
    dfinal = dfinal[0] if isinstance(final, np.ndarray) else tuple(dfinal)
    grads, dx, dstate = fast.backward(cache, dy, dfinal)
    grads_r, dx_r, dstate_r = ref.backward(cache_r, dy, dfinal)
    assert set(grads_r) == set(grads) == set(fast.params)
    for name in grads:
        assert_close(grads_r[name], grads[name], TOL, name)
    assert_close(dx_r, dx, TOL, "dx")
    for k, (a, b) in enumerate(zip(_parts(dstate_r), _parts(dstate))):
        assert_close(a, b, TOL, f"dstate {k}")

    tr, tr_r = fast.trace(x, state, lengths), ref.trace(x, state, lengths)
    assert tr_r.keys() == tr.keys()
    for layer in tr:
        assert tr_r[layer].keys() == tr[layer].keys()
        for name in tr[layer]:
            assert_close(tr_r[layer][name], tr[layer][name], TOL, f"trace {layer} {name}")


@pytest.mark.parametrize("name", ["lstm", "fgr", "layernorm", "gru_cho", "rnn_relu"])
def test_reference_streams_step_by_step(name):
    """step() (keep nothing for backward), unbatched and batch_first inputs take the same path."""
    spec = lstmlab.VARIANTS[name]
    rng = np.random.default_rng(1)
    fast, ref = _pair(spec, rng, batch_first=True)
    s_f, s_r = fast.initial_state(2), ref.initial_state(2)
    for _ in range(4):
        x_t = rng.standard_normal((2, 3))
        y_f, s_f = fast.step(x_t, s_f)
        y_r, s_r = ref.step(x_t, s_r)
        assert_close(y_r, y_f, TOL, "y_t")
    for a, b in zip(_parts(s_r), _parts(s_f)):
        assert_close(a, b, TOL, "state")
    x = rng.standard_normal((6, 3))                              # one sequence, (T, I)
    assert_close(ref(x)[0], fast(x)[0], TOL, "unbatched y")


def test_reference_keeps_the_dtype_and_says_so():
    m = LSTM(3, 4, variant="peephole", fast=False)
    y, (h, c) = m(np.ones((2, 1, 3), np.float32))
    assert y.dtype == h.dtype == c.dtype == np.float32
    assert "fast=False" in repr(m) and "fast" not in repr(LSTM(3, 4))
    assert GRU(3, 4, fast=False).fast is False and RNN(3, 4).fast is True


@pytest.mark.parametrize("bad", ["no", 0, None])
def test_fast_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="fast must be True or False"):
        LSTM(3, 4, fast=bad)


def test_reference_dx_is_not_a_pooled_buffer():
    """dx must stay the caller's: large enough that the layer's scratch arrays are pooled and
    reused by the next call."""
    rng = np.random.default_rng(2)
    m = RNN(32, 2, dtype=np.float64, fast=False)
    x = rng.standard_normal((64, 32, 32))                        # T*B*I = 65536: pooled size
    _, _, cache = m.forward(x)
    dx = m.backward(cache, np.ones((64, 32, 2)))[1]
    keep = dx.copy()
    _, _, cache = m.forward(-x)
    m.backward(cache, -np.ones((64, 32, 2)))
    assert np.array_equal(dx, keep)


# --- the reference steps against finite differences ----------------------------------------

def _step_problem(spec, rng, proj_size=0):
    """One layer's parameters by base name, an input and a state, all random."""
    kw = {"proj_size": proj_size} if proj_size else {}
    model = CLASSES[spec.family](3, 4, variant=spec, dtype=np.float64, **kw)
    p = {k[:-3]: rng.uniform(-0.6, 0.6, v.shape) for k, v in model.params.items()
         if not k.startswith("weight_hr")}                       # names end in "_l0"
    x = rng.standard_normal((2, 3))
    state = tuple(rng.uniform(-0.8, 0.8, (2, n)) for n in model.cells[0].state_sizes())
    return p, x, state


def _step_gradcheck(spec, proj_size=0, eps=1e-6):
    """Worst relative error of lstm/gru/rnn_step_backward against central differences of a
    random linear function of the new state, over every parameter, x and the old state."""
    rng = np.random.default_rng(3)
    p, x, state = _step_problem(spec, rng, proj_size)
    step, step_backward = reference.STEPS[spec.family]
    _, new, saved = step(spec, p, x, state)
    weights = [rng.standard_normal(s.shape) for s in new]

    def loss():
        _, new, _ = step(spec, p, x, state)
        return sum(float(np.sum(w * s)) for w, s in zip(weights, new))

    grads, dx, dstate = step_backward(spec, p, saved, tuple(weights))
    assert set(grads) == set(p)
    checks = [(p[k], grads[k], k) for k in p] + [(x, dx, "x")]
    checks += [(s, d, f"state {k}") for k, (s, d) in enumerate(zip(state, dstate))]
    errors = {}
    for tensor, analytic, name in checks:
        errors[name] = relative_error(analytic, numeric_gradient(loss, tensor, eps))
    return errors


@pytest.mark.parametrize("spec,proj_size", [
    (lstmlab.variant("fgr", peepholes=True, coupled_gates=True), 2),
    (lstmlab.variant("layernorm", peepholes=True, output_activation="sigmoid2"), 0),
    (lstmlab.variant("lstm1997", gate_recurrence=True, output_gate=False), 0),
    (lstmlab.VARIANTS["gru"], 0), (lstmlab.VARIANTS["gru_cho"], 0), (lstmlab.VARIANTS["rnn_tanh"], 0),
], ids=lambda v: getattr(v, "name", str(v)))
def test_reference_step_matches_finite_differences(spec, proj_size):
    errors = _step_gradcheck(spec, proj_size)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"


def test_step_gradcheck_detects_a_wrong_derivative(monkeypatch):
    """The finite-difference check can fail: a wrong tanh derivative must show."""
    monkeypatch.setitem(reference.ACTIVATIONS, "tanh", (np.tanh, lambda a: 1.0 - 0.9 * np.tanh(a) ** 2))
    errors = _step_gradcheck(lstmlab.VARIANTS["rnn_tanh"])
    assert max(errors.values()) > 1e-3

"""lstmlab.inspect.step_through: one step of one cell, laid out as its equations, shows the
numbers of lstmlab.numpy's trace and backward for that step.

Models are small and untrained, built in-process in float64 on the sine task (features) and
charlm over a tiny text (tokens).
"""

import numpy as np
import pytest
import torch

import lstmlab
from lstmlab import inspect
from lstmlab.inspect.stepthrough import NOTES, step_through
from lstmlab.models import network_class
from lstmlab.numpy.reference import ACTIVATIONS, sigmoid
from lstmlab.tasks import get_task
from lstmlab.train.engines import predictor_for
from tests.conftest import assert_close, raises_one_line

TOL = 1e-9
VARIANTS = ("lstm", "peephole", "cifg", "gru", "rnn_tanh")
SIGMOID_GATES = ("i", "f", "o", "r", "z")


@pytest.fixture(scope="module")
def sine():
    return get_task("sine", test_size=1)


def _model(task, variant, **settings):
    mc = task.model_config(hidden_size=4, variant=variant, dtype="float64", **settings)
    return network_class(mc, "numpy")(mc, seed=0)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("t,layer", [(0, 0), (7, 0), (0, 1), (7, 1)])
def test_forward_numbers_equal_the_numpy_trace(sine, variant, t, layer):
    model = _model(sine, variant, num_layers=2)
    x = sine.examples("test").take(0).x[:12]
    trace = model.rnn.trace(x)[f"l{layer}"]
    st = step_through(model, x, t=t, layer=layer, unit=1)
    shown = [n for n in trace if n in st.values]
    assert set(shown) == set(trace)                              # every gate, c and h
    for name in shown:
        assert_close(st.values[name], trace[name][t, 0], TOL, f"{name} (all units)")
    h_prev = trace["h"][t - 1, 0] if t else np.zeros(4)
    assert_close(st.values["h_prev"], h_prev, TOL, "h_prev")
    if layer:                                                    # its input: the h below
        assert_close(st.values["x"], model.rnn.trace(x)["l0"]["h"][t, 0], TOL, "x")
    for k, terms in st.pre.items():                              # pre-activations: sigma^-1 of the gate
        total = terms["total"]
        assert_close(total, sum(v for n, v in terms.items() if n != "total"), TOL, "terms")
        if k in SIGMOID_GATES:
            assert_close(sigmoid(total), st.values[k], TOL, f"sigma(a_{k})")
            value = np.clip(st.values[k], 1e-12, 1 - 1e-12)
            assert_close(total, np.log(value / (1 - value)), 1e-6, f"logit of {k}")
        else:                                                    # g, n, the RNN's h: tanh
            assert_close(np.tanh(total), st.values[k], TOL, f"tanh(a_{k})")
    j = st.to_json()
    assert j["unit"] == 1 and j["t"] == t and j["group"] == f"l{layer}"
    assert j["quantities"]["h"]["value"] == pytest.approx(trace["h"][t, 0, 1], abs=TOL)
    assert j["quantities"]["h"]["all"] == pytest.approx(trace["h"][t, 0].tolist(), abs=TOL)
    assert set(j["equations"]) <= set(j["notes"]) and set(j["quantities"]) <= set(j["notes"])
    # each line as `lstmlab variants` prints it: the variant's own, or its family's standard one
    assert j["equations"]["h"] in j["doc"] + lstmlab.VARIANTS["lstm"].doc


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_numbers_equal_the_numpy_backward(sine, variant):
    model = _model(sine, variant)
    x = sine.examples("test").take(0).x[:10]
    subject = inspect.Subject(predictor_for(model), "numpy", sine)
    # the state gradients of the engine's backward, for the same loss (the last output)
    dout = np.zeros((10, 1, 1))
    dout[-1] = 1.0
    _, _, cache = model.forward(x)
    sg: dict = {}
    model.backward(cache, dout, state_grads=sg)
    for t in (9, 4, 1):
        st, before = step_through(subject, x, t=t), step_through(subject, x, t=t - 1)
        assert_close(st.backward["dh"], sg["l0"]["h"][t, 0], TOL, "dh")
        # what step t sends back is what the model's backward gives at t - 1 (before the last
        # output, whose own gradient adds to dh there)
        assert_close(st.backward["dh_prev"], sg["l0"]["h"][t - 1, 0], TOL, "dh_prev")
        if "c" in sg["l0"]:
            assert_close(st.backward["dc_next"], sg["l0"]["c"][t, 0], TOL, "dc_next")
            assert_close(st.backward["dc_prev"], sg["l0"]["c"][t - 1, 0], TOL, "dc_prev")
            assert_close(st.backward["dc_prev"], before.backward["dc_next"], TOL, "dc_{t-1}")
    if "c" in sg["l0"]:                                          # h = o * tanh(c)
        assert_close(st.backward["do"], st.backward["dh"] * np.tanh(st.values["c"]), TOL, "do")


def test_a_token_model_reads_its_embedding_row_and_torch_gives_the_same(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("In the beginning God created the heaven and the earth.\n" * 30, encoding="utf-8")
    task = get_task("charlm", text=str(path), seq_len=10)
    nm = _model(task, "lstm")
    mc = nm.config
    tm = network_class(mc, "torch")(mc, seed=1)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in nm.params.items()})
    a = step_through(inspect.Subject(predictor_for(nm), "numpy", task), "God created", t=2, unit=3)
    b = step_through(inspect.Subject(predictor_for(tm), "torch", task), "God created", t=2, unit=3)
    assert a.step_label == "d"
    assert_close(a.values["x"], nm.params["embedding.weight"][task.encode("d")[0]], TOL, "x")
    for name in a.values:
        assert_close(b.values[name], a.values[name], 1e-9, name)
    for name in a.backward:
        assert_close(b.backward[name], a.backward[name], 1e-9, f"backward {name}")
    assert "notebook" in NOTES["lstm"]["c_prev"] and "cross out" in NOTES["lstm"]["f"]


def test_navigation_out_of_range_names_the_range(sine):
    model = _model(sine, "lstm", num_layers=2)
    x = sine.examples("test").take(0).x[:6]
    assert raises_one_line(step_through, model, x, t=6) == \
        "t 6 is out of range: this model and input have steps 0 to 5"
    assert "layers 0 to 1" in raises_one_line(step_through, model, x, layer=2)
    assert "units 0 to 3" in raises_one_line(step_through, model, x, unit=-1)
    assert "direction" in raises_one_line(step_through, model, x, direction="reverse")
    assert "'last' or 'all'" in raises_one_line(step_through, model, x, loss="mse")
    both = _model(sine, "gru", bidirectional=True)
    st = step_through(both, x, t=5, direction="reverse")           # its previous step is t + 1 = 6
    assert_close(st.values["h_prev"], np.zeros(4), TOL, "h before the reverse start")
    assert_close(st.values["h"], both.rnn.trace(x)["l0_reverse"]["h"][5, 0], TOL, "reverse h")


@pytest.mark.parametrize("variant", list(lstmlab.VARIANTS))
def test_every_variant_steps_as_its_trace_and_its_backward_lines_hold(sine, variant):
    spec = lstmlab.variant(variant)
    model = _model(sine, variant)
    x = sine.examples("test").take(0).x[:8]
    trace = model.rnn.trace(x)["l0"]
    st = step_through(model, x, t=3, loss="all")
    for name in trace:
        assert_close(st.values[name], trace[name][3, 0], TOL, name)
    squash = {k: sigmoid for k in SIGMOID_GATES}
    squash.update(g=ACTIVATIONS[spec.input_activation][0], n=np.tanh,
                  h=ACTIVATIONS[spec.nonlinearity][0])
    for k, terms in st.pre.items():                              # value = squash(pre-activation)
        assert_close(squash[k](terms["total"]), st.values[k], TOL, f"a_{k}")
    if spec.gate_recurrence:                                     # the gates' state has no gradient shown
        assert st.backward is None and "fgr" in st.backward_note
        return
    b, v = st.backward, st.values
    slope = {k: v[k] * (1 - v[k]) for k in SIGMOID_GATES if k in v}
    for k in slope:                                              # da_k = d_k * sigma'(a_k)
        if f"da_{k}" in b:
            assert_close(b[f"da_{k}"], b[f"d{k}"] * slope[k], TOL, f"da_{k}")
    if spec.family == "lstm":
        assert_close(b["da_g"], b["dg"] * ACTIVATIONS[spec.input_activation][1](st.pre["g"]["total"]),
                     TOL, "da_g")
        if not spec.peepholes:
            assert_close(b["dc_prev"], b["dc"] * v.get("f", 1.0), TOL, "dc_prev = dc * f")
    elif spec.family == "gru":
        assert_close(b["da_n"], b["dn"] * (1 - v["n"] ** 2), TOL, "da_n")
    else:
        assert_close(b["da_h"], b["dh"] * ACTIVATIONS[spec.nonlinearity][1](st.pre["h"]["total"]),
                     TOL, "da")
    assert set(b) - {"dh", "dc_next"} <= set(st.backward_equations)


def test_above_a_bidirectional_layer_x_is_both_directions_h(sine):
    model = _model(sine, "lstm", num_layers=2, bidirectional=True)
    x = sine.examples("test").take(0).x[:6]
    trace = model.rnn.trace(x)
    for direction, group in (("", "l1"), ("reverse", "l1_reverse")):
        st = step_through(model, x, t=2, layer=1, unit=0, direction=direction)
        assert_close(st.values["x"], np.concatenate([trace["l0"]["h"][2, 0],
                                                     trace["l0_reverse"]["h"][2, 0]]), TOL, "x")
        for name in trace[group]:
            assert_close(st.values[name], trace[group][name][2, 0], TOL, f"{group}.{name}")
        assert st.backward is not None and st.group == group

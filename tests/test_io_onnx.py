"""ONNX export and import of NumPy models (lstmlab.io.onnx), checked by onnxruntime.

Every variant of lstmlab.VARIANTS is exported as a 2-layer bidirectional model with random
weights, run by onnxruntime at two different (T, B) (the graph's dimensions are dynamic),
and must agree with lstmlab.numpy within 1e-5 (float32). Variants ONNX defines become its
LSTM/GRU/RNN nodes, the others Scan loops; load_onnx reads native files back bit-exactly
and reads hand-built single-node graphs, which onnxruntime runs as the oracle.

onnxruntime implements LSTM, GRU and RNN for float32 only, so float64 is checked through
the loop graph (native=False), which it runs in float64, and through onnx's
ReferenceEvaluator for native nodes.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import lstmlab  # noqa: E402
from lstmlab.families import FAMILIES  # noqa: E402
from lstmlab.io.onnx import export_onnx, is_native, load_onnx  # noqa: E402
from lstmlab.numpy import Linear  # noqa: E402

from .conftest import assert_close  # noqa: E402

I, H, TOL = 3, 4, 1e-5
SHAPES = [(5, 2), (3, 4)]                    # two (T, B): the graph's dims are dynamic
CLASSES = {name: getattr(lstmlab.numpy, f.class_name) for name, f in FAMILIES.items()}  # by family
NATIVE = ["lstm", "peephole", "cifg", "gru", "gru_cho", "rnn_tanh", "rnn_relu"]
NATIVE_OPS = {"LSTM", "GRU", "RNN"}


def make(spec, *, seed=0, dtype=np.float32, num_layers=2, bidirectional=True, **kw):
    """A model with every weight (gains, peepholes, gate recurrence too) uniform in [-1, 1]."""
    spec = lstmlab.variant(spec)
    m = CLASSES[spec.family](I, H, num_layers=num_layers, bidirectional=bidirectional,
                             variant=spec, dtype=dtype, seed=seed, **kw)
    rng = np.random.default_rng(seed + 100)
    m.load_state_dict({k: rng.uniform(-1.0, 1.0, v.shape) for k, v in m.params.items()})
    return m


def make_head(model, seed=0):
    width = model.num_directions * model.out_size
    return Linear(width, 2, dtype=model.dtype, seed=seed)


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def op_types(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def check_against_numpy(model, path, head=None, tol=TOL, shapes=SHAPES, state=False, seed=0):
    """Run the exported file with onnxruntime at each (T, B); compare with the model.

    Returns the largest difference seen."""
    sess = session(path)
    rng = np.random.default_rng(seed)
    names = [o.name for o in sess.get_outputs()]
    lstm = model.spec.family == "lstm"
    assert names == (["y", "h_n", "c_n"] if lstm else ["y", "h_n"])
    worst = 0.0
    for T, B in shapes:
        shape = (B, T, I) if model.batch_first else (T, B, I)
        x = rng.standard_normal(shape).astype(model.dtype)
        feeds, state0 = {"x": x}, None
        if state:
            LD = model.num_layers * model.num_directions
            h0 = rng.uniform(-1, 1, (LD, B, model.out_size)).astype(model.dtype)
            feeds["h0"] = h0
            if lstm:
                c0 = rng.uniform(-1, 1, (LD, B, H)).astype(model.dtype)
                feeds["c0"], state0 = c0, (h0, c0)
            else:
                state0 = h0
        got = dict(zip(names, sess.run(None, feeds)))
        y, st = model(x, state0)
        if head is not None:
            y = head(y)
        want = {"y": y, "h_n": st[0] if lstm else st}
        if lstm:
            want["c_n"] = st[1]
        for name, w in want.items():
            assert got[name].dtype == model.dtype, name
            assert np.abs(w).max() > 0, f"{name} is all zeros: a weak test"
            assert_close(got[name], w, tol, f"{model.spec.name} {name} at T={T}, B={B}")
            worst = max(worst, float(np.abs(got[name] - w).max()))
    return worst


# --- export: every variant against onnxruntime -------------------------------------------
@pytest.mark.parametrize("with_head", [False, True], ids=["no_head", "head"])
@pytest.mark.parametrize("name", list(lstmlab.VARIANTS))
def test_every_variant_matches_onnxruntime(tmp_path, name, with_head):
    model = make(name)
    head = make_head(model) if with_head else None
    path = export_onnx(model, tmp_path / f"{name}.onnx", head=head)
    assert path == tmp_path / f"{name}.onnx"
    ops = op_types(path)
    if name in NATIVE:                                           # ONNX's own operator, no loop
        assert is_native(model.spec)
        assert ops & NATIVE_OPS == {model.spec.family.upper()} and "Scan" not in ops
    else:
        assert not is_native(model.spec)
        assert "Scan" in ops and not ops & NATIVE_OPS
    check_against_numpy(model, path, head)


@pytest.mark.parametrize("name", NATIVE)
def test_loop_graph_of_native_variants(tmp_path, name):
    """native=False writes ONNX's own variants as Scan loops too: the same numbers."""
    model = make(name, seed=1)
    path = export_onnx(model, tmp_path / "m.onnx", native=False)
    ops = op_types(path)
    assert "Scan" in ops and not ops & NATIVE_OPS
    check_against_numpy(model, path)


@pytest.mark.parametrize("spec", [
    lstmlab.variant("cifg", peepholes=True), lstmlab.variant("nig", peepholes=True),
    lstmlab.variant("fgr", peepholes=True), lstmlab.variant("layernorm", coupled_gates=True),
    lstmlab.variant("nog", output_activation="identity"),
], ids=lambda s: s.name)
def test_composed_variants(tmp_path, spec):
    model = make(spec, seed=2)
    head = make_head(model)
    path = export_onnx(model, tmp_path / "m.onnx", head=head)
    assert ("LSTM" in op_types(path)) == is_native(spec)
    check_against_numpy(model, path, head)


@pytest.mark.parametrize("name", ["lstm", "peephole", "cifg", "layernorm", "fgr", "lstm1997"])
def test_projection_and_batch_first(tmp_path, name):
    """proj_size has no ONNX operator: a Scan loop with h = W_hr h in its body."""
    model = make(name, seed=3, proj_size=2, batch_first=True)
    head = make_head(model)
    path = export_onnx(model, tmp_path / "m.onnx", head=head)
    assert "Scan" in op_types(path)
    inp = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in inp] == ["batch", "seq", I]
    check_against_numpy(model, path, head)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_relu", "layernorm"])
def test_batch_first_native_and_single_layer(tmp_path, name):
    model = make(name, seed=4, num_layers=1, bidirectional=False, batch_first=True)
    check_against_numpy(model, export_onnx(model, tmp_path / "m.onnx"))


@pytest.mark.parametrize("native", [True, False], ids=["native", "loop"])
@pytest.mark.parametrize("name", ["peephole", "gru", "rnn_tanh", "fgr"])
def test_initial_state_inputs(tmp_path, name, native):
    model = make(name, seed=5)
    path = export_onnx(model, tmp_path / "m.onnx", initial_state=True, native=native)
    inputs = [i.name for i in onnx.load(str(path)).graph.input]
    assert inputs == (["x", "h0", "c0"] if model.spec.family == "lstm" else ["x", "h0"])
    check_against_numpy(model, path, state=True)


@pytest.mark.parametrize("opset", [14, 18, 21])
def test_opsets(tmp_path, opset):
    """ReduceMean takes its axes as an attribute before opset 18 and as an input after."""
    model = make(lstmlab.variant("layernorm", peepholes=True), seed=6, proj_size=3)
    path = export_onnx(model, tmp_path / "m.onnx", opset=opset)
    assert onnx.load(str(path)).opset_import[0].version == opset
    check_against_numpy(model, path)


@pytest.mark.parametrize("name", list(lstmlab.VARIANTS))
def test_float64_loop_graph(tmp_path, name):
    model = make(name, seed=7, dtype=np.float64)
    head = make_head(model)
    path = export_onnx(model, tmp_path / "m.onnx", head=head, native=False)
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    check_against_numpy(model, path, head, tol=1e-12)


@pytest.mark.parametrize("name", ["lstm", "peephole", "gru", "gru_cho", "rnn_tanh"])
def test_float64_native_with_reference_evaluator(tmp_path, name):
    """Native float64 nodes are valid ONNX; onnxruntime lacks the kernels, onnx's reference
    evaluator runs them (its LSTM ignores input_forget and its RNN knows no Relu, so cifg
    and rnn_relu are left out)."""
    model = make(name, seed=8, dtype=np.float64)
    path = export_onnx(model, tmp_path / "m.onnx")
    assert op_types(path) & NATIVE_OPS
    x = np.random.default_rng(0).standard_normal((5, 2, I))
    got = ReferenceEvaluator(str(path)).run(None, {"x": x})
    y, st = model(x)
    st = st if isinstance(st, tuple) else (st,)
    for a, b in zip(got, [y, *st]):
        assert a.dtype == np.float64
        assert_close(a, b, 1e-12, name)


def test_export_overwrites_atomically(tmp_path):
    path = tmp_path / "sub" / "m.onnx"
    export_onnx(make("lstm"), path)
    first = path.read_bytes()
    export_onnx(make("gru"), path)
    assert path.read_bytes() != first
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]   # no temporary left
    onnx.checker.check_model(str(path), full_check=True)


def test_export_rejects_bad_arguments(tmp_path):
    model = make("lstm")
    with pytest.raises(ValueError, match="head has 3 input features, the model's y has 8"):
        export_onnx(model, tmp_path / "m.onnx", head=Linear(3, 2))
    with pytest.raises(ValueError, match="same dtype"):
        export_onnx(model, tmp_path / "m.onnx", head=Linear(8, 2, dtype=np.float64))
    with pytest.raises(ValueError, match="opset must be an integer in 14.."):
        export_onnx(model, tmp_path / "m.onnx", opset=9)
    with pytest.raises(ValueError, match="needs a lstmlab.numpy LSTM, GRU or RNN"):
        export_onnx(Linear(3, 2), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_importing_the_module_does_not_import_onnx():
    code = ("import sys, lstmlab.io.onnx; "
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_onnx_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)               # import onnx -> ImportError
    with pytest.raises(ValueError) as e:
        export_onnx(make("lstm"), tmp_path / "m.onnx")
    assert str(e.value) == "ONNX export needs the onnx package: pip install 'lstmlab[onnx]'"
    with pytest.raises(ValueError, match=r"needs the onnx package: pip install 'lstmlab\[onnx\]'"):
        load_onnx(tmp_path / "m.onnx")


# --- import -------------------------------------------------------------------------------
ROUND_TRIP = NATIVE[:3] + [lstmlab.variant("cifg", peepholes=True)] + NATIVE[3:]


@pytest.mark.parametrize("spec", ROUND_TRIP, ids=str)
def test_round_trip_is_bit_exact(tmp_path, spec):
    model = make(spec, seed=9)
    loaded = load_onnx(export_onnx(model, tmp_path / "m.onnx"))
    assert type(loaded) is type(model)
    assert loaded.spec == model.spec
    assert (loaded.num_layers, loaded.bidirectional, loaded.batch_first) == (2, True, False)
    assert (loaded.input_size, loaded.hidden_size, loaded.dtype) == (I, H, np.float32)
    assert list(loaded.params) == list(model.params)
    for k, v in model.params.items():
        assert loaded.params[k].dtype == v.dtype
        np.testing.assert_array_equal(loaded.params[k], v, err_msg=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_batch_first_and_dtype(tmp_path, dtype):
    model = make("peephole", seed=10, num_layers=3, bidirectional=False, batch_first=True,
                 dtype=dtype)
    path = export_onnx(model, tmp_path / "m.onnx", head=make_head(model), initial_state=True)
    loaded = load_onnx(path)
    assert loaded.batch_first and loaded.num_layers == 3 and loaded.dtype == dtype
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v, err_msg=k)
    assert load_onnx(path, dtype=np.float64).dtype == np.float64


def _hand_built(op, D, rng, attrs, P=False, T=6, B=3, constant_node=False, layout=0):
    """One ONNX node with random W, R, B (and P), as a user or another tool would write it."""
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    w = {"W": rng.uniform(-1, 1, (D, G * H, I)), "R": rng.uniform(-1, 1, (D, G * H, H)),
         "B": rng.uniform(-1, 1, (D, 2 * G * H))}
    if P:
        w["P"] = rng.uniform(-1, 1, (D, 3 * H))
    w = {k: v.astype(np.float32) for k, v in w.items()}
    slots = ["X", "W", "R", "B"] + (["", "", "", "P"] if P else [])
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward",
             **({"layout": layout} if layout else {}), **attrs}
    nodes = [helper.make_node(op, slots, outs, name="rnn0", **attrs)]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    if constant_node:                                            # W from a Constant node
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=inits.pop(0)))
    x_shape = [B, T, I] if layout else [T, B, I]
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outs],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    x = rng.standard_normal(x_shape).astype(np.float32)
    return model, x


HAND = {
    "lstm_peephole_bidirectional": ("LSTM", 2, {}, True, "peephole"),
    "lstm_cifg_peephole": ("LSTM", 1, {"input_forget": 1}, True, "cifg+peepholes"),
    "lstm_plain_activations_given": ("LSTM", 2, {"activations": ["Sigmoid", "Tanh", "Tanh"] * 2},
                                     False, "lstm"),
    "gru_linear_before_reset": ("GRU", 2, {"linear_before_reset": 1}, False, "gru"),
    "gru_cho": ("GRU", 1, {}, False, "gru_cho"),
    "rnn_relu": ("RNN", 2, {"activations": ["Relu", "Relu"]}, False, "rnn_relu"),
    "rnn_tanh": ("RNN", 1, {}, False, "rnn_tanh"),
}


@pytest.mark.parametrize("case", list(HAND))
def test_hand_built_node_loads_and_matches_onnxruntime(tmp_path, case):
    op, D, attrs, P, name = HAND[case]
    rng = np.random.default_rng(11)
    proto, x = _hand_built(op, D, rng, attrs, P=P, constant_node=case == "rnn_tanh")
    onnx.save(proto, str(tmp_path / "m.onnx"))
    theirs = session(tmp_path / "m.onnx").run(None, {"X": x})
    model = load_onnx(tmp_path / "m.onnx")
    assert model.spec.name == name and model.bidirectional == (D == 2)
    assert not model.batch_first
    y, st = model(x)
    st = st if isinstance(st, tuple) else (st,)
    T, D_, B, _ = theirs[0].shape                                # Y: (T, D, B, H)
    y_theirs = theirs[0].transpose(0, 2, 1, 3).reshape(T, B, D_ * H)
    for a, b, what in zip([y, *st], [y_theirs, *theirs[1:]], ["Y", "Y_h", "Y_c"]):
        assert_close(a, b, TOL, f"{case} {what}")


def test_layout_1_loads_batch_first(tmp_path):
    """layout=1 (X as (B, T, I)) reads as batch_first; onnxruntime has no kernel for it, so
    the same weights with layout=0 are the oracle."""
    paths = []
    for layout in (0, 1):
        proto, _ = _hand_built("GRU", 2, np.random.default_rng(16), {}, layout=layout)
        paths.append(tmp_path / f"layout{layout}.onnx")
        onnx.save(proto, str(paths[-1]))
    time_major, batch_major = load_onnx(paths[0]), load_onnx(paths[1])
    assert batch_major.batch_first and not time_major.batch_first
    for k, v in time_major.params.items():
        np.testing.assert_array_equal(batch_major.params[k], v, err_msg=k)
    x = np.random.default_rng(17).standard_normal((6, 3, I)).astype(np.float32)   # (T, B, I)
    Y, Y_h = session(paths[0]).run(None, {"X": x})
    y, h = batch_major(x.transpose(1, 0, 2))                     # (B, T, D*H)
    assert_close(y, Y.transpose(2, 0, 1, 3).reshape(3, 6, 2 * H), TOL, "y")
    assert_close(h, Y_h, TOL, "h")


def test_hand_built_stack_of_nodes(tmp_path):
    """Two LSTM nodes joined as PyTorch's exporter joins them (Squeeze of D): two layers."""
    rng = np.random.default_rng(12)
    w = {f"{k}{n}": rng.uniform(-1, 1, s).astype(np.float32) for n in (0, 1)
         for k, s in (("W", (1, 4 * H, I if n == 0 else H)), ("R", (1, 4 * H, H)),
                      ("B", (1, 8 * H)))}
    nodes = [helper.make_node("LSTM", ["X", "W0", "R0", "B0"], ["Y0", "h0", "c0"], hidden_size=H),
             helper.make_node("Squeeze", ["Y0", "axis1"], ["X1"]),
             helper.make_node("LSTM", ["X1", "W1", "R1", "B1"], ["Y1", "h1", "c1"], hidden_size=H)]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    graph = helper.make_graph(
        nodes, "stack", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I])],
        [helper.make_tensor_value_info("Y1", TensorProto.FLOAT, None)], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "m.onnx"))
    x = rng.standard_normal((6, 2, I)).astype(np.float32)
    (Y1,) = session(tmp_path / "m.onnx").run(None, {"X": x})
    model = load_onnx(tmp_path / "m.onnx")
    assert model.num_layers == 2 and model.spec.name == "lstm"
    assert_close(model(x)[0], Y1[:, 0], TOL, "stacked Y")


def _write(tmp_path, proto):
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    return path


def _expect_one_line_error(path, match):
    with pytest.raises(ValueError, match=match) as e:
        load_onnx(path)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 400, msg
    return msg


@pytest.mark.parametrize("change, match", [
    ({"clip": 3.0}, "attribute clip, which is unsupported"),
    ({"activations": ["Sigmoid", "Relu", "Tanh"]}, "activations=.*unsupported"),
    ({"direction": "backwards"}, "direction='backwards'; ONNX defines forward, reverse"),
    ({"activation_alpha": [1.0]}, "activation_alpha, which is unsupported"),
])
def test_unsupported_attributes(tmp_path, change, match):
    proto, _ = _hand_built("LSTM", 1, np.random.default_rng(13), change)
    _expect_one_line_error(_write(tmp_path, proto), match)


def test_rnn_mixed_activations_are_unsupported(tmp_path):
    proto, _ = _hand_built("RNN", 2, np.random.default_rng(13), {"activations": ["Relu", "Tanh"]})
    _expect_one_line_error(_write(tmp_path, proto), "only Tanh or Relu in every direction")


def test_bias_may_be_left_out(tmp_path):
    proto, x = _hand_built("LSTM", 1, np.random.default_rng(18), {})
    node = proto.graph.node[0]
    node.input[3] = ""                                           # B: optional, zeros
    (Y, _, _) = session(_write(tmp_path, proto)).run(None, {"X": x})
    model = load_onnx(tmp_path / "m.onnx")
    assert not any(np.any(v) for k, v in model.params.items() if k.startswith("bias"))
    assert_close(model(x)[0], Y[:, 0], TOL, "Y")


def test_nodes_that_are_not_a_stack(tmp_path):
    """Two LSTM nodes reading the same X (not one after the other) are not two layers."""
    proto, _ = _hand_built("LSTM", 1, np.random.default_rng(19), {})
    second = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y2", "h2", "c2"], hidden_size=H)
    proto.graph.node.append(second)
    _expect_one_line_error(_write(tmp_path, proto), "input X is not the previous node's output Y")


def test_weights_that_are_graph_inputs_must_be_given(tmp_path):
    proto, _ = _hand_built("GRU", 1, np.random.default_rng(14), {})
    g = proto.graph
    r = next(t for t in g.initializer if t.name == "R")
    g.input.append(helper.make_tensor_value_info("R", TensorProto.FLOAT, list(r.dims)))
    g.initializer.remove(r)
    msg = _expect_one_line_error(_write(tmp_path, proto), "takes the weight.s. R as graph input")
    assert "load_onnx(path, inputs={'R': array})" in msg


def test_graph_without_recurrent_nodes(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _expect_one_line_error(_write(tmp_path, proto), "no ONNX LSTM, GRU or RNN node.*Relu")


def test_loop_graph_is_not_loadable(tmp_path):
    path = export_onnx(make("layernorm"), tmp_path / "m.onnx")
    _expect_one_line_error(path, "no ONNX LSTM, GRU or RNN node")


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "pickle", "text", "missing"])
def test_bad_files(tmp_path, kind):
    path = tmp_path / "bad.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        good = export_onnx(make("lstm"), tmp_path / "good.onnx").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(15).bytes(3000))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"weight_ih_l0": np.ones((16, 3), np.float32)}))
    elif kind == "text":
        path.write_text("hello, I am not a model\n")
    _expect_one_line_error(path, "is empty|is not an ONNX model|cannot read")


@pytest.mark.parametrize("name", ["lstm", "layernorm", "gru", "rnn_relu"])
@pytest.mark.parametrize("readout", ["sequence", "last", "mean"])
def test_sequence_model_with_token_ids_and_last_readout(tmp_path, name, readout):
    """A task's whole network (embedding, stack, head) as one ONNX graph: native and loop."""
    from lstmlab.config import ModelConfig
    from lstmlab.io.export import export_run
    from lstmlab.numpy.model import SequenceModel

    cfg = ModelConfig(input_size=4, output_size=3, variant=name, hidden_size=5, num_layers=2,
                      bidirectional=True, vocab_size=11, readout=readout)
    model = SequenceModel(cfg, seed=2)
    run = tmp_path / "run"
    lstmlab.save(model, run / "model.safetensors")
    path = export_run(run, "onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for T, B in ((6, 3), (2, 1)):
        ids = np.random.default_rng(T).integers(0, 11, size=(T, B))
        got = sess.run(["y"], {"x": ids.astype(np.int64)})[0]
        want = model(ids)[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

"""load_onnx on the models ONNX's backend tests build: direction="reverse", weights that are
graph inputs (fed at run time, or with an initializer as their default) and Constant nodes.

The oracle is onnxruntime running the same file with the same feeds; onnx's
ReferenceEvaluator runs what onnxruntime has no kernel for (layout=1). A reverse-only node
loads as a TimeReversed: the forward model run over each sequence backwards.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import lstmlab  # noqa: E402
from lstmlab.io.onnx import TimeReversed, export_onnx, load_onnx  # noqa: E402
from lstmlab.numpy import LSTM  # noqa: E402

from .conftest import assert_close  # noqa: E402

T, B, I, H = 6, 3, 4, 5
TOL = 1e-5
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SLOTS = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]


def weights(op, D, rng, peepholes=False):
    """Random W, R, B (and P) in ONNX's layout, float32."""
    G = GATES[op]
    w = {"W": rng.uniform(-1, 1, (D, G * H, I)), "R": rng.uniform(-1, 1, (D, G * H, H)),
         "B": rng.uniform(-1, 1, (D, 2 * G * H))}
    if peepholes:
        w["P"] = rng.uniform(-1, 1, (D, 3 * H))
    return {k: v.astype(np.float32) for k, v in w.items()}


def node_model(op, w, *, direction="forward", fed=(), seq_lens=False, outputs=None,
               inits=None, layout=0, **attrs):
    """One node as the backend tests write it: the names in `fed` are graph inputs without
    a value; the other weights are initializers (or the tensors given in `inits`)."""
    used = ["X", *w] + (["sequence_lens"] if seq_lens else [])
    ins = [s if s in used else "" for s in SLOTS]
    while not ins[-1]:
        ins.pop()
    outs = outputs or (["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"])
    node = helper.make_node(op, ins, outs, hidden_size=H, direction=direction,
                            **({"layout": layout} if layout else {}), **attrs)
    x_shape = [B, T, I] if layout else [T, B, I]
    g_in = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    g_in += [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(w[k].shape)) for k in fed]
    if seq_lens:
        g_in.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
    initializers = inits if inits is not None else \
        [numpy_helper.from_array(v, k) for k, v in w.items() if k not in fed]
    graph = helper.make_graph([node], "node", g_in,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                               for o in outs if o], initializer=initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    proto.ir_version = 8
    return proto


def save(tmp_path, proto, name="m.onnx"):
    path = tmp_path / name
    onnx.save(proto, str(path))
    return path


def run_ort(path, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def ours(model, x, lengths=None):
    """The loaded model's (y, h_n[, c_n]) as ONNX lays them out: Y (T, D, B, H)."""
    y, st = model(x, lengths=lengths)
    st = st if isinstance(st, tuple) else (st,)
    D = y.shape[-1] // H
    return {"Y": y.reshape(T, B, D, H).transpose(0, 2, 1, 3), "Y_h": st[0],
            **({"Y_c": st[1]} if len(st) > 1 else {})}


def compare(got, want, what):
    assert set(want) <= set(got), (sorted(want), sorted(got))
    for k, v in want.items():
        assert np.abs(v).max() > 0, f"{what} {k} is all zeros: a weak test"
        assert_close(got[k], v, TOL, f"{what} {k}")


CASES = {
    "lstm": ("LSTM", {}, False, "lstm"),
    "lstm_peepholes": ("LSTM", {}, True, "peephole"),
    "lstm_cifg": ("LSTM", {"input_forget": 1}, False, "cifg"),
    "gru_cho": ("GRU", {}, False, "gru_cho"),
    "gru": ("GRU", {"linear_before_reset": 1}, False, "gru"),
    "rnn_tanh": ("RNN", {}, False, "rnn_tanh"),
    "rnn_relu": ("RNN", {"activations": ["Relu"]}, False, "rnn_relu"),
}


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("case", list(CASES))
def test_weights_fed_at_run_time(tmp_path, case, direction):
    """W, R, B (P) as graph inputs without values, as in test_lstm_defaults and its kin: the
    arrays come with `inputs`, and the model equals onnxruntime fed the same arrays."""
    op, attrs, peepholes, name = CASES[case]
    D = 2 if direction == "bidirectional" else 1
    if "activations" in attrs:
        attrs = {"activations": attrs["activations"] * D}
    rng = np.random.default_rng(1)
    w = weights(op, D, rng, peepholes)
    path = save(tmp_path, node_model(op, w, direction=direction, fed=list(w), **attrs))
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    theirs = run_ort(path, {"X": x, **w})
    model = load_onnx(path, inputs=w)
    assert isinstance(model, TimeReversed) == (direction == "reverse")
    assert (model.model if direction == "reverse" else model).spec.name == name
    compare(ours(model, x), theirs, f"{case} {direction}")


def test_backend_defaults_graph_without_y(tmp_path):
    """test_gru_defaults exactly: inputs X, W, R, outputs ("", "Y_h")."""
    rng = np.random.default_rng(2)
    w = weights("GRU", 1, rng)
    del w["B"]
    path = save(tmp_path, node_model("GRU", w, fed=["W", "R"], outputs=["", "Y_h"]))
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    model = load_onnx(path, inputs=w)
    compare({"Y_h": model(x)[1]}, run_ort(path, {"X": x, **w}), "gru defaults")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_reverse_with_sequence_lengths(tmp_path, op):
    """Each sequence is read from its own last step: lengths at call time = ONNX's
    sequence_lens fed at run time; outputs past each end are zero."""
    rng = np.random.default_rng(3)
    w = weights(op, 1, rng, peepholes=op == "LSTM")
    path = save(tmp_path, node_model(op, w, direction="reverse", seq_lens=True))
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = np.array([4, T, 1])
    theirs = run_ort(path, {"X": x, "sequence_lens": lengths.astype(np.int32)})
    model = load_onnx(path)
    got = ours(model, x, lengths)
    compare(got, theirs, f"{op} reverse with lengths")
    assert not got["Y"][4:, 0, 0].any() and not got["Y"][1:, 0, 2].any()


def test_reverse_from_an_initial_state(tmp_path):
    """initial_h and initial_c as graph inputs: the state the loaded model is called with."""
    rng = np.random.default_rng(13)
    w = weights("LSTM", 1, rng)
    proto = node_model("LSTM", w, direction="reverse")
    node = proto.graph.node[0]
    node.input.extend(["", "initial_h", "initial_c"])
    proto.graph.input.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, B, H])
                             for n in ("initial_h", "initial_c"))
    path = save(tmp_path, proto)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0, c0 = (rng.uniform(-1, 1, (1, B, H)).astype(np.float32) for _ in range(2))
    theirs = run_ort(path, {"X": x, "initial_h": h0, "initial_c": c0})
    y, (h, c) = load_onnx(path)(x, state=(h0, c0))
    compare({"Y": y[:, None], "Y_h": h, "Y_c": c}, theirs, "reverse from a state")


def test_reverse_batch_first_and_one_sequence(tmp_path):
    """layout=1 reverse (onnxruntime has no kernel: ReferenceEvaluator is the oracle), and a
    2-D x (T, I) with lengths as the model takes them."""
    rng = np.random.default_rng(4)
    w = weights("GRU", 1, rng)
    path = save(tmp_path, node_model("GRU", w, direction="reverse", layout=1,
                                     linear_before_reset=1))
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    Y, Y_h = ReferenceEvaluator(str(path)).run(None, {"X": x})   # Y (B, T, D, H), Y_h (B, D, H)
    model = load_onnx(path)
    assert isinstance(model, TimeReversed) and model.model.batch_first
    y, h = model(x)
    assert_close(y, Y[:, :, 0], TOL, "y")
    assert_close(h, Y_h.transpose(1, 0, 2), TOL, "h")
    # one sequence of 4 steps, unbatched: the same numbers as its row of a batched call
    y1, h1 = model(x[0, :4])
    y4, h4 = model(x[:1, :4])
    assert_close(y1, y4[0], 1e-6, "unbatched y")
    assert_close(h1, h4[:, 0], 1e-6, "unbatched h")
    y1, h1 = model(x[0], lengths=[4])
    assert_close(y1[:4], y4[0], 1e-6, "unbatched y with lengths")
    assert not y1[4:].any()


def test_stack_of_reverse_nodes(tmp_path):
    """Two reverse LSTM nodes, one after the other: a 2-layer TimeReversed."""
    rng = np.random.default_rng(5)
    w0, w1 = weights("LSTM", 1, rng), weights("LSTM", 1, rng)
    w1["W"] = rng.uniform(-1, 1, (1, 4 * H, H)).astype(np.float32)
    inits = [numpy_helper.from_array(v, f"{k}{n}") for n, w in ((0, w0), (1, w1))
             for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    nodes = [helper.make_node("LSTM", ["X", "W0", "R0", "B0"], ["Y0", "", ""], hidden_size=H,
                              direction="reverse"),
             helper.make_node("Squeeze", ["Y0", "axis1"], ["X1"]),
             helper.make_node("LSTM", ["X1", "W1", "R1", "B1"], ["Y", "Y_h", "Y_c"],
                              hidden_size=H, direction="reverse")]
    graph = helper.make_graph(nodes, "stack",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    proto.ir_version = 8
    path = save(tmp_path, proto)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    model = load_onnx(path)
    assert isinstance(model, TimeReversed) and model.model.num_layers == 2
    assert_close(model(x)[0], run_ort(path, {"X": x})["Y"][:, 0], TOL, "stacked reverse Y")


def test_time_reversed_is_not_taken_for_a_forward_model(tmp_path):
    model = TimeReversed(LSTM(I, H))
    assert repr(model) == "TimeReversed(LSTM(4, 5, variant='lstm', dtype=float32))"
    with pytest.raises(ValueError, match="cannot save a TimeReversed"):
        lstmlab.save(model, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="needs a lstmlab.numpy LSTM, GRU or RNN, got TimeReversed"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="needs a one-direction"):
        TimeReversed(LSTM(I, H, bidirectional=True))
    with pytest.raises(ValueError, match="lengths must lie in 1..6"):
        model(np.zeros((T, B, I), np.float32), lengths=[7, 1, 1])
    with pytest.raises(ValueError, match="x has 3 features, the model expects 4"):
        model(np.zeros((T, B, 3), np.float32))


def test_mixed_directions_are_not_one_stack(tmp_path):
    rng = np.random.default_rng(6)
    proto = node_model("LSTM", weights("LSTM", 1, rng), direction="reverse", outputs=["Y0", "h", "c"])
    more = weights("LSTM", 1, rng)
    more["W"] = rng.uniform(-1, 1, (1, 4 * H, H)).astype(np.float32)
    proto.graph.initializer.extend(numpy_helper.from_array(v, k + "1") for k, v in more.items())
    proto.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    proto.graph.node.extend([helper.make_node("Squeeze", ["Y0", "axis1"], ["X1"]),
                             helper.make_node("LSTM", ["X1", "W1", "R1", "B1"], ["Y1", "", ""],
                                              hidden_size=H)])
    with pytest.raises(ValueError, match="differs from node 0 in variant, direction"):
        load_onnx(save(tmp_path, proto))


def test_graph_inputs_with_initializers(tmp_path):
    """A weight listed as a graph input with an initializer: the initializer is its default,
    and a value in `inputs` replaces it, as a runtime's feed does."""
    rng = np.random.default_rng(7)
    w = weights("LSTM", 2, rng, peepholes=True)
    proto = node_model("LSTM", w, direction="bidirectional")
    proto.graph.input.extend(helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape))
                             for k, v in w.items())
    path = save(tmp_path, proto)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    compare(ours(load_onnx(path), x), run_ort(path, {"X": x}), "defaults")
    other = {"R": rng.uniform(-1, 1, w["R"].shape).astype(np.float32),
             "P": rng.uniform(-1, 1, w["P"].shape).astype(np.float32)}
    theirs = run_ort(path, {"X": x, **other})
    compare(ours(load_onnx(path, inputs=other), x), theirs, "fed")
    assert np.abs(theirs["Y"] - run_ort(path, {"X": x})["Y"]).max() > 1e-3   # the feed counts


def test_constant_nodes_make_every_weight(tmp_path):
    """W from a dense Constant, R from a sparse one, B and P from Constants too."""
    rng = np.random.default_rng(8)
    w = weights("LSTM", 1, rng, peepholes=True)
    w["R"][0, ::2] = 0.0                                         # half the rows sparse
    proto = node_model("LSTM", w, inits=[])
    consts = []
    for k, v in w.items():
        if k == "R":
            idx = np.flatnonzero(v)
            sparse = helper.make_sparse_tensor(numpy_helper.from_array(v.reshape(-1)[idx], "Rv"),
                                               numpy_helper.from_array(idx.astype(np.int64), "Ri"),
                                               list(v.shape))
            consts.append(helper.make_node("Constant", [], [k], sparse_value=sparse))
        else:
            consts.append(helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v)))
    nodes = consts + list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    path = save(tmp_path, proto)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    model = load_onnx(path)
    assert model.spec.name == "peephole"
    dense = node_model("LSTM", w)                                # the same weights, dense
    compare(ours(model, x), run_ort(save(tmp_path, dense, "dense.onnx"), {"X": x}), "constants")


def test_round_trip_with_fed_weights_is_bit_exact(tmp_path):
    """export_onnx's initializers turned into graph inputs: the same model back from inputs."""
    model = LSTM(I, H, num_layers=1, bidirectional=True, variant="peephole", seed=3)
    path = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    fed = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer
           if t.name in ("W_l0", "R_l0", "B_l0", "P_l0")}
    keep = [t for t in proto.graph.initializer if t.name not in fed]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    proto.graph.input.extend(helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape))
                             for k, v in fed.items())
    path = save(tmp_path, proto, "fed.onnx")
    loaded = load_onnx(path, inputs=fed)
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v, err_msg=k)


# --- what is still refused, in one line ---------------------------------------------------
def _one_line(path, match, **kw):
    with pytest.raises(ValueError, match=match) as e:
        load_onnx(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_missing_fed_weights_are_named(tmp_path):
    rng = np.random.default_rng(9)
    w = weights("LSTM", 1, rng)
    path = save(tmp_path, node_model("LSTM", w, fed=list(w)))
    msg = _one_line(path, r"takes the weight\(s\) W, R, B as graph input\(s\) fed at run time")
    assert "load_onnx(path, inputs={'W': array, 'R': array, 'B': array})" in msg
    _one_line(path, r"takes the weight\(s\) B as graph", inputs={"W": w["W"], "R": w["R"]})


@pytest.mark.parametrize("inputs, match", [
    ({"X": np.zeros((T, B, I))}, "'X', the model's input X: pass it when calling"),
    ({"sequence_lens": np.full(B, T)}, "the sequence lengths: pass them as lengths="),
    ({"Q": np.zeros(3)}, r"'Q', which is not a graph input of m.onnx \(it has: X, W, R, B, "),
    ({"W": [["a"]]}, "its W has dtype <U1, expected floating point"),
    ({"W": [[1.0], [1.0, 2.0]]}, r"inputs\['W'\] is not an array of numbers"),
    ({"W": np.full((1, 4 * H, I), np.nan, np.float32)}, "its W holds NaN or inf values"),
    ([("W", 1)], "inputs must be a dict"),
])
def test_bad_inputs(tmp_path, inputs, match):
    rng = np.random.default_rng(10)
    w = weights("LSTM", 1, rng)
    path = save(tmp_path, node_model("LSTM", w, fed=list(w), seq_lens=True))
    if isinstance(inputs, dict):
        inputs = {**{k: v for k, v in w.items() if k not in inputs}, **inputs}
    _one_line(path, match, inputs=inputs)


def test_constant_sequence_lens_is_refused(tmp_path):
    """A constant sequence_lens would be silently dropped: refused, lengths go at call time."""
    rng = np.random.default_rng(11)
    proto = node_model("GRU", weights("GRU", 1, rng), direction="reverse", seq_lens=True)
    g = proto.graph
    g.input.pop()                                                # no longer a graph input
    g.initializer.append(numpy_helper.from_array(np.full(B, 2, np.int32), "sequence_lens"))
    _one_line(save(tmp_path, proto), "a constant sequence_lens is unsupported")


def test_weights_computed_by_other_nodes_are_refused(tmp_path):
    rng = np.random.default_rng(12)
    w = weights("RNN", 1, rng)
    proto = node_model("RNN", w, direction="reverse")
    proto.graph.node[0].input[1] = "W2"
    proto.graph.node.insert(0, helper.make_node("Neg", ["W"], ["W2"]))
    _one_line(save(tmp_path, proto), "its W input 'W2' is computed by other nodes")

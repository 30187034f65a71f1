"""The NumPy engine against ONNX's `LSTM` and `GRU` operators, run by onnxruntime.

Random weights are drawn in ONNX's own layout, one ONNX node is built around them and run
by onnxruntime (CPU, float32); the same weights, converted by `onnx_to_state_dict`, are
loaded into our model, and Y, Y_h (and Y_c) must agree within 1e-5.

ONNX layout, per direction d (0 forward, 1 reverse), H = hidden_size:

    LSTM  W [D, 4H, I], R [D, 4H, H]   gate blocks i, o, f, c
          B [D, 8H] = Wb (i, o, f, c) then Rb (i, o, f, c)
          P [D, 3H]                    peepholes i, o, f
    GRU   W [D, 3H, I], R [D, 3H, H]   gate blocks z, r, h
          B [D, 6H] = Wb (z, r, h) then Rb (z, r, h)
    Y [T, D, B, H],  Y_h / Y_c [D, B, H]

Ours (PyTorch's state-dict names, suffix `_l0`, and `_l0_reverse` for d = 1):

    LSTM  weight_ih (4H, I), weight_hh (4H, H), bias_ih, bias_hh (4H,)   blocks i, f, g, o
          (ONNX's c is our g, the block input)
    CIFG  the same with no f block: (3H, ...) in order i, g, o   (ONNX input_forget=1)
    peepholes  weight_peephole (3, H) rows i, f, o;  (2, H) rows i, o with cifg
    GRU   weight_ih (3H, I), ...   blocks r, z, n   (ONNX's h is our n)
    y (T, B, D*H), forward then reverse on the last axis;  h, c (D, B, H)

So the conversion reorders gate blocks, splits B into bias_ih and bias_hh, reorders the
peephole rows and, for cifg, drops the f blocks of W, R, B and P: onnxruntime computes
f = 1 - i under input_forget=1 and never reads them (`test_ort_input_forget_ignores_f_block`
pins that down; the cifg cases fill those blocks with random values as well).

GRU: ONNX's linear_before_reset=1 is our "gru" (r multiplies R_n h + b_hn, as PyTorch) and
linear_before_reset=0 is "gru_cho" (n = tanh(W_n x + b_in + R_n (r * h) + b_hn)).

A second oracle is onnx's pure-NumPy `ReferenceEvaluator`. It is run only where it follows
the operator's definition: its LSTM ignores the `input_forget` attribute (it always computes
f from the f weights), so cifg is left out, and both its LSTM and GRU ignore
`sequence_lens`, so the variable-length cases are checked against onnxruntime only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from lstmlab import variant
from lstmlab.numpy import GRU, LSTM

T, B, I, H = 7, 3, 4, 5
TOL = 1e-5
OPSET = 14          # LSTM-14 / GRU-14 (the last semantic change: the `layout` attribute)
LENGTHS = [4, 7, 1]  # for the variable-length cases: unsorted, one full, one of a single step

# gate blocks in ONNX's storage order, named with our letters (ONNX's c is our g, h is our n)
ONNX_GATES = {"LSTM": "iofg", "GRU": "zrn"}
ONNX_PEEPHOLES = "iof"


@dataclass(frozen=True)
class Case:
    op: str                      # the ONNX operator: "LSTM" or "GRU"
    model: type                  # our class
    spec: object                 # our variant (a name or a CellSpec)
    gates: str                   # our gate blocks, in storage order
    peepholes: str = ""          # our rows of weight_peephole ("" when the variant has none)
    attrs: dict = field(default_factory=dict)   # extra ONNX attributes
    reference: bool = True       # whether onnx's ReferenceEvaluator implements this case


CASES = {
    "lstm": Case("LSTM", LSTM, "lstm", "ifgo"),
    "peephole": Case("LSTM", LSTM, "peephole", "ifgo", peepholes="ifo"),
    "cifg": Case("LSTM", LSTM, "cifg", "igo", attrs={"input_forget": 1}, reference=False),
    "cifg_peephole": Case("LSTM", LSTM, variant("cifg", peepholes=True), "igo", peepholes="io",
                          attrs={"input_forget": 1}, reference=False),
    "gru": Case("GRU", GRU, "gru", "rzn", attrs={"linear_before_reset": 1}),
    "gru_cho": Case("GRU", GRU, "gru_cho", "rzn", attrs={"linear_before_reset": 0}),
}


# --- ONNX side ----------------------------------------------------------------------------
def random_onnx_weights(case: Case, D: int, rng) -> dict[str, np.ndarray]:
    """W, R, B (and P for peepholes) in ONNX's layout, uniform in [-1, 1]; every block,
    including the f blocks that cifg ignores, gets random values."""
    G = len(ONNX_GATES[case.op])

    def u(*shape):
        return rng.uniform(-1.0, 1.0, shape).astype(np.float32)

    w = {"W": u(D, G * H, I), "R": u(D, G * H, H), "B": u(D, 2 * G * H)}
    if case.peepholes:
        w["P"] = u(D, 3 * H)
    return w


def random_inputs(case: Case, D: int, rng) -> dict[str, np.ndarray]:
    """X and the initial state, as the ONNX graph's inputs."""
    feeds = {"X": rng.standard_normal((T, B, I)).astype(np.float32),
             "initial_h": rng.uniform(-1.0, 1.0, (D, B, H)).astype(np.float32)}
    if case.op == "LSTM":
        feeds["initial_c"] = rng.uniform(-1.0, 1.0, (D, B, H)).astype(np.float32)
    return feeds


def onnx_model(case: Case, D: int, weights: dict, with_lengths: bool = False) -> onnx.ModelProto:
    """One LSTM/GRU node; weights are initializers, X, sequence_lens and the state inputs."""
    # the operator's inputs by position; "" leaves an optional input out
    slots = ["X", "W", "R", "B", "sequence_lens" if with_lengths else "", "initial_h"]
    if case.op == "LSTM":
        slots += ["initial_c"] + (["P"] if "P" in weights else [])
    outputs = ["Y", "Y_h"] + (["Y_c"] if case.op == "LSTM" else [])
    node = helper.make_node(case.op, slots, outputs, hidden_size=H,
                            direction="bidirectional" if D == 2 else "forward", **case.attrs)

    def info(name, shape, dtype=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, dtype, shape)

    inputs = [info("X", [T, B, I])]
    if with_lengths:
        inputs.append(info("sequence_lens", [B], TensorProto.INT32))
    inputs += [info(name, [D, B, H]) for name in ("initial_h", "initial_c") if name in slots]
    graph = helper.make_graph(
        [node], f"{case.op.lower()}_{D}", inputs,
        [info("Y", [T, D, B, H])] + [info(name, [D, B, H]) for name in outputs[1:]],
        initializer=[numpy_helper.from_array(v, name) for name, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def run_ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# --- the layout conversion ----------------------------------------------------------------
def reorder_blocks(m: np.ndarray, onnx_order: str, our_order: str) -> np.ndarray:
    """Rows of m in len(onnx_order) equal blocks, named by onnx_order -> the blocks our_order
    names, in that order (blocks our_order leaves out are dropped)."""
    blocks = dict(zip(onnx_order, np.split(m, len(onnx_order))))
    return np.concatenate([blocks[g] for g in our_order])


def onnx_to_state_dict(case: Case, weights: dict) -> dict[str, np.ndarray]:
    """ONNX W, R, B (, P) -> our state dict, one layer, one or two directions."""
    onnx_order, sd = ONNX_GATES[case.op], {}
    for d in range(weights["W"].shape[0]):
        sfx = "_l0_reverse" if d else "_l0"
        wb, rb = np.split(weights["B"][d], 2)
        sd["weight_ih" + sfx] = reorder_blocks(weights["W"][d], onnx_order, case.gates)
        sd["weight_hh" + sfx] = reorder_blocks(weights["R"][d], onnx_order, case.gates)
        sd["bias_ih" + sfx] = reorder_blocks(wb, onnx_order, case.gates)
        sd["bias_hh" + sfx] = reorder_blocks(rb, onnx_order, case.gates)
        if case.peepholes:
            rows = np.split(weights["P"][d], 3)          # (H,) each, in ONNX's order i, o, f
            peep = dict(zip(ONNX_PEEPHOLES, rows))
            sd["weight_peephole" + sfx] = np.stack([peep[g] for g in case.peepholes])
    return sd


def onnx_y_to_ours(y: np.ndarray) -> np.ndarray:
    """ONNX Y (T, D, B, H) -> ours (T, B, D*H), forward direction first."""
    T_, D, B_, H_ = y.shape
    return y.transpose(0, 2, 1, 3).reshape(T_, B_, D * H_)


# --- our side -----------------------------------------------------------------------------
def run_ours(case: Case, D: int, weights: dict, feeds: dict, lengths=None) -> list[np.ndarray]:
    """Our model with the converted weights; returns [y, h] or [y, h, c]."""
    m = case.model(I, H, bidirectional=D == 2, variant=case.spec, dtype=np.float32)
    m.load_state_dict(onnx_to_state_dict(case, weights))
    if case.op == "LSTM":
        y, (h, c) = m(feeds["X"], state=(feeds["initial_h"], feeds["initial_c"]), lengths=lengths)
        return [y, h, c]
    y, h = m(feeds["X"], state=feeds["initial_h"], lengths=lengths)
    return [y, h]


def assert_match(ours: list, theirs: list, who: str) -> float:
    """Compare [y, h(, c)] with an ONNX runtime's [Y, Y_h(, Y_c)]; returns the max difference."""
    assert len(ours) == len(theirs)
    worst = 0.0
    for name, a, b in zip(("Y", "Y_h", "Y_c"), ours, theirs):
        b = onnx_y_to_ours(b) if name == "Y" else b
        assert a.shape == b.shape, f"{name}: ours {a.shape}, {who} {b.shape}"
        assert a.dtype == np.float32 and b.dtype == np.float32
        diff = float(np.max(np.abs(a - b)))
        assert diff < TOL, f"{name}: max |ours - {who}| = {diff:.3g}"
        worst = max(worst, diff)
    return worst


def _setup(name: str, bidirectional: bool, seed: int):
    case, D = CASES[name], 2 if bidirectional else 1
    rng = np.random.default_rng(seed)
    weights = random_onnx_weights(case, D, rng)
    return case, D, weights, random_inputs(case, D, rng)


PARAMS = [pytest.param(name, bidi, id=f"{name}-{'bidirectional' if bidi else 'forward'}")
          for name in CASES for bidi in (False, True)]


# --- the tests ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, bidirectional", PARAMS)
def test_matches_onnxruntime(name, bidirectional):
    case, D, weights, feeds = _setup(name, bidirectional, seed=1)
    theirs = run_ort(onnx_model(case, D, weights), feeds)
    assert_match(run_ours(case, D, weights, feeds), theirs, "onnxruntime")


@pytest.mark.parametrize("name, bidirectional",
                         [p for p in PARAMS if CASES[p.values[0]].reference])
def test_matches_onnx_reference_evaluator(name, bidirectional):
    case, D, weights, feeds = _setup(name, bidirectional, seed=2)
    theirs = ReferenceEvaluator(onnx_model(case, D, weights)).run(None, feeds)
    assert_match(run_ours(case, D, weights, feeds), theirs, "ReferenceEvaluator")


@pytest.mark.parametrize("name", list(CASES))
def test_variable_lengths_match_onnxruntime(name):
    """sequence_lens: zeros past each end, the final state at the last valid step, and the
    reverse direction starting at the last valid step, as PyTorch's packed sequences."""
    case, D, weights, feeds = _setup(name, True, seed=3)
    feeds["sequence_lens"] = np.array(LENGTHS, np.int32)
    theirs = run_ort(onnx_model(case, D, weights, with_lengths=True), feeds)
    ours = run_ours(case, D, weights, feeds, lengths=LENGTHS)
    assert_match(ours, theirs, "onnxruntime")
    t = np.arange(T)[:, None]
    assert np.all(ours[0][t >= np.array(LENGTHS)] == 0)          # and past each end: zeros


@pytest.mark.parametrize("bidirectional", [False, True])
def test_ort_input_forget_ignores_f_block(bidirectional):
    """The premise of the cifg conversion: with input_forget=1 onnxruntime never reads the
    f blocks of W, R, B and P (f = 1 - i), so dropping them loses nothing."""
    case, D, weights, feeds = _setup("cifg_peephole", bidirectional, seed=4)
    f = slice(2 * H, 3 * H)                                      # ONNX's i, o, f, c: f is third
    changed = {k: v.copy() for k, v in weights.items()}
    changed["W"][:, f] = 100.0
    changed["R"][:, f] = -100.0
    changed["B"][:, f] = 50.0                                    # Wb_f
    changed["B"][:, 4 * H + 2 * H:4 * H + 3 * H] = 50.0          # Rb_f
    changed["P"][:, f] = 100.0                                   # peephole rows i, o, f
    before = run_ort(onnx_model(case, D, weights), feeds)
    after = run_ort(onnx_model(case, D, changed), feeds)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)

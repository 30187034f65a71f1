"""load_onnx: ONNX LSTM, GRU and RNN nodes (one, or a stack) back into a NumPy model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ...families import family_of
from ...numpy.recurrent import stack_class
from ...spec import VARIANTS, CellSpec
from ...spec import variant as make_spec
from .common import FAMILY, params_from_native, require_onnx
from .reverse import TimeReversed

# input slots of a recurrent node that hold its weights, by name (P: LSTM only)
_WEIGHTS = {1: "W", 2: "R", 3: "B", 7: "P"}
_STATES = {5: "initial_h", 6: "initial_c"}
# ops that may sit between two stacked recurrent nodes (layout changes only)
_PASS_THROUGH = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Flatten")


@dataclasses.dataclass
class _Node:
    """One ONNX LSTM/GRU/RNN node, read and checked."""
    node: object
    spec: CellSpec
    D: int
    H: int
    F: int
    layout: int
    reverse: bool              # direction="reverse": reads each sequence from its end
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray | None
    P: np.ndarray | None


def load_onnx(path, *, dtype=None, inputs=None):
    """Read an ONNX file built from ONNX LSTM, GRU or RNN nodes into a lstmlab.numpy model.

    Reads the files `export_onnx` writes natively, single nodes built with onnx.helper (as
    ONNX's backend tests build them) and stacks of nodes (each node's X is the previous
    node's Y, through Transpose/Reshape/Squeeze only). The variant comes from the node: LSTM
    with P -> peephole, input_forget=1 -> cifg, GRU linear_before_reset=1 -> gru (0 ->
    gru_cho), RNN Tanh/Relu -> rnn_tanh / rnn_relu; layers = the number of chained nodes.
    Weights (W, R, B, P) may be initializers, Constant nodes or graph inputs; other nodes (a
    head after the stack) are not read. initial_h, initial_c and sequence_lens are what the
    model takes when called (state, lengths), so they must be graph inputs or zero.
    dtype: the model's dtype; default float64 if the weights are, else float32.
    inputs: {graph input name: array} for weights that are graph inputs fed at run time; a
        value here replaces an initializer of the same name.
    Returns an LSTM, GRU or RNN; nodes with direction="reverse" come back as a TimeReversed
    around a forward one (it runs each sequence backwards, see TimeReversed).
    Raises ValueError (one line) for a file that is not ONNX or holds nothing we can read.
    """
    onnx = require_onnx("import")
    path = Path(path)
    proto = _read_model(onnx, path)
    graph = proto.graph
    where = [k for k, n in enumerate(graph.node)
             if n.op_type in FAMILY and n.domain in ("", "ai.onnx")]
    rec = [graph.node[k] for k in where]
    if not rec:
        ops = ", ".join(sorted({n.op_type for n in graph.node})) or "no nodes"
        raise ValueError(f"{path.name} has no ONNX LSTM, GRU or RNN node to load (its graph has "
                         f"{ops}); only graphs of these operators can be read")
    consts = _constants(onnx, graph)
    consts.update(_given_inputs(graph, rec, inputs, path.name))
    _check_fed(graph, rec, consts, path.name)
    nodes = [_read_node(onnx, n, consts, path.name) for n in rec]
    first = nodes[0]
    for k, nd in enumerate(nodes[1:], 1):
        what = f"{path.name}: node {k} ({nd.node.op_type} {nd.node.name!r})"
        if nd.spec != first.spec or nd.D != first.D or nd.H != first.H or \
                nd.layout != first.layout or nd.reverse != first.reverse:
            raise ValueError(f"{what} differs from node 0 in variant, direction, hidden_size or "
                             "layout; only stacks of identical layers can be read")
        _check_chained(graph, where[k - 1], where[k], what)
        if nd.F != nd.D * nd.H:
            raise ValueError(f"{what} has {nd.F} input features, "
                             f"a stacked layer needs {nd.D * nd.H}")
    batch_first = first.layout == 1 or _input_transposed(graph, rec[0])

    if dtype is None:
        dtype = np.float64 if first.W.dtype == np.float64 else np.float32
    sd = {}
    for k, nd in enumerate(nodes):
        sd.update(params_from_native(first.spec, k, nd.W, nd.R, nd.B, nd.P))
    model = stack_class(first.spec)(first.F, first.H, num_layers=len(nodes),
                                    bidirectional=first.D == 2, variant=first.spec,
                                    batch_first=batch_first, dtype=dtype, seed=0)
    model.load_state_dict(sd)
    # a stack of reverse layers is a forward stack over the reversed input: the reversals
    # between layers cancel, so one wrapper around the whole stack is exact
    return TimeReversed(model) if first.reverse else model


def _given_inputs(graph, rec, inputs, fname) -> dict[str, np.ndarray]:
    """The user's `inputs`, checked: each must be a graph input that feeds a recurrent node's
    weight or initial state."""
    if inputs is None:
        return {}
    if not isinstance(inputs, dict):
        raise ValueError(f"inputs must be a dict {{graph input name: array}}, "
                         f"got {type(inputs).__name__}")
    graph_inputs = [i.name for i in graph.input]
    roles: dict[str, str] = {}                                   # tensor name -> its slot's role
    for n in rec:
        for i, ref in enumerate(n.input):
            roles.setdefault(ref, _WEIGHTS.get(i) or _STATES.get(i) or
                             ("X" if i == 0 else "sequence_lens"))
    out = {}
    for name, value in inputs.items():
        if name not in graph_inputs:
            raise ValueError(f"inputs names {name!r}, which is not a graph input of {fname} "
                             f"(it has: {', '.join(graph_inputs) or 'none'})")
        role = roles.get(name)
        if role == "X":
            raise ValueError(f"inputs names {name!r}, the model's input X: pass it when calling "
                             "the loaded model, not to load_onnx")
        if role == "sequence_lens":
            raise ValueError(f"inputs names {name!r}, the sequence lengths: pass them as "
                             "lengths= when calling the loaded model, not to load_onnx")
        if role is None:
            raise ValueError(f"inputs names {name!r}, which feeds no LSTM, GRU or RNN node of "
                             f"{fname}; only their weights and initial states are read")
        try:
            out[name] = np.asarray(value)
        except (ValueError, TypeError):
            raise ValueError(f"inputs[{name!r}] is not an array of numbers") from None
    return out


def _check_fed(graph, rec, consts, fname) -> None:
    """Every weight that is a graph input without a value (fed at run time) must be given."""
    graph_inputs = {i.name for i in graph.input}
    missing = []
    for n in rec:
        for i, ref in enumerate(n.input):
            if i in _WEIGHTS and ref in graph_inputs and ref not in consts and ref not in missing:
                missing.append(ref)
    if missing:
        example = ", ".join(f"{m!r}: array" for m in missing)
        raise ValueError(f"{fname} takes the weight(s) {', '.join(missing)} as graph input(s) fed "
                         f"at run time; pass them: load_onnx(path, inputs={{{example}}})")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _read_model(onnx, path: Path):
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    if not data:
        raise ValueError(f"{path} is empty: not an ONNX model")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:                                      # protobuf's DecodeError and kin
        raise ValueError(f"{path} is not an ONNX model: it does not parse as one "
                         f"({type(e).__name__})") from None
    if not proto.HasField("graph") or proto.ir_version <= 0 or not proto.opset_import:
        raise ValueError(f"{path} is not an ONNX model: it has no graph, IR version or opset")
    # no onnx.checker here: it rejects files runtimes run (a graph output without a shape),
    # and what we read from the graph is checked node by node
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data
    if any(uses_external_data(t) for t in proto.graph.initializer):
        try:
            load_external_data_for_model(proto, str(path.parent))
        except Exception as e:
            raise ValueError(f"{path}: cannot read its external weight data: "
                             f"{_first_line(e)}") from None
    return proto


def _constants(onnx, graph) -> dict[str, np.ndarray]:
    """Initializers and Constant nodes of the main graph, by name."""
    to_array = onnx.numpy_helper.to_array
    out = {t.name: to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output:
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = to_array(a.t)
                elif a.name == "sparse_value":
                    out[n.output[0]] = _dense(to_array, a.sparse_tensor)
                elif a.name in ("value_float", "value_floats"):
                    out[n.output[0]] = np.asarray(onnx.helper.get_attribute_value(a), np.float32)
                elif a.name in ("value_int", "value_ints"):      # refused later as not float
                    out[n.output[0]] = np.asarray(onnx.helper.get_attribute_value(a), np.int64)
    return out


def _dense(to_array, sparse) -> np.ndarray:
    """A SparseTensorProto as a dense array: its indices are flat positions (1-D) or one
    coordinate row per value (2-D), as the ONNX spec defines them."""
    values, idx = to_array(sparse.values), to_array(sparse.indices)
    dense = np.zeros(tuple(sparse.dims), values.dtype)
    if idx.ndim == 2:
        dense[tuple(idx.T)] = values
    else:
        dense.reshape(-1)[idx] = values
    return dense


def _read_node(onnx, node, consts, fname) -> _Node:
    op, family = node.op_type, FAMILY[node.op_type]
    what = f"{fname}: {op} node {node.name!r}" if node.name else f"{fname}: {op} node"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else
             [s.decode() if isinstance(s, bytes) else s for s in v] if isinstance(v, list) else v
             for k, v in attrs.items()}

    direction = attrs.pop("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"{what} has direction={direction!r}; ONNX defines forward, reverse "
                         "and bidirectional")
    D = 2 if direction == "bidirectional" else 1
    for bad in ("clip", "activation_alpha", "activation_beta"):
        if bad in attrs:
            raise ValueError(f"{what} has the attribute {bad}, which is unsupported")
    layout = int(attrs.pop("layout", 0))
    acts = [s.lower() for s in attrs.pop("activations", [])]
    if family == "lstm":
        default = ["sigmoid", "tanh", "tanh"] * D
        input_forget = int(attrs.pop("input_forget", 0))
    elif family == "gru":
        default = ["sigmoid", "tanh"] * D
        lbr = int(attrs.pop("linear_before_reset", 0))
    else:
        default = ["tanh"] * D
        if acts == ["relu"] * D:
            default = acts
    if acts and acts != default:
        given = [a.capitalize() for a in acts]
        allowed = "Tanh or Relu in every direction" if family == "rnn" else \
            ", ".join(a.capitalize() for a in default[: len(default) // D]) + " (the defaults)"
        raise ValueError(f"{what} has activations={given}, which is unsupported (only {allowed})")
    hidden = attrs.pop("hidden_size", None)
    if attrs:
        raise ValueError(f"{what} has the attribute(s) {', '.join(sorted(attrs))}, "
                         "which are unsupported")

    slots = list(node.input) + [""] * (8 - len(node.input))

    def weight(i, name, required):
        ref = slots[i]
        if not ref:
            if required:
                raise ValueError(f"{what} has no {name} input")
            return None
        if ref not in consts:                    # graph inputs were checked by _check_fed
            raise ValueError(f"{what}: its {name} input {ref!r} is computed by other nodes, "
                             "which is unsupported (only initializers, Constant nodes and "
                             "graph inputs)")
        a = consts[ref]
        if a.dtype.kind != "f":
            raise ValueError(f"{what}: its {name} has dtype {a.dtype}, expected floating point")
        if not np.isfinite(a).all():
            raise ValueError(f"{what}: its {name} holds NaN or inf values")
        return a

    W, R, B = weight(1, "W", True), weight(2, "R", True), weight(3, "B", False)
    P = weight(7, "P", False) if family == "lstm" else None
    for i, name in _STATES.items():
        ref = slots[i]
        if ref and ref in consts and np.any(consts[ref]):
            raise ValueError(f"{what}: a constant nonzero {name} is unsupported "
                             "(the model starts from zeros or the state passed at call time)")
    if slots[4] and slots[4] in consts:
        raise ValueError(f"{what}: a constant sequence_lens is unsupported; make it a graph "
                         "input and pass lengths= when calling the loaded model")
    G = len(family_of(family).onnx_gates)
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D:
        raise ValueError(f"{what}: W {W.shape} and R {R.shape} must be 3-D with {D} direction(s)")
    H = R.shape[2]
    if hidden is not None and hidden != H or W.shape[1] != G * H or R.shape[1] != G * H:
        raise ValueError(f"{what}: W {W.shape} and R {R.shape} do not fit hidden_size "
                         f"{hidden if hidden is not None else H} with {G} gate block(s)")
    if B is not None and B.shape != (D, 2 * G * H):
        raise ValueError(f"{what}: B has shape {B.shape}, expected {(D, 2 * G * H)}")
    if P is not None and P.shape != (D, 3 * H):
        raise ValueError(f"{what}: P has shape {P.shape}, expected {(D, 3 * H)}")

    if family == "lstm":
        base = "cifg" if input_forget else "lstm"
        spec = VARIANTS["peephole"] if P is not None and not input_forget else \
            make_spec(base, peepholes=True) if P is not None else VARIANTS[base]
    elif family == "gru":
        spec = VARIANTS["gru" if lbr else "gru_cho"]
    else:
        spec = VARIANTS["rnn_relu" if acts and acts[0] == "relu" else "rnn_tanh"]
    return _Node(node, spec, D, H, W.shape[2], layout, direction == "reverse", W, R, B, P)


def _producers(graph) -> dict[str, tuple[int, int]]:
    """Tensor name -> (index of the node that makes it, which of its outputs)."""
    return {out: (k, j) for k, n in enumerate(graph.node) for j, out in enumerate(n.output)}


def _check_chained(graph, below: int, above: int, what):
    """Node `above`'s X must be node `below`'s Y (indices into graph.node), through
    layout-only ops."""
    prod, name = _producers(graph), graph.node[above].input[0]
    while name in prod:
        k, j = prod[name]
        if k == below:
            if j == 0:
                return
            break
        n = graph.node[k]
        if n.op_type not in _PASS_THROUGH or not n.input:
            break
        name = n.input[0]
    raise ValueError(f"{what}: its input X is not the previous node's output Y (through "
                     f"{', '.join(_PASS_THROUGH)} only); only stacks of layers can be read")


def _input_transposed(graph, node) -> bool:
    """Whether the first node reads a graph input through Transpose(perm=1, 0, 2)."""
    src = _producers(graph).get(node.input[0])
    if src is None:
        return False
    t = graph.node[src[0]]
    perm = [list(a.ints) for a in t.attribute if a.name == "perm"]
    return t.op_type == "Transpose" and perm == [[1, 0, 2]] and \
        t.input[0] in {i.name for i in graph.input}

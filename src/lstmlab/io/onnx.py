"""ONNX export and import for the NumPy engine.

    path = export_onnx(model, "model.onnx", head=None)    # any variant, any stack
    model = load_onnx("model.onnx")                        # ONNX LSTM / GRU / RNN nodes back

The exported graph takes "x", (T, B, I) or (B, T, I) with batch_first, with dynamic batch
and sequence dimensions, and returns "y" (the head's output when a head is given), "h_n"
and, for LSTM variants, "c_n", shaped as the NumPy model returns them (fgr's third state
component, the last gates, is left out). With initial_state=True the graph also takes
"h0" (and "c0"), shaped as the model's state, instead of starting from zeros.

Two ways to write a layer:

* native: one ONNX `LSTM`, `GRU` or `RNN` node per layer, both directions in one node.
  Variants that ONNX defines: lstm, peephole, cifg (input_forget=1, f block zero: ONNX
  computes f = 1 - i and never reads it), cifg with peepholes, gru (linear_before_reset=1),
  gru_cho (linear_before_reset=0), rnn_tanh, rnn_relu. Any runtime that implements the
  operators runs these, and `load_onnx` reads them back.
* loop: an ONNX `Scan` per layer and direction whose body writes the step of
  `lstmlab.numpy.cells` op by op; the input product W x + b for all steps is one MatMul
  outside the loop, and the reverse direction is Scan's scan_input/output_directions.
  Every other variant (nig, nfg, nog, niaf, noaf, fgr, lstm1997, layernorm and their
  compositions) and every LSTM with proj_size is written this way; native=False writes
  every variant this way. onnxruntime (1.31) implements LSTM/GRU/RNN for float32 only, so
  a float64 model runs there only when exported with native=False.

Layout conversion, per direction (our gate letters; ONNX's c is our g, its h our n):

    ours  weight_ih (G*H, I), weight_hh (G*H, R)  blocks i, f, g, o  (GRU r, z, n)
          bias_ih, bias_hh (G*H,);  weight_peephole (3, H) rows i, f, o
    ONNX  W [D, G*H, I], R [D, G*H, H]            blocks i, o, f, c  (GRU z, r, h)
          B [D, 2*G*H] = Wb then Rb;  P [D, 3*H]  rows i, o, f
          Y [T, D, B, H] -> ours (T, B, D*H) by Transpose (0, 2, 1, 3) and Reshape

onnx is an optional dependency (`pip install 'lstmlab[onnx]'`); it is imported on use.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np

from ..numpy.nn import Linear
from ..numpy.ops import LN_EPS
from ..numpy.recurrent import GRU, LSTM, RNN, Recurrent
from ..spec import VARIANTS, CellSpec, variant as make_spec
from .atomic import atomic_path

__all__ = ["export_onnx", "load_onnx", "is_native", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17   # widely implemented; LSTM/GRU/RNN-14 and Scan-16 under it
MIN_OPSET = 14       # LSTM/GRU/RNN-14: the last change to their semantics (`layout`)

# gate blocks in ONNX's storage order, named with our letters
ONNX_GATES = {"lstm": "iofg", "gru": "zrn", "rnn": "h"}
ONNX_PEEPHOLES = "iof"
_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
_FAMILY = {op: fam for fam, op in _OPS.items()}
_CLASSES = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
# ops that may sit between two stacked recurrent nodes (layout changes only)
_PASS_THROUGH = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Flatten")


def _import_onnx(what: str):
    try:
        import onnx
        import onnx.checker  # noqa: F401
        import onnx.helper  # noqa: F401
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise ValueError(f"ONNX {what} needs the onnx package: "
                         "pip install 'lstmlab[onnx]'") from None
    return onnx


def is_native(spec: CellSpec, proj_size: int = 0) -> bool:
    """Whether ONNX's own LSTM/GRU/RNN operator computes this variant (no projection)."""
    if spec.family != "lstm":
        return True
    plain = dataclasses.replace(spec, peepholes=False, coupled_gates=False)
    return not proj_size and plain == VARIANTS["lstm"]


# --- weights: our layout <-> ONNX's -----------------------------------------------------
def _blocks(m: np.ndarray, order: str) -> dict[str, np.ndarray]:
    """m's leading axis cut into len(order) equal blocks, named by order."""
    return dict(zip(order, np.split(m, len(order))))


def _reorder(m: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Blocks of m (named by src) in the order dst; a block src lacks is zeros."""
    blocks = _blocks(m, src)
    zero = np.zeros_like(next(iter(blocks.values())))
    return np.concatenate([blocks.get(g, zero) for g in dst])


def _native_weights(model: Recurrent, k: int) -> dict[str, np.ndarray]:
    """ONNX W, R, B (and P) of layer k, both directions stacked on axis 0."""
    spec, family = model.spec, model.spec.family
    ours, theirs = "".join(spec.gates), ONNX_GATES[family]
    W, R, B, P = [], [], [], []
    for d in range(model.num_directions):
        sfx = f"_l{k}" + ("_reverse" if d else "")
        p = model.params
        W.append(_reorder(p["weight_ih" + sfx], ours, theirs))
        R.append(_reorder(p["weight_hh" + sfx], ours, theirs))
        B.append(np.concatenate([_reorder(p["bias_ih" + sfx], ours, theirs),
                                 _reorder(p["bias_hh" + sfx], ours, theirs)]))
        if spec.peepholes:                                       # rows i, f, o -> i, o, f
            P.append(_reorder(p["weight_peephole" + sfx].reshape(-1),
                              "".join(spec.sigmoid_gates), ONNX_PEEPHOLES))
    out = {"W": np.stack(W), "R": np.stack(R), "B": np.stack(B)}
    if P:
        out["P"] = np.stack(P)
    return out


def _params_from_native(spec: CellSpec, k: int, W, R, B, P) -> dict[str, np.ndarray]:
    """Our state-dict entries of layer k from ONNX W, R, B, P (B, P may be None)."""
    theirs, ours = ONNX_GATES[spec.family], "".join(spec.gates)
    sd = {}
    for d in range(W.shape[0]):
        sfx = f"_l{k}" + ("_reverse" if d else "")
        sd["weight_ih" + sfx] = _reorder(W[d], theirs, ours)
        sd["weight_hh" + sfx] = _reorder(R[d], theirs, ours)
        wb, rb = np.split(B[d], 2) if B is not None else (np.zeros(W.shape[1], W.dtype),) * 2
        sd["bias_ih" + sfx] = _reorder(wb, theirs, ours)
        sd["bias_hh" + sfx] = _reorder(rb, theirs, ours)
        if spec.peepholes:
            rows = "".join(spec.sigmoid_gates)                  # ONNX rows i, o, f -> ours
            peep = _reorder(P[d], ONNX_PEEPHOLES, rows)          # (rows * H,)
            sd["weight_peephole" + sfx] = peep.reshape(len(rows), -1)
    return sd


# --- export ----------------------------------------------------------------------------
class _Builder:
    """Collects nodes and initializers under unique names; nodes go to the current graph."""

    def __init__(self, onnx, np_dtype, opset: int):
        self.onnx, self.helper, self.nh = onnx, onnx.helper, onnx.numpy_helper
        self.dtype = np.dtype(np_dtype)
        self.elem = self.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.opset = opset
        self.inits, self.nodes = [], []
        self._count, self._cache = 0, {}

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, name: str | None = None, dtype=None) -> str:
        """An initializer (of the main graph: loop bodies read it from the outer scope)."""
        arr = np.array(value, dtype or self.dtype, order="C")   # (ascontiguousarray makes 0-d 1-d)
        name = name or self.name("const")
        self.inits.append(self.nh.from_array(arr, name))
        return name

    def scalar(self, v: float) -> str:
        key = ("scalar", float(v))
        if key not in self._cache:
            self._cache[key] = self.const(np.array(v, self.dtype), self.name(f"c{v:g}"))
        return self._cache[key]

    def ints(self, values) -> str:
        key = ("ints", tuple(values))
        if key not in self._cache:
            self._cache[key] = self.const(np.array(values, np.int64), self.name("ints"), np.int64)
        return self._cache[key]

    def op(self, op_type: str, inputs, n_out: int = 1, out=None, **attrs):
        outs = [out] if out else [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs,
                                                name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    @contextlib.contextmanager
    def subgraph(self):
        """Nodes made inside go to a fresh list (a loop body), yielded to the caller."""
        saved, self.nodes = self.nodes, []
        try:
            yield self.nodes
        finally:
            self.nodes = saved

    def value_info(self, name, shape):
        return self.helper.make_tensor_value_info(name, self.elem, shape)

    # elementwise pieces of the cells, as numpy.ops writes them
    def split(self, x, sizes):
        if len(sizes) == 1:
            return [x]
        return self.op("Split", [x, self.ints(sizes)], n_out=len(sizes), axis=-1)

    def layer_norm(self, x):
        """(x - mean) / sqrt(var + LN_EPS) over the last axis, as numpy.ops.layer_norm."""
        def mean(v):
            if self.opset >= 18:
                return self.op("ReduceMean", [v, self.ints([-1])], keepdims=1)
            return self.op("ReduceMean", [v], axes=[-1], keepdims=1)
        xc = self.op("Sub", [x, mean(x)])
        var = mean(self.op("Mul", [xc, xc]))
        std = self.op("Sqrt", [self.op("Add", [var, self.scalar(LN_EPS)])])
        rstd = self.op("Reciprocal", [std])
        return self.op("Mul", [xc, rstd])

    def activate(self, name: str, x):
        if name == "identity":
            return x
        if name == "tanh":
            return self.op("Tanh", [x])
        if name == "relu":
            return self.op("Relu", [x])
        half = self.op("Tanh", [self.op("Mul", [x, self.scalar(0.5)])])
        if name == "sigmoid2":                                   # 2 sigma(x) - 1 = tanh(x / 2)
            return half
        if name == "sigmoid4":                                   # 4 sigma(x) - 2 = 2 tanh(x / 2)
            return self.op("Mul", [half, self.scalar(2.0)])
        raise ValueError(f"unknown activation {name!r}")

    def batch_zeros(self, x_tm, n: int):
        """Zeros (B, n), B read from the time-major input x_tm (T, B, F) at run time."""
        key = ("zeros", n)
        if key not in self._cache:
            if "batch" not in self._cache:
                shape = self.op("Shape", [x_tm])
                self._cache["batch"] = self.op("Slice", [shape, self.ints([1]), self.ints([2])])
            dims = self.op("Concat", [self._cache["batch"], self.ints([n])], axis=0)   # [B, n]
            zero = self.helper.make_tensor("zero", self.elem, [1], [0.0])
            self._cache[key] = self.op("ConstantOfShape", [dims], value=zero)
        return self._cache[key]


def export_onnx(model, path, *, head=None, embedding=None, readout: str = "sequence",
                opset=None, native: bool = True, initial_state: bool = False) -> Path:
    """Write `model` (a lstmlab.numpy LSTM, GRU or RNN), optionally followed by `head`, as ONNX.

    model: any variant, layers, directions, proj_size, batch_first, float32 or float64.
    head: a lstmlab.numpy.Linear applied to y at every step (in_features = D * (P or H)).
    opset: the ONNX opset, MIN_OPSET .. the installed onnx's newest (default DEFAULT_OPSET).
    native: write ONNX LSTM/GRU/RNN nodes where the variant allows (else a Scan loop).
    initial_state: add graph inputs "h0" (and "c0"), (L*D, B, P or H); else zeros.
    embedding: a lstmlab.numpy.Embedding in front: "x" is then int64 token ids (T, B).
    readout: "sequence" (head on every step), "last" (head on the top layer's final h,
    directions side by side: "y" is (B, out)) or "mean" (head on y averaged over time: the
    graph has no lengths, so every step of x counts), as lstmlab's SequenceModel.
    Graph: input "x" (T, B, I) ((B, T, I) with batch_first), T and B dynamic; outputs
    "y" (T, B, D*H) (or the head's (T, B, out)), "h_n" (L*D, B, P or H), "c_n" (L*D, B, H).
    The file is written atomically and checked with onnx.checker. Returns the path.
    """
    onnx = _import_onnx("export")
    if not isinstance(model, Recurrent):
        raise ValueError("export_onnx needs a lstmlab.numpy LSTM, GRU or RNN, "
                         f"got {type(model).__name__}")
    D, L = model.num_directions, model.num_layers
    width = D * model.out_size
    if head is not None:
        if not isinstance(head, Linear):
            raise ValueError(f"head must be a lstmlab.numpy.Linear, got {type(head).__name__}")
        if head.in_features != width:
            raise ValueError(f"head has {head.in_features} input features, "
                             f"the model's y has {width}")
        if head.dtype != model.dtype:
            raise ValueError(f"head is {head.dtype.name} and the model {model.dtype.name}; "
                             "build both with the same dtype")
    if readout not in ("sequence", "last", "mean"):
        raise ValueError(f"readout must be 'sequence', 'last' or 'mean', got {readout!r}")
    if embedding is not None and embedding.embedding_dim != model.input_size:
        raise ValueError(f"embedding gives {embedding.embedding_dim} features, "
                         f"the model expects {model.input_size}")
    newest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, (int, np.integer)) or isinstance(opset, bool) or \
            not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer in {MIN_OPSET}..{newest}, got {opset!r}")

    b = _Builder(onnx, model.dtype, int(opset))
    I = model.input_size
    if embedding is None:
        inputs = [b.value_info("x", ["batch", "seq", I] if model.batch_first else ["seq", "batch", I])]
        x = b.op("Transpose", ["x"], perm=[1, 0, 2]) if model.batch_first else "x"   # (T, B, I)
    else:                                                        # token ids (T, B) -> (T, B, E)
        ids = b.op("Transpose", ["x"], perm=[1, 0]) if model.batch_first else "x"
        inputs = [onnx.helper.make_tensor_value_info(
            "x", onnx.TensorProto.INT64, ["batch", "seq"] if model.batch_first else ["seq", "batch"])]
        x = b.op("Gather", [b.const(embedding.params["weight"], "embedding_weight"), ids], axis=0)
    sizes = model.cells[0].state_sizes()[:2]     # h (and c): fgr's last gates stay inside
    state_in = []
    if initial_state:
        for name, n in zip(("h0", "c0"), sizes):
            inputs.append(b.value_info(name, [L * D, "batch", n]))
            state_in.append(name)

    use_native = native and is_native(model.spec, model.proj_size)
    finals = [[] for _ in sizes]                                 # per component, (D, B, n) pieces
    inp = x
    for k in range(L):
        if use_native:
            inp, fin = _native_layer(b, model, k, inp, state_in)
        else:
            outs, fin = [], [[] for _ in sizes]
            for d in range(D):
                y_d, fin_d = _loop_direction(b, model, k, d, inp, x, state_in)
                outs.append(y_d)
                for comp, f in zip(fin, fin_d):
                    comp.append(f)
            inp = b.op("Concat", outs, axis=2) if D == 2 else outs[0]        # (T, B, D*R)
            fin = [b.op("Concat", f, axis=0) if D == 2 else f[0] for f in fin]
        for comp, f in zip(finals, fin):
            comp.append(f)

    y, y_width = inp, width
    if readout == "last":                                        # top layer's final h: (B, D*R)
        y = b.op("Transpose", [finals[0][-1]], perm=[1, 0, 2])   # (D, B, R) -> (B, D, R)
        y = b.op("Reshape", [y, b.ints([0, width])])
    elif readout == "mean":                                      # (T, B, D*R) -> (B, D*R)
        y = (b.op("ReduceMean", [y, b.ints([0])], keepdims=0) if opset >= 18   # axes: an input
             else b.op("ReduceMean", [y], axes=[0], keepdims=0))
    if head is not None:                                         # y W^T + b at every step
        y = b.op("MatMul", [y, b.const(head.params["weight"].T, "head_weight_T")])
        if "bias" in head.params:
            y = b.op("Add", [y, b.const(head.params["bias"], "head_bias")])
        y_width = head.out_features
    if readout in ("last", "mean"):
        b.op("Identity", [y], out="y")
        outputs = [b.value_info("y", ["batch", y_width])]
    else:
        if model.batch_first:
            b.op("Transpose", [y], out="y", perm=[1, 0, 2])
        else:
            b.op("Identity", [y], out="y")
        outputs = [b.value_info("y", ["batch", "seq", y_width] if model.batch_first
                                else ["seq", "batch", y_width])]
    for name, comp, n in zip(("h_n", "c_n"), finals, sizes):
        b.op("Concat", comp, out=name, axis=0)                   # (L*D, B, n)
        outputs.append(b.value_info(name, [L * D, "batch", n]))

    helper = onnx.helper
    how = "native ONNX " + _OPS[model.spec.family] if use_native else "Scan loops"
    graph = helper.make_graph(b.nodes, "lstmlab", inputs, outputs, initializer=b.inits,
                              doc_string=f"lstmlab {model!r} as {how}"
                                         + (f", then {head!r}" if head is not None else ""))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))],
                              producer_name="lstmlab", producer_version=_version())
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    helper.set_model_props(proto, {"lstmlab.variant": model.spec.name,
                                   "lstmlab.model": repr(model),
                                   "lstmlab.graph": "native" if use_native else "loop"})
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def _version() -> str:
    import lstmlab
    return str(getattr(lstmlab, "__version__", ""))


def _native_layer(b: _Builder, model: Recurrent, k: int, x, state_in):
    """One ONNX LSTM/GRU/RNN node for layer k; returns (y (T, B, D*H), [h (D, B, H), c])."""
    spec, D, H = model.spec, model.num_directions, model.hidden_size
    w = _native_weights(model, k)
    ins = [x] + [b.const(w[n], f"{n}_l{k}") for n in "WRB"] + [""]    # no sequence_lens
    for s in state_in:                                           # initial_h, initial_c: (D, B, n)
        ins.append(b.op("Slice", [s, b.ints([k * D]), b.ints([(k + 1) * D]), b.ints([0])]))
    attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if spec.family == "lstm":
        if "P" in w:
            ins += [""] * (7 - len(ins)) + [b.const(w["P"], f"P_l{k}")]
        if spec.coupled_gates:
            attrs["input_forget"] = 1
    elif spec.family == "gru":
        attrs["linear_before_reset"] = int(spec.linear_before_reset)
    else:
        attrs["activations"] = [spec.nonlinearity.capitalize()] * D
    while ins[-1] == "":
        ins.pop()
    outs = b.op(_OPS[spec.family], ins, n_out=3 if spec.family == "lstm" else 2, **attrs)
    y = b.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])          # (T, D, B, H) -> (T, B, D, H)
    y = b.op("Reshape", [y, b.ints([0, 0, -1])])                 # (T, B, D*H)
    return y, list(outs[1:])


def _loop_direction(b: _Builder, model: Recurrent, k: int, d: int, x, x0, state_in):
    """One layer and direction as a Scan; returns (y (T, B, R), final states [(1, B, n)...]).

    x: this layer's input (T, B, F); x0: the model's input, for the batch size.
    """
    cell = model.cells[k]
    spec, D, G = cell.spec, model.num_directions, cell.G
    sfx = f"_l{k}" + ("_reverse" if d else "")
    p = {name[: -len(sfx)]: v for name, v in model.params.items() if name.endswith(sfx)}

    # the input part of every step in one product: (T, B, G)
    xw = b.op("MatMul", [x, b.const(p["weight_ih"].T, f"weight_ih{sfx}_T")])
    bias = p["bias_ih"] + p["bias_hh"]
    if spec.family == "gru" and spec.linear_before_reset:       # b_hn sits inside r * (...)
        bias = p["bias_ih"].copy()
        bias[cell.blk["r"]] += p["bias_hh"][cell.blk["r"]]
        bias[cell.blk["z"]] += p["bias_hh"][cell.blk["z"]]
    if spec.layer_norm:                                          # LN(W x) gamma + b
        xw = b.op("Mul", [b.layer_norm(xw), b.const(p["ln_ih_weight"], f"ln_ih_weight{sfx}")])
    xp = b.op("Add", [xw, b.const(bias, f"bias{sfx}")])

    sizes = cell.state_sizes()
    init = []
    for j, n in enumerate(sizes):
        if j < len(state_in):                                    # (L*D, B, n) -> (B, n)
            init.append(b.op("Gather", [state_in[j], b.const(np.array(k * D + d), dtype=np.int64)],
                             axis=0))
        else:
            init.append(b.batch_zeros(x0, n))

    prev = [b.name(f"{n}_prev") for n in ("h", "c", "gates")[: len(sizes)]]
    x_t = b.name("xp_t")
    with b.subgraph() as body_nodes:
        step = {"lstm": _lstm_step, "gru": _gru_step, "rnn": _rnn_step}[spec.family]
        new = step(b, cell, p, sfx, prev, x_t)
        new.append(new[0])                                       # the scan output: h at each step
        seen = set(prev) | {x_t} | {t.name for t in b.inits}
        for j, v in enumerate(new):             # body outputs must be distinct and made inside
            if v in seen:
                new[j] = b.op("Identity", [v])
            seen.add(new[j])
    body = b.helper.make_graph(
        body_nodes, f"step{sfx}",
        [b.value_info(v, ["batch", n]) for v, n in zip(prev, sizes)]
        + [b.value_info(x_t, ["batch", G])],
        [b.value_info(v, ["batch", n]) for v, n in zip(new, sizes)]
        + [b.value_info(new[-1], ["batch", cell.out_size])])
    outs = b.op("Scan", init + [xp], n_out=len(sizes) + 1, body=body, num_scan_inputs=1,
                scan_input_directions=[d], scan_output_directions=[d])
    finals = [b.op("Unsqueeze", [o, b.ints([0])]) for o in outs[: min(len(sizes), 2)]]
    return outs[-1], finals


def _lstm_step(b: _Builder, cell, p, sfx, prev, x_t):
    """The step of cells.LSTMCell, every variant: returns [h, c(, gates)] (B, n) each."""
    spec, H = cell.spec, cell.hidden_size
    h, c = prev[0], prev[1]

    def const(name):
        return b.const(p[name], f"{name}{sfx}")

    def const_T(name):                                                      # x @ W^T
        return b.const(p[name].T, f"{name}{sfx}_T")

    rh = b.op("MatMul", [h, const_T("weight_hh")])                          # R h: (B, G)
    if spec.layer_norm:
        rh = b.op("Mul", [b.layer_norm(rh), const("ln_hh_weight")])
    a = b.op("Add", [rh, x_t])
    pre = dict(zip(spec.gates, b.split(a, [H] * len(spec.gates))))          # a_i, a_f, a_g, a_o
    if spec.peepholes:
        peep = {g: b.const(p["weight_peephole"][r], f"weight_peephole{sfx}_{g}")
                for g, r in cell.peep.items()}
        for g in ("i", "f"):
            if g in peep:                                                   # i, f look at c_prev
                pre[g] = b.op("Add", [pre[g], b.op("Mul", [c, peep[g]])])
    if spec.gate_recurrence:                                                # W_gg gates_prev
        zg = b.op("MatMul", [prev[2], const_T("weight_gg")])
        for g, z in zip(cell.sig, b.split(zg, [H] * len(cell.sig))):
            pre[g] = b.op("Add", [pre[g], z])

    i = b.op("Sigmoid", [pre["i"]]) if "i" in pre else None
    f = b.op("Sigmoid", [pre["f"]]) if "f" in pre else None
    gates = {"i": i, "f": f}
    if spec.coupled_gates:                                                  # f = 1 - i
        f = b.op("Sub", [b.scalar(1.0), i])
    g = b.activate(spec.input_activation, pre["g"])
    ig = b.op("Mul", [i, g]) if i else g
    c_new = b.op("Add", [b.op("Mul", [f, c]), ig]) if f else b.op("Add", [c, ig])  # c = f c + i g

    o = None
    if "o" in pre:
        ao = pre["o"]
        if spec.peepholes:                                                  # o looks at the new c
            ao = b.op("Add", [ao, b.op("Mul", [c_new, peep["o"]])])
        o = gates["o"] = b.op("Sigmoid", [ao])
    if spec.layer_norm:                                                     # LN(c) gamma + beta
        u = b.op("Mul", [b.layer_norm(c_new), const("ln_cell_weight")])
        u = b.op("Add", [u, const("ln_cell_bias")])
    else:
        u = c_new
    act = b.activate(spec.output_activation, u)
    h_new = b.op("Mul", [o, act]) if o else act                             # h = o act_out(c)
    if cell.out_size != H:                                                  # h = W_hr h
        h_new = b.op("MatMul", [h_new, const_T("weight_hr")])
    new = [h_new, c_new]
    if spec.gate_recurrence:                                                # this step's gates
        sig = [gates[g] for g in cell.sig]
        new.append(b.op("Concat", sig, axis=-1) if len(sig) > 1 else sig[0])
    return new


def _gru_step(b: _Builder, cell, p, sfx, prev, x_t):
    """The step of cells.GRUCell: returns [h] (B, H)."""
    H, h = cell.hidden_size, prev[0]
    x_rz, x_n = b.split(x_t, [2 * H, H])
    W_T = p["weight_hh"].T                                                  # (H, 3H)
    if cell.spec.linear_before_reset:                                       # R h + b_h, b only on n
        b_h = np.zeros_like(p["bias_hh"])
        b_h[cell.n] = p["bias_hh"][cell.n]
        hr = b.op("Add", [b.op("MatMul", [h, b.const(W_T, f"weight_hh{sfx}_T")]),
                          b.const(b_h, f"bias_hn{sfx}")])
        hr_rz, hr_n = b.split(hr, [2 * H, H])
        rz = b.op("Sigmoid", [b.op("Add", [x_rz, hr_rz])])
        r, z = b.split(rz, [H, H])
        a_n = b.op("Add", [b.op("Mul", [r, hr_n]), x_n])                  # r * (R_n h + b_hn)
    else:
        rh_rz = b.op("MatMul", [h, b.const(W_T[:, cell.rz], f"weight_hh_rz{sfx}_T")])
        rz = b.op("Sigmoid", [b.op("Add", [rh_rz, x_rz])])
        r, z = b.split(rz, [H, H])
        rh = b.op("MatMul", [b.op("Mul", [r, h]), b.const(W_T[:, cell.n], f"weight_hh_n{sfx}_T")])
        a_n = b.op("Add", [rh, x_n])                                        # R_n (r * h)
    n = b.op("Tanh", [a_n])
    return [b.op("Add", [b.op("Mul", [b.op("Sub", [h, n]), z]), n])]      # n + z (h - n)


def _rnn_step(b: _Builder, cell, p, sfx, prev, x_t):
    """The step of cells.RNNCell: returns [h] (B, H)."""
    rh = b.op("MatMul", [prev[0], b.const(p["weight_hh"].T, f"weight_hh{sfx}_T")])
    a = b.op("Add", [rh, x_t])
    return [b.activate(cell.spec.nonlinearity, a)]


# --- import ----------------------------------------------------------------------------
@dataclasses.dataclass
class _Node:
    """One ONNX LSTM/GRU/RNN node, read and checked."""
    node: object
    spec: CellSpec
    D: int
    H: int
    F: int
    layout: int
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray | None
    P: np.ndarray | None


def load_onnx(path, *, dtype=None):
    """Read an ONNX file built from ONNX LSTM, GRU or RNN nodes into a lstmlab.numpy model.

    Reads the files `export_onnx` writes natively, single nodes built with onnx.helper and
    stacks of nodes (each node's X is the previous node's Y, through Transpose/Reshape/
    Squeeze only). The variant comes from the node: LSTM with P -> peephole, input_forget=1
    -> cifg, GRU linear_before_reset=1 -> gru (0 -> gru_cho), RNN Tanh/Relu -> rnn_tanh /
    rnn_relu; layers = the number of chained nodes. Weights must be initializers or
    Constant nodes. Other nodes (a head after the stack) are not read.
    dtype: the model's dtype; default float64 if the weights are, else float32.
    Raises ValueError (one line) for a file that is not ONNX or holds nothing we can read.
    """
    onnx = _import_onnx("import")
    path = Path(path)
    proto = _read_model(onnx, path)
    graph = proto.graph
    consts = _constants(onnx, graph)
    where = [k for k, n in enumerate(graph.node)
             if n.op_type in _FAMILY and n.domain in ("", "ai.onnx")]
    rec = [graph.node[k] for k in where]
    if not rec:
        ops = ", ".join(sorted({n.op_type for n in graph.node})) or "no nodes"
        raise ValueError(f"{path.name} has no ONNX LSTM, GRU or RNN node to load (its graph has "
                         f"{ops}); only graphs of these operators can be read")
    nodes = [_read_node(onnx, n, consts, path.name) for n in rec]
    first = nodes[0]
    for k, nd in enumerate(nodes[1:], 1):
        what = f"{path.name}: node {k} ({nd.node.op_type} {nd.node.name!r})"
        if nd.spec != first.spec or nd.D != first.D or nd.H != first.H or nd.layout != first.layout:
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
        sd.update(_params_from_native(first.spec, k, nd.W, nd.R, nd.B, nd.P))
    cls = _CLASSES[first.spec.family]
    model = cls(first.F, first.H, num_layers=len(nodes), bidirectional=first.D == 2,
                variant=first.spec, batch_first=batch_first, dtype=dtype, seed=0)
    model.load_state_dict(sd)
    return model


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
                elif a.name in ("value_float", "value_floats"):
                    out[n.output[0]] = np.asarray(onnx.helper.get_attribute_value(a), np.float32)
    return out


def _read_node(onnx, node, consts, fname) -> _Node:
    op, family = node.op_type, _FAMILY[node.op_type]
    what = f"{fname}: {op} node {node.name!r}" if node.name else f"{fname}: {op} node"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else
             [s.decode() if isinstance(s, bytes) else s for s in v] if isinstance(v, list) else v
             for k, v in attrs.items()}

    direction = attrs.pop("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"{what} has direction={direction!r}, which is unsupported "
                         "(only forward and bidirectional)")
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
        if ref not in consts:
            raise ValueError(f"{what}: its {name} input {ref!r} is not a constant (an "
                             "initializer or a Constant node), which is unsupported")
        a = consts[ref]
        if a.dtype.kind != "f":
            raise ValueError(f"{what}: its {name} has dtype {a.dtype}, expected floating point")
        return a

    W, R, B = weight(1, "W", True), weight(2, "R", True), weight(3, "B", False)
    P = weight(7, "P", False) if family == "lstm" else None
    for i, name in ((5, "initial_h"), (6, "initial_c")):
        ref = slots[i]
        if ref and ref in consts and np.any(consts[ref]):
            raise ValueError(f"{what}: a constant nonzero {name} is unsupported "
                             "(the model starts from zeros or the state passed at call time)")
    G = len(ONNX_GATES[family])
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
    return _Node(node, spec, D, H, W.shape[2], layout, W, R, B, P)


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

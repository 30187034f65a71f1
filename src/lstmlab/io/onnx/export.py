"""export_onnx: a NumPy model, with an optional embedding in front and a head and readout
after it, as one ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...families import family_of, state_sizes
from ...numpy.nn import Linear
from ...numpy.recurrent import Recurrent
from ..atomic import atomic_path
from .builder import Builder
from .common import DEFAULT_OPSET, MIN_OPSET, is_native, require_onnx
from .loop import loop_direction
from .native import native_layer


def export_onnx(model, path, *, head=None, embedding=None, readout: str = "sequence",
                opset=None, native: bool = True, initial_state: bool = False,
                metadata: dict[str, str] | None = None) -> Path:
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
    metadata: {key: text} written into the file's metadata_props (onnxruntime shows them as
    the session's custom_metadata_map), beside lstmlab's own "lstmlab.variant",
    "lstmlab.model" and "lstmlab.graph", which it may not replace.
    Graph: input "x" (T, B, I) ((B, T, I) with batch_first), T and B dynamic; outputs
    "y" (T, B, D*H) (or the head's (T, B, out)), "h_n" (L*D, B, P or H), "c_n" (L*D, B, H).
    The file is written atomically and checked with onnx.checker. Returns the path.
    """
    onnx = require_onnx("export")
    if not isinstance(model, Recurrent):
        raise ValueError("export_onnx needs a lstmlab.numpy LSTM, GRU or RNN, "
                         f"got {type(model).__name__}")
    metadata = _check_metadata(metadata)
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

    b = Builder(onnx, model.dtype, int(opset))
    I = model.input_size
    if embedding is None:
        inputs = [b.value_info("x", ["batch", "seq", I] if model.batch_first else ["seq", "batch", I])]
        x = b.op("Transpose", ["x"], perm=[1, 0, 2]) if model.batch_first else "x"   # (T, B, I)
    else:                                                        # token ids (T, B) -> (T, B, E)
        ids = b.op("Transpose", ["x"], perm=[1, 0]) if model.batch_first else "x"
        inputs = [onnx.helper.make_tensor_value_info(
            "x", onnx.TensorProto.INT64, ["batch", "seq"] if model.batch_first else ["seq", "batch"])]
        x = b.op("Gather", [b.const(embedding.params["weight"], "embedding_weight"), ids], axis=0)
    sizes = state_sizes(model.spec, model.hidden_size, model.proj_size)[:2]   # h (and c): fgr's
    # last gates stay inside
    state_in = []
    if initial_state:
        for name, n in zip(("h0", "c0"), sizes):
            inputs.append(b.value_info(name, [L * D, "batch", n]))
            state_in.append(name)

    use_native = native and is_native(model.spec, model.proj_size)
    finals: list[list[str]] = [[] for _ in sizes]                # per component, (D, B, n) pieces
    inp = x
    for k in range(L):
        if use_native:
            inp, fin = native_layer(b, model, k, inp, state_in)
        else:
            outs, fin = [], [[] for _ in sizes]
            for d in range(D):
                y_d, fin_d = loop_direction(b, model, k, d, inp, x, state_in)
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
    how = "native ONNX " + family_of(model.spec).onnx_op if use_native else "Scan loops"
    graph = helper.make_graph(b.nodes, "lstmlab", inputs, outputs, initializer=b.inits,
                              doc_string=f"lstmlab {model!r} as {how}"
                                         + (f", then {head!r}" if head is not None else ""))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))],
                              producer_name="lstmlab", producer_version=_version())
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    helper.set_model_props(proto, {"lstmlab.variant": model.spec.name,
                                   "lstmlab.model": repr(model),
                                   "lstmlab.graph": "native" if use_native else "loop",
                                   **metadata})
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


_OWN_KEYS = ("lstmlab.variant", "lstmlab.model", "lstmlab.graph")


def _check_metadata(metadata) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"metadata must map str to str; {k!r} maps to a {type(v).__name__}")
        if k in _OWN_KEYS:
            raise ValueError(f"metadata key {k!r} is written by export_onnx itself; "
                             "choose another name")
    return dict(metadata)


def _version() -> str:
    import lstmlab
    return str(getattr(lstmlab, "__version__", ""))

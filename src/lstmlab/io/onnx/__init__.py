"""ONNX export and import for the NumPy engine.

    path = export_onnx(model, "model.onnx", head=None)    # any variant, any stack
    model = load_onnx("model.onnx")                        # ONNX LSTM / GRU / RNN nodes back
    model = load_onnx("m.onnx", inputs={"W": W, "R": R})   # weights fed at run time

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

Import reads what ONNX's backend tests write: forward, bidirectional and reverse nodes (a
reverse-only stack comes back as a TimeReversed: the forward model run over each sequence
backwards), weights as initializers, Constant nodes or graph inputs (fed through
`inputs=`, which also replaces an initializer's default value).

Modules: common (opsets, which variants are native, our weight layout <-> ONNX's), builder
(the graph builder), native (a layer as an LSTM/GRU/RNN node), loop (a layer as a Scan),
export (export_onnx: the whole network), load (load_onnx), reverse (TimeReversed).

onnx is an optional dependency (`pip install 'lstmlab[onnx]'`); it is imported on use.
"""

from .common import DEFAULT_OPSET, MIN_OPSET, is_native
from .export import export_onnx
from .load import load_onnx
from .reverse import TimeReversed

__all__ = ["export_onnx", "load_onnx", "is_native", "TimeReversed", "DEFAULT_OPSET", "MIN_OPSET"]

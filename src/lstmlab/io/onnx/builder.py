"""The graph builder the exporters write into: unique names, initializers, loop bodies, and
the elementwise pieces of the cells (layer norm, activations) as ONNX ops."""

from __future__ import annotations

import contextlib

import numpy as np

from ...numpy.ops import LN_EPS


class Builder:
    """Collects nodes and initializers under unique names; nodes go to the current graph."""

    def __init__(self, onnx, np_dtype, opset: int):
        self.onnx, self.helper, self.nh = onnx, onnx.helper, onnx.numpy_helper
        self.dtype = np.dtype(np_dtype)
        self.elem = self.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.opset = opset
        self.inits: list = []                                    # TensorProtos
        self.nodes: list = []                                    # NodeProtos of the current graph
        self._count = 0
        self._cache: dict = {}                                   # shared constants, by value

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

"""A minimal NHWC float32 graph builder that mirrors TFLite's operator set.

It records tensors and operators with the exact TFLite semantics (shapes, options, weight
layouts), so that `tflite_writer` can serialise it without TensorFlow. Weights come from one
seeded generator, in call order, which makes the emitted file byte-identical on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Shape = tuple[int, ...]


@dataclass
class Tensor:
    index: int
    name: str
    shape: Shape
    dtype: str = "float32"  # "float32" or "int32"
    data: np.ndarray | None = None  # constants only


@dataclass
class Operator:
    op: str  # TFLite builtin name, e.g. "CONV_2D"
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


def _same_out(size: int, stride: int) -> int:
    return math.ceil(size / stride)


class GraphBuilder:
    def __init__(self, seed: int) -> None:
        self.tensors: list[Tensor] = []
        self.operators: list[Operator] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self._rng = np.random.default_rng(seed)
        self._counter = 0

    # -- tensors -------------------------------------------------------------------------
    def _new(self, prefix: str, shape: Shape, dtype: str = "float32", data=None) -> Tensor:
        self._counter += 1
        t = Tensor(len(self.tensors), f"{prefix}_{self._counter}", tuple(int(s) for s in shape), dtype, data)
        self.tensors.append(t)
        return t

    def input(self, name: str, shape: Shape) -> Tensor:
        t = self._new(name, shape)
        t.name = name
        self.inputs.append(t.index)
        return t

    def mark_output(self, t: Tensor, name: str) -> None:
        t.name = name
        self.outputs.append(t.index)

    def _const(self, prefix: str, values: np.ndarray) -> Tensor:
        dtype = "int32" if values.dtype == np.int32 else "float32"
        return self._new(prefix, values.shape, dtype, np.ascontiguousarray(values))

    def _int_const(self, prefix: str, values) -> Tensor:
        return self._const(prefix, np.asarray(values, dtype=np.int32))

    def _weights(self, shape: Shape, fan_in: int, gain: float) -> np.ndarray:
        std = gain / math.sqrt(fan_in)
        return (self._rng.standard_normal(shape) * std).astype(np.float32)

    def _bias(self, n: int) -> np.ndarray:
        return (self._rng.standard_normal(n) * 0.02).astype(np.float32)

    def _emit(self, op: str, inputs: list[Tensor], out_shape: Shape, **options) -> Tensor:
        out = self._new(op.lower(), out_shape)
        self.operators.append(Operator(op, [t.index for t in inputs], [out.index], options))
        return out

    # -- layers --------------------------------------------------------------------------
    def conv2d(self, x: Tensor, cout: int, kernel: int = 1, stride: int = 1, relu: bool = False,
               gain: float | None = None) -> Tensor:
        n, h, w, cin = x.shape
        gain = gain if gain is not None else (math.sqrt(2.0) if relu else 1.0)
        weight = self._const("conv_w", self._weights((cout, kernel, kernel, cin), kernel * kernel * cin, gain))
        bias = self._const("conv_b", self._bias(cout))
        out_shape = (n, _same_out(h, stride), _same_out(w, stride), cout)
        return self._emit("CONV_2D", [x, weight, bias], out_shape, padding="SAME", stride=stride,
                          activation="RELU" if relu else "NONE")

    def depthwise(self, x: Tensor, kernel: int = 3, stride: int = 1, relu: bool = False,
                  dilation: int = 1) -> Tensor:
        n, h, w, c = x.shape
        weight = self._const("dw_w", self._weights((1, kernel, kernel, c), kernel * kernel,
                                                   math.sqrt(2.0) if relu else 1.0))
        bias = self._const("dw_b", self._bias(c))
        out_shape = (n, _same_out(h, stride), _same_out(w, stride), c)
        dilated = {"dilation": dilation} if dilation != 1 else {}  # the twin's options, and so its bytes, unchanged
        return self._emit("DEPTHWISE_CONV_2D", [x, weight, bias], out_shape, padding="SAME",
                          stride=stride, activation="RELU" if relu else "NONE", **dilated)

    def transpose_conv(self, x: Tensor, cout: int, kernel: int, stride: int) -> Tensor:
        n, h, w, cin = x.shape
        out_shape = (n, h * stride, w * stride, cout)
        output_shape = self._int_const("tconv_shape", out_shape)
        weight = self._const("tconv_w", self._weights((cout, kernel, kernel, cin), cin, 1.0))
        bias = self._const("tconv_b", self._bias(cout))
        return self._emit("TRANSPOSE_CONV", [output_shape, weight, x, bias], out_shape,
                          padding="VALID", stride=stride)

    def channel_affine(self, x: Tensor) -> Tensor:
        """Per-channel scale and shift (a folded normalisation): MUL then ADD by constants."""
        c = x.shape[-1]
        scale = self._const("norm_scale", (1.0 + 0.05 * self._rng.standard_normal(c)).astype(np.float32))
        shift = self._const("norm_shift", (0.05 * self._rng.standard_normal(c)).astype(np.float32))
        return self.add(self.mul(x, scale), shift)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return self._emit("ADD", [a, b], np.broadcast_shapes(a.shape, b.shape), activation="NONE")

    def mul(self, a: Tensor, b: Tensor) -> Tensor:
        return self._emit("MUL", [a, b], np.broadcast_shapes(a.shape, b.shape), activation="NONE")

    def reshape(self, x: Tensor, shape: Shape) -> Tensor:
        resolved = tuple(np.empty(x.shape, dtype=np.uint8).reshape(shape).shape)
        return self._emit("RESHAPE", [x, self._int_const("shape", shape)], resolved, new_shape=list(shape))

    def transpose(self, x: Tensor, perm: Shape) -> Tensor:
        out_shape = tuple(x.shape[p] for p in perm)
        return self._emit("TRANSPOSE", [x, self._int_const("perm", perm)], out_shape)

    def softmax(self, x: Tensor) -> Tensor:
        return self._emit("SOFTMAX", [x], x.shape, beta=1.0)

    def reduce_sum(self, x: Tensor, axis: int) -> Tensor:
        out_shape = tuple(1 if i == axis else s for i, s in enumerate(x.shape))
        return self._emit("SUM", [x, self._int_const("axis", [axis])], out_shape, keep_dims=True)

    def custom(self, name: str, x: Tensor) -> Tensor:
        """An operator TFLite and TVM know nothing about (used to test error paths)."""
        return self._emit(name, [x], x.shape)

    def resize(self, x: Tensor, size: int, method: str) -> Tensor:
        op = {"nearest": "RESIZE_NEAREST_NEIGHBOR", "bilinear": "RESIZE_BILINEAR"}[method]
        n, _, _, c = x.shape
        return self._emit(op, [x, self._int_const("size", [size, size])], (n, size, size, c),
                          align_corners=False, half_pixel_centers=True)

"""Relax converters for MediaPipe's custom TFLite operators.

MediaPipe stores these ops' options as raw little-endian C structs (not flexbuffers):
  Convolution2DTransposeBias: int32 padding (1 SAME, 2 VALID), stride_w, stride_h
  MaxPoolingWithArgmax2D / MaxUnpooling2D: TfLitePoolParams = int32 padding, stride_w,
      stride_h, filter_w, filter_h, activation, ...
The argmax index is the position inside the pooling window, stored as float (+0.1 so that
truncation recovers it). It only travels from a pool to its unpool, so its encoding is internal;
we number windows x-major (x * filter_h + y) because that is what LiteRT's XNNPACK kernels do:
on ties (flat image regions) the first maximum in that order wins, and outputs then match
LiteRT exactly (MediaPipe's reference kernel numbers y-major and would differ on ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, te

from runtime.errors import SelfieTvmError

SAME, VALID = 1, 2
NHWC_TO_NCHW, NCHW_TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


class CustomOpError(SelfieTvmError):
    pass


def _options(op, count: int) -> np.ndarray:
    raw = op.CustomOptionsAsNumpy()
    if isinstance(raw, int) or raw.size < 4 * count:
        raise CustomOpError(f"custom options too short: need {count} int32 values")
    return np.frombuffer(raw.tobytes()[: 4 * count], dtype="<i4")


@dataclass(frozen=True)
class PoolParams:
    padding: int
    stride_w: int
    stride_h: int
    filter_w: int
    filter_h: int

    @classmethod
    def of(cls, op) -> PoolParams:
        return cls(*(int(v) for v in _options(op, 5)))

    def require_tiling(self, name: str, h: int, w: int) -> int:
        """Only non-overlapping, unpadded windows are supported (what MediaPipe's models use)."""
        k = self.filter_h
        if not (self.filter_w == self.stride_w == self.stride_h == k and h % k == 0 and w % k == 0):
            raise CustomOpError(
                f"{name}: only non-overlapping windows on divisible inputs are supported "
                f"(filter {self.filter_h}x{self.filter_w}, stride {self.stride_h}x{self.stride_w}, input {h}x{w})")
        return k

    def require_non_overlapping(self, name: str) -> int:
        """The window size, when windows do not overlap (what MediaPipe's models use)."""
        k = self.filter_h
        if not (self.filter_w == self.stride_w == self.stride_h == k):
            raise CustomOpError(f"{name}: only non-overlapping windows are supported")
        return k


def _shape(conv, tensor) -> list[int]:
    return [int(v) for v in conv.get_tensor_shape(tensor)]


def convert_transpose_conv_bias(conv, op, layout: str = "NCHW"):
    """layout NCHW: the stock form, transposes around TVM's NCHW-only conv2d_transpose; NHWC: in the
    data's own layout, for the sub-pixel rewrite (tuning/transforms.py) to turn into one NHWC conv."""
    data_t, weight_t, bias_t = conv.get_input_tensors(op)
    (out_t,) = conv.get_output_tensors(op)
    padding, stride_w, stride_h = (int(v) for v in _options(op, 3))
    _, in_h, in_w, _ = _shape(conv, data_t)
    _, k_h, k_w, _ = _shape(conv, weight_t)  # OHWI
    _, out_h, out_w, _ = _shape(conv, out_t)

    def pads(size_in, size_out, stride, k):
        total = max((size_in - 1) * stride + k - size_out, 0) if padding == SAME else 0
        before, after = total // 2, total - total // 2
        extra = size_out - ((size_in - 1) * stride - total + k)
        if not 0 <= extra < stride:
            raise CustomOpError(f"Convolution2DTransposeBias: cannot produce output size {size_out} "
                                f"from {size_in} with kernel {k}, stride {stride}")
        return before, after, extra

    top, bottom, extra_h = pads(in_h, out_h, stride_h, k_h)
    left, right, extra_w = pads(in_w, out_w, stride_w, k_w)
    data = conv.get_tensor_expr(data_t)
    if layout == "NCHW":
        data = relax.op.permute_dims(data, NHWC_TO_NCHW)
    weight = relax.op.permute_dims(conv.get_tensor_expr(weight_t), (3, 0, 1, 2))  # OHWI -> IOHW
    y = relax.op.nn.conv2d_transpose(data, weight, strides=(stride_h, stride_w), padding=(top, left, bottom, right),
                                     output_padding=(extra_h, extra_w), data_layout=layout, kernel_layout="IOHW",
                                     out_dtype="float32")
    if layout == "NCHW":
        y = relax.op.permute_dims(y, NCHW_TO_NHWC)
    return relax.op.add(y, conv.get_tensor_expr(bias_t))


def _window_axis(x: relax.Expr, n: int, h: int, w: int, c: int, k: int) -> relax.Expr:
    """(n, h, w, c) -> (n, h/k, w/k, c, k*k): each output position's window, x-major."""
    x = relax.op.reshape(x, (n, h // k, k, w // k, k, c))
    x = relax.op.permute_dims(x, (0, 1, 3, 5, 4, 2))
    return relax.op.reshape(x, (n, h // k, w // k, c, k * k))


def convert_max_pool_argmax(conv, op):
    (data_t,) = conv.get_input_tensors(op)
    n, h, w, c = _shape(conv, data_t)
    k = PoolParams.of(op).require_tiling("MaxPoolingWithArgmax2D", h, w)
    windows = conv.bb.normalize(_window_axis(conv.get_tensor_expr(data_t), n, h, w, c, k))
    pooled = relax.op.max(windows, axis=-1)
    index = relax.op.add(relax.op.astype(relax.op.argmax(windows, axis=-1), "float32"), relax.const(0.1, "float32"))
    return relax.Tuple([pooled, index])


def convert_max_unpooling(conv, op):
    data_t, index_t = conv.get_input_tensors(op)
    n, h, w, c = _shape(conv, data_t)
    k = PoolParams.of(op).require_non_overlapping("MaxUnpooling2D")
    data = relax.op.expand_dims(conv.get_tensor_expr(data_t), -1)
    index = relax.op.expand_dims(relax.op.astype(conv.get_tensor_expr(index_t), "int32"), -1)
    slots = relax.const(np.arange(k * k, dtype="int32").reshape(1, 1, 1, 1, k * k))
    scattered = relax.op.where(relax.op.equal(index, slots), data, relax.const(0.0, "float32"))
    y = relax.op.reshape(scattered, (n, h, w, c, k, k))
    y = relax.op.permute_dims(y, (0, 1, 5, 2, 4, 3))
    return relax.op.reshape(y, (n, h * k, w * k, c))


def _pool_argmax_te(x, k: int):
    """Max and argmax of each k x k window in one pass over the input: a reduction over (index, value)
    pairs that keeps the first maximum in x-major window order (see the module doc)."""
    n, h, w, c = (int(d) for d in x.shape)
    r = te.reduce_axis((0, k * k), "r")

    def combine(a, b):
        take_b = tvm.tirx.Or(b[1] > a[1], tvm.tirx.And(b[1] == a[1], b[0] < a[0]))
        return tvm.tirx.Select(take_b, b[0], a[0]), tvm.tirx.Select(take_b, b[1], a[1])

    def identity(index_dtype, value_dtype):
        return tvm.tirx.const(k * k, index_dtype), tvm.te.min_value(value_dtype)

    argmax = te.comm_reducer(combine, identity, name="window_argmax")
    index, pooled = te.compute(
        (n, h // k, w // k, c),
        lambda b, i, j, ch: argmax((r.astype("int32"), x[b, i * k + r % k, j * k + r // k, ch]), axis=r),
        name="pool_argmax")
    encoded = te.compute(index.shape, lambda *i: index(*i).astype("float32") + tvm.tirx.const(0.1, "float32"),
                         name="argmax_index")
    return [pooled, encoded]


def _unpool_te(data, index, k: int):
    """Each window's value back at its argmax position, zeros elsewhere: one pass over the output."""
    n, h, w, c = (int(d) for d in data.shape)

    def at(b, y, x, ch):
        slot = (x % k) * k + y % k  # x-major, as the pool numbers it
        hit = index[b, y // k, x // k, ch].astype("int32") == slot
        return tvm.tirx.Select(hit, data[b, y // k, x // k, ch], tvm.tirx.const(0.0, data.dtype))

    return te.compute((n, h * k, w * k, c), at, name="max_unpool")


def convert_max_pool_argmax_one_pass(conv, op):
    (data_t,) = conv.get_input_tensors(op)
    n, h, w, c = _shape(conv, data_t)
    k = PoolParams.of(op).require_tiling("MaxPoolingWithArgmax2D", h, w)
    out = conv.bb.emit_te(_pool_argmax_te, conv.get_tensor_expr(data_t), k, primfunc_name_hint="max_pool_argmax")
    return relax.Tuple([relax.TupleGetItem(out, 0), relax.TupleGetItem(out, 1)])


def convert_max_unpooling_one_pass(conv, op):
    data_t, index_t = conv.get_input_tensors(op)
    k = PoolParams.of(op).require_non_overlapping("MaxUnpooling2D")
    return conv.bb.emit_te(_unpool_te, conv.get_tensor_expr(data_t), conv.get_tensor_expr(index_t), k,
                           primfunc_name_hint="max_unpool")


CUSTOM_CONVERTERS = {
    "Convolution2DTransposeBias": convert_transpose_conv_bias,
    "MaxPoolingWithArgmax2D": convert_max_pool_argmax,
    "MaxUnpooling2D": convert_max_unpooling,
}

# The tuned graph's (GraphOptions.clean_import): one pass each instead of reshape/transpose/max/argmax and
# expand/where/transpose chains.
ONE_PASS_CONVERTERS = {
    "MaxPoolingWithArgmax2D": convert_max_pool_argmax_one_pass,
    "MaxUnpooling2D": convert_max_unpooling_one_pass,
}

__all__ = ["CUSTOM_CONVERTERS", "ONE_PASS_CONVERTERS", "CustomOpError"]

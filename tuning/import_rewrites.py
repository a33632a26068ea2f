"""Converters that import TFLite operators without the stock frontend's artefacts (tuned graph only).

- PRELU: the stock converter broadcasts alpha to the whole tensor, flattens both and applies PReLU on
  axis 0, so a model reads one alpha per element (hair_segmentation: ~26 MB per inference) and the
  reshapes keep PReLU out of the conv kernel before it. A per-channel alpha becomes `nn.prelu(x, alpha,
  axis=3)`, an epilogue FuseOps folds into the conv.
- RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR: a resize to the input's own size is the identity
  (deeplab_v3 resizes 33x33 to 33x33 with aligned corners, fused into its final upsample), and a resize
  of a 1x1 map is a broadcast (deeplab_v3's pooled branch): neither needs interpolation.

Anything else goes to the stock converter. The default build keeps the stock import (STOCK_GRAPH).
"""

from __future__ import annotations

from tvm import relax


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def convert_prelu(conv, op, stock):
    data_t, alpha_t = conv.get_input_tensors(op)
    shape = _ints(conv.get_tensor_shape(data_t))
    alpha_shape = _ints(conv.get_tensor_shape(alpha_t))
    channels = shape[-1]
    per_channel = (len(shape) == 4 and alpha_shape and alpha_shape[-1] == channels
                   and all(d == 1 for d in alpha_shape[:-1]))
    if not per_channel:
        return stock(op)
    alpha = relax.op.reshape(conv.get_tensor_expr(alpha_t), [channels])
    return relax.op.nn.prelu(conv.get_tensor_expr(data_t), alpha, axis=3)


def convert_resize(conv, op, stock):
    data_t = conv.get_input_tensors(op)[0]
    (out_t,) = conv.get_output_tensors(op)
    in_shape = _ints(conv.get_tensor_shape(data_t))
    out_shape = _ints(conv.get_tensor_shape(out_t))
    if in_shape == out_shape:
        return conv.get_tensor_expr(data_t)
    if in_shape[1:3] == [1, 1] and in_shape[0] == out_shape[0] and in_shape[3] == out_shape[3]:
        return relax.op.broadcast_to(conv.get_tensor_expr(data_t), out_shape)
    return stock(op)


REWRITES = {
    "PRELU": convert_prelu,
    "RESIZE_BILINEAR": convert_resize,
    "RESIZE_NEAREST_NEIGHBOR": convert_resize,
}

"""Graph rewrites applied at import, before TVM legalises the operators.

Transposed convolution as sub-pixel (phase) convolution
-------------------------------------------------------
TVM legalises `conv2d_transpose` (NCHW only) as dilate + pad + direct convolution: at stride s,
(s²-1)/s² of the multiply-adds hit inserted zeros, and `dilate` uses if_then_else, which
MetaSchedule's auto-inline refuses, so the zero-filled tensor is materialised. The model's
transposed conv (2x2, stride 2, VALID, 128x128x32 -> 256x256x32) cost 11.5 ms plus a 2.4 ms
layout copy back to NHWC.

Written as a scatter, out[y] = sum_a x[i] * w[a] over (i, a) with i*s + a - pad = y, so every
output pixel only sees the kernel taps of its own phase (y + pad) mod s:

    out[n, y, x, o] = sum_{c, th, tw} x[n, (y+pt)//s - th, (x+pl)//s - tw, c]
                                      * w[c, o, (y+pt)%s + s*th, (x+pl)%s + s*tw]

with th < ceil(kh/s) (taps beyond the kernel are zero-padded). For kernel == stride (the
MediaPipe case) that is a single tap: a 1x1 convolution whose output is interleaved by
depth-to-space, computed in one kernel in the data's own layout (no transposes around it),
with exactly the useful multiply-adds.
"""

from __future__ import annotations

import tvm
from tvm import relax, te, topi

CONV2D_TRANSPOSE = tvm.ir.Op.get("relax.nn.conv2d_transpose")


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _eligible(attrs) -> bool:
    return (
        attrs.data_layout in ("NHWC", "NCHW")
        and attrs.kernel_layout == "IOHW"
        and attrs.out_layout == attrs.data_layout
        and int(attrs.groups) == 1
        and all(p == 0 for p in _ints(attrs.output_padding))
        and all(d == 1 for d in _ints(attrs.dilation))
    )


def subpixel_conv2d_transpose(data: te.Tensor, kernel: te.Tensor, out_shape: list[int], layout: str,
                              strides: list[int], padding: list[int]) -> te.Tensor:
    """conv2d_transpose (kernel IOHW) without multiplying inserted zeros; see the module doc."""
    sh, sw = strides
    pt, pl = padding[0], padding[1]
    c_in, c_out, kh, kw = _ints(kernel.shape)
    th_n, tw_n = -(-kh // sh), -(-kw // sw)
    if layout == "NHWC":
        _, in_h, in_w, _ = _ints(data.shape)
    else:
        _, _, in_h, in_w = _ints(data.shape)

    if (th_n, tw_n) != (1, 1) or kh != sh or kw != sw:
        # Overlapping taps: pad the kernel to a multiple of the stride and the input by the taps
        # that reach before its first / after its last pixel.
        kernel = topi.nn.pad(kernel, [0, 0, 0, 0], [0, 0, th_n * sh - kh, tw_n * sw - kw])
        pad_before = [th_n - 1, tw_n - 1]
        out_h, out_w = (out_shape[1], out_shape[2]) if layout == "NHWC" else (out_shape[2], out_shape[3])
        pad_after = [max(0, (out_h - 1 + pt) // sh - (in_h - 1)), max(0, (out_w - 1 + pl) // sw - (in_w - 1))]
        if layout == "NHWC":
            data = topi.nn.pad(data, [0, *pad_before, 0], [0, *pad_after, 0])
        else:
            data = topi.nn.pad(data, [0, 0, *pad_before], [0, 0, *pad_after])
        off_h, off_w = th_n - 1, tw_n - 1
    else:
        off_h = off_w = 0

    rc = te.reduce_axis((0, c_in), "rc")
    rh = te.reduce_axis((0, th_n), "rh")
    rw = te.reduce_axis((0, tw_n), "rw")

    def tap(y, x):
        iy = (y + pt) // sh - rh + off_h
        ix = (x + pl) // sw - rw + off_w
        ky = (y + pt) % sh + sh * rh
        kx = (x + pl) % sw + sw * rw
        return iy, ix, ky, kx

    if layout == "NHWC":
        def compute(n, y, x, o):
            iy, ix, ky, kx = tap(y, x)
            return te.sum(data[n, iy, ix, rc] * kernel[rc, o, ky, kx], axis=[rc, rh, rw])
    else:
        def compute(n, o, y, x):
            iy, ix, ky, kx = tap(y, x)
            return te.sum(data[n, rc, iy, ix] * kernel[rc, o, ky, kx], axis=[rc, rh, rw])

    return te.compute(out_shape, compute, name="subpixel_conv2d_transpose", tag="conv2d_transpose")


@relax.expr_functor.mutator
class _SubPixelRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod = mod
        self.rewritten = 0

    def transform(self) -> tvm.IRModule:
        for gv, func in self.mod.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if call.op != CONV2D_TRANSPOSE or not _eligible(call.attrs):
            return call
        attrs = call.attrs
        out_shape = _ints(call.ty.shape)
        strides, padding = _ints(attrs.strides), _ints(attrs.padding)
        if any(p < 0 for p in padding):
            return call
        self.rewritten += 1
        return self.builder_.call_te(
            subpixel_conv2d_transpose, call.args[0], call.args[1], out_shape=out_shape,
            layout=str(attrs.data_layout), strides=strides, padding=padding,
            primfunc_name_hint="subpixel_conv2d_transpose")


def subpixel_transposed_convolutions(mod: tvm.IRModule) -> tvm.IRModule:
    """Replace every conv2d_transpose that the sub-pixel form covers (groups 1, no dilation)."""
    return _SubPixelRewriter(mod).transform()

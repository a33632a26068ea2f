"""The signature (benchmark/single_op.py) of every kernel of a TVM library, read from its TIR.

A fused kernel (conv + bias + ReLU + residual add, ...) is named by its anchor: the convolution block
(`conv2d_nhwc`, `group_conv2d_nhwc`, `subpixel_conv2d_transpose`), whose iteration extents give the
output and kernel shape and whose data, followed back through the padding block, is the input
parameter. A kernel without a convolution is named by its first operator that computes (from its name, as
Relax fuses `fused_<op>_<op>...`; a chain of layout operators by its first) and its output shape.
"""

from __future__ import annotations

import re

import tvm
from tvm import s_tir

from runtime.acquire import ResolvedModel
from runtime.target import TargetSpec
from tuning.build import tuning_module
from tuning.importer import TUNED_GRAPH, GraphOptions

from .single_op import Signature, conv_signature

CONV, GROUP_CONV, SUBPIXEL = "conv2d_nhwc", "group_conv2d_nhwc", "subpixel_conv2d_transpose"
STOCK_TRANSPOSED = "conv2d_transpose"
# Blocks TOPI puts in front of a convolution to prepare its operands.
PREPARATION = {"pad_temp", "data_pad", "data_dilate", "kernel_transform"}
REDUCE = 2  # IterVar.iter_type of a reduction axis
# Relax operator (as it appears in kernel names) -> the kind name shared with LiteRT's operators.
KINDS = {"add": "add", "multiply": "multiply", "subtract": "subtract", "divide": "divide", "resize2d": "resize",
         "softmax": "softmax", "sum": "sum", "mean": "mean", "transpose": "transpose", "reshape": "reshape",
         "sigmoid": "sigmoid", "avg_pool2d": "avg-pool", "max_pool2d": "max-pool", "concatenate": "concatenate",
         "relu": "relu", "prelu": "prelu", "clip": "clip"}
# Operators that only re-index their input for the next one: a fused kernel is named by what follows them
# (`fused_broadcast_to_concatenate1` is deeplab_v3's concatenation, with its pooled branch broadcast inside).
RE_INDEXING = ("broadcast_to", "expand_dims", "reshape", "squeeze")
# A kernel of layout operators only keeps its first one's name, as LiteRT's RESHAPE+TRANSPOSE... chain does.
LAYOUT_KINDS = {"transpose", "reshape", "squeeze", "expand", "broadcast"}


def _shape(buffer) -> tuple[int, ...]:
    return tuple(int(s) for s in buffer.shape)


def _nhwc(nchw: tuple[int, ...]) -> tuple[int, ...]:
    n, c, h, w = nchw
    return n, h, w, c


def _operand(sch: s_tir.Schedule, block, read: int = 0):
    """The buffer a convolution block's operand comes from, before the blocks that only prepare it for this
    convolution (padding, dilation, the kernel flip): in the convolution's own layout, whatever produced it."""
    buffer = block.reads[read].source
    producers = {sch.get(b).writes[0].source.name: sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))}
    while buffer.name in producers and producers[buffer.name].name_hint in PREPARATION:
        buffer = producers[buffer.name].reads[0].source
    return buffer


def kernel_signature(name: str, func: tvm.tirx.PrimFunc) -> Signature:
    sch = s_tir.Schedule(func)
    root = sch.get_sblock("root")
    blocks = [sch.get(b) for b in sch.get_child_blocks(root)]
    for block in blocks:
        if block.name_hint not in (CONV, GROUP_CONV, SUBPIXEL):
            continue
        extents = [int(iv.dom.extent) for iv in block.iter_vars]
        reduced = [int(iv.dom.extent) for iv in block.iter_vars if int(iv.iter_type) == REDUCE]
        out = tuple(extents[:4])
        data = _shape(_operand(sch, block))
        if block.name_hint == SUBPIXEL:  # weights IOHW; data NHWC, or NCHW (MediaPipe's op, converted)
            c_in, c_out, kh, kw = _shape(block.reads[1].source)
            if str(block.iter_vars[1].var).endswith("o"):  # axes (n, o, y, x): tuning/transforms.py's NCHW
                data, out = _nhwc(data), _nhwc(out)
            return conv_signature("transpose-conv", data, (c_out, kh, kw, c_in), out)
        kh, kw, per_group = reduced
        if block.name_hint == GROUP_CONV and per_group == 1:
            return conv_signature("depthwise", data, (1, kh, kw, out[3]), out)
        kind = "group-conv" if block.name_hint == GROUP_CONV else "conv"
        return conv_signature(kind, data, (out[3], kh, kw, per_group), out)
    if name.removeprefix("fused_").startswith(STOCK_TRANSPOSED):
        return _stock_transposed(sch, blocks)
    return Signature(_first_operator(name), output=_shape(blocks[-1].writes[0].source) if blocks else ())


def _stock_transposed(sch: s_tir.Schedule, blocks) -> Signature:
    """TVM's own conv2d_transpose (the stock graph): NCHW data, IOHW weights, dilated and padded input."""
    block = next(b for b in blocks if any(int(iv.iter_type) == REDUCE for iv in b.iter_vars))
    c_in, c_out, kh, kw = _shape(_operand(sch, block, 1))
    return conv_signature("transpose-conv", _nhwc(_shape(_operand(sch, block, 0))), (c_out, kh, kw, c_in),
                          _nhwc(_shape(block.writes[0].source)))


def _first_operator(name: str) -> str:
    """`fused_resize2d1_add3` -> resize; `transpose2` -> transpose; `fused_broadcast_to_concatenate1` ->
    concatenate."""
    rest = name.removeprefix("fused_")
    for op in RE_INDEXING:
        following = re.match(rf"{op}\d*_(?=[a-z])", rest)
        if following and (kind := _first_operator(rest[following.end():])) not in LAYOUT_KINDS:
            return kind
    for op in sorted(KINDS, key=len, reverse=True):  # whole multi-word names (avg_pool2d) before their parts
        if re.match(rf"{op}(\d|_|$)", rest):
            return KINDS[op]
    return re.sub(r"\d+$", "", rest.split("_")[0])


def kernel_signatures(model: ResolvedModel, target: TargetSpec, graph: dict | None = None) -> dict[str, Signature]:
    """Every kernel of the module a library was built from (its metadata's `graph`), by its name in
    the optimised module (the names benchmark/profile.py reports)."""
    return module_kernel_signatures(tuning_module(model, target, GraphOptions(**graph) if graph else TUNED_GRAPH))


def module_kernel_signatures(mod: tvm.IRModule) -> dict[str, Signature]:
    """Every kernel of an optimised module, by name."""
    return {gv.name_hint: kernel_signature(gv.name_hint, func) for gv, func in mod.functions.items()
            if isinstance(func, tvm.tirx.PrimFunc)}

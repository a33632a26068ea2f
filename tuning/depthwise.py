"""A hand-written schedule for NHWC depthwise kernels (3x3 or 5x5 taps, stride 1 or 2, any dilation), which
MetaSchedule's space cannot express.

What the tuner's records do with these kernels (results/selfie_multiclass_twin/asm-diagnosis.md): a padded
copy of the input (whole, or per tile), accumulators reloaded every few taps, vectors as narrow as 2-4 lanes.
This schedule keeps an output tile of `w_tile` pixels x `lanes` channels in registers over all taps,
reads border taps through a guarded load instead of any padded copy, applies bias/activation/residual
in the same loop nest while the tile is in registers, and runs output rows in parallel.

Measured on this project's kernels, a padded strip per channel block (the sketch in avx2-perf.md) was
1.3-6x slower than the guarded loads: it walks the input one channel block (64 bytes per pixel) at a
time, and copies every input row three times.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import s_tir

CONV_BLOCK = "group_conv2d_nhwc"
PAD_BLOCK = "pad_temp"


@dataclass(frozen=True)
class DepthwiseTile:
    lanes: int  # channels per tile: the ISA's fp32 vector width (16 AVX-512, 8 AVX2) or twice it
    w_tile: int  # output pixels per register tile

    @property
    def name(self) -> str:
        return f"c{self.lanes}w{self.w_tile}"

    def as_dict(self) -> dict:
        return {"lanes": self.lanes, "w_tile": self.w_tile}


@dataclass(frozen=True)
class DepthwiseShape:
    height: int  # output
    width: int
    channels: int
    stride: int
    taps: int = 3  # the kernel's height and width
    dilation: int = 1

    def __str__(self) -> str:
        return (f"{self.height}x{self.width}x{self.channels} s{self.stride}"
                + (f" k{self.taps}" if self.taps != 3 else "") + (f" d{self.dilation}" if self.dilation != 1 else ""))


def depthwise_shape(func: tvm.tirx.PrimFunc) -> DepthwiseShape | None:
    """The shape of a depthwise kernel this schedule handles (batch 1, square 3x3 or 5x5 taps, stride 1 or 2,
    any dilation), else None."""
    sch = s_tir.Schedule(func)
    try:
        conv = sch.get_sblock(CONV_BLOCK)
    except s_tir.schedule.ScheduleError:  # no such block: not a grouped conv
        return None
    loops = sch.get_loops(conv)
    if len(loops) != 7:
        return None
    n, h, w, c, ry, rx, rc = (int(sch.get(loop).extent) for loop in loops)
    stride, dilation = _stride_and_dilation(sch.get(conv))
    if n != 1 or rc != 1 or ry != rx or ry not in TAPS or stride not in (1, 2) or dilation is None:
        return None
    return DepthwiseShape(h, w, c, stride, ry, dilation)


TAPS = (3, 5)


def _term(term) -> tuple[tvm.tirx.Var | None, int | None]:
    """(v, s) of a row-index term `v * s`, (v, 1) of a bare `v`; (None, None) for anything else."""
    if isinstance(term, tvm.tirx.Mul) and isinstance(term.a, tvm.tirx.Var) and isinstance(term.b, tvm.tirx.IntImm):
        return term.a, int(term.b.value)
    return (term, 1) if isinstance(term, tvm.tirx.Var) else (None, None)


def _stride_and_dilation(block) -> tuple[int | None, int | None]:
    """The conv's stride and dilation along H, read from its input row index `yy * s + ry * d`, whose terms TVM
    may order either way (`ry * 2 + yy` for dilation 2): each factor is taken by its variable, the output row
    (the block's second iterator) for the stride and the kernel row (its fifth) for the dilation."""
    row = block.reads[0].region[1].min
    if not isinstance(row, tvm.tirx.Add):
        return None, None
    yy, ry = block.iter_vars[1].var, block.iter_vars[4].var
    stride = dilation = None
    for var, factor in (_term(row.a), _term(row.b)):
        if var is not None and var.same_as(yy):
            stride = factor
        elif var is not None and var.same_as(ry):
            dilation = factor
    return stride, dilation


def tiles(shape: DepthwiseShape, vector_lanes: int) -> list[DepthwiseTile]:
    """The small grid measured per kernel: one or two vectors of channels times 4 or 8 pixels (4-16 vector
    accumulators; which fits the register file without spilling is left to the measurement). Shapes those do
    not divide get the nearest that do: half a vector of channels (72 channels on AVX-512), and the widest
    tile of 3 to 7 pixels that divides the row (33 pixels: 3; 65: 5), so no tile has a tail."""
    lanes = [n for n in (vector_lanes, 2 * vector_lanes) if shape.channels % n == 0]
    if not lanes and vector_lanes >= 16 and shape.channels % (vector_lanes // 2) == 0:  # AVX-512: a ymm vector
        lanes = [vector_lanes // 2]
    widths = [w for w in (4, 8) if shape.width % w == 0]
    if not widths:
        widths = [w for w in range(7, 2, -1) if shape.width % w == 0][:1]
    return [DepthwiseTile(n, w) for n in lanes for w in widths]


def schedule(sch: s_tir.Schedule, tile: DepthwiseTile) -> None:
    """Schedule the depthwise kernel in `sch` (a module whose PrimFunc is `main`) in place."""
    conv = sch.get_sblock(CONV_BLOCK)
    epilogue = _inline_epilogue(sch, conv)
    for pad in sch.get_producers(conv):
        if sch.get(pad).name_hint == PAD_BLOCK:
            sch.compute_inline(pad)  # border taps become `if_then_else` loads: no padded tensor at all
    n, h, w, c, ry, rx, rc = sch.get_loops(conv)
    co, ci = sch.split(c, [None, tile.lanes])
    wo, wi = sch.split(w, [None, tile.w_tile])
    # Channel blocks inside the pixel tile: each pixel's channels are read contiguously.
    sch.reorder(n, h, wo, co, rc, ry, rx, wi, ci)
    # The accumulators are a w_tile x lanes buffer under `co`: registers once unrolled and vectorised.
    if epilogue is not None:
        sch.reverse_compute_at(epilogue, co)
        *_, e_w, e_c = sch.get_loops(epilogue)
        sch.unroll(e_w)
        sch.vectorize(e_c)
    for loop in (ry, rx, wi):
        sch.unroll(loop)
    sch.vectorize(ci)
    sch.parallel(sch.fuse(n, h))
    # Last: the init block's loops copy the update's kinds (a decomposed update refuses vectorize).
    sch.decompose_reduction(conv, rc)


def _inline_epilogue(sch: s_tir.Schedule, conv) -> s_tir.SBlockRV | None:
    """Inline the elementwise chain after the conv (bias, ReLU, residual...) into its last block."""
    consumers = sch.get_consumers(conv)
    last = None
    while consumers:
        if len(consumers) != 1:
            raise ValueError("a depthwise conv whose result feeds more than one block")
        block = consumers[0]
        following = sch.get_consumers(block)
        if following:
            sch.compute_inline(block)
        else:
            last = block
        consumers = following
    return last

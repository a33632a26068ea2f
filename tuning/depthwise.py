"""A hand-written schedule for NHWC depthwise 3x3 kernels (stride 1 or 2), which MetaSchedule's space cannot express.

What the tuner's records do with these kernels (results/selfie_multiclass_twin/asm-diagnosis.md): a padded
copy of the input (whole, or per tile), accumulators reloaded every few taps, vectors as narrow as 2-4 lanes.
This schedule keeps an output tile of `w_tile` pixels x `lanes` channels in registers over all 9 taps,
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


def depthwise_shape(func: tvm.tirx.PrimFunc) -> DepthwiseShape | None:
    """The shape of a 3x3 depthwise kernel (batch 1, stride 1 or 2) this schedule handles, else None."""
    sch = s_tir.Schedule(func)
    try:
        conv = sch.get_sblock(CONV_BLOCK)
    except s_tir.schedule.ScheduleError:  # no such block: not a grouped conv
        return None
    loops = sch.get_loops(conv)
    if len(loops) != 7:
        return None
    n, h, w, c, ry, rx, rc = (int(sch.get(loop).extent) for loop in loops)
    stride = _stride(sch.get(conv))
    if n != 1 or rc != 1 or ry != 3 or rx != 3 or stride not in (1, 2):
        return None
    return DepthwiseShape(h, w, c, stride)


def _stride(block) -> int | None:
    """The conv's stride along H, read from its input row index (`yy * s + ry`, or `yy + ry`)."""
    row = block.reads[0].region[1].min
    if not isinstance(row, tvm.tirx.Add):
        return None
    if isinstance(row.a, tvm.tirx.Mul) and isinstance(row.a.b, tvm.tirx.IntImm):
        return int(row.a.b.value)
    return 1 if isinstance(row.a, tvm.tirx.Var) else None


def tiles(shape: DepthwiseShape, vector_lanes: int) -> list[DepthwiseTile]:
    """The small grid measured per kernel: one or two vectors of channels times 4 or 8 pixels (4-16 vector
    accumulators; which fits the register file without spilling is left to the measurement)."""
    return [DepthwiseTile(lanes, w_tile) for lanes in (vector_lanes, 2 * vector_lanes) for w_tile in (4, 8)
            if shape.channels % lanes == 0 and shape.width % w_tile == 0]


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

"""A register-tiled schedule for NHWC 1x1 convolutions on AVX2: XNNPACK's 6x16 / 5x16 microkernel shape.

MultiLevelTiling samples only perfect divisors, and the twin's pixel counts are powers of two, so on
AVX2 (16 ymm registers) it never finds a 5x16 or 6x16 tile (10-12 accumulators). This schedule holds a
`px` pixels x `ch` channels accumulator tile in registers over the whole K loop: the tile is unrolled
and vectorised inside the K loop. The pixel tile splits each output row imperfectly (64 = 10 x 6 + 4);
the last tile of a row is guarded by a predicate that depends only on the tile's position, so it is
invariant over K.
"""

from __future__ import annotations

import logging

from tvm import s_tir

log = logging.getLogger(__name__)

CONV_BLOCK = "conv2d_nhwc"
# Tile channels -> pixel counts: 2 ymm per pixel, 8-12 accumulators + 2 weight vectors + 1 broadcast
# within the 16 ymm registers. Measured and left out: 3x32 (17 registers: LLVM spills), 4x24 (the
# 24-lane vectors are lowered with scalar code and 90 spills: 12x slower).
TILES = {16: [4, 5, 6]}
MAX_CHANNEL_TILES = 16
K_UNROLL = [0, 16, 64]
# Marks a conv block scheduled here; replayed records keep it, which tells where a kernel's schedule came from.
TILE_ANNOTATION = "selfie_tvm.register_tile_channels"


def is_pointwise_conv(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> bool:
    """An NHWC conv2d block with a 1x1 kernel (loops n, h, w, c, ry, rx, rc; ry = rx = 1)."""
    if not sch.get(block).name_hint.startswith(CONV_BLOCK):
        return False
    loops = sch.get_loops(block)
    if len(loops) != 7:
        return False
    return all(int(sch.get(loop).extent) == 1 for loop in loops[4:6])


def tile_pointwise_conv(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, *, px, ch: int,
                        channel_tiles=None, k_unroll=0) -> None:
    """Schedule `block` (see is_pointwise_conv) in place.

    px x ch: the register tile, px pixels of a row (int or a sampled ExprRV) by ch channels (a
    multiple of the 8 ymm lanes). channel_tiles: how many `ch`-wide tiles one parallel task sweeps
    for its pixel tile (an int dividing channels / ch; None samples it), so that its weights stay in
    L2. k_unroll: the `pragma_auto_unroll_max_step` of the K loop (int or ExprRV).
    """
    for producer in sch.get_producers(block):
        sch.compute_inline(producer)  # pad_temp of a 1x1 conv without padding is a plain copy
    acc = sch.cache_write(block, 0, "local")
    # The bias, activation and residual adds read each output element once: fold them into the
    # accumulator write-back, so the conv's output is written once, from registers.
    while consumers := sch.get_consumers(acc):
        sch.reverse_compute_inline(consumers[0])
    n, h, w, c, ry, rx, rc = sch.get_loops(block)
    wo, wi = sch.split(w, [None, px])
    co, ci = sch.split(c, [None, ch])
    if channel_tiles is None:
        channel_tiles = sch.sample_perfect_tile(co, n=2, max_innermost_factor=MAX_CHANNEL_TILES)[1]
    c_block, c_tile = sch.split(co, [None, channel_tiles])
    sch.reorder(n, h, c_block, wo, c_tile, ry, rx, rc, wi, ci)
    sch.parallel(sch.fuse(n, h, c_block, wo))
    sch.reverse_compute_at(acc, c_tile)
    sch.unroll(wi)
    sch.vectorize(ci)
    *_, acc_w, acc_c = sch.get_loops(acc)
    sch.unroll(acc_w)
    sch.vectorize(acc_c)
    sch.annotate(rc, "pragma_auto_unroll_max_step", k_unroll)
    sch.annotate(rc, "pragma_unroll_explicit", 1)
    sch.annotate(block, TILE_ANNOTATION, ch)
    sch.decompose_reduction(block, ry)  # last: vectorising needs the block's init in place


def register_tile_designs(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
    """The design spaces of a kernel whose anchor is a 1x1 NHWC conv: one per channel width of the
    tile, its pixel count sampled (TILES); none for any other kernel, nor for one the tile does not
    fit (`skip_reason`). A MetaSchedule ScheduleFn: it never raises."""
    conv = _pointwise_conv_block(sch)
    if conv is None or skip_reason(sch) is not None:
        return []
    channels = int(sch.get(sch.get_loops(conv)[3]).extent)
    designs = []
    for ch, pixel_choices in TILES.items():
        if channels % ch:
            continue
        design = sch.copy()
        block = design.get_sblock(CONV_BLOCK)
        px = design.sample_categorical(pixel_choices, [1 / len(pixel_choices)] * len(pixel_choices))
        k_unroll = design.sample_categorical(K_UNROLL, [1 / len(K_UNROLL)] * len(K_UNROLL))
        tile_pointwise_conv(design, block, px=px, ch=ch, k_unroll=k_unroll)
        designs.append(design)
    return designs


def skip_reason(sch: s_tir.Schedule) -> str | None:
    """Why the register tile cannot schedule this 1x1-conv kernel, or None when it can.

    The tile folds the epilogue into the accumulators' write-back, so every consumer of the conv must
    be elementwise over the conv's own output. A squeeze-and-excite kernel (a 1x1 conv on a 1x1 map
    whose result is broadcast over the full feature map, `x * s + r`) is not: its epilogue writes a
    larger tensor than the conv does. Anything else the schedule primitives refuse is reported too.
    """
    conv = _pointwise_conv_block(sch)
    if conv is None:
        return "not a 1x1 NHWC convolution"
    channels = int(sch.get(sch.get_loops(conv)[3]).extent)
    if not any(channels % width == 0 for width in TILES):
        # No design would be made, and MetaSchedule's search refuses a task without one (a crash).
        return (f"its {channels} output channels are not a multiple of a tile's width "
                f"({', '.join(map(str, TILES))})")
    out_shape = _shape(sch, conv)
    for consumer in _all_consumers(sch, conv):
        if _shape(sch, consumer) != out_shape:
            return (f"its epilogue block {sch.get(consumer).name_hint!r} writes a {_fmt(_shape(sch, consumer))} "
                    f"tensor from the {_fmt(out_shape)} conv output (a broadcast, not elementwise)")
    trial = sch.copy()
    try:
        tile_pointwise_conv(trial, trial.get_sblock(CONV_BLOCK), px=4, ch=next(iter(TILES)), channel_tiles=1)
    except (s_tir.ScheduleError, RuntimeError) as error:  # tvm.error.InternalError is a RuntimeError
        return f"the schedule does not apply: {str(error).strip().splitlines()[-1][:200]}"
    return None


def _all_consumers(sch: s_tir.Schedule, block) -> list:
    seen, todo, found = set(), [block], []
    while todo:
        for consumer in sch.get_consumers(todo.pop()):
            name = sch.get(consumer).name_hint
            if name not in seen:
                seen.add(name)
                found.append(consumer)
                todo.append(consumer)
    return found


def _shape(sch: s_tir.Schedule, block) -> tuple[int, ...]:
    return tuple(int(d) for d in sch.get(block).writes[0].source.shape)


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def is_pointwise_conv_kernel(sch: s_tir.Schedule) -> bool:
    """The kernel's anchor is a 1x1 NHWC conv (whether or not the tile fits it: `skip_reason`)."""
    return _pointwise_conv_block(sch) is not None


def _pointwise_conv_block(sch: s_tir.Schedule) -> s_tir.schedule.SBlockRV | None:
    try:
        block = sch.get_sblock(CONV_BLOCK)
    except s_tir.ScheduleError:
        return None
    return block if is_pointwise_conv(sch, block) else None


def wants_register_tiles(target) -> bool:
    """AVX2 without AVX-512: 16 ymm registers, where the default space's perfect tiles stop at 8
    accumulators. (AVX-512's 32 zmm registers already fit the default space's 16-accumulator tiles.)"""
    from tvm.target import codegen

    return (codegen.llvm_cpu_has_features(["avx2", "fma"], target)
            and not codegen.llvm_cpu_has_features(["avx512f"], target))


def register_tile_space():
    """Tuning space for AVX2 targets: the default rules' designs plus the register-tile designs, so
    a tune can only gain from them."""
    from tvm.s_tir import meta_schedule as ms

    return ms.space_generator.SpaceGeneratorUnion(
        [ms.space_generator.PostOrderApply(), ms.space_generator.ScheduleFn(register_tile_designs)])

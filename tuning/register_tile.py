"""A register-tiled schedule for NHWC 1x1 convolutions on AVX2: XNNPACK's 6x16 / 5x16 microkernel shape.

MultiLevelTiling samples only perfect divisors, and the twin's pixel counts are powers of two, so on
AVX2 (16 ymm registers) it never finds a 5x16 or 6x16 tile (10-12 accumulators). This schedule holds a
`px` pixels x `ch` channels accumulator tile in registers over the whole K loop: the tile is unrolled
and vectorised inside the K loop. The pixel tile splits each output row imperfectly (64 = 10 x 6 + 4);
the last tile of a row is guarded by a predicate that depends only on the tile's position, so it is
invariant over K.
"""

from __future__ import annotations

from tvm import s_tir

CONV_BLOCK = "conv2d_nhwc"


def is_pointwise_conv(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> bool:
    """An NHWC conv2d block with a 1x1 kernel (loops n, h, w, c, ry, rx, rc; ry = rx = 1)."""
    if not sch.get(block).name_hint.startswith(CONV_BLOCK):
        return False
    loops = sch.get_loops(block)
    if len(loops) != 7:
        return False
    extents = [sch.get(loop).extent for loop in loops]
    return all(isinstance(e, type(extents[0])) and int(e) == 1 for e in extents[4:6])


def tile_pointwise_conv(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, *, px: int, ch: int,
                        channel_tiles, k_unroll) -> None:
    """Schedule `block` (see is_pointwise_conv) in place.

    px x ch: the register tile (ch a multiple of 8 lanes). channel_tiles: how many `ch`-wide tiles
    one parallel task sweeps for a pixel tile (int or a sampled ExprRV dividing channels / ch), so
    its weights stay in L2. k_unroll: the `pragma_auto_unroll_max_step` of the tile (int or ExprRV).
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
    sch.decompose_reduction(block, ry)  # last: vectorising needs the block's init in place

"""A default schedule for the kernels of a tuned build that no record (and no hand schedule) covers.

`MetaScheduleApplyDatabase` leaves such a kernel unscheduled, and LLVM then runs it as one thread of
scalar loops (dlight's CPU rules hold no injective fallback): selfie_segmenter's transpose + sigmoid
ran at 0.22 GFLOP/s, and a partially tuned library was slower than the untuned one. This schedule
gives every such kernel what MetaSchedule's `ParallelizeVectorizeUnroll` rule gives an untiled one:

- elementwise producers inlined into their consumers (pads, whose `if_then_else` would sit inside a
  reduction's inner loop, stay materialised, as MetaSchedule's LLVM AutoInline keeps them; so does a
  small producer a consumer broadcasts, such as a squeeze-and-excite gate's sigmoid over a whole
  feature map, which inlining would recompute for every pixel);
- a reduction block (conv, pool, mean) with its innermost spatial axis (the NHWC channels) moved
  inside the reduction loops and vectorised, its init split off (`RewriteReductionBlock`);
- outer spatial loops fused and parallel, the innermost contiguous loop vectorised
  (`RewriteParallelVectorizeUnroll`, the postprocessor MetaSchedule itself applies).

Only tuned builds use it: `default.so` stays TVM's stock output, the baseline the benchmark reports.
"""

from __future__ import annotations

import logging

import tvm
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

log = logging.getLogger(__name__)

MAX_VECTOR = 64  # as MetaSchedule's default max_vectorize_extent for llvm
PARALLEL_PER_CORE = 16  # as ParallelizeVectorizeUnroll's max_jobs_per_core
DEFAULT_SCHEDULE_ANNOTATION = "selfie_tvm.default_schedule"
# A producer whose consumer writes this many times its elements is not inlined (it would be recomputed).
BROADCAST_FACTOR = 8


def default_schedule(sch: s_tir.Schedule, cores: int) -> bool:
    """Schedule every block of `sch` (one kernel) in place; False (and `sch` unusable) when a
    primitive refuses: the caller then keeps the kernel unscheduled."""
    try:
        _inline_elementwise(sch)
        for block in _blocks(sch):
            if _is_reduction(sch, block):
                _vectorise_reduction(sch, block)
        root = sch.get_sblock("root")
        sch.annotate(root, "meta_schedule.parallel", PARALLEL_PER_CORE * cores)
        sch.annotate(root, "meta_schedule.vectorize", MAX_VECTOR)
        sch.annotate(root, DEFAULT_SCHEDULE_ANNOTATION, 1)
        # MetaSchedule's own order: loops first, then the reductions' init split off.
        return bool(ms.postproc.RewriteParallelVectorizeUnroll().apply(sch)
                    and ms.postproc.RewriteReductionBlock().apply(sch))
    except (s_tir.ScheduleError, RuntimeError) as error:  # TVM's InternalError is a RuntimeError
        log.debug("default schedule refused: %s", str(error).strip().splitlines()[-1][:200])
        return False


def apply_default_schedule(sch: s_tir.Schedule, cores: int) -> bool:
    """`default_schedule` for a database's schedule function: tried on a copy first, since a refusal half-way
    would leave `sch` unusable; False (and `sch` untouched) where it refuses."""
    if not default_schedule(sch.copy(), cores):
        return False
    return default_schedule(sch, cores)  # the same, deterministic, on the schedule the pass keeps


def default_database(cores: int) -> ms.database.Database:
    """A database answering every kernel with `default_schedule` (put it last in a union)."""
    return ms.database.ScheduleFnDatabase(lambda sch: apply_default_schedule(sch, cores))


def _blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(iv.iter_type == tvm.tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)


def _has_if_then_else(sch: s_tir.Schedule, block) -> bool:
    body = sch.get(block).body
    return isinstance(body, tvm.tirx.BufferStore) and _calls_if_then_else(body.value)


def _calls_if_then_else(expr) -> bool:
    if isinstance(expr, tvm.ir.Call):
        return expr.op.name.endswith("if_then_else") or any(_calls_if_then_else(a) for a in expr.args)
    return any(_calls_if_then_else(getattr(expr, field)) for field in ("a", "b", "value", "condition",
                                                                        "true_value", "false_value")
               if isinstance(getattr(expr, field, None), tvm.ir.expr.Expr))


def _elements(sch: s_tir.Schedule, block) -> int:
    """Elements a block writes: the product of its spatial iteration extents."""
    elements = 1
    for iv in sch.get(block).iter_vars:
        if iv.iter_type == tvm.tirx.IterVar.DataPar:
            elements *= int(iv.dom.extent)
    return elements


def _broadcast(sch: s_tir.Schedule, block) -> bool:
    """A consumer of `block` writes many more elements than the block: inlined, the block would be recomputed
    for each of them (a squeeze-and-excite gate of C values multiplying an HxWxC map)."""
    return any(_elements(sch, c) >= BROADCAST_FACTOR * _elements(sch, block) for c in sch.get_consumers(block))


def _inline_elementwise(sch: s_tir.Schedule) -> None:
    """Inline every spatial block that is not an output, holds no `if_then_else` and is not broadcast by a
    consumer, until none is left."""
    changed = True
    while changed:
        changed = False
        blocks = _blocks(sch)
        for block in blocks[:-1]:  # the last block writes the output
            if _is_reduction(sch, block) or _has_if_then_else(sch, block) or _broadcast(sch, block):
                continue
            try:
                sch.compute_inline(block)
            except s_tir.ScheduleError:
                continue
            changed = True
            break


def _vectorise_reduction(sch: s_tir.Schedule, block) -> None:
    """Move the innermost spatial loop (NHWC: the output channels) inside the reduction loops and
    vectorise it: every step of the reduction then updates one vector of outputs."""
    iters = sch.get(block).iter_vars
    loops = sch.get_loops(block)
    if len(loops) != len(iters):
        return
    spatial = [lp for lp, iv in zip(loops, iters, strict=True) if iv.iter_type == tvm.tirx.IterVar.DataPar]
    reduce = [lp for lp, iv in zip(loops, iters, strict=True) if iv.iter_type == tvm.tirx.IterVar.CommReduce]
    if not spatial or not reduce:
        return
    inner = spatial[-1]
    extent = int(sch.get(inner).extent)
    if extent < 4:
        return
    if extent > MAX_VECTOR:
        _, inner = sch.split(inner, [None, 8 if extent % 16 else 16])
    sch.reorder(*reduce, inner)
    sch.vectorize(inner)

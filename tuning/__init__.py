"""TVM pipeline: import .tflite into Relax, build default and tuned libraries, tune, export."""

# Trials a tuning run measures unless told otherwise (`selfie-tvm tune`, and the benchmark when a
# CPU's vector ISA has no records yet).
DEFAULT_BUDGET = 2000

# How MetaSchedule tells two kernels apart: by the whole kernel, or by its anchor block only, so that
# kernels differing only in their fused epilogue share one task and one record (TVM PRs #13206, #14537).
STRUCTURAL = "structural"
ANCHOR_BLOCK = "anchor-block"
MODULE_EQUALITIES = (STRUCTURAL, ANCHOR_BLOCK)

# How a candidate kernel is timed (tuning/measure.py): back to back with its data cached, or with the cache
# flushed of its weights and output before each run (`tune --cold-cache`).
HOT, COLD = "hot", "cold"

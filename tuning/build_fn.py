"""MetaSchedule build function for candidate kernels, run inside builder worker processes.

The stock one imports tvm.s_tir.tensor_intrin (mostly GPU intrinsics) in every worker, which
costs 25-30 s per batch because LocalBuilder restarts its workers; CPU kernels don't need it.
"""

from __future__ import annotations


def record_as_built(mod):
    """A record's kernel as a build runs it. A record tuned with weight prepacking carries a block that re-blocks
    the weights (MetaSchedule's RewriteLayout); the build runs it once, on the constants (SplitLayoutRewritePreproc
    and constant folding), so a candidate is timed without it: the kernel then takes its weights already in the new
    layout. The tuner's builder and `tuning.measure_hand` both time kernels through this one function."""
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)


def build_candidate(mod, target, _params):
    from tvm.driver import build as tvm_build

    return tvm_build(record_as_built(mod), target=target)

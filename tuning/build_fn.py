"""MetaSchedule build function for candidate kernels, run inside builder worker processes.

The stock one imports tvm.s_tir.tensor_intrin (mostly GPU intrinsics) in every worker, which
costs 25-30 s per batch because LocalBuilder restarts its workers; CPU kernels don't need it.
"""

from __future__ import annotations


def build_candidate(mod, target, _params):
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)

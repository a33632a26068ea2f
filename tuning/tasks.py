"""Which kernels of a module are worth tuning, in what order, and how a measurement is read."""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.analysis import estimate_tir_flops

from . import STRUCTURAL
from .errors import NoKernelMatchedError

# MetaSchedule commits a failed run with this cost; anything from a tenth of it counts as failed.
FAILED_RUN_S = 1e10


def mean_run_seconds(run_secs, error_msg=None) -> float | None:
    """Mean latency of one measured candidate, or None when it failed to build or run."""
    if error_msg:
        return None
    secs = [float(s) for s in run_secs or []]
    if not secs or max(secs) >= FAILED_RUN_S / 10:
        return None
    return sum(secs) / len(secs)


@dataclass(frozen=True)
class TaskPlan:
    """The tasks to tune (largest first) and those left out because the built model never runs them."""

    tasks: list  # ms.ExtractedTask, largest weighted FLOPs first
    skipped: list[str]  # kernels the build turns into views (reshapes): nothing to tune
    unmatched: list[str] = field(default_factory=list)  # `only` prefixes no tuned kernel's name starts with

    @property
    def names(self) -> list[str]:
        return [t.task_name for t in self.tasks]


def kernels_called(mod: tvm.IRModule) -> set[str]:
    """Names of the TIR kernels the built module calls.

    The VM build rewrites pure reshapes into zero-copy views (RewriteDataflowReshape): their
    kernels never run, so measuring them in isolation only misleads the scheduler.
    """
    rewritten = relax.transform.RewriteDataflowReshape()(mod)
    called: set[str] = set()

    @relax.expr_functor.visitor
    class _Calls(relax.PyExprVisitor):
        def visit_call_(self, call: relax.Call) -> None:
            super().visit_call_(call)
            for arg in call.args:
                if isinstance(arg, relax.GlobalVar):
                    called.add(arg.name_hint)

    for _, func in rewritten.functions_items():
        if isinstance(func, relax.Function):
            _Calls().visit_expr(func)
    return called


def task_flops(task) -> float:
    """TVM's FLOP estimate of one call of the task's kernel (0 for copies; symbolic loops count 1).

    Not guarded: it estimates every kernel of every registry model, and a failure is a bug to see,
    not 0 FLOPs that would silently send the kernel to the back of the tuning order.
    """
    return float(estimate_tir_flops(task.dispatched[0]))


def plan_tasks(mod: tvm.IRModule, target: tvm.target.Target, only: list[str] | None = None,
               module_equality: str = STRUCTURAL) -> TaskPlan:
    """`only`: restrict to kernels whose names start with one of these (experiments, top-ups).
    `module_equality`: anchor-block makes kernels whose anchor block (their conv2d, matmul...) is the
    same one task, tuned on the kernel with the fewest blocks; its weight counts all of them."""
    extracted = ms.relax_integration.extract_tasks(mod, target, module_equality=module_equality)
    called = kernels_called(mod)
    tasks = [t for t in extracted if t.task_name in called
             and (not only or any(t.task_name.startswith(prefix) for prefix in only))]
    skipped = [t.task_name for t in extracted if t.task_name not in called]
    unmatched = [prefix for prefix in only or [] if not any(t.task_name.startswith(prefix) for t in tasks)]
    if only and not tasks:
        raise NoKernelMatchedError(only, sorted(t.task_name for t in extracted if t.task_name in called))
    # Largest work first, so the first round reaches what matters early; copies (no FLOPs) last.
    tasks.sort(key=lambda t: -(int(t.weight) * task_flops(t)))
    return TaskPlan(tasks, skipped, unmatched)

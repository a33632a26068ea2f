"""Per-kernel profile of a TVM library (runtime.profiling) with each kernel's FLOPs and GFLOP/s; a graph's FLOPs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import tvm
from tvm.s_tir.analysis import estimate_tir_flops

from runtime.acquire import ResolvedModel
from runtime.profiling import kernel_times
from runtime.target import TargetSpec
from tuning.build import tuning_module
from tuning.importer import STOCK_GRAPH, TUNED_GRAPH, GraphOptions
from tuning.tasks import plan_tasks, task_flops


def library_module(model: ResolvedModel, target: TargetSpec, graph: dict | None = None) -> tvm.IRModule:
    """The optimised module of the graph a library was built from (its metadata's `graph`)."""
    return tuning_module(model, target, GraphOptions(**graph) if graph else TUNED_GRAPH)


def kernel_flops(model: ResolvedModel, target: TargetSpec, graph: dict | None = None) -> dict[str, float]:
    """FLOPs of every kernel of the graph a library was built from (its metadata's `graph`)."""
    return module_kernel_flops(library_module(model, target, graph))


def module_kernel_flops(mod: tvm.IRModule) -> dict[str, float]:
    """FLOPs of every kernel of an optimised module, by name."""
    return {gv.name_hint: float(estimate_tir_flops(tvm.IRModule({"main": func}))) for gv, func in mod.functions.items()
            if isinstance(func, tvm.tirx.PrimFunc)}


def graph_flop(model: ResolvedModel, target: TargetSpec, graph: GraphOptions = STOCK_GRAPH) -> float:
    """FLOPs per image of a graph (default: the default library's), without building or running it: TVM's
    estimate of every kernel the built module calls, times its calls (as the tuning plan counts them)."""
    plan = plan_tasks(tuning_module(model, target, graph), target.to_tvm())
    return sum(task_flops(t) * int(t.weight) for t in plan.tasks)


def profile(library_path, x: np.ndarray, flops: dict[str, float], repeat: int = 5) -> pd.DataFrame:
    rows = []
    for symbol, t in kernel_times(library_path, x, repeat).items():
        f = flops.get(symbol, 0.0) * t.calls_per_run
        rows.append({"kernel": symbol, "calls": t.calls_per_run, "ms": t.ms_per_run,
                     "gflops": f / t.ms_per_run / 1e6 if f and t.ms_per_run else None, "flop": f})
    table = pd.DataFrame(rows).sort_values("ms", ascending=False)
    table["share"] = table["ms"] / table["ms"].sum()
    return table.reset_index(drop=True)


# An isolated timing further than this from the kernel's in-model time ranked the search on numbers that do not
# hold inside the model (issue #30's bound).
ISOLATION_BOUND = 1.5


def with_isolated(table: pd.DataFrame, isolated_ms: dict[str, float], schedules: dict[str, str]) -> pd.DataFrame:
    """The profile with where each kernel's schedule came from and, for a record, its isolated ms per call."""
    return table.assign(schedule=table["kernel"].map(schedules), isolated_ms=table["kernel"].map(isolated_ms))


def isolation_table(prof: pd.DataFrame, top: int = 10) -> pd.DataFrame | None:
    """The `top` slowest kernels of the tuning plan (of a profile with `isolated_ms`): in-model and isolated ms
    per call, their ratio, and whether it is within ISOLATION_BOUND either way. None for a profile saved
    without it."""
    if "isolated_ms" not in prof.columns:
        return None
    rows = prof[prof["schedule"].notna()].head(top)  # the tuning plan's kernels, not the VM's builtins
    in_model = rows["ms"] / rows["calls"]
    ratio = rows["isolated_ms"] / in_model
    within = ratio.between(1 / ISOLATION_BOUND, ISOLATION_BOUND).where(ratio.notna())
    return pd.DataFrame({"kernel": rows["kernel"], "schedule": rows["schedule"], "calls": rows["calls"],
                         "in_model_ms": in_model, "isolated_ms": rows["isolated_ms"],
                         "isolated_over_in_model": ratio, "within_bound": within}).reset_index(drop=True)


"""Per-kernel profile of a TVM library through the Relax VM's instrumentation hook.

apache-tvm 0.27's Relax VM has no `profile()`; `set_instrument` calls back before and after every
call instruction, which times each kernel (Python overhead is microseconds; kernels take ms).
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pandas as pd
import tvm
from tvm import relax
from tvm.s_tir.analysis import estimate_tir_flops

from runtime.acquire import ResolvedModel
from runtime.target import TargetSpec
from tuning.build import tuning_module


def kernel_flops(model: ResolvedModel, target: TargetSpec) -> dict[str, float]:
    mod = tuning_module(model, target)
    return {gv.name_hint: float(estimate_tir_flops(tvm.IRModule({"main": func}))) for gv, func in mod.functions.items()
            if isinstance(func, tvm.tirx.PrimFunc)}


def profile(library_path, x: np.ndarray, flops: dict[str, float], repeat: int = 5) -> pd.DataFrame:
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library_path)), tvm.cpu())
    times: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}

    def instrument(func, symbol, before, ret, *args):
        if before:
            started[symbol] = time.perf_counter()
        else:
            times[symbol].append((time.perf_counter() - started.pop(symbol)) * 1e3)
        return 0

    inp = tvm.runtime.tensor(x)
    vm["main"](inp)  # warm-up, not instrumented
    vm.set_instrument(instrument)
    for _ in range(repeat):
        vm["main"](inp)
    rows = []
    for symbol, samples in times.items():
        calls_per_run = len(samples) / repeat
        ms = sum(samples) / repeat
        f = flops.get(symbol, 0.0) * calls_per_run
        rows.append({"kernel": symbol, "calls": calls_per_run, "ms": ms,
                     "gflops": f / ms / 1e6 if f and ms else None, "flop": f})
    table = pd.DataFrame(rows).sort_values("ms", ascending=False)
    table["share"] = table["ms"] / table["ms"].sum()
    return table.reset_index(drop=True)

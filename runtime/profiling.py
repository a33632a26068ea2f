"""Where a TVM library spends its time, kernel by kernel, measured inside the whole model.

apache-tvm 0.27's Relax VM has no `profile()`; `set_instrument` calls back before and after every
call instruction, which times each kernel (Python overhead is microseconds; kernels take ms).
Kernel timings measured in isolation (the tuner's) can differ a lot from these: caches, views
that never run, neighbours sharing memory bandwidth.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# SplitLayoutRewritePreproc (weight prepacking) renames a kernel `k` to `k_prepacked`.
_PREPACKED = "_prepacked"


def kernel_name(symbol: str) -> str:
    """The kernel's name in the optimised (tuned) module, whatever the build appended to it."""
    return symbol.removesuffix(_PREPACKED)


@dataclass(frozen=True)
class KernelTime:
    calls_per_run: float
    ms_per_run: float


def kernel_times(library: Path, x: np.ndarray, repeat: int = 5) -> dict[str, KernelTime]:
    """Per kernel (by its name in the optimised module): calls and milliseconds per inference,
    averaged over `repeat` runs."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    times: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}

    def instrument(func, symbol, before, ret, *args):
        if before:
            started[symbol] = time.perf_counter()
        else:
            times[symbol].append((time.perf_counter() - started.pop(symbol)) * 1e3)
        return 0

    inp = tvm.runtime.tensor(np.ascontiguousarray(x, dtype=np.float32))
    vm["main"](inp)  # warm-up, not instrumented
    vm.set_instrument(instrument)
    for _ in range(repeat):
        vm["main"](inp)
    return {kernel_name(symbol): KernelTime(len(samples) / repeat, sum(samples) / repeat)
            for symbol, samples in times.items()}

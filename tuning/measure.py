"""Where candidates are measured: this machine, or a farm of devices behind a TVM RPC tracker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm
from tvm.s_tir import meta_schedule as ms

from .farm import FarmRunner, RpcSpec

# Hot: the kernel run back to back, its data and weights cached (MetaSchedule's default way on CPUs).
EVALUATOR = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False)
# Cold (`tune --cold-cache`): every argument but the first (the input, which its producer leaves in cache inside
# the model) flushed from the cache before each of five single runs, as the kernel meets its weights and output
# inside the model.
COLD_EVALUATOR = ms.runner.EvaluatorConfig(number=1, repeat=5, min_repeat_ms=0, enable_cpu_cache_flush=True)


@contextmanager
def measuring(rpc: RpcSpec | None, progress: tqdm | None = None,
              terminal: TextIO | None = None, cold: bool = False) -> Iterator[ms.runner.Runner]:
    """The runner for a tuning run. A farm that cannot go on (tracker gone, no device left) stops
    the run with its own FarmError, after every finished batch reached the database; MetaSchedule's
    C++ would otherwise turn it into a bare RuntimeError."""
    config = COLD_EVALUATOR if cold else EVALUATOR
    if rpc is None:
        yield ms.runner.LocalRunner(evaluator_config=config, timeout_sec=60)
        return
    runner = FarmRunner(rpc, config, progress, terminal)
    try:
        yield runner
    except RuntimeError as e:
        if runner.failure is not None:
            raise runner.failure from e
        raise
    finally:
        runner.close()

"""Where candidates are measured: this machine, or a farm of devices behind a TVM RPC tracker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm
from tvm.s_tir import meta_schedule as ms

from .farm import FarmRunner, RpcSpec

EVALUATOR = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False)


@contextmanager
def measuring(rpc: RpcSpec | None, progress: tqdm | None = None,
              terminal: TextIO | None = None) -> Iterator[ms.runner.Runner]:
    """The runner for a tuning run. A farm that cannot go on (tracker gone, no device left) stops
    the run with its own FarmError, after every finished batch reached the database; MetaSchedule's
    C++ would otherwise turn it into a bare RuntimeError."""
    if rpc is None:
        yield ms.runner.LocalRunner(evaluator_config=EVALUATOR, timeout_sec=60)
        return
    runner = FarmRunner(rpc, EVALUATOR, progress, terminal)
    try:
        yield runner
    except RuntimeError as e:
        if runner.failure is not None:
            raise runner.failure from e
        raise
    finally:
        runner.close()

"""Start every timed run with the process's other threads idle.

An engine's thread pool stays busy after its run returns: TVM's pool workers spin (`sched_yield`) for
about 60-130 ms before they sleep, XNNPACK's for about a millisecond. Timed right after another
engine, an engine at 2 threads on a 2-core machine then shares a core with the other's spinning
workers: LiteRT on selfie_segmenter measured 2.3-6.3 ms at 2 threads right after the tuned module ran,
2.8 ms alone. Every timing here interleaves engines (`python -m benchmark`, its pipeline timing, the
ablation, the tuner's before/after figures, the bot's background timings), so each waits before a timed
run until no other thread of the process is running or runnable (Linux `/proc/self/task/*/stat`). The
run itself then wakes its own pool, as a request to the bot does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

TASKS = Path("/proc/self/task")
DEFAULT_TIMEOUT_S = 2.0
_POLL_S = 0.0005


@dataclass(frozen=True)
class IdleWait:
    """One wait: how many other threads were busy when it began, how long it took, whether they went idle."""

    busy_before: int
    waited_ms: float
    idle: bool

    def as_dict(self) -> dict:
        return asdict(self)


def busy_threads() -> list[int]:
    """Native ids of this process's other threads that are running or runnable (state R)."""
    me = threading.get_native_id()
    busy = []
    for task in TASKS.iterdir():
        tid = int(task.name)
        if tid == me:
            continue
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # the thread exited meanwhile
            continue
        if stat[stat.rindex(")") + 2] == "R":  # the command name in parentheses may hold spaces
            busy.append(tid)
    return busy


def wait_until_idle(timeout_s: float = DEFAULT_TIMEOUT_S) -> IdleWait:
    """Poll until no other thread of the process is running or runnable, for at most `timeout_s`;
    a wait that times out is reported (`idle=False`), never raised: the run still gets timed."""
    if not TASKS.is_dir():  # not Linux: nothing to look at
        return IdleWait(busy_before=0, waited_ms=0.0, idle=True)
    start = time.perf_counter()
    busy_before = len(busy_threads())
    busy = busy_before
    while busy and time.perf_counter() - start < timeout_s:
        time.sleep(_POLL_S)
        busy = len(busy_threads())
    return IdleWait(busy_before=busy_before, waited_ms=(time.perf_counter() - start) * 1e3, idle=busy == 0)


def summarise(waits: list[IdleWait]) -> dict:
    """What a benchmark records about its waits: how many runs, how many found busy threads, timed out."""
    return {"runs": len(waits), "busy_before": sum(w.busy_before > 0 for w in waits),
            "timed_out": sum(not w.idle for w in waits),
            "max_wait_ms": max((w.waited_ms for w in waits), default=0.0)}


def timed_after_idle_ms(run: Callable[[], object], timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[float, IdleWait]:
    """One timed run as every timing here takes it: once the process's other threads are idle, the run's
    wall time in ms, with the wait that preceded it."""
    wait = wait_until_idle(timeout_s)
    t0 = time.perf_counter()
    run()
    return (time.perf_counter() - t0) * 1e3, wait

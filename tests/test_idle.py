"""runtime/idle.py: a timed run starts only once the process's other threads are idle."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import numpy as np
import pytest

from runtime.idle import busy_threads, summarise, wait_until_idle

# These watch thread states and spin durations: another test on the other core would stretch them.
pytestmark = pytest.mark.serial


@pytest.fixture
def spinning_thread():
    """A thread that stays running (hashing releases the GIL, so it is never just waiting for it)."""
    stop, started = threading.Event(), threading.Event()
    ids: list[int] = []
    block = bytes(8 << 20)

    def spin():
        ids.append(threading.get_native_id())
        started.set()
        while not stop.is_set():
            hashlib.sha256(block).digest()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        assert started.wait(10), "the spinning thread did not start"
        yield ids[0], stop, thread
    finally:
        stop.set()
        thread.join(10)


def test_a_running_thread_keeps_the_process_busy_until_it_stops(spinning_thread):
    tid, stop, thread = spinning_thread
    assert tid in busy_threads()
    timed_out = wait_until_idle(timeout_s=0.3)
    assert timed_out.busy_before >= 1 and not timed_out.idle

    stop.set()
    thread.join(10)
    done = wait_until_idle()
    assert done.idle and tid not in busy_threads()


def test_the_calling_thread_does_not_count_as_busy():
    assert threading.get_native_id() not in busy_threads()


def _spin_tvm_pool():
    """A real 2-thread parallel TVM kernel: each call leaves the calling thread's TVM pool spinning after it
    returns, as an engine's run does. Returns the call and its output tensor."""
    import tvm
    from tvm.script import tirx as T

    from runtime.engines.tvm import set_tvm_threads

    @T.prim_func
    def double(a: T.Buffer((65536,), "float32"), b: T.Buffer((65536,), "float32")):
        for i in T.parallel(65536):
            b[i] = a[i] * T.float32(2)

    kernel = tvm.compile(double, target="llvm")["double"]
    set_tvm_threads(2)
    a = tvm.runtime.tensor(np.ones(65536, np.float32))
    b = tvm.runtime.tensor(np.zeros(65536, np.float32))
    return lambda: kernel(a, b), b


def test_tvm_pool_workers_spin_after_a_run_and_the_wait_outlasts_them():
    """The harness's reason to wait: TVM's pool keeps spinning after a 2-thread parallel kernel returns."""
    spin, b = _spin_tvm_pool()
    waits = []
    for _ in range(4):
        spin()
        waits.append(wait_until_idle())
    assert b.numpy().min() == 2.0
    assert all(w.busy_before >= 1 and w.idle for w in waits), waits
    assert busy_threads() == []


def test_summary_counts_busy_and_timed_out_waits():
    from runtime.idle import IdleWait

    waits = [IdleWait(0, 0.1, True), IdleWait(2, 80.0, True), IdleWait(1, 2000.0, False)]
    assert summarise(waits) == {"runs": 3, "busy_before": 2, "timed_out": 1, "max_wait_ms": 2000.0}


class _PoolLikeEngine:
    """An engine whose worker keeps spinning for a while after each run returns, as TVM's pool does."""

    spinners: list[int] = []  # native ids of every engine's spinning workers

    def __init__(self, spin_s: float) -> None:
        self.spin_s = spin_s
        self.spinning_at_start: list[int] = []  # per run: how many workers were still spinning when it began

    def run(self, x) -> None:
        self.spinning_at_start.append(len(set(busy_threads()) & set(self.spinners)))
        stop = time.monotonic() + self.spin_s
        block = bytes(1 << 20)

        def spin():
            self.spinners.append(threading.get_native_id())
            while time.monotonic() < stop:
                hashlib.sha256(block).digest()

        threading.Thread(target=spin, daemon=True).start()


def test_the_tuner_times_each_engine_once_the_other_ones_pool_is_idle():
    """tuning/cli/tune.py's before/after figures follow the benchmark's protocol (runtime/idle.py): the
    tuned/LiteRT ratio it prints is not one engine timed beside the other's spinning pool."""
    from tuning.cli.tune import _medians_ms

    engines = {"a": _PoolLikeEngine(0.05), "b": _PoolLikeEngine(0.05)}
    _medians_ms(engines, None, rounds=3)
    timed = [n for e in engines.values() for n in e.spinning_at_start[1:]]  # after each engine's warm-up run
    assert timed == [0] * 6, {n: e.spinning_at_start for n, e in engines.items()}


def test_the_bots_timing_lane_starts_each_run_once_the_other_pools_are_idle(twin, astronaut):
    """bot/lanes.py times the slower engines right after the answering engine ran, whose pool still spins: each
    background run waits until the process's other threads are idle (runtime/idle.py). Here a pool-like worker
    spins for a while before the first run and after each run; no timed run of the real engine begins beside it."""
    from bot.engines import EngineSet
    from bot.lanes import Lanes
    from bot.published import PublishedLatency
    from bot.timings import Result, Timing, TimingReport

    spinners: list[int] = []  # native ids of the pool-like workers
    block = bytes(1 << 20)

    def leave_a_pool_spinning():
        """A worker that spins for a set wall time (0.5 s, whatever the host's load), as TVM's do after a run
        (for ~0.1 s on an idle host; longer here, so that a run started beside it cannot miss it)."""
        stop = time.monotonic() + 0.5

        def spin():
            spinners.append(threading.get_native_id())
            while time.monotonic() < stop:
                hashlib.sha256(block).digest()

        threading.Thread(target=spin, daemon=True).start()

    engines = EngineSet(twin.spec.name, ["litert"], threads=2)
    engine = engines.segmenters["litert"].engine
    run = engine.run
    spinning_at_start: list[int] = []  # per timed run: pool-like workers still spinning when it began

    def run_then_leave_a_pool_spinning(x):
        spinning_at_start.append(len(set(busy_threads()) & set(spinners)))
        out = run(x)
        leave_a_pool_spinning()
        return out

    engine.run = run_then_leave_a_pool_spinning
    report = TimingReport(engines, 2, PublishedLatency(), {"litert": Timing(state="measuring")})
    lanes = Lanes(timeout_s=lambda: 60.0, backlog_s=lambda: 60.0)
    try:
        leave_a_pool_spinning()  # the reply lane's engine has just answered: its pool spins
        assert asyncio.run(lanes.time_others(Result([], report, astronaut)))
    finally:
        assert lanes.close(timeout=30)
    timing = report.timings["litert"]
    assert timing.state == "measured" and timing.runs == len(spinning_at_start) >= 2, timing
    assert spinning_at_start == [0] * len(spinning_at_start)


def test_the_tuner_times_a_slow_engine_in_the_first_rounds_only(monkeypatch):
    """An untuned library (seconds per run) is timed in the first SLOW_ROUNDS of the interleaved rounds, the
    others in all of them: before and after still share the machine state of those rounds."""
    import tuning.cli.tune as tune_cli

    monkeypatch.setattr(tune_cli, "SLOW_MS", 20.0)
    calls: list[str] = []

    class Engine:
        def __init__(self, name: str, seconds: float) -> None:
            self.name, self.seconds = name, seconds

        def run(self, x):
            calls.append(self.name)
            time.sleep(self.seconds)

    medians = tune_cli._medians_ms({"before": Engine("before", 0.03), "after": Engine("after", 0.001)}, None,
                                   rounds=5)
    assert calls == ["before", "after"] + ["before", "after"] * 3 + ["after"] * 2  # warm-ups, then 5 rounds
    assert medians["before"] >= 30 and set(medians) == {"before", "after"}  # a sleep lasts at least its time

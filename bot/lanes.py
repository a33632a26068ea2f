"""The two lanes engines run on, and the accounting that keeps the timing lane out of the replies' way.

- The *reply lane* (one thread) runs the answering engine plus pre/post-processing and encoding.
- The *timing lane* (one thread at the lowest CPU priority) times the engines on the same photo afterwards,
  and only while the reply lane is idle: new requests always go first. It times the answering engine again
  too, in interleaved rounds with the others (the benchmark's protocol): the reply's own run is a single
  run on another lane, and a ratio of it to a lane's median once read 0.64x where side by side the two
  engines measured 1.17x. An engine's figure is the median of as many runs as fit a short budget, so a
  moment's contention on a busy host (a single run at the lowest priority can take twice its time) does
  not make the figure. When its backlog is too long, a photo gets the benchmark's p50 for the slower
  engines instead of a measurement. Each run starts once the process's other threads are idle, as the
  benchmark's and the tuner's do (runtime/idle.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from runtime.idle import wait_until_idle

from .timings import Result, Timing, TimingReport

log = logging.getLogger(__name__)
RUNS_BUDGET_MS = 600.0  # one engine's background timing: as many runs as fit in this...
MAX_RUNS = 5  # ...up to this many; a run slower than the budget is timed once


def timing_runs(warm_ms: float) -> int:
    """Runs of one engine's background timing, from its warm-up inference time."""
    return max(1, min(MAX_RUNS, int(RUNS_BUDGET_MS // max(warm_ms, 1.0))))


def timing_cost_ms(warm_ms: float) -> float:
    """What one engine's background timing adds to the timing lane's backlog."""
    return warm_ms * timing_runs(warm_ms)


def _lowest_priority() -> None:
    """Timing lane: lowest CPU priority for this thread (Linux: per thread). Threads it starts later inherit
    it (TVM's pool is made on first use here); threads that exist already (LiteRT's, made with its
    interpreter) keep theirs."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (OSError, AttributeError) as e:
        log.warning("timing lane: could not lower its CPU priority (%s); background timings may slow replies", e)


class Lanes:
    """Executors of the two lanes; `backlog_s()` and `timeout_s()` are read from the settings when needed."""

    def __init__(self, timeout_s: Callable[[], float], backlog_s: Callable[[], float]) -> None:
        self.timeout_s = timeout_s
        self.backlog_s = backlog_s
        self.reply = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reply")
        self.timing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="timing", initializer=_lowest_priority)
        self._lock = threading.Condition()
        self._replying = 0  # reply-lane jobs queued or running
        self._reply_starts = 0  # reply-lane jobs started so far (to flag contended timings)
        self._backlog_ms = 0.0  # estimated work queued on the timing lane
        self._closing = False

    @property
    def replying(self) -> int:
        """Reply-lane jobs queued or running (a job its caller gave up on counts until it ends)."""
        with self._lock:
            return self._replying

    def _started(self) -> None:
        with self._lock:
            self._reply_starts += 1

    async def on_reply_lane(self, fn: Callable, *args):
        """Run fn(*args) on the reply lane; a timeout gives the user a sentence, not a hang."""
        with self._lock:
            self._replying += 1

        def job():
            self._started()
            return fn(*args)

        def finished(_) -> None:
            with self._lock:
                self._replying -= 1
                self._lock.notify_all()

        try:
            future = self.reply.submit(job)
        except BaseException:
            finished(None)
            raise
        # The lane stays marked busy until the job really ends, even when its caller gave up on it: a
        # timing run started meanwhile would be labelled uncontended while the job still computes.
        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout_s())
        except (TimeoutError, asyncio.CancelledError):
            future.cancel()  # not started yet: it never will; running: it ends by itself, still counted
            raise

    def plan_background(self, report: TimingReport) -> None:
        """Decide, per slower engine, between timing it on this photo and quoting the benchmark. When any is
        timed, the answering engine is timed again beside it (its reply figure stands until then)."""
        budget = self.backlog_s() * 1000
        answering = next(iter(report.timings))  # the engine that answered: its reply figure comes first
        planned = False
        for name in [n for n in report.engines.order if n != answering]:
            estimate = timing_cost_ms(report.engines.warm_ms.get(name, 0.0))
            if not planned:  # the first engine timed brings the answering engine's series with it
                estimate += timing_cost_ms(report.engines.warm_ms.get(answering, 0.0))
            with self._lock:
                fits = self._backlog_ms + estimate <= budget
                if fits:
                    self._backlog_ms += estimate
            if fits:
                planned = True
                report.timings[name] = Timing(state="measuring")
            elif report.published_ms(name) is not None:
                report.timings[name] = Timing(state="published")
            else:
                report.timings[name] = Timing(state="skipped")
        if planned:
            report.timings[answering] = replace(report.timings[answering], state="measuring")

    def drop_background(self, report: TimingReport) -> None:
        """The reply was not delivered: give back the planned timing work (the reply's own figure stays)."""
        for name in report.measuring():
            self._release(report, name)
            t = report.timings[name]
            report.timings[name] = replace(t, state="measured") if t.ms is not None else Timing(state="skipped")

    def _release(self, report: TimingReport, name: str) -> None:
        with self._lock:
            cost = timing_cost_ms(report.engines.warm_ms.get(name, 0.0))
            self._backlog_ms = max(0.0, self._backlog_ms - cost)

    def _time_engines(self, report: TimingReport, rgb: np.ndarray) -> None:
        """Timing lane: the engines still to measure, in interleaved rounds (each engine once per round, up to
        its own number of runs), each run started only while no reply is due. A reply that comes in once every
        engine has one run ends the series there (new requests go first)."""
        names = report.measuring()
        runs = {name: timing_runs(report.engines.warm_ms.get(name, 0.0)) for name in names}
        samples: dict[str, list[float]] = {name: [] for name in names}
        contended = dict.fromkeys(names, False)
        failed: set[str] = set()
        try:
            for _ in range(max(runs.values(), default=0)):
                for name in names:
                    if name in failed or len(samples[name]) >= runs[name]:
                        continue
                    with self._lock:
                        if self._closing or (all(samples[n] for n in names if n not in failed) and self._replying):
                            return
                        while self._replying and not self._closing:
                            self._lock.wait(0.5)
                        if self._closing:
                            return
                        starts = self._reply_starts
                    # The protocol of every timing here (runtime/idle.py): the pool of the engine that ran just
                    # before still spins for up to ~0.1 s, and a run beside it would be timed at up to twice its time.
                    wait_until_idle()
                    try:
                        samples[name].append(report.engines.segment(name, rgb).timings.inference_ms)
                    except Exception:
                        log.exception("background timing of %s failed", name)
                        failed.add(name)
                        continue
                    with self._lock:
                        contended[name] = contended[name] or self._replying > 0 or self._reply_starts != starts
        finally:
            for name in names:
                self._release(report, name)
                before = report.timings[name]
                if samples[name]:
                    report.timings[name] = Timing(statistics.median(samples[name]), "measured", contended[name],
                                                  runs=len(samples[name]), lane="timing")
                elif before.ms is not None:  # the answering engine keeps its reply figure
                    report.timings[name] = replace(before, state="measured")
                else:
                    report.timings[name] = Timing(state="failed" if name in failed else "skipped")

    async def time_others(self, result: Result) -> bool:
        """Time the slower engines, and the answering one again beside them, on the result's photo (background,
        lower priority). True if any was timed."""
        if not result.report.measuring():
            return False
        await asyncio.wrap_future(self.timing.submit(self._time_engines, result.report, result.rgb))
        return True

    def close(self, timeout: float = 3.0) -> bool:
        """Stop taking work (a run under way ends by itself: it cannot be interrupted); True when both
        lanes are idle within `timeout` seconds."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        idle = True
        for lane in (self.reply, self.timing):
            lane.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + timeout
            for t in list(getattr(lane, "_threads", ())):
                t.join(max(0.0, deadline - time.monotonic()))
                idle = idle and not t.is_alive()
        return idle

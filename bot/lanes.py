"""The two lanes engines run on, and the accounting that keeps the timing lane out of the replies' way.

- The *reply lane* (one thread) runs the answering engine plus pre/post-processing and encoding.
- The *timing lane* (one thread at the lowest CPU priority) times the other engines on the same photo
  afterwards, and only while the reply lane is idle: new requests always go first. An engine's timing is
  the median of as many runs as fit a short budget, so a moment's contention on a busy host (a single run
  at the lowest priority can take twice its time) does not make the figure. When its backlog is too long,
  a photo gets the benchmark's p50 for those engines instead of a measurement. Each run starts once the
  process's other threads are idle, as the benchmark's and the tuner's do (runtime/idle.py).
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
        """Decide, per slower engine, between timing it on this photo and quoting the benchmark."""
        budget = self.backlog_s() * 1000
        for name in report.engines.order[1:]:
            estimate = timing_cost_ms(report.engines.warm_ms.get(name, 0.0))
            with self._lock:
                fits = self._backlog_ms + estimate <= budget
                if fits:
                    self._backlog_ms += estimate
            if fits:
                report.timings[name] = Timing(state="measuring")
            elif report.published_ms(name) is not None:
                report.timings[name] = Timing(state="published")
            else:
                report.timings[name] = Timing(state="skipped")

    def drop_background(self, report: TimingReport) -> None:
        """The reply was not delivered: give back the planned timing work."""
        for name in report.measuring():
            with self._lock:
                self._backlog_ms = max(0.0, self._backlog_ms - timing_cost_ms(report.engines.warm_ms.get(name, 0.0)))
            report.timings[name] = Timing(state="skipped")

    def _time_engines(self, report: TimingReport, rgb: np.ndarray) -> None:
        """Timing lane: each engine still to measure, each run started only while no reply is due. A reply
        that comes in after the first run ends the engine's series there (new requests go first)."""
        for name in report.measuring():
            warm = report.engines.warm_ms.get(name, 0.0)
            try:
                report.timings[name] = self._time_engine(report, name, rgb, timing_runs(warm))
            finally:
                with self._lock:
                    self._backlog_ms = max(0.0, self._backlog_ms - timing_cost_ms(warm))

    def _time_engine(self, report: TimingReport, name: str, rgb: np.ndarray, runs: int) -> Timing:
        samples: list[float] = []
        contended = False
        while len(samples) < runs:
            with self._lock:
                if samples and (self._replying or self._closing):
                    break
                while self._replying and not self._closing:
                    self._lock.wait(0.5)
                if self._closing:
                    return Timing(state="skipped")
                starts = self._reply_starts
            # The protocol of every timing here (runtime/idle.py): the answering engine's pool, which ran just
            # before, still spins for up to ~0.1 s, and a run beside it would be timed at up to twice its time.
            wait_until_idle()
            try:
                samples.append(report.engines.segment(name, rgb).timings.inference_ms)
            except Exception:
                log.exception("background timing of %s failed", name)
                return Timing(state="failed")
            with self._lock:
                contended = contended or self._replying > 0 or self._reply_starts != starts
        return Timing(statistics.median(samples), "measured", contended, runs=len(samples))

    async def time_others(self, result: Result) -> bool:
        """Time the slower engines on the result's photo (background, lower priority). True if any was timed."""
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

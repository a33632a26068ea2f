"""The bot's service layer: what runs where, in which order, and what each reply says about speed.

- Every configured engine is loaded and warmed up at start; the fastest (measured then) answers.
- A *reply lane* (one thread) runs the answering engine plus pre/post-processing and encoding.
- A *timing lane* (one thread at the lowest CPU priority) times the other engines on the same photo
  afterwards, and only while the reply lane is idle: new requests always go first. When its
  backlog is too long, a photo gets the benchmark's p50 for those engines instead of a measurement.
- Admission: one request in flight per chat plus a small queue, and a global bound.
Every engine uses the same thread count, sized on the thread that runs it (TVM's pool is per thread).
Handlers call this module; it calls runtime/ and nothing else of the project.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.acquire import resolve_model
from runtime.effects import mask_image, overlay, recolor_hair, replace_background
from runtime.engines import create_engine, engine_label
from runtime.errors import SelfieTvmError
from runtime.images import encode_jpeg, encode_png
from runtime.pipeline import hair_model_for
from runtime.segmenter import Segmentation, Segmenter

from .settings import BotSettings

log = logging.getLogger(__name__)
SYNTHETIC = "⚠️ synthetic model: its masks are meaningless (latency is representative)"


class Busy(Exception):
    """Too many requests in the whole bot; the text is for the user."""


class ChatBusy(Busy):
    """This chat already has its in-flight request and a full queue."""


# -- benchmark report --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Benchmark:
    p50: dict[tuple[str, int], float] = field(default_factory=dict)
    date: str | None = None  # when it was measured (YYYY-MM-DD)
    target_id: str = ""


def benchmark_p50(model: str, results_root: Path, target_id: str) -> dict[tuple[str, int], float]:
    """p50 latencies from this model's benchmark report for this machine's target, if there is one."""
    path = results_root / model / target_id / "latency_stats.csv"
    if not path.is_file():
        return {}
    with path.open() as f:
        return {(row["engine"], int(row["threads"])): float(row["p50"]) for row in csv.DictReader(f)}


def read_benchmark(model: str, results_root: Path, target_id: str) -> Benchmark:
    date = None
    env = results_root / model / target_id / "environment.json"
    with contextlib.suppress(OSError, ValueError):
        date = str(json.loads(env.read_text()).get("date", ""))[:10] or None
    return Benchmark(benchmark_p50(model, results_root, target_id), date, target_id)


# -- engines -----------------------------------------------------------------------------------------
class EngineSet:
    """Segmenters of one model on every configured engine that can run here, fastest first once warmed up."""

    def __init__(self, model: str, engines: list[str], threads: int, tvm_target: str | None = None) -> None:
        self.model = resolve_model(model)
        self.threads = threads
        self.segmenters: dict[str, Segmenter] = {}
        self.unavailable: dict[str, str] = {}
        for name in engines:
            try:
                options = {}
                if tvm_target and name.startswith("tvm"):
                    from runtime.target import host_target

                    options["target"] = host_target(mcpu=tvm_target)
                self.segmenters[name] = Segmenter(create_engine(name, self.model, threads, **options))
            except SelfieTvmError as e:
                self.unavailable[name] = str(e)
                log.warning("engine %s unavailable for %s: %s", name, model, e)
        if not self.segmenters:
            raise SelfieTvmError(f"no engine can run {model}: {self.unavailable}")
        self.warm_ms: dict[str, float] = {}  # inference time measured at start, per engine

    @property
    def spec(self):
        return self.model.spec

    @property
    def order(self) -> list[str]:
        """Engines, fastest first (configuration order until warmed up)."""
        names = list(self.segmenters)
        return sorted(names, key=lambda n: self.warm_ms.get(n, float(names.index(n))))

    @property
    def primary(self) -> str:
        return self.order[0]

    def segment(self, name: str, rgb: np.ndarray) -> Segmentation:
        return self.segmenters[name].segment(rgb)


# -- what a reply says about speed ---------------------------------------------------------------------
@dataclass
class Timing:
    ms: float | None = None  # measured inference time on this photo
    state: str = "measured"  # measured | measuring | benchmark | failed | skipped
    contended: bool = False  # another request ran during the measurement


@dataclass
class TimingReport:
    engines: EngineSet
    threads: int
    benchmark: Benchmark
    timings: dict[str, Timing] = field(default_factory=dict)  # in display order: the answering engine first
    reply_ms: float = 0.0  # the answering lane's whole work: decode excluded, inference + effects + encoding

    def pending(self) -> list[str]:
        return [n for n, t in self.timings.items() if t.state == "measuring"]

    def _bench(self, name: str) -> float | None:
        return self.benchmark.p50.get((name, self.threads))

    def text(self) -> str:
        parts = []
        for name, t in self.timings.items():
            label = engine_label(name)
            if t.state == "measured":
                parts.append(f"{label} {t.ms:.0f} ms" + (" (while busy)" if t.contended else ""))
            elif t.state == "measuring":
                parts.append(f"{label} … (timing it now)")
            elif t.state == "benchmark":
                parts.append(f"{label} ~{self._bench(name):.0f} ms (benchmark p50 of {self.benchmark.date or '?'}; "
                             "too many photos queued to time it now)")
            elif t.state == "failed":
                parts.append(f"{label} failed")
            else:
                parts.append(f"{label} not timed (too many photos queued)")
        first = next(iter(self.timings))
        lines = [f"{self.engines.spec.name}, {self.threads} threads each: " + " · ".join(parts),
                 f"(answered by {engine_label(first)}, the fastest here)"]
        ms = {n: t.ms for n, t in self.timings.items() if t.state == "measured" and t.ms}
        if "tvm-tuned" in ms and "tvm-default" in ms:
            lines.append(f"TVM tuned is {ms['tvm-default'] / ms['tvm-tuned']:.1f}x faster than TVM default")
        for name in self.timings:
            meta = getattr(self.engines.segmenters[name].engine, "metadata", None)
            if warning := getattr(meta, "tuning_warning", None):
                lines.append(f"{engine_label(name)}: {warning}")
        if self.engines.unavailable:
            lines.append(f"({', '.join(engine_label(n) for n in self.engines.unavailable)} not available here)")
        bench = [f"{engine_label(n)} {self._bench(n):.0f} ms" for n in self.timings if self._bench(n) is not None]
        if bench:
            lines.append(f"benchmark p50 ({self.benchmark.target_id}, {self.benchmark.date}): " + " · ".join(bench))
        if self.engines.spec.synthetic_notice:
            lines.append(SYNTHETIC)
        return "\n".join(lines)


@dataclass
class Result:
    images: list[tuple[bytes, str]]  # (encoded image, caption); the report goes under the last one
    report: TimingReport
    rgb: np.ndarray  # the photo, kept for the background timings of the other engines

    @property
    def timings(self) -> str:
        return self.report.text()


# -- admission -------------------------------------------------------------------------------------------
class Admission:
    """One request in flight per chat, `chat_queue` more waiting, `max_pending` in all (read from the settings
    at each request)."""

    def __init__(self, limits: Callable[[], tuple[int, int]]) -> None:
        self.limits = limits
        self._counts: dict[int, int] = {}
        self._tails: dict[int, asyncio.Future] = {}

    @property
    def pending(self) -> int:
        return sum(self._counts.values())

    def enter(self, chat_id: int) -> None:
        chat_queue, total = self.limits()
        mine = self._counts.get(chat_id, 0)
        if mine > chat_queue:
            raise ChatBusy(f"You already have {mine} photos in progress; I'll answer those first, "
                           "then send this one again.")
        if self.pending >= total:
            raise Busy("I'm busy with other people's photos right now. Please send it again in a minute.")
        self._counts[chat_id] = mine + 1

    def leave(self, chat_id: int) -> None:
        left = self._counts.get(chat_id, 1) - 1
        if left > 0:
            self._counts[chat_id] = left
        else:
            self._counts.pop(chat_id, None)

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: int):
        """Wait for this chat's earlier requests (in arrival order), then hold the chat's turn."""
        before = self._tails.get(chat_id)
        mine = asyncio.get_running_loop().create_future()
        self._tails[chat_id] = mine
        try:
            if before is not None and not before.done():
                await before
            yield
        finally:
            mine.set_result(None)
            if self._tails.get(chat_id) is mine:
                del self._tails[chat_id]


def _lowest_priority() -> None:
    """Timing lane: lowest CPU priority for this thread and the pool threads it starts (Linux: per thread)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


# -- the service -------------------------------------------------------------------------------------------
class SegmentationService:
    def __init__(self, settings: BotSettings, results_root: Path | None = None, *, warm_up: bool = True) -> None:
        from runtime.artifacts import results_root as default_results_root
        from runtime.target import host_target

        self.settings = settings
        self.target_id = host_target().id
        self.main = EngineSet(settings.model, settings.engines, settings.threads, settings.tvm_target)
        hair_name = hair_model_for(self.main.spec)
        self.hair = self.main if hair_name == self.main.spec.name else self._optional_engines(hair_name)
        self.benchmark = read_benchmark(self.main.spec.name, results_root or default_results_root(), self.target_id)
        self.admission = Admission(lambda: (self.settings.chat_queue, self.settings.max_pending))
        self._reply_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reply")
        self._timing_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="timing",
                                               initializer=_lowest_priority)
        self._lock = threading.Condition()
        self._replying = 0  # reply-lane jobs queued or running
        self._reply_starts = 0  # reply-lane jobs started so far (to flag contended timings)
        self._backlog_ms = 0.0  # estimated work queued on the timing lane
        self._closing = False
        self.tasks: set[asyncio.Task] = set()  # requests being processed (drained on shutdown)
        if warm_up:
            self.warm_up()

    @property
    def p50(self) -> dict[tuple[str, int], float]:
        return self.benchmark.p50

    def _optional_engines(self, model: str) -> EngineSet | None:
        try:
            return EngineSet(model, self.settings.engines, self.settings.threads, self.settings.tvm_target)
        except SelfieTvmError as e:
            log.warning("hair model %s unavailable: %s", model, e)
            return None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.main.spec.classes

    @property
    def notice(self) -> str | None:
        return self.main.spec.synthetic_notice

    # -- start-up -----------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Run every engine on the lane that will run it: one-time costs are paid, pools are sized, and
        the fastest engine (second run when the first is short) becomes the answering one."""
        photo = np.full((256, 256, 3), 128, np.uint8)
        for engines in {id(e): e for e in (self.main, self.hair) if e is not None}.values():
            for name in list(engines.segmenters):
                first = self._timing_lane.submit(engines.segment, name, photo).result().timings.inference_ms
                if first < 2000:
                    first = self._timing_lane.submit(engines.segment, name, photo).result().timings.inference_ms
                engines.warm_ms[name] = first
            primary = engines.primary
            self._reply_lane.submit(engines.segment, primary, photo).result()
            log.info("%s: answering with %s; warm-up inference %s", engines.spec.name, engine_label(primary),
                     ", ".join(f"{engine_label(n)} {ms:.0f} ms" for n, ms in engines.warm_ms.items()))

    # -- lanes --------------------------------------------------------------------------------------
    def _started(self) -> None:
        with self._lock:
            self._reply_starts += 1

    async def reply_lane(self, fn: Callable, *args):
        """Run fn(*args) on the reply lane; a timeout gives the user a sentence, not a hang."""
        with self._lock:
            self._replying += 1

        def job():
            self._started()
            return fn(*args)

        try:
            future = self._reply_lane.submit(job)
            return await asyncio.wait_for(asyncio.wrap_future(future), self.settings.request_timeout_s)
        finally:
            with self._lock:
                self._replying -= 1
                self._lock.notify_all()

    def plan_background(self, report: TimingReport) -> None:
        """Decide, per slower engine, between timing it on this photo and quoting the benchmark."""
        budget = self.settings.background_backlog_s * 1000
        for name in report.engines.order[1:]:
            estimate = report.engines.warm_ms.get(name, 0.0)
            with self._lock:
                fits = self._backlog_ms + estimate <= budget
                if fits:
                    self._backlog_ms += estimate
            if fits:
                report.timings[name] = Timing(state="measuring")
            elif report.benchmark.p50.get((name, report.threads)) is not None:
                report.timings[name] = Timing(state="benchmark")
            else:
                report.timings[name] = Timing(state="skipped")

    def drop_background(self, report: TimingReport) -> None:
        """The reply was not delivered: give back the planned timing work."""
        for name in report.pending():
            with self._lock:
                self._backlog_ms = max(0.0, self._backlog_ms - report.engines.warm_ms.get(name, 0.0))
            report.timings[name] = Timing(state="skipped")

    def _time_engines(self, report: TimingReport, rgb: np.ndarray) -> None:
        """Timing lane: each pending engine on the photo, each run started only while no reply is due."""
        for name in report.pending():
            estimate = report.engines.warm_ms.get(name, 0.0)
            try:
                with self._lock:
                    while self._replying and not self._closing:
                        self._lock.wait(0.5)
                    if self._closing:
                        report.timings[name] = Timing(state="skipped")
                        continue
                    starts = self._reply_starts
                try:
                    ms = report.engines.segment(name, rgb).timings.inference_ms
                except Exception:
                    log.exception("background timing of %s failed", name)
                    report.timings[name] = Timing(state="failed")
                    continue
                with self._lock:
                    contended = self._replying > 0 or self._reply_starts != starts
                report.timings[name] = Timing(ms, "measured", contended)
            finally:
                with self._lock:
                    self._backlog_ms = max(0.0, self._backlog_ms - estimate)

    async def time_others(self, result: Result) -> bool:
        """Time the slower engines on the result's photo (background, lower priority). True if any was timed."""
        if not result.report.pending():
            return False
        await asyncio.wrap_future(self._timing_lane.submit(self._time_engines, result.report, result.rgb))
        return True

    def lane_call(self, lane: str, fn: Callable, *args):
        """Run fn(*args) on a lane's thread and return its result (tests read thread counts this way)."""
        executor = self._reply_lane if lane == "reply" else self._timing_lane
        return executor.submit(fn, *args).result()

    def close(self, timeout: float = 3.0) -> bool:
        """Stop taking background work; True when both lanes are idle within `timeout` seconds."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        idle = True
        for lane in (self._reply_lane, self._timing_lane):
            lane.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + timeout
            for t in list(getattr(lane, "_threads", ())):
                t.join(max(0.0, deadline - time.monotonic()))
                idle = idle and not t.is_alive()
        return idle

    # -- the three tasks (run on the reply lane) --------------------------------------------------------
    def _report(self, engines: EngineSet, seg: Segmentation) -> TimingReport:
        report = TimingReport(engines, self.settings.threads, self.benchmark)
        report.timings[seg.engine] = Timing(seg.timings.inference_ms)
        return report

    def segmentation(self, rgb: np.ndarray) -> Result:
        t0 = time.perf_counter()
        seg = self.main.segment(self.main.primary, rgb)
        images = [(encode_jpeg(rgb), "original")]
        images += [(encode_png(mask_image(seg.confidence(c))), c) for c in self.classes]
        images.append((encode_jpeg(overlay(rgb, seg.category_mask, self.classes)), "all classes"))
        report = self._report(self.main, seg)
        report.reply_ms = (time.perf_counter() - t0) * 1000
        return Result(images, report, rgb)

    def hair_color(self, rgb: np.ndarray, color: tuple[int, int, int], color_text: str) -> Result:
        if self.hair is None:
            raise SelfieTvmError("hair recolouring needs a hair model, and none is available here")
        t0 = time.perf_counter()
        seg = self.hair.segment(self.hair.primary, rgb)
        out = recolor_hair(rgb, seg.confidence(seg.spec.hair_class), color)
        report = self._report(self.hair, seg)
        images = [(encode_jpeg(out), f"hair: {color_text}")]
        report.reply_ms = (time.perf_counter() - t0) * 1000
        return Result(images, report, rgb)

    def background(self, rgb: np.ndarray, background: np.ndarray) -> Result:
        t0 = time.perf_counter()
        seg = self.main.segment(self.main.primary, rgb)
        out = replace_background(rgb, seg.person_confidence(), background)
        report = self._report(self.main, seg)
        images = [(encode_jpeg(out), "new background")]
        report.reply_ms = (time.perf_counter() - t0) * 1000
        return Result(images, report, rgb)

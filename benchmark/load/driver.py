"""LoadGen drives the engines: a SystemUnderTest of `instances` engines and a QuerySampleLibrary of real photos.

The sample library holds the benchmark's real photos (benchmark/photos.py: two portraits). What a query
does is the run's *work* (options.WORKS): by default inference alone on a photo pre-processed when LoadGen
loads it into the library (MLPerf's convention), or the whole segmentation, or the bot's reply.

The system under test runs each engine instance on a thread of its own, all taking queries from one queue
(LiteRT and TVM release the GIL while they compute). Each instance warms up on its own thread before the
test: TVM sizes its thread pool per OS thread (runtime/engines/tvm.py), so the pool is made where it runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from runtime.engines import Engine
from runtime.errors import SelfieTvmError
from runtime.registry import ModelSpec

from .logs import SUMMARY, LoadResult, read_summary
from .options import OFFLINE, SERVER, SINGLE_STREAM, RunSettings, check_rate, check_scenario, check_work

WARMUP_RUNS = 2  # per instance, on its own thread, before LoadGen starts


def _lg():
    try:
        import mlperf_loadgen
    except ImportError:
        raise SelfieTvmError("load runs need MLPerf LoadGen: pip install 'selfie-tvm[load]' (./nox -s load "
                             "installs it)") from None
    return mlperf_loadgen


def require_loadgen() -> None:
    """Fail before anything is measured when LoadGen is not installed."""
    _lg()


def segmentation_reply(segmenter, rgb: np.ndarray) -> list[bytes]:
    """What the bot's reply lane does for /segmentation after the download (bot/service.py
    SegmentationService.segment, without the Telegram upload): segment, then the original, one mask per
    class and the overlay, encoded."""
    from runtime.effects import mask_image, overlay
    from runtime.images import encode_jpeg, encode_png

    seg = segmenter.segment(rgb)
    images = [encode_jpeg(rgb)]
    images += [encode_png(mask_image(seg.confidence(c))) for c in seg.spec.classes]
    images.append(encode_jpeg(overlay(rgb, seg.category_mask, seg.spec.classes)))
    return images


def query_runner(work: str, engine: Engine) -> Callable[[np.ndarray], object]:
    """What one query does with a sample of the library, on one engine instance."""
    from runtime.segmenter import Segmenter

    check_work(work)
    if work == "inference":
        return engine.run
    segmenter = Segmenter(engine)
    if work == "segment":
        return segmenter.segment
    return lambda rgb: segmentation_reply(segmenter, rgb)


class SampleLibrary:
    """LoadGen's QuerySampleLibrary over real photos; `inference` work holds them pre-processed."""

    def __init__(self, photos: dict[str, np.ndarray], spec: ModelSpec, work: str) -> None:
        from runtime.processing import preprocess

        if not photos:
            raise SelfieTvmError("the sample library needs at least one photo")
        self.names = list(photos)
        self._photos = list(photos.values())
        self._prepare = (lambda rgb: preprocess(rgb, spec)) if check_work(work) == "inference" else (lambda rgb: rgb)
        self.loaded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._photos)

    def prepare(self, index: int) -> np.ndarray:
        return self._prepare(self._photos[index])

    def load(self, indices: list[int]) -> None:
        for i in indices:
            self.loaded[i] = self.prepare(i)

    def unload(self, indices: list[int]) -> None:
        for i in indices:
            self.loaded.pop(i, None)


class SystemUnderTest:
    """LoadGen's SUT: every instance on a thread of its own, taking (query id, sample index) from one queue."""

    def __init__(self, runners: list[Callable[[np.ndarray], object]], library: SampleLibrary,
                 on_warm_thread: Callable[[int], object] | None = None) -> None:
        self.library = library
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._errors: list[BaseException] = []
        self.warm_ms: list[float] = [float("nan")] * len(runners)
        self.thread_info: list[object] = [None] * len(runners)  # on_warm_thread(i), run on instance i's thread
        self._on_warm_thread = on_warm_thread
        ready = threading.Barrier(len(runners) + 1)
        self._threads = [threading.Thread(target=self._serve, args=(i, run, ready), name=f"instance-{i}", daemon=True)
                         for i, run in enumerate(runners)]
        for t in self._threads:
            t.start()
        ready.wait()
        if self._errors:
            self.close()
            self.raise_errors()

    def _serve(self, index: int, run: Callable, ready: threading.Barrier) -> None:
        try:
            sample = self.library.prepare(0)
            for _ in range(WARMUP_RUNS):
                t0 = time.perf_counter()
                run(sample)
                self.warm_ms[index] = (time.perf_counter() - t0) * 1e3
            if self._on_warm_thread is not None:
                self.thread_info[index] = self._on_warm_thread(index)
        except BaseException as e:  # reported by the constructor, on the caller's thread
            self._errors.append(e)
        finally:
            ready.wait()
        lg = _lg()
        while (item := self._queue.get()) is not None:
            query_id, sample_index = item
            try:
                run(self.library.loaded[sample_index])
            except BaseException as e:  # LoadGen waits for every query: complete it, report the error after
                self._errors.append(e)
            finally:
                lg.QuerySamplesComplete([lg.QuerySampleResponse(query_id, 0, 0)])

    def issue(self, samples) -> None:
        for s in samples:
            self._queue.put((s.id, s.index))

    def raise_errors(self) -> None:
        if self._errors:
            first = self._errors[0]
            raise SelfieTvmError(f"an engine instance failed under load ({len(self._errors)} error(s)); "
                                 f"the first: {type(first).__name__}: {first}") from first

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()


@contextmanager
def loadgen_handles(sut: SystemUnderTest) -> Iterator[tuple[object, object]]:
    lg = _lg()
    sut_handle = lg.ConstructSUT(sut.issue, lambda: None)
    qsl_handle = lg.ConstructQSL(len(sut.library), len(sut.library), sut.library.load, sut.library.unload)
    try:
        yield sut_handle, qsl_handle
    finally:
        lg.DestroyQSL(qsl_handle)
        lg.DestroySUT(sut_handle)


def loadgen_settings(scenario: str, settings: RunSettings, *, rate: float | None = None, bound_ms: float | None = None,
                  expected_per_s: float | None = None):
    """LoadGen's TestSettings of one performance run. Server: Poisson arrivals at `rate` photos/s, p99 bound
    `bound_ms`; Offline: every query issued at once, and SingleStream: one after the other, both sized for
    `expected_per_s` over the minimum duration."""
    lg = _lg()
    ts = lg.TestSettings()
    ts.scenario = {SINGLE_STREAM: lg.TestScenario.SingleStream, OFFLINE: lg.TestScenario.Offline,
                   SERVER: lg.TestScenario.Server}[check_scenario(scenario)]
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(settings.min_duration_s * 1000)
    ts.min_query_count = settings.min_queries
    if scenario == SERVER:
        ts.server_target_qps = check_rate(rate)
        ts.server_target_latency_ns = int(check_rate(bound_ms, "the p99 bound (ms)") * 1e6)
        ts.server_target_latency_percentile = 0.99
    elif scenario == OFFLINE:
        ts.offline_expected_qps = check_rate(expected_per_s, "the expected Offline rate")
    elif expected_per_s is not None:  # LoadGen sizes a SingleStream run's queries from the expected latency
        ts.single_stream_expected_latency_ns = max(1, int(1e9 / check_rate(expected_per_s, "the expected rate")))
    return ts


def run_scenario(sut: SystemUnderTest, scenario: str, settings: RunSettings, log_dir: Path, **options) -> LoadResult:
    """One LoadGen performance run; its logs are written to `log_dir` and its numbers read back from the
    summary. `options`: rate, bound_ms (Server), expected_per_s (Offline); see loadgen_settings."""
    lg = _lg()
    ts = loadgen_settings(scenario, settings, **options)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    with loadgen_handles(sut) as (sut_handle, qsl_handle):
        lg.StartTestWithLogSettings(sut_handle, qsl_handle, ts, log)
    sut.raise_errors()
    return read_summary(log_dir / SUMMARY)

"""One engine in one layout, measured in a fresh process (as the benchmark runs each thread count).

TVM pins its pool's workers and XNNPACK keeps a pool of its own; a pool made earlier in a process
slowed later runs in the benchmark (benchmark/ablation.py), so every configuration gets a process of its
own, started by `spawn` (nothing inherited but the arguments) with TVM_NUM_THREADS set to its threads
per instance before TVM is imported. The measurement comes back as plain data.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from runtime.acquire import ResolvedModel

from .logs import LoadResult, keep_logs
from .options import OFFLINE, SERVER, SINGLE_STREAM, Layout, LoadOptionError, RunSettings
from .search import Search, find_max_rate, fixed_rates

SIZING_RETRIES = 2  # see sized_run


@dataclass(frozen=True)
class Configuration:
    engine: str
    layout: Layout

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.layout.name}"


@dataclass(frozen=True)
class Request:
    """What one process measures: `scenarios` of one configuration; LoadGen's logs of each reported run
    are kept under `logs`/<configuration>/<scenario>/."""

    model: ResolvedModel
    configuration: Configuration
    settings: RunSettings
    scenarios: tuple[str, ...]
    logs: Path
    bound_ms: float | None = None  # Server
    rates: tuple[float, ...] = ()  # Server at these rates instead of the search
    ceiling: float | None = None  # Server search: the configuration's Offline photos/s
    engine_options: dict = field(default_factory=dict)  # create_engine's keyword arguments (e.g. target)


def _pool_threads(engines):
    """What each instance's engine really runs with on its own thread: TVM's pool size, else the setting."""
    def on_thread(index: int) -> int:
        engine = engines[index]
        return engine.actual_threads() if hasattr(engine, "actual_threads") else engine.threads
    return on_thread


class _Runs:
    """LoadGen runs of one system under test, each logging to a scratch directory of its own."""

    def __init__(self, sut, settings: RunSettings, scratch: Path) -> None:
        self.sut, self.settings, self.scratch = sut, settings, scratch
        self.count = 0

    def run(self, scenario: str, **options) -> tuple[LoadResult, Path]:
        from .driver import run_scenario

        self.count += 1
        log_dir = self.scratch / f"{scenario}-{self.count}"
        return run_scenario(self.sut, scenario, self.settings, log_dir, **options), log_dir

    def sized(self, scenario: str, expected: float) -> tuple[LoadResult, Path]:
        """LoadGen sizes SingleStream and Offline runs from the expected rate: one that ends before the
        minimum duration (the estimate was low) runs again, sized on the rate it measured."""
        for _ in range(SIZING_RETRIES + 1):
            result, log_dir = self.run(scenario, expected_per_s=expected)
            if result.min_duration_ok:
                break
            expected = result.photos_per_s * 1.2
        return result, log_dir

    def server(self, request: Request) -> tuple[Search, Path]:
        logs: dict[float, Path] = {}

        def probe(rate: float) -> LoadResult:
            result, logs[rate] = self.run(SERVER, rate=rate, bound_ms=request.bound_ms)
            return result

        if request.rates:
            search = fixed_rates(probe, list(request.rates))
        elif request.ceiling is None:
            raise LoadOptionError("the Server search needs the Offline throughput as its ceiling: add the offline "
                                  "scenario, or give --rates")
        else:
            search = find_max_rate(probe, request.ceiling, self.settings)
        return search, logs[search.kept_rate]


def measure(request: Request) -> dict:
    """Run the request's scenarios in this process; LoadResult dicts and the Server search's probes."""
    from benchmark.photos import portraits
    from runtime.engines import create_engine

    from .driver import SampleLibrary, SystemUnderTest, query_runner

    config, settings = request.configuration, request.settings
    engines = [create_engine(config.engine, request.model, config.layout.threads, **request.engine_options)
               for _ in range(config.layout.instances)]
    library = SampleLibrary(portraits(), request.model.spec, settings.work)
    sut = SystemUnderTest([query_runner(settings.work, e) for e in engines], library, _pool_threads(engines))
    out: dict = {"configuration": config.name, "engine": config.engine, "instances": config.layout.instances,
                 "threads": config.layout.threads, "pool_threads": sut.thread_info, "warm_ms": sut.warm_ms}
    kept = request.logs / config.name
    per_instance = 1e3 / min(sut.warm_ms)  # photos/s of one instance, from its warm-up
    try:
        with tempfile.TemporaryDirectory(prefix=f"selfie-tvm-load-{config.name}-") as scratch:
            runs = _Runs(sut, settings, Path(scratch))
            for scenario, expected in ((SINGLE_STREAM, per_instance), (OFFLINE, per_instance * len(engines))):
                if scenario in request.scenarios:
                    result, log_dir = runs.sized(scenario, expected)
                    keep_logs(log_dir, kept / scenario)
                    out[scenario] = result.as_dict()
            if SERVER in request.scenarios:
                search, log_dir = runs.server(request)
                keep_logs(log_dir, kept / SERVER)
                out[SERVER] = {"ceiling": search.ceiling, "max_rate": search.max_rate, "bound_ms": request.bound_ms,
                               "kept_rate": search.kept_rate,
                               "probes": [{"rate": rate, **r.as_dict()} for rate, r in search.probes]}
    finally:
        sut.close()
    return out


def _threads_env(threads: int) -> None:
    os.environ["TVM_NUM_THREADS"] = str(threads)


def measure_in_fresh_process(request: Request) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=_threads_env,
                             initargs=(request.configuration.layout.threads,)) as pool:
        return pool.submit(measure, request).result()

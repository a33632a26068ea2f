"""Options and shared state of the latency benchmarks (run: pytest benchmark/ --benchmark-enable)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import psutil
import pytest

ALL_ENGINES = ("litert", "tvm-default", "tvm-tuned")


def pytest_addoption(parser):
    g = parser.getgroup("selfie-tvm benchmark")
    g.addoption("--model", default="selfie_multiclass_twin", help="registry model name")
    g.addoption("--engines", default=",".join(ALL_ENGINES), help="comma-separated engines")
    g.addoption("--threads", default=None, help="comma-separated thread counts (default: 1..cores)")
    g.addoption("--runs", type=int, default=20, help="timed rounds per engine and thread count")
    g.addoption("--warmup", type=int, default=3, help="untimed warm-up rounds")


def _threads(config) -> list[int]:
    raw = config.getoption("--threads")
    if raw:
        return [int(t) for t in raw.split(",")]
    return list(range(1, len(os.sched_getaffinity(0)) + 1))


def pytest_generate_tests(metafunc):
    if "engine_name" in metafunc.fixturenames:
        engines = metafunc.config.getoption("--engines").split(",")
        unknown = set(engines) - set(ALL_ENGINES)
        if unknown:
            raise pytest.UsageError(f"unknown engines {sorted(unknown)}; choose from {ALL_ENGINES}")
        metafunc.parametrize("engine_name", engines)
    if "threads" in metafunc.fixturenames:
        metafunc.parametrize("threads", _threads(metafunc.config))


@dataclass
class LoadedEngine:
    engine: object
    load_ms: float
    first_run_ms: float
    rss_delta_mb: float


@dataclass
class Bench:
    model: object
    engines: list[str]
    runs: int
    warmup: int
    x: np.ndarray
    loaded: dict[tuple[str, int], LoadedEngine] = field(default_factory=dict)

    def get(self, name: str, threads: int) -> LoadedEngine:
        key = (name, threads)
        if key not in self.loaded:
            from runtime.engines import create_engine
            from runtime.errors import SelfieTvmError

            proc = psutil.Process()
            rss0 = proc.memory_info().rss
            t0 = time.perf_counter()
            try:
                engine = create_engine(name, self.model, threads)
            except SelfieTvmError as e:
                pytest.fail(f"engine {name} cannot run: {e}", pytrace=False)
            t1 = time.perf_counter()
            set_threads(engine, threads)
            engine.run(self.x)
            t2 = time.perf_counter()
            self.loaded[key] = LoadedEngine(engine, (t1 - t0) * 1e3, (t2 - t1) * 1e3,
                                            (proc.memory_info().rss - rss0) / 2**20)
        return self.loaded[key]


def set_threads(engine, threads: int) -> None:
    """TVM's thread pool is per process: point it at this run's thread count before timing."""
    if engine.name.startswith("tvm"):
        from runtime.engines.tvm import set_tvm_threads

        set_tvm_threads(threads)


@pytest.fixture(scope="session")
def bench(request) -> Bench:
    from runtime.acquire import resolve_model

    engines = request.config.getoption("--engines").split(",")
    if any(e.startswith("tvm") for e in engines):
        # Import TVM now, so that an engine's load time measures loading its library only.
        import tvm  # noqa: F401

        import runtime.artifacts  # noqa: F401
    model = resolve_model(request.config.getoption("--model"))
    spec = model.spec.input
    # Real photo for real models; inference time does not depend on pixel values.
    x = np.random.default_rng(0).random((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    return Bench(model, engines, request.config.getoption("--runs"),
                 request.config.getoption("--warmup"), x)

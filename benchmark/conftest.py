"""Options and shared state of the latency benchmarks (run: python -m benchmark, or pytest benchmark/).

The options are benchmark/options.py's, so `pytest benchmark/` and `python -m benchmark` agree on every default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import psutil
import pytest

from runtime.engines import ENGINE_NAMES

from . import agreement, machine
from .options import Plan, Protocol, add_options, choose_model, parse_engines, parse_threads


def pytest_addoption(parser):
    add_options(parser.getgroup("selfie-tvm benchmark").addoption, pytest_only=True)


def pytest_generate_tests(metafunc):
    try:
        if "engine_name" in metafunc.fixturenames:
            metafunc.parametrize("engine_name", parse_engines(metafunc.config.getoption("--engines")))
        if "threads" in metafunc.fixturenames:
            metafunc.parametrize("threads", parse_threads(metafunc.config.getoption("--threads")))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_collection_modifyitems(items):
    """Inference benchmarks thread count by thread count, and within one the engines in table order."""
    def key(item):
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        if "engine_name" not in params:
            return (1, 0, 0)
        return (0, params["threads"], ENGINE_NAMES.index(params["engine_name"]))

    items.sort(key=key)


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
    protocol: Protocol
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
            engine.run(self.x)
            t2 = time.perf_counter()
            self.loaded[key] = LoadedEngine(engine, (t1 - t0) * 1e3, (t2 - t1) * 1e3,
                                            (proc.memory_info().rss - rss0) / 2**20)
        return self.loaded[key]

    def plan(self, name: str, threads: int) -> Plan:
        """Load every engine at this thread count (its first run decides whether it is slow), then plan."""
        first = {e: self.get(e, threads).first_run_ms for e in self.engines}
        return self.protocol.plan(name, first)


BENCH = pytest.StashKey["Bench"]()


@pytest.fixture(scope="session")
def bench(request) -> Bench:
    engines = parse_engines(request.config.getoption("--engines"))
    if any(e.startswith("tvm") for e in engines):
        # Import TVM now, so that an engine's load time measures loading its library only.
        import tvm  # noqa: F401

        import runtime.artifacts  # noqa: F401
    model = choose_model(request.config.getoption("--model"))
    # The same input for every engine: a real portrait for real models (so that the answers compared
    # after timing mean something), seeded noise for the twin. Inference time does not depend on it.
    x = agreement.inputs_for(model)[0][1]
    bench = Bench(model, engines, Protocol.from_values(lambda dest: request.config.getoption(dest)), x)
    request.config.stash[BENCH] = bench
    return bench


def pytest_benchmark_update_machine_info(config, machine_info):
    """Save what the run was measured on (benchmark/machine.py) where pytest-benchmark saves the machine."""
    bench = config.stash.get(BENCH, None)
    if bench is not None:
        machine_info[machine.KEY] = machine.capture(bench.model, bench.engines)

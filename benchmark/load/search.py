"""The Server scenario's highest rate whose p99 stays under the bound: a bisection on LoadGen's verdicts.

A rate *holds* when LoadGen's run at that rate reports "Performance constraints satisfied" (its measured
99th-percentile latency at most the bound) with its minimum duration and query count met. The search
bisects [0, ceiling], where the ceiling is the configuration's Offline throughput: Poisson arrivals at a
mean rate above what the engines complete when every photo is queued at once only grow the queue. Each
probe halves the interval; the search stops after `steps` probes or once the interval is narrower than
`tolerance` of its top, and reports the highest rate that held (0 when none did: the bound is below what
one photo takes at any load). LoadGen's full verdict (VALID, which adds its early-stopping test: enough
queries that the p99 holds with 99 % confidence) is kept with every probe and shown beside the rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .logs import LoadResult
from .options import RunSettings, check_rate


def holds(result: LoadResult) -> bool:
    """The run's p99 was under the bound, over at least the minimum duration and query count."""
    return bool(result.latency_ok and result.min_duration_ok and result.min_queries_ok)


@dataclass
class Search:
    ceiling: float
    probes: list[tuple[float, LoadResult]] = field(default_factory=list)

    @property
    def best(self) -> tuple[float, LoadResult] | None:
        held = [(rate, r) for rate, r in self.probes if holds(r)]
        return max(held, key=lambda p: p[0]) if held else None

    @property
    def max_rate(self) -> float:
        return self.best[0] if self.best else 0.0

    @property
    def kept_rate(self) -> float:
        """The probe whose LoadGen logs are kept: the highest rate that held, else (none did) the lowest."""
        return self.best[0] if self.best else min(rate for rate, _ in self.probes)


def find_max_rate(probe: Callable[[float], LoadResult], ceiling: float, settings: RunSettings) -> Search:
    """Bisect [0, ceiling] with `probe(rate)` (one LoadGen Server run at that rate)."""
    search = Search(check_rate(ceiling, "the Server search's ceiling (the Offline throughput)"))
    low, high = 0.0, search.ceiling
    for _ in range(settings.search_steps):
        rate = (low + high) / 2
        result = probe(rate)
        search.probes.append((rate, result))
        if holds(result):
            low = rate
        else:
            high = rate
        if (high - low) / high <= settings.tolerance:
            break
    return search


def fixed_rates(probe: Callable[[float], LoadResult], rates: list[float]) -> Search:
    """Server runs at the rates given (no search): the highest that holds is the result."""
    search = Search(max(check_rate(r) for r in rates))
    search.probes = [(rate, probe(rate)) for rate in rates]
    return search

"""What a load run measures: engine layouts, LoadGen scenarios, what one query does, how long each run lasts.

Bad values are refused with one line that names the value and what would work (LoadOptionError).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from runtime.errors import SelfieTvmError

SINGLE_STREAM, OFFLINE, SERVER = "singlestream", "offline", "server"
SCENARIOS = (SINGLE_STREAM, OFFLINE, SERVER)  # what users type; driver.py maps them to LoadGen's
# What one LoadGen query does:
# - inference: the engine alone; the photos are pre-processed once, when LoadGen loads them into the
#   sample library (MLPerf's convention: pre-processing is outside the timed query);
# - segment: pre-processing, inference and post-processing of the photo (runtime.segmenter.Segmenter);
# - reply: the bot's /segmentation reply on its reply lane: segment, then the masks, overlay and encodes.
WORKS = ("inference", "segment", "reply")
DEFAULT_LAYOUTS = "1x2,2x1"
TWIN_BOUND_MS = 100.0  # the Server p99 bound of the twin (issue 33); other models: scaled, see bound_ms
BOUND_FACTOR = 2.0  # ...to this many times their slowest configuration's SingleStream p99


class LoadOptionError(SelfieTvmError):
    """A load option that cannot be measured (unknown scenario, a rate or duration <= 0, a bad layout)."""


@dataclass(frozen=True)
class Layout:
    """`instances` engines of the same model in one process, each on its own thread with `threads` threads."""

    instances: int
    threads: int

    @classmethod
    def parse(cls, text: str) -> Layout:
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise LoadOptionError(f"layout {text!r}: write INSTANCESxTHREADS with both >= 1, e.g. 1x2 (one engine, "
                                  "2 threads) or 2x1 (two engines, 1 thread each)")
        return cls(int(match[1]), int(match[2]))

    @property
    def name(self) -> str:
        return f"{self.instances}x{self.threads}"

    @property
    def label(self) -> str:
        return (f"{self.instances} instance{'s' if self.instances > 1 else ''} x "
                f"{self.threads} thread{'s' if self.threads > 1 else ''}")


def parse_layouts(text: str) -> list[Layout]:
    layouts = [Layout.parse(part) for part in text.split(",")]
    if len(set(layouts)) != len(layouts):
        raise LoadOptionError(f"layouts {text!r}: a layout is listed twice")
    return layouts


def check_scenario(name: str) -> str:
    if name not in SCENARIOS:
        raise LoadOptionError(f"unknown scenario {name!r}; choose from: {', '.join(SCENARIOS)}")
    return name


def parse_scenarios(text: str) -> list[str]:
    return [check_scenario(part.strip().lower()) for part in text.split(",")]


def check_rate(rate: float, what: str = "a Server rate") -> float:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise LoadOptionError(f"{what} must be a number of photos per second > 0, got {rate!r}")
    return float(rate)


def parse_rates(text: str) -> list[float]:
    rates = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise LoadOptionError(f"rate {part.strip()!r} is not a number of photos per second") from None
        rates.append(check_rate(value))
    return sorted(rates)


def check_work(work: str) -> str:
    if work not in WORKS:
        raise LoadOptionError(f"unknown work {work!r}; choose from: {', '.join(WORKS)}")
    return work


@dataclass(frozen=True)
class RunSettings:
    """How long each LoadGen run lasts and what its queries do (the same for every configuration)."""

    work: str = "inference"
    min_duration_s: float = 10.0
    min_queries: int = 256  # with the duration: enough queries for a p99 (LoadGen counts both)
    search_steps: int = 6  # Server: bisection probes after the Offline run gave the upper end
    tolerance: float = 0.03  # ...or fewer, once the interval is this narrow relative to its top

    def __post_init__(self) -> None:
        check_work(self.work)
        if not self.min_duration_s > 0:
            raise LoadOptionError(f"the minimum duration must be > 0 s, got {self.min_duration_s}")
        if self.min_queries < 1:
            raise LoadOptionError(f"the minimum query count must be >= 1, got {self.min_queries}")
        if self.search_steps < 1:
            raise LoadOptionError(f"the Server search needs at least one step, got {self.search_steps}")
        if not 0 < self.tolerance < 1:
            raise LoadOptionError(f"the search tolerance is a fraction in (0, 1), got {self.tolerance}")


def bound_ms(synthetic: bool, single_stream_p99_ms: list[float]) -> float:
    """The Server p99 bound when none is given: 100 ms for the twin; for another model BOUND_FACTOR times the
    slowest configuration's SingleStream p99, so that every layout can hold it at some rate and the bound
    follows the model's own cost (a few-ms model would pass 100 ms at any rate up to saturation)."""
    if synthetic:
        return TWIN_BOUND_MS
    if not single_stream_p99_ms:
        raise LoadOptionError("no SingleStream run to scale the p99 bound from: add the singlestream scenario "
                              "or give --p99-bound-ms")
    return BOUND_FACTOR * max(single_stream_p99_ms)

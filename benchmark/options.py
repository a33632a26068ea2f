"""The benchmark's options, defined once.

`python -m benchmark` (what `nox -s benchmark` runs) parses them with argparse; `pytest benchmark/`
registers the same ones (benchmark/conftest.py); `Protocol` turns them into the number of runs of
each engine. Nothing else defines a benchmark option or its default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from runtime.acquire import ALL, AUTO
from runtime.engines import ENGINE_NAMES
from tuning import DEFAULT_BUDGET

RUNS = 20
WARMUP = 3
# Six runs are the fewest for which the distribution-free 95 % confidence interval of a median
# exists: P(median outside [min, max]) = 2 / 2**6 = 3.1 %.
SLOW_RUNS = 6
SLOW_MS = 1000.0
PIPELINE_RUNS = 30


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    pytest: bool = True  # also an option of `pytest benchmark/` (False: only of `python -m benchmark`)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--model", f"registry name, or {AUTO}: the main model if it can be had, else its architecture twin; "
           f"`{ALL}`: every registry model available here, then results/leaderboard.md (never tunes); "
           "or several names, comma-separated", {"default": AUTO}),
    # Another spelling of --model (same dest), as the CLI verbs have it: resolve_model reads a path as a file model.
    Option("--model-path", "a .tflite file instead of --model (a file not in the registry is read from itself)",
           {"dest": "model", "default": None}, pytest=False),
    Option("--engines", f"comma-separated engines, from: {', '.join(ENGINE_NAMES)}",
           {"default": ",".join(ENGINE_NAMES)}),
    Option("--threads", "comma-separated thread counts (default: 1 to the number of usable cores)",
           {"default": None}),
    Option("--runs", "timed runs of every fast engine per thread count (with --full: of every engine)",
           {"type": int, "default": RUNS}),
    Option("--slow-runs", f"timed runs of a slow engine per thread count (default {SLOW_RUNS}: the fewest with "
           "a 95%% confidence interval of the median); ignored with --full",
           {"type": int, "default": SLOW_RUNS}),
    Option("--slow-ms", "an engine whose first run takes longer than this many ms is slow (the untuned module)",
           {"type": float, "default": SLOW_MS}),
    Option("--warmup", "untimed warm-up runs before the timed runs of a fast engine (a slow engine's first run "
           "is its warm-up)", {"type": int, "default": WARMUP}),
    Option("--full", "the long protocol: every engine gets --runs runs and --warmup warm-ups, and every timed run "
           "follows one untimed run of every other engine", {"action": "store_true", "default": False}),
    Option("--budget", "tuning budget (trials) when no tuning records exist for this CPU's vector ISA",
           {"type": int, "default": DEFAULT_BUDGET}, pytest=False),
    Option("--out", "report directory (default: results/<model>/<target>/)", {"default": None}, pytest=False),
    Option("--pipeline-runs", "rounds of the whole-pipeline comparison with MediaPipe (real models; 0: skip it)",
           {"type": int, "default": PIPELINE_RUNS}, pytest=False),
    Option("--no-profile", "skip the tuned module's per-kernel profile in the report",
           {"action": "store_true", "default": False}, pytest=False),
)


def add_options(add, *, pytest_only: bool = False, only: tuple[str, ...] | None = None) -> None:
    """Register the options with `add` (argparse's add_argument or pytest's addoption).

    pytest_only: just those pytest needs; only: just these (by dest).
    """
    for opt in OPTIONS:
        if (opt.pytest or not pytest_only) and (only is None or opt.dest in only):
            add(opt.flag, help=opt.help, **opt.kwargs)


def pytest_argv(values: dict[str, Any]) -> list[str]:
    """The pytest options that reproduce `values` (a dest -> value mapping, e.g. vars(namespace))."""
    argv: list[str] = []
    for opt in OPTIONS:
        value = values.get(opt.dest)
        if not opt.pytest or value is None:
            continue
        if opt.kwargs.get("action") == "store_true":
            argv += [opt.flag] if value else []
        else:
            argv += [opt.flag, str(value)]
    return argv


def parse_engines(text: str) -> list[str]:
    engines = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINE_NAMES]
    if unknown or not engines:
        raise ValueError(f"unknown engines {unknown}; choose from {', '.join(ENGINE_NAMES)}")
    return engines


def parse_threads(text: str | None) -> list[int]:
    if not text:
        return list(range(1, len(os.sched_getaffinity(0)) + 1))
    threads = [int(t) for t in text.split(",")]
    if any(t < 1 for t in threads):
        raise ValueError(f"thread counts must be >= 1, got {text}")
    return threads


@dataclass(frozen=True)
class Plan:
    """How one engine is measured at one thread count."""

    rounds: int
    warmup: int
    interleaved_with: tuple[str, ...]  # engines run once, untimed, before each timed run
    slow: bool


@dataclass(frozen=True)
class Protocol:
    runs: int = RUNS
    slow_runs: int = SLOW_RUNS
    slow_ms: float = SLOW_MS
    warmup: int = WARMUP
    full: bool = False

    @classmethod
    def from_values(cls, get) -> Protocol:
        """`get(dest)`: e.g. pytest's config.getoption or vars(namespace).get."""
        return cls(runs=get("runs"), slow_runs=get("slow_runs"), slow_ms=get("slow_ms"), warmup=get("warmup"),
                   full=bool(get("full")))

    @property
    def name(self) -> str:
        return "full" if self.full else "quick"

    def is_slow(self, first_run_ms: float) -> bool:
        return not self.full and first_run_ms > self.slow_ms

    def plan(self, engine: str, first_run_ms: dict[str, float]) -> Plan:
        """`first_run_ms`: every engine of this thread count -> its first run's latency.

        Quick protocol: the fast engines are interleaved round by round with each other; a slow engine
        gets few runs, each after one untimed run of every fast engine, and never runs between the fast
        engines' rounds (a 5.5 s run before every 100 ms one is what made the benchmark take 15 minutes).
        Full protocol: every engine gets `runs` runs, each after one untimed run of every other engine.
        """
        slow = self.is_slow(first_run_ms[engine])
        partners = tuple(e for e in first_run_ms if e != engine and not self.is_slow(first_run_ms[e]))
        if slow:
            return Plan(self.slow_runs, 0, partners, True)
        return Plan(self.runs, self.warmup, partners, False)


def choose_model(name: str):
    """A registry name, or AUTO (runtime.acquire): the main model if it can be had, else its twin."""
    from runtime.acquire import resolve_model

    return resolve_model(name)


def is_several(name: str | None) -> bool:
    """`--model all` or a comma-separated list: the leaderboard's run over several models."""
    return name is not None and (name == ALL or "," in name)


def choose_models(name: str) -> tuple[list, dict[str, str]]:
    """ALL: every registry model that can be had without a download (`runtime.acquire.available_models`: the
    real ones, the main model or else its twin); or the comma-separated names. The resolved models, and
    (whatever `name`) why each registry model that `available_models` leaves out is left out: model -> note."""
    from runtime.acquire import available_models, resolve_model

    available = available_models()
    notes = unavailable_notes(available)
    if name == ALL:
        return available, notes
    return [resolve_model(n.strip(), allow_download=False, progress=False) for n in name.split(",") if n.strip()], notes


def unavailable_notes(available: list) -> dict[str, str]:
    """Registry model -> why it is not among `available` (resolved models, as `available_models` returns)."""
    from runtime.registry import registry

    here = {m.spec.name for m in available}
    stand_ins = {m.spec.twin_of: m.spec.name for m in available if m.spec.twin_of}
    notes = {}
    for spec in registry().models.values():
        if spec.name in here:
            continue
        if spec.name in stand_ins:
            notes[spec.name] = f"not available here (offline); its architecture twin {stand_ins[spec.name]} stands in"
        elif spec.twin_of in here:
            notes[spec.name] = f"not needed, {spec.twin_of} itself is here"
        else:
            notes[spec.name] = "not available here (no file in the models directory or cache)"
    return notes

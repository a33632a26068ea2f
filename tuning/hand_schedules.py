"""Hand-written schedules as measured candidates beside the tuning records: the depthwise schedule
(tuning/depthwise.py) for depthwise kernels, the default schedule (tuning/default_schedule.py) for every kernel.

A kernel gets a hand schedule only where it measured faster than the kernel's selected record, both
timed on this machine in the same interleaved run (`measure`, `choose`). The default schedule wins where
MetaSchedule's space, built around a kernel's conv, has nothing good: a squeeze-and-excite gate (a 1x1 conv
of C values, sigmoid, times an HxWxC map). The choices are committed beside
the records (`hand_schedules.json` in the ISA level's directory) with both timings, the CPU and the
thread count; a build applies them through a schedule-function database queried before the records.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tvm
import tvm_ffi
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from .build_fn import record_as_built
from .default_schedule import apply_default_schedule, default_schedule
from .depthwise import DepthwiseTile, depthwise_shape, schedule, tiles
from .tasks import plan_tasks

HAND_SCHEDULES = "hand_schedules.json"
DEPTHWISE, DEFAULT = "depthwise", "default"  # HandChoice.schedule; DEFAULT is also the candidate's name
# A hand schedule must beat the record by this much in the interleaved run: it replaces a searched
# schedule, so a tie or noise keeps the record.
MARGIN = 0.95
_TOLERANCE = 1e-4  # max abs difference from the unscheduled kernel, relative to the output's scale


# Function attributes a graph option adds to a kernel without changing what it computes: weight prepacking
# (GraphOptions.weight_prepack) marks the weight buffers layout-free. Keys leave them out, so a choice applies
# to its kernel whatever the graph options or the CPU of the build that measured it.
_BUILD_ATTRS = ("layout_free_buffers",)


def workload_key(mod: tvm.IRModule) -> str:
    """The kernel's computation: its PrimFunc `main`, without the module attributes a build adds and
    without the attributes of `_BUILD_ATTRS`; the same on every CPU (a structural hash ignores names)."""
    func = mod["main"]
    for attr in _BUILD_ATTRS:
        if func.attrs is not None and attr in func.attrs:
            func = func.without_attr(attr)
    return str(tvm_ffi.structural_hash(tvm.IRModule({"main": func})))


@dataclass(frozen=True)
class HandChoice:
    kernel: str
    key: str
    tile: dict
    hand_us: float
    record_us: float | None  # None: the kernel had no record
    cpu: str
    threads: int
    schedule: str = DEPTHWISE  # DEPTHWISE (with `tile`) or DEFAULT (tile {})

    @property
    def ratio(self) -> float | None:
        return self.hand_us / self.record_us if self.record_us else None


@dataclass(frozen=True)
class KernelTiming:
    """One kernel's candidates, timed in the same interleaved run (p50 of the rounds, microseconds)."""

    kernel: str
    key: str
    shape: str
    record_us: float | None
    hand_us: dict[str, float]  # tile name -> p50

    def best_tile(self) -> str:
        return min(self.hand_us, key=self.hand_us.get)


def hand_scheduled(mod: tvm.IRModule, tile: DepthwiseTile) -> tvm.IRModule:
    sch = s_tir.Schedule(mod)
    schedule(sch, tile)
    return sch.mod


def default_scheduled(mod: tvm.IRModule, cores: int) -> tvm.IRModule | None:
    """The kernel under the default schedule; None where it refuses."""
    sch = s_tir.Schedule(mod)
    return sch.mod if default_schedule(sch, cores) else None


def _arguments(mod: tvm.IRModule, device, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [tvm.runtime.tensor(rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype), device)
            for a in ms.arg_info.ArgInfo.from_prim_func(mod["main"])]


def _check(kernel: str, reference, candidate, mod: tvm.IRModule, device) -> None:
    """The candidate computes what the unscheduled kernel computes (same inputs), else ValueError."""
    args = _arguments(mod, device, seed=1)
    reference(*args)
    expected = args[-1].numpy().copy()
    args[-1] = tvm.runtime.tensor(np.zeros_like(expected), device)
    candidate(*args)
    error = float(np.abs(args[-1].numpy() - expected).max())
    if error > _TOLERANCE * max(1.0, float(np.abs(expected).max())):
        raise ValueError(f"the hand schedule of {kernel} differs from the unscheduled kernel by {error}")


def measure(mod: tvm.IRModule, target: tvm.target.Target, record_db: ms.database.Database | None,
            vector_lanes: int, rounds: int, log: Callable[[str], None] = lambda _: None,
            cores: int | None = None) -> list[KernelTiming]:
    """Every kernel of `mod`: its record's schedule, each depthwise tile (depthwise kernels) and, with `cores`,
    the default schedule for that many cores, built for `target`, checked against the unscheduled kernel and
    timed round-robin (`rounds` rounds) in this process."""
    device = tvm.cpu()
    runs: dict[tuple[str, str], tuple[Callable, list]] = {}
    kernels = []
    for task in plan_tasks(mod, target).tasks:
        kernel_mod = task.dispatched[0]
        shape = depthwise_shape(kernel_mod["main"])
        grid = tiles(shape, vector_lanes) if shape is not None else []
        scheduled: dict[str, tvm.IRModule] = {}
        try:
            scheduled = {tile.name: hand_scheduled(kernel_mod, tile) for tile in grid}
        except (ValueError, s_tir.schedule.ScheduleError) as e:  # e.g. a conv also feeding a squeeze-and-excite
            log(f"{task.task_name}: {shape}: not for the depthwise schedule ({e})")
        if cores is not None and (default_mod := default_scheduled(kernel_mod, cores)) is not None:
            scheduled[DEFAULT] = default_mod
        if not scheduled:  # no candidate: the kernel keeps its record
            continue
        reference = tvm.tirx.build(kernel_mod, target=target)
        if record_db is not None and (sch := record_db.query_schedule(kernel_mod, target, "main")) is not None:
            runs[(task.task_name, "record")] = _timer(record_as_built(sch.mod), target, device)
        timed = []
        for name, candidate in scheduled.items():
            built = tvm.tirx.build(candidate, target=target)
            try:
                _check(task.task_name, reference, built, kernel_mod, device)
            except ValueError as e:  # a schedule bug: say so, and let the other candidates compete
                log(f"{task.task_name}: {name} left out: {e}")
                continue
            runs[(task.task_name, name)] = _timer(candidate, target, device, built)
            timed.append(name)
        if not timed:
            runs.pop((task.task_name, "record"), None)
            continue
        kernels.append((task.task_name, workload_key(kernel_mod), shape or "-"))
        log(f"{task.task_name}: {shape or 'not depthwise'}: {', '.join(timed)}")
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, (run, args) in runs.items():
            samples[key].append(run(*args).mean * 1e6)
    timings = []
    for name, key, shape in kernels:
        p50 = {cand: statistics.median(s) for (k, cand), s in samples.items() if k == name}
        record = p50.pop("record", None)
        timings.append(KernelTiming(name, key, str(shape), record, p50))
    return timings


def _timer(mod: tvm.IRModule, target, device, built=None) -> tuple[Callable, list]:
    built = built or tvm.tirx.build(mod, target=target)
    return built.time_evaluator("main", device, number=3, repeat=1, min_repeat_ms=10), _arguments(mod, device, 0)


def choose(timings: list[KernelTiming], cpu: str, threads: int, margin: float = MARGIN) -> list[HandChoice]:
    """The kernels whose best candidate beat their record by `margin`; a kernel without a record: its best
    depthwise tile, unless the default schedule (its fallback, when measured) was as fast within `margin`."""
    chosen = []
    for t in timings:
        if t.record_us is not None:
            bar, candidates = t.record_us, t.hand_us
        else:
            # No record: the build falls back to the default schedule itself, so that is the bar (when measured),
            # and choosing it would only pin it ahead of any record tuned later.
            bar, candidates = t.hand_us.get(DEFAULT), {n: us for n, us in t.hand_us.items() if n != DEFAULT}
        if not candidates:
            continue
        best = min(candidates, key=candidates.get)
        if bar is not None and candidates[best] >= margin * bar:
            continue
        if best == DEFAULT:
            chosen.append(HandChoice(t.kernel, t.key, {}, t.hand_us[best], t.record_us, cpu, threads, DEFAULT))
            continue
        tile = next(tile for tile in _all_tiles(t) if tile.name == best)
        chosen.append(HandChoice(t.kernel, t.key, tile.as_dict(), t.hand_us[best], t.record_us, cpu, threads))
    return chosen


def updated_choices(existing: list[HandChoice], timings: list[KernelTiming],
                    chosen: list[HandChoice]) -> list[HandChoice]:
    """A record set's choices after measuring some kernels (one model's): the measured kernels' choices are
    this measurement's (chosen, or none where the record won), every other kernel's are kept, so measuring one
    model does not drop another's."""
    measured = {t.key for t in timings}
    return [c for c in existing if c.key not in measured] + chosen


def _all_tiles(t: KernelTiming) -> Iterator[DepthwiseTile]:
    for name in t.hand_us:
        if name == DEFAULT:
            continue
        lanes, w_tile = name.removeprefix("c").split("w")
        yield DepthwiseTile(int(lanes), int(w_tile))


def write_choices(directory: Path, choices: list[HandChoice]) -> Path:
    path = Path(directory) / HAND_SCHEDULES
    path.write_text(json.dumps([asdict(c) for c in sorted(choices, key=lambda c: c.kernel)], indent=1) + "\n")
    return path


def read_choices(directory: Path) -> list[HandChoice]:
    """The committed choices of a record set ([] when it has none)."""
    path = Path(directory) / HAND_SCHEDULES
    if not path.is_file():
        return []
    return [HandChoice(**c) for c in json.loads(path.read_text())]


def choices_digest(directory: Path) -> str:
    """sha256 of a record set's hand_schedules.json, "" when it has none (what a library was built with)."""
    path = Path(directory) / HAND_SCHEDULES
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def hand_database(choices: list[HandChoice], cores: int) -> ms.database.Database:
    """A database that schedules exactly the chosen kernels (by structure), and answers nothing else;
    `cores`: the build target's, for the default schedule's parallel loops."""
    by_key = {c.key: c for c in choices}

    def apply(sch: s_tir.Schedule) -> bool:
        choice = by_key.get(workload_key(sch.mod))
        if choice is None:
            return False
        if choice.schedule == DEFAULT:
            return apply_default_schedule(sch, cores)
        schedule(sch, DepthwiseTile(**choice.tile))
        return True

    return ms.database.ScheduleFnDatabase(apply)


def ahead_of(records: ms.database.Database, choices: list[HandChoice], cores: int) -> ms.database.Database:
    """`records`, or the hand schedules first and then `records` when there are choices."""
    return ms.database.OrderedUnionDatabase(hand_database(choices, cores), records) if choices else records


def applied(mod: tvm.IRModule, target: tvm.target.Target, choices: list[HandChoice]) -> list[str]:
    """Names of the kernels of `mod` (a tuning module) that the choices schedule."""
    keys = {c.key for c in choices}
    return sorted(t.task_name for t in plan_tasks(mod, target).tasks if workload_key(t.dispatched[0]) in keys)

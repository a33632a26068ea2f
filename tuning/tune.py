"""Tune a Relax module with MetaSchedule (evolutionary search, XGBoost cost model); resumable."""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import tvm
from tqdm import tqdm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from .build_fn import build_candidate

log = logging.getLogger(__name__)
RECORDS = "database_tuning_record.json"
WORKLOADS = "database_workload.json"
PROGRESS = "progress.jsonl"


@dataclass(frozen=True)
class RpcSpec:
    tracker_host: str
    tracker_port: int
    key: str
    session_timeout_s: int = 120

    @classmethod
    def parse(cls, tracker: str, key: str) -> RpcSpec:
        host, _, port = tracker.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--rpc-tracker must be host:port, got {tracker!r}")
        return cls(host, int(port), key)


@dataclass(frozen=True)
class TuneResult:
    work_dir: Path
    trials_before: int
    trials_run: int
    seconds: float

    @property
    def trials_total(self) -> int:
        return self.trials_before + self.trials_run


def count_records(work_dir: Path) -> int:
    path = Path(work_dir) / RECORDS
    if not path.is_file():
        return 0
    with path.open() as f:
        return sum(1 for line in f if line.strip())


@dataclass
class TuningState:
    """What the scheduler and the measure callback share about each task."""

    best_s: dict[int, float] = field(default_factory=dict)
    stale_rounds: dict[int, int] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)


@derived_object
class ProgressCallback(ms.measure_callback.PyMeasureCallback):
    """Advances the progress bar, tracks each task's best latency, appends batches to progress.jsonl."""

    def __init__(self, bar: tqdm, log_path: Path, task_names: list[str], state: TuningState) -> None:
        self.bar = bar
        self.log_path = log_path
        self.task_names = task_names
        self.state = state

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        costs = []
        for result in runner_results:
            secs = [float(c) for c in (result.run_secs or [])]
            costs.append(sum(secs) / len(secs) if secs and not result.error_msg else None)
        valid = [c for c in costs if c is not None]
        state = self.state
        state.in_flight.discard(task_id)
        previous = state.best_s.get(task_id)
        if valid and (previous is None or min(valid) < previous * 0.99):
            state.best_s[task_id] = min(valid)
            state.stale_rounds[task_id] = 0
        else:
            state.stale_rounds[task_id] = state.stale_rounds.get(task_id, 0) + 1
        with self.log_path.open("a") as f:
            f.write(json.dumps({"time": time.time(), "task": self.task_names[task_id], "costs_s": costs}) + "\n")
        self.bar.update(len(runner_results))


@derived_object
class InterruptibleScheduler(ms.task_scheduler.PyTaskScheduler):
    """Spend trials where the latency is, and save every measurement as soon as it exists.

    MetaSchedule's gradient scheduler collects results only after a first full round over all
    tasks (close to an hour for the main model), so an interrupted run lost everything. This one
    joins finished measurements at every step (records reach the database at once), gives each
    task one batch first, then picks the task with the largest weighted best latency, discounted
    by how many of its recent batches brought no improvement.
    """

    def __init__(self, state: TuningState) -> None:
        super().__init__()
        self.state = state
        self._first_round = 0

    def next_task_id(self) -> int:
        tasks = self._outer().tasks_
        for i in range(len(tasks)):
            self._outer().touch_task(i)
        alive = [i for i, t in enumerate(tasks) if not t.is_terminated]
        if not alive:
            return -1
        while self._first_round < len(tasks):
            i = self._first_round
            self._first_round += 1
            if i in alive:
                return self._dispatch(i)
        state = self.state

        def priority(i: int) -> tuple[bool, float]:
            best = state.best_s.get(i)
            if best is None:
                return (True, 0.0)
            return (False, tasks[i].task_weight * best / (1 + state.stale_rounds.get(i, 0)))

        return self._dispatch(max(alive, key=priority))

    def _dispatch(self, i: int) -> int:
        if i in self.state.in_flight:
            self.join_running_task(i)
        self.state.in_flight.add(i)
        return i


def make_runner(rpc: RpcSpec | None):
    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False)
    if rpc is None:
        return ms.runner.LocalRunner(evaluator_config=evaluator, timeout_sec=60)
    config = ms.runner.RPCConfig(tracker_host=rpc.tracker_host, tracker_port=rpc.tracker_port,
                                 tracker_key=rpc.key, session_timeout_sec=rpc.session_timeout_s)
    return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, max_workers=1)


@contextmanager
def _unnamed_log_handlers_detached():
    """MetaSchedule rebuilds its logging config from the *names* of its logger's handlers and
    crashes on an unnamed one (pytest's capture handlers, for instance): set those aside meanwhile."""
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    unnamed = [h for h in ms_logger.handlers if h.get_name() is None]
    for h in unnamed:
        ms_logger.removeHandler(h)
    try:
        yield
    finally:
        for h in unnamed:
            ms_logger.addHandler(h)


def extract_task_names(mod: tvm.IRModule, target: tvm.target.Target) -> list[str]:
    return [t.task_name for t in ms.relax_integration.extract_tasks(mod, target)]


def tune(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path, *, budget: int,
         per_task: int | None = None, per_iter: int = 16, rpc: RpcSpec | None = None,
         progress: bool = True, seed: int = 0) -> TuneResult:
    """Spend up to `budget` trials in total on `mod` (already optimised), counting earlier runs.

    Records already in work_dir count against the budget and seed the search; a budget that is
    already spent runs no trials. An interrupted run keeps whatever reached the database.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    before = count_records(work_dir)
    remaining = budget - before
    if remaining <= 0:
        log.info("tuning budget %d already spent (%d records in %s)", budget, before, work_dir)
        return TuneResult(work_dir, before, 0, 0.0)
    names = extract_task_names(mod, target)
    start = time.time()
    state = TuningState()
    with (tqdm(total=remaining, desc=f"tuning {len(names)} tasks", unit="trial", disable=not progress) as bar,
          _unnamed_log_handlers_detached()):
        callbacks = [*ms.measure_callback.MeasureCallback.create("default"),
                     ProgressCallback(bar, work_dir / PROGRESS, names, state)]
        ms.relax_integration.tune_relax(
            mod=mod, params={}, target=target, work_dir=str(work_dir),
            max_trials_global=remaining, max_trials_per_task=per_task, num_trials_per_iter=per_iter,
            builder=ms.builder.LocalBuilder(f_build=build_candidate, timeout_sec=120),
            runner=make_runner(rpc),
            cost_model=ms.cost_model.XGBModel(extractor=ms.feature_extractor.PerStoreFeature(),
                                              adaptive_training=True),
            measure_callbacks=callbacks, strategy="evolutionary", task_scheduler=InterruptibleScheduler(state),
            seed=seed,
        )
    return TuneResult(work_dir, before, count_records(work_dir) - before, time.time() - start)


def apply_records(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path) -> tvm.IRModule:
    """Replace every kernel that has a tuning record with its best schedule."""
    from tvm import relax

    with target, tvm.transform.PassContext(opt_level=3):
        return relax.transform.MetaScheduleApplyDatabase(str(work_dir), enable_warning=False)(mod)

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

from runtime.errors import SelfieTvmError

from .build_fn import build_candidate
from .farm import RpcSpec
from .measure import measuring
from .tasks import TaskPlan, mean_run_seconds, plan_tasks

log = logging.getLogger(__name__)
STALE_LIMIT = 4  # batches without a 1 % gain before a task is left alone
MIN_FIRST_BATCH = 4  # smallest batch per kernel in the first round
RECORDS = "database_tuning_record.json"
WORKLOADS = "database_workload.json"
PROGRESS = "progress.jsonl"


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

    weights: list[float] = field(default_factory=list)
    best_s: dict[int, float] = field(default_factory=dict)
    stale_rounds: dict[int, int] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    deadline: float | None = None  # time.time() after which no new batch starts
    # In-model milliseconds per inference of each task's kernel (a profile of the tuned build),
    # with the isolated best latency it had then: the scheduler scales the former by the latter's gains.
    in_model_ms: dict[int, float] = field(default_factory=dict)
    best_at_profile: dict[int, float] = field(default_factory=dict)

    def expected_ms(self, i: int) -> float:
        """What kernel i costs the whole model now, as best known."""
        best = self.best_s[i]
        if i in self.in_model_ms and self.best_at_profile.get(i):
            return self.in_model_ms[i] * best / self.best_at_profile[i]
        return self.weights[i] * best * 1e3

    def estimated_total_ms(self) -> float | None:
        """Sum over kernels of calls x best isolated latency; None until every kernel has one."""
        if len(self.best_s) < len(self.weights):
            return None
        return sum(self.weights[i] * b for i, b in self.best_s.items()) * 1e3


@derived_object
class ProgressCallback(ms.measure_callback.PyMeasureCallback):
    """Advances the progress bar, tracks each task's best latency, appends batches to progress.jsonl."""

    def __init__(self, bar: tqdm, log_path: Path, task_names: list[str], state: TuningState) -> None:
        self.bar = bar
        self.log_path = log_path
        self.task_names = task_names
        self.state = state

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        costs = [mean_run_seconds(r.run_secs, r.error_msg) for r in runner_results]
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
        total = state.estimated_total_ms()
        covered = f"{len(state.best_s)}/{len(state.weights)} kernels"
        self.bar.set_postfix_str(f"est. model {total:.1f} ms" if total is not None else covered, refresh=False)


@derived_object
class InterruptibleScheduler(ms.task_scheduler.PyTaskScheduler):
    """Spend trials where the latency is, and save every measurement as soon as it exists.

    MetaSchedule's gradient scheduler collects results only after a first full round over all
    tasks (close to an hour for the main model), so an interrupted run lost everything. This one
    joins finished measurements at every step (records reach the database at once), gives each
    task one batch first, then picks the task with the largest weighted best latency, discounted
    by how many of its recent batches brought no improvement.
    """

    def __init__(self, state: TuningState, stale_limit: int = STALE_LIMIT) -> None:
        super().__init__()
        self.state = state
        self.stale_limit = stale_limit
        self._first_round = 0

    def next_task_id(self) -> int:
        tasks = self._outer().tasks_
        for i in range(len(tasks)):
            self._outer().touch_task(i)
        state = self.state
        if state.deadline is not None and time.time() > state.deadline:
            return -1
        alive = [i for i, t in enumerate(tasks) if not t.is_terminated]
        while self._first_round < len(tasks):
            i = self._first_round
            self._first_round += 1
            if i in alive and i not in state.best_s:  # resumed tasks already have a best
                return self._dispatch(i)
        # Stop feeding a task once several batches in a row brought no 1 % improvement.
        alive = [i for i in alive if state.stale_rounds.get(i, 0) < self.stale_limit]
        if not alive:
            return -1

        def priority(i: int) -> tuple[bool, float]:
            if i not in state.best_s:
                return (True, 0.0)
            return (False, state.expected_ms(i) / (1 + state.stale_rounds.get(i, 0)))

        return self._dispatch(max(alive, key=priority))

    def _dispatch(self, i: int) -> int:
        if i in self.state.in_flight:
            self.join_running_task(i)
        self.state.in_flight.add(i)
        return i


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


class TuningBudgetError(SelfieTvmError):
    pass


def _resume_state(db, plan: TaskPlan) -> TuningState:
    """Best latency of every task that already has records (a resumed or continued run)."""
    state = TuningState(weights=[float(t.weight) for t in plan.tasks])
    for i, task in enumerate(plan.tasks):
        mod = task.dispatched[0]
        if db.has_workload(mod):
            top = db.get_top_k(db.commit_workload(mod), 1)
            cost = mean_run_seconds(top[0].run_secs) if top else None
            if cost is not None:
                state.best_s[i] = cost
    return state


def first_round_batch(remaining: int, untuned: int, per_iter: int) -> int:
    """Batch size that lets the first round reach every kernel still without a record."""
    if untuned == 0:
        return per_iter
    if remaining < untuned * MIN_FIRST_BATCH:
        raise TuningBudgetError(
            f"a budget of {remaining} more trials cannot reach the {untuned} kernels without a record "
            f"({MIN_FIRST_BATCH} trials each at least): use --budget {untuned * MIN_FIRST_BATCH}"
            " or more, or add records first")
    return max(MIN_FIRST_BATCH, min(per_iter, remaining // untuned))


@contextmanager
def _task_tables_to_log_file():
    """MetaSchedule prints a table of all tasks after every batch; keep it in work_dir/logs only.

    Its console handler takes the level of the 'tvm.s_tir.meta_schedule' logger at set-up time,
    while its file handlers log everything.
    """
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    level = ms_logger.level
    ms_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ms_logger.setLevel(level)
        for handler in list(ms_logger.handlers):
            if handler.get_name() == "tvm.s_tir.meta_schedule.console":
                handler.setLevel(logging.WARNING)


def tune(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path, *, budget: int,
         per_task: int | None = None, per_iter: int = 16, rpc: RpcSpec | None = None,
         progress: bool = True, seed: int = 0, only: list[str] | None = None,
         time_limit_s: float | None = None, in_model_ms: dict[str, float] | None = None) -> TuneResult:
    """Spend up to `budget` trials in total on `mod` (already optimised), counting earlier runs.

    Records already in work_dir count against the budget and seed the search; a budget that is
    already spent runs no trials. An interrupted run keeps whatever reached the database. Kernels
    the build turns into views are not tuned; the first round reaches every other kernel, largest
    first, before any gets a second batch; tasks that stop improving are left alone (the run may
    end before the budget is spent), and no batch starts after `time_limit_s`. `in_model_ms` (kernel
    name -> ms per inference in a profile of the tuned build) aims the trials at where the built
    model spends its time rather than at isolated estimates.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    before = count_records(work_dir)
    remaining = budget - before
    if remaining <= 0:
        log.info("tuning budget %d already spent (%d records in %s)", budget, before, work_dir)
        return TuneResult(work_dir, before, 0, 0.0)
    plan = plan_tasks(mod, target, only)
    db = ms.database.JSONDatabase(work_dir=str(work_dir))
    state = _resume_state(db, plan)
    if time_limit_s is not None:
        state.deadline = time.time() + time_limit_s
    for i, name in enumerate(plan.names):
        if in_model_ms and name in in_model_ms and i in state.best_s:
            state.in_model_ms[i] = in_model_ms[name]
            state.best_at_profile[i] = state.best_s[i]
    batch = first_round_batch(remaining, len(plan.tasks) - len(state.best_s), per_iter)
    start = time.time()
    with (tqdm(total=remaining, desc=f"tuning {len(plan.tasks)} kernels", unit="trial", disable=not progress,
               dynamic_ncols=True) as bar,
          _unnamed_log_handlers_detached(), _task_tables_to_log_file(), measuring(rpc, bar) as runner):
        # Creating the tune contexts configures MetaSchedule's logging: inside the guards above.
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            extracted_tasks=plan.tasks, work_dir=str(work_dir), strategy="evolutionary", seed=seed)
        callbacks = [*ms.measure_callback.MeasureCallback.create("default"),
                     ProgressCallback(bar, work_dir / PROGRESS, plan.names, state)]
        ms.tune.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=str(work_dir),
            max_trials_global=remaining, max_trials_per_task=per_task, num_trials_per_iter=batch,
            builder=ms.builder.LocalBuilder(f_build=build_candidate, timeout_sec=120),
            runner=runner, database=db,
            cost_model=ms.cost_model.XGBModel(extractor=ms.feature_extractor.PerStoreFeature(),
                                              adaptive_training=True),
            measure_callbacks=callbacks, task_scheduler=InterruptibleScheduler(state),
        )
    return TuneResult(work_dir, before, count_records(work_dir) - before, time.time() - start)


def apply_records(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path) -> tvm.IRModule:
    """Replace every kernel that has a tuning record with its best schedule."""
    from tvm import relax

    with target, tvm.transform.PassContext(opt_level=3):
        return relax.transform.MetaScheduleApplyDatabase(str(work_dir), enable_warning=False)(mod)

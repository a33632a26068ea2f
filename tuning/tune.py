"""Tune a Relax module with MetaSchedule (evolutionary search, XGBoost cost model); resumable."""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tvm
from tqdm import tqdm
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from . import STRUCTURAL
from .build_fn import build_candidate
from .database import KEEP_PER_CPU, PROGRESS, count_records, measured_on
from .farm import RpcSpec
from .measure import measuring
from .register_tile import (
    TILE_ANNOTATION,
    is_pointwise_conv_kernel,
    register_tile_designs,
    register_tile_space,
    skip_reason,
    wants_register_tiles,
)
from .scheduler import (
    InterruptibleScheduler,
    ProgressCallback,
    TuningState,
    first_round_batch,
    register_tile_batch,
    resume_state,
    stale_limit,
)
from .tasks import FAILED_RUN_S, TaskPlan, mean_run_seconds, plan_tasks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneResult:
    work_dir: Path
    trials_before: int
    trials_run: int
    seconds: float
    valid_trials: int = 0  # trials that built and ran
    kernels: int = 0
    # "Before" below is this CPU's state once other CPUs' schedules were measured here (`measure_here`), before
    # the search: improvements are the search's own.
    kernels_improved: int = 0  # kernels whose best isolated latency this run lowered (or first measured)
    estimated_ms_before: float | None = None  # sum of calls x best isolated latency, when every kernel has one
    estimated_ms_after: float | None = None
    kernels_measured_before: int = 0  # kernels with a valid measurement (the estimates need all of them)
    kernels_measured_after: int = 0
    stopped_because: str = ""

    @property
    def trials_total(self) -> int:
        return self.trials_before + self.trials_run




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


@contextmanager
def _task_tables_to_log_file():
    """MetaSchedule prints a table of all tasks after every batch; keep it in work_dir/logs only.

    Its console handler takes the level of the 'tvm.s_tir.meta_schedule' logger at set-up time
    (`_tune_contexts` sets WARNING before each), while its file handlers log everything. On the way
    out: the logger's level as it was, and no console handler left behind.
    """
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    level = ms_logger.level
    try:
        yield
    finally:
        ms_logger.setLevel(level)
        for handler in list(ms_logger.handlers):
            if handler.get_name() == "tvm.s_tir.meta_schedule.console":
                handler.setLevel(logging.WARNING)


def _tune_contexts(tasks, work_dir: Path, space, seed: int, search=None):
    """MetaSchedule's tune contexts for `tasks`. Creating them configures MetaSchedule's logging: its
    console handler takes the logger's level, which the previous configuration left at DEBUG (a run
    with a register-tile pass creates contexts twice): WARNING each time, so its INFO lines stay in
    work_dir/logs."""
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    return ms.relax_integration.extracted_tasks_to_tune_contexts(
        extracted_tasks=tasks, work_dir=str(work_dir), space=space,
        strategy="evolutionary" if search is None else search, seed=seed)


@contextmanager
def _native_output_to(log_path: Path):
    """MetaSchedule's C++ side writes warnings straight to file descriptor 2 (e.g. `Unknown schedule
    rule "meta_schedule.pool_avg"`): send fd 2 to the run's log file meanwhile, and yield a stream
    on the terminal's stderr for the progress bar."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        with log_path.open("a") as log_file:
            os.dup2(log_file.fileno(), 2)
            try:
                yield terminal
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
        terminal.close()


def tune(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path, *, budget: int,
         per_task: int | None = None, per_iter: int = 16, rpc: RpcSpec | None = None,
         progress: bool = True, seed: int = 0, only: list[str] | None = None,
         time_limit_s: float | None = None, in_model_ms: dict[str, float] | None = None,
         module_equality: str = STRUCTURAL, register_tiles: bool | None = None,
         search: ms.search_strategy.SearchStrategy | None = None, cold: bool = False,
         plan: TaskPlan | None = None) -> TuneResult:
    """Measure up to `budget` trials on `mod` (already optimised) in this run, into work_dir.

    Records already in work_dir seed the search and give kernels their starting best: only those
    measured on this CPU (`target`'s mcpu, or its `model` for a portable target); a kernel whose records
    all come from other CPUs has their best few schedules measured here first (counted in the budget). An
    interrupted run keeps whatever reached the database. Kernels the build turns into views are not
    tuned; the first round reaches every other kernel without a record, largest first, before any
    gets a second batch; tasks that stop improving are left alone (the run may end before the
    budget is spent), and no batch starts after `time_limit_s`. `in_model_ms` (kernel name -> ms per
    inference in a profile of the tuned build) aims the trials at where the built model spends its
    time rather than at isolated estimates. MetaSchedule's own output goes to work_dir/logs/.
    `module_equality` (tuning.MODULE_EQUALITIES) must be the one work_dir's records were tuned with.
    `register_tiles` adds the 1x1 convs' register-tile designs (tuning/register_tile.py) to the default
    space; None: for AVX2 targets without AVX-512, where the default space lacks them. `search`: the
    search strategy (default MetaSchedule's evolutionary search; tests pass a small one, `small_search`). `cold`:
    measure with the cache flushed of each candidate's weights and output (tuning/measure.py COLD_EVALUATOR).
    `plan`: the tasks, if the caller planned them already (plan_tasks of the same mod, target, only and
    module_equality).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    before = count_records(work_dir)
    plan = plan or plan_tasks(mod, target, only, module_equality)
    if plan.unmatched:
        log.warning("--only %s: no kernel of this model starts with that (tuning the %d kernels the other "
                    "prefixes match)", " ".join(plan.unmatched), len(plan.tasks))
    db = ms.database.JSONDatabase(work_dir=str(work_dir), module_equality=module_equality)
    cpu = measured_on(target.attrs)
    state = resume_state(db, plan, cpu)
    if time_limit_s is not None:
        state.deadline = time.time() + time_limit_s
    # Kernels whose records were all measured on other CPUs: their best few schedules are measured here
    # first, so that this CPU's best starts from them (else a build here would rank this run's first
    # trials, mutations of those schedules, above the schedules themselves).
    elsewhere = schedules_from_other_cpus(db, plan, state, KEEP_PER_CPU, cpu)
    # A budget too small is refused before anything is measured (the batch sizes follow the re-measure).
    untuned = len(plan.tasks) - len(state.best_s) - len({i for i, _ in elsewhere})
    first_round_batch(budget - len(elsewhere), untuned, per_iter, reserved=len(elsewhere),
                      reserved_for=f"measure here the {len(elsewhere)} best schedules other CPUs found for kernels "
                                   "with no record of this CPU" if elsewhere else "")
    if register_tiles is None:
        register_tiles = wants_register_tiles(target)
    space = register_tile_space() if register_tiles else "post-order-apply"
    start = time.time()
    with (_native_output_to(work_dir / "logs" / "native.log") as terminal,
          tqdm(total=budget, desc=f"tuning {len(plan.tasks)} kernels", unit="trial", disable=not progress,
               dynamic_ncols=True, file=terminal) as bar,
          _unnamed_log_handlers_detached(), _task_tables_to_log_file(),
          measuring(rpc, bar, terminal, cold=cold) as runner):
        builder = ms.builder.LocalBuilder(f_build=build_candidate, timeout_sec=120)
        if elsewhere:
            bar.set_postfix_str(f"measuring {len(elsewhere)} schedules of other CPUs here")
            measure_here(elsewhere, plan, target, db, builder, runner, state)
            bar.update(len(elsewhere))
            bar.set_postfix_str("")
        # "Before" is this CPU's best before the search: other CPUs' schedules measured here count in it.
        start_best = dict(state.best_s)
        estimated_before = state.estimated_total_ms()
        for i, name in enumerate(plan.names):
            if in_model_ms and name in in_model_ms and i in state.best_s:
                state.in_model_ms[i] = in_model_ms[name]
                state.best_at_profile[i] = state.best_s[i]
        time_left = None if state.deadline is None else max(0.0, state.deadline - time.time())
        left = budget - len(elsewhere)  # for the register tiles and the search
        # Few of the union space's candidates come from the register-tile designs (a small grid beside
        # the default designs' thousands), so the tuner would seldom measure one: measure them first.
        tile_tasks = untried_register_tile_tasks(db, plan) if register_tiles else []
        untuned = [i for i in range(len(plan.tasks)) if i not in state.best_s]
        tile_trials = register_tile_batch(left, len([i for i in untuned if i not in tile_tasks]), len(tile_tasks),
                                          per_iter, time_left)
        if not tile_trials:
            tile_tasks = []
        remaining = left - tile_trials * len(tile_tasks)
        batch = first_round_batch(remaining, len([i for i in untuned if i not in tile_tasks]), per_iter, time_left,
                                  reserved=budget - remaining)
        if tile_tasks:
            tiles = _measure_register_tiles(plan, tile_tasks, tile_trials, work_dir, db, builder, runner, bar, seed,
                                            state.deadline, search)
            state.valid_trials += tiles.valid_trials
            for j, best in tiles.best_s.items():
                i = tile_tasks[j]
                state.best_s[i] = min(best, state.best_s.get(i, best))
        if remaining > 0:
            # Creating the tune contexts configures MetaSchedule's logging: inside the guards above.
            contexts, weights = _tune_contexts(plan.tasks, work_dir, space, seed, search)
            callbacks = [*ms.measure_callback.MeasureCallback.create("default"),
                         ProgressCallback(bar, work_dir / PROGRESS, plan.names, state)]
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=str(work_dir), max_trials_global=remaining,
                max_trials_per_task=per_task, num_trials_per_iter=batch, builder=builder, runner=runner,
                database=db, cost_model=ms.cost_model.XGBModel(extractor=ms.feature_extractor.PerStoreFeature(),
                                                               adaptive_training=True),
                measure_callbacks=callbacks, task_scheduler=InterruptibleScheduler(state, stale_limit(batch)),
            )
    run = count_records(work_dir) - before
    improved = sum(1 for i, b in state.best_s.items() if i not in start_best or b < start_best[i])
    return TuneResult(work_dir, before, run, time.time() - start, valid_trials=state.valid_trials,
                      kernels=len(plan.tasks), kernels_improved=improved, estimated_ms_before=estimated_before,
                      estimated_ms_after=state.estimated_total_ms(), kernels_measured_before=len(start_best),
                      kernels_measured_after=len(state.best_s),
                      stopped_because=_why_stopped(run, budget, state))


def schedules_from_other_cpus(db, plan: TaskPlan, state: TuningState, keep: int,
                              cpu: str | None) -> list[tuple[int, object]]:
    """(task, record): the `keep` fastest distinct schedules of each task that has records but no valid one
    measured on `cpu` (`state.best_s` holds those), fastest first per task; a schedule already tried on `cpu`
    (it failed here) is not tried again."""
    pending = [i for i, task in enumerate(plan.tasks) if i not in state.best_s and db.has_workload(task.dispatched[0])]
    if not pending:  # the usual continued run: keying every record of the database is not needed
        return []
    tried_here = {str(r.trace.as_json()) for r in db.get_all_tuning_records() if measured_on(r.target.attrs) == cpu}
    picks = []
    for i in pending:
        mod = plan.tasks[i].dispatched[0]
        seen = set()
        for record in db.get_top_k(db.commit_workload(mod), len(db)):  # valid ones, fastest first
            key = str(record.trace.as_json())
            if key not in seen and key not in tried_here:
                seen.add(key)
                picks.append((i, record))
            if len(seen) == keep:
                break
    return picks


def measure_here(picks: list[tuple[int, object]], plan: TaskPlan, target: tvm.target.Target, db, builder, runner,
                 state: TuningState) -> None:
    """Build each record's schedule on its task's kernel for `target` and run it, as one batch; commit every
    result as a record of this CPU (its target), a failure as MetaSchedule commits one (1e10 s), and each
    task's best in `state`."""
    inputs, args = [], []
    for i, record in picks:
        sch = s_tir.Schedule(plan.tasks[i].dispatched[0])  # under anchor-block, the task's own kernel
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        inputs.append(ms.builder.BuilderInput(sch.mod, target))
        args.append(record.args_info or ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True))
    built = builder.build(inputs)
    ran = [j for j, b in enumerate(built) if b.error_msg is None]
    futures = runner.run([ms.runner.RunnerInput(built[j].artifact_path, "cpu", args[j]) for j in ran])  # llvm only
    results = {j: (None, b.error_msg) for j, b in enumerate(built)}  # j -> (run_secs, error)
    for j, future in zip(ran, futures, strict=True):
        result = future.result()
        results[j] = (result.run_secs, result.error_msg)
        ms.utils.remove_build_dir(built[j].artifact_path)
    errors = []
    for j, (i, record) in enumerate(picks):
        run_secs, error = results[j]
        cost = mean_run_seconds(run_secs, error)
        secs = [float(t) for t in run_secs] if cost is not None else [FAILED_RUN_S]
        workload = db.commit_workload(plan.tasks[i].dispatched[0])
        db.commit_tuning_record(ms.database.TuningRecord(record.trace, workload, secs, target, args[j]))
        if cost is None:
            errors.append(error or "no valid latency")
            continue
        state.valid_trials += 1
        state.best_s[i] = min(cost, state.best_s.get(i, cost))
    if errors:
        log.warning("%d of %d schedules measured on other CPUs did not build or run here; the first error: %s",
                    len(errors), len(picks), errors[0].strip()[-500:])


def untried_register_tile_tasks(db, plan: TaskPlan) -> list[int]:
    """Tasks with register-tile designs (1x1 convs) and no record from them yet. A 1x1-conv kernel the
    tile cannot schedule is left to the default space, with its reason in the log."""
    tasks = []
    for i, task in enumerate(plan.tasks):
        mod = task.dispatched[0]
        sch = s_tir.Schedule(mod)
        if not is_pointwise_conv_kernel(sch):
            continue
        if (reason := skip_reason(sch)) is not None:
            log.info("register tiles: %s skipped: %s", task.task_name, reason)
            continue
        records = db.get_top_k(db.commit_workload(mod), len(db)) if db.has_workload(mod) else []
        if not any(TILE_ANNOTATION in str(r.trace) for r in records):
            tasks.append(i)
    return tasks


def _measure_register_tiles(plan: TaskPlan, tile_tasks: list[int], trials: int, work_dir: Path, db,
                            builder, runner, bar, seed: int, deadline: float | None, search=None) -> TuningState:
    """`trials` candidates of the register-tile designs alone for each of `tile_tasks`, into `db`;
    what was measured, by position in `tile_tasks`."""
    tasks = [plan.tasks[i] for i in tile_tasks]
    contexts, weights = _tune_contexts(tasks, work_dir, ms.space_generator.ScheduleFn(register_tile_designs), seed,
                                       search)
    names = [t.task_name for t in tasks]
    state = TuningState(weights=list(weights), deadline=deadline)
    callbacks = [*ms.measure_callback.MeasureCallback.create("default"),
                 ProgressCallback(bar, work_dir / PROGRESS, names, state)]
    ms.tune.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(work_dir), max_trials_global=trials * len(tasks),
        max_trials_per_task=trials, num_trials_per_iter=trials, builder=builder, runner=runner, database=db,
        cost_model=ms.cost_model.XGBModel(extractor=ms.feature_extractor.PerStoreFeature(), adaptive_training=True),
        measure_callbacks=callbacks, task_scheduler=InterruptibleScheduler(state, stale_limit=1))
    return state


def small_search() -> ms.search_strategy.SearchStrategy:
    """An evolutionary search a few times smaller than MetaSchedule's default (population 512, 4 genetic
    rounds): seconds per batch instead of a minute, for tests and smoke runs that only need records."""
    return ms.search_strategy.EvolutionarySearch(population_size=32, init_min_unmeasured=8, genetic_num_iters=1)


def _why_stopped(trials: int, budget: int, state) -> str:
    if trials >= budget:
        return f"the budget of {budget} trials is spent"
    if state.deadline is not None and time.time() > state.deadline:
        return "the time limit was reached" + (" before the first batch" if trials == 0 else "")
    return "every kernel stopped improving (no 1 % gain in several batches)"

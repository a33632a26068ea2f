"""How the trials of a tuning run are spent: one batch per kernel first, then where the latency is.

MetaSchedule's gradient scheduler collects results only after a first full round over all tasks,
so an interrupted run lost everything; this scheduler saves every measurement as it arrives.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from .database import measured_on
from .errors import TuningBudgetError
from .tasks import TaskPlan, mean_run_seconds

STALE_TRIALS = 64  # trials in a row without a 1 % gain before a task is left alone
MIN_FIRST_BATCH = 4  # smallest batch per kernel in the first round
# A cautious guess of trials measured per minute on 2 cores (15-40 seen here, the kernel's size and
# the load decide), used only to size a time-limited run's batches so that its first round fits.
TRIALS_PER_MINUTE_GUESS = 15


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
    valid_trials: int = 0  # measurements of this run that built and ran

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
        state.valid_trials += len(valid)
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

    def __init__(self, state: TuningState, stale_limit: int) -> None:
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
        # Every measurement under way finishes before the next task's search and build start. The local
        # runner measures synchronously anyway; a farm measures in the background (tuning/farm.py), and
        # its devices share this machine's cores with the search and the builds when the farm is local:
        # the records would rank candidates on that noise. Costs the overlap, not a measurement.
        # A task whose search had no candidate left was terminated instead of measured: nothing to join (and
        # MetaSchedule refuses to join a task without measurements under way).
        tasks = self._outer().tasks_
        for running in sorted(self.state.in_flight):
            if not tasks[running].is_terminated:
                self.join_running_task(running)
        self.state.in_flight.clear()
        self.state.in_flight.add(i)
        return i


def resume_state(db, plan: TaskPlan, cpu: str | None = None) -> TuningState:
    """Best latency of every task that already has records (a resumed or continued run). With `cpu`,
    only records measured on that CPU count (`database.measured_on`): another CPU's latency does not say
    how fast a kernel is here, so a kernel with none of this CPU's gets a first-round batch (the other
    CPUs' records still seed its search)."""
    state = TuningState(weights=[float(t.weight) for t in plan.tasks])
    for i, task in enumerate(plan.tasks):
        mod = task.dispatched[0]
        if db.has_workload(mod):
            # get_top_k skips failed candidates and sorts by mean latency; every record of the kernel is scanned.
            top = db.get_top_k(db.commit_workload(mod), len(db))
            if cpu is not None:
                top = [r for r in top if measured_on(r.target.attrs) == cpu]
            cost = mean_run_seconds(top[0].run_secs) if top else None
            if cost is not None:
                state.best_s[i] = cost
    return state


def stale_limit(batch: int) -> int:
    """Batches in a row without a 1 % gain before a task is left alone: STALE_TRIALS trials' worth, so a
    time-limited run's smaller batches do not give up on a kernel after fewer trials."""
    return max(1, -(-STALE_TRIALS // batch))


def first_round_batch(remaining: int, untuned: int, per_iter: int, time_limit_s: float | None = None,
                      reserved: int = 0, reserved_for: str = "") -> int:
    """Batch size that lets the first round reach every kernel still without a record, within the
    budget and, by a cautious guess of the pace, within the time limit (the batch size is fixed for
    the whole run: MetaSchedule takes it once). `reserved`: trials of the run's budget spent before
    the first round (other CPUs' schedules measured here, register tiles); `reserved_for` names them
    in the refusal (e.g. "measure here the 12 best schedules other CPUs found")."""
    if remaining < untuned * MIN_FIRST_BATCH:
        parts = [reserved_for] if reserved_for else []
        if untuned:
            after = f" after the {reserved} measured before it" if reserved and not reserved_for else ""
            parts.append(f"reach the {untuned} kernels without {'any' if reserved_for else 'a'} record "
                         f"({MIN_FIRST_BATCH} trials each at least{after})")
        elif not reserved_for:
            parts.append(f"spend the {reserved} trials measured before the first round")
        what = " and ".join(parts)
        raise TuningBudgetError(f"a budget of {remaining + reserved} trials cannot {what}: "
                                f"use --budget {reserved + untuned * MIN_FIRST_BATCH} or more")
    if untuned == 0:
        return per_iter
    batch = min(per_iter, remaining // untuned)
    if time_limit_s is not None:
        batch = min(batch, int(time_limit_s / 60 * TRIALS_PER_MINUTE_GUESS) // untuned)
    return max(MIN_FIRST_BATCH, batch)




def register_tile_batch(remaining: int, untuned_others: int, tile_kernels: int, per_iter: int,
                        time_limit_s: float | None = None) -> int:
    """Register-tile candidates to measure first for each of `tile_kernels` kernels (0: skip that pass):
    what the first round of the `untuned_others` other kernels leaves of the budget, and no more of
    the time limit, by the same cautious pace, than a first-round batch gets."""
    if tile_kernels == 0:
        return 0
    batch = min(per_iter, (remaining - untuned_others * MIN_FIRST_BATCH) // tile_kernels)
    if time_limit_s is not None:
        batch = min(batch, int(time_limit_s / 60 * TRIALS_PER_MINUTE_GUESS) // (untuned_others + tile_kernels))
    return batch if batch >= MIN_FIRST_BATCH else 0

"""No search or build competes with a candidate's measurement while tuning (tuning/scheduler.py): a runner that
measures in the background (a farm) is waited for before the next task is searched and built."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

import tuning.tune as tune_module
from runtime.target import host_target
from tuning.build import tuning_module
from tuning.tasks import plan_tasks

from .tiny_models import tiny_segmenter

pytestmark = pytest.mark.slow
LOCAL_BUILDER = ms.builder.LocalBuilder  # the test replaces the name the tuner looks up


@derived_object
class PendingResult(ms.runner.PyRunnerFuture):
    """One candidate's result of a batch measured in the background."""

    def __init__(self, batch: Future, index: int) -> None:
        super().__init__()
        self.batch = batch
        self.index = index

    def done(self) -> bool:
        return self.batch.done()

    def result(self) -> ms.runner.RunnerResult:
        return self.batch.result()[self.index].result()


@derived_object
class WatchedRunner(ms.runner.PyRunner):
    """Measures each batch in the background, as a farm's devices do (tuning/farm.py), keeping the futures
    of every measurement it started. Each candidate is timed for at least 1 s, so a batch is still being
    measured when a tuner that does not wait for it has searched and built the next."""

    def __init__(self) -> None:
        super().__init__()
        slow = ms.runner.EvaluatorConfig(number=1, repeat=1, min_repeat_ms=1000, enable_cpu_cache_flush=False)
        self.inner = ms.runner.LocalRunner(evaluator_config=slow, timeout_sec=60)
        self.background = ThreadPoolExecutor(max_workers=1)
        self.futures: list[PendingResult] = []

    def run(self, runner_inputs):
        batch = self.background.submit(self.inner.run, runner_inputs)
        futures = [PendingResult(batch, i) for i in range(len(runner_inputs))]
        self.futures.extend(futures)
        return futures


@derived_object
class WatchedBuilder(ms.builder.PyBuilder):
    """LocalBuilder, noting how many measurements were still under way when each build batch began."""

    def __init__(self, runner: WatchedRunner, **kwargs) -> None:
        super().__init__()
        self.inner = LOCAL_BUILDER(**kwargs)
        self.runner = runner
        self.running_at_build: list[int] = []

    def build(self, build_inputs):
        self.running_at_build.append(sum(not f.done() for f in self.runner.futures))
        return self.inner.build(build_inputs)


def test_no_build_starts_while_a_measurement_runs(tmp_path, monkeypatch):
    runner = WatchedRunner()
    builders: list[WatchedBuilder] = []

    @contextmanager
    def watched_measuring(rpc, progress=None, terminal=None, cold=False):
        yield runner

    def watched_builder(**kwargs):
        builders.append(WatchedBuilder(runner, **kwargs))
        return builders[-1]

    monkeypatch.setattr(tune_module, "measuring", watched_measuring)
    monkeypatch.setattr(ms.builder, "LocalBuilder", watched_builder)
    target = host_target()
    mod = tuning_module(tiny_segmenter(tmp_path / "tiny.tflite"), target)
    two_kernels = plan_tasks(mod, target.to_tvm()).names[:2]  # the smallest run with a second batch
    result = tune_module.tune(mod, target.to_tvm(), tmp_path / "records", budget=8, per_iter=4, progress=False,
                              only=two_kernels, register_tiles=False, search=tune_module.small_search(),
                              time_limit_s=400)  # a deadline: no batch starts later
    (builder,) = builders
    assert result.trials_run == 8 and len(runner.futures) == 8
    assert builder.running_at_build == [0, 0]  # one batch per kernel, the second after the first was measured


def test_a_task_whose_search_ran_out_of_candidates_is_not_waited_for(tmp_path):
    """A task dispatched when its search has nothing left to measure (here its per-task cap) is terminated by
    MetaSchedule instead of measured; the next dispatch must not wait for its measurements (it has none, and
    MetaSchedule refuses the join: `deeplab_v3`'s tune died of it once every kernel had had a first batch)."""
    target = host_target()
    mod = tuning_module(tiny_segmenter(tmp_path / "tiny.tflite"), target)
    two_kernels = plan_tasks(mod, target.to_tvm()).names[:2]
    # 4 trials per kernel at most: the third dispatch finds the first kernel's search exhausted, the fourth
    # goes to the other kernel with the first still marked as dispatched.
    result = tune_module.tune(mod, target.to_tvm(), tmp_path / "records", budget=16, per_task=4, per_iter=4,
                              progress=False, only=two_kernels, register_tiles=False,
                              search=tune_module.small_search(), time_limit_s=400)
    assert result.trials_run == 8 and result.valid_trials == 8

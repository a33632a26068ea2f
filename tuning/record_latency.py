"""What tuning measured for each kernel of a tuned library: the isolated latency of the record its build took.

A record's latency is the kernel run alone by MetaSchedule's runner, the number the search ranked
candidates by. Set beside the kernel's time inside the whole model (benchmark/profile.py), it shows
whether the tuner measured what the model runs: a kernel far slower alone than in the model (or the
reverse) was ranked on numbers that do not hold where it runs.
"""

from __future__ import annotations

from pathlib import Path

from runtime.acquire import ResolvedModel
from runtime.artifacts import LibraryMetadata
from runtime.target import TargetSpec

from . import STRUCTURAL
from .build import selected_records, tuning_module
from .importer import TUNED_GRAPH, GraphOptions
from .tasks import mean_run_seconds, plan_tasks

RECORD, HAND, DEFAULT = "record", "hand schedule", "default schedule"


def kernel_schedules(meta: LibraryMetadata, kernels: list[str]) -> dict[str, str]:
    """Where each kernel's schedule came from in the library: its record, a hand schedule, or the default one."""
    return {k: HAND if k in meta.hand_scheduled_kernels else DEFAULT if k in meta.untuned_kernels else RECORD
            for k in kernels}


def isolated_ms(model: ResolvedModel, target: TargetSpec, meta: LibraryMetadata) -> dict[str, float]:
    """Per kernel the build took a record for: that record's mean measured latency, in ms per call. Empty when
    the library names no record set, or when it is not on this machine (a library built elsewhere)."""
    from tvm.s_tir import meta_schedule as ms

    if not meta.records or not Path(meta.records).is_dir():
        return {}
    module_equality = (meta.records_provenance or {}).get("module_equality", STRUCTURAL)
    mod = tuning_module(model, target, GraphOptions(**meta.graph) if meta.graph else TUNED_GRAPH)
    tvm_target = target.to_tvm()
    plan = plan_tasks(mod, tvm_target, module_equality=module_equality)
    times: dict[str, float] = {}
    with selected_records(Path(meta.records), target, meta.records_ranked_by) as selected:
        db = ms.database.JSONDatabase(work_dir=str(selected), allow_missing=True, module_equality=module_equality)
        for task in plan.tasks:
            if task.task_name in meta.hand_scheduled_kernels:
                continue
            record = db.query_tuning_record(task.dispatched[0], tvm_target, task.task_name)
            seconds = mean_run_seconds(record.run_secs) if record is not None else None
            if seconds is not None:
                times[task.task_name] = seconds * 1e3
    return times

"""What tuning measured for each kernel of a tuned library: the isolated latency of the record its build took.

A record's latency is the kernel run alone by MetaSchedule's runner, the number the search ranked
candidates by. Set beside the kernel's time inside the whole model (benchmark/profile.py), it shows
whether the tuner measured what the model runs: a kernel far slower alone than in the model (or the
reverse) was ranked on numbers that do not hold where it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tvm

from runtime.artifacts import LibraryMetadata
from runtime.target import TargetSpec

from . import STRUCTURAL
from .build import selected_records
from .database import build_cpu, measured_on
from .tasks import mean_run_seconds, plan_tasks

RECORD, OTHER_CPU, HAND, DEFAULT = "record", "record of another CPU", "hand schedule", "default schedule"


@dataclass(frozen=True)
class KernelSources:
    """Where each planned kernel's schedule came from in a tuned library, and for a record measured on the CPU
    the library prefers (this host's), that record's mean isolated latency in ms per call."""

    schedules: dict[str, str]
    isolated_ms: dict[str, float]


def kernel_sources(mod: tvm.IRModule, target: TargetSpec, meta: LibraryMetadata) -> KernelSources:
    """`mod`: the tuning module of the library's graph (`tuning_module(model, target, meta's graph)`). Empty when
    the library names no record set, or when it is not on this machine (built elsewhere). A record measured on
    another CPU gives no isolated time: its latency is another machine's."""
    from tvm.s_tir import meta_schedule as ms

    if not meta.records or not Path(meta.records).is_dir():
        return KernelSources({}, {})
    module_equality = (meta.records_provenance or {}).get("module_equality", STRUCTURAL)
    tvm_target = target.to_tvm()
    cpu = meta.records_ranked_by or build_cpu(target)
    schedules: dict[str, str] = {}
    times: dict[str, float] = {}
    with selected_records(Path(meta.records), target, meta.records_ranked_by) as selected:
        db = ms.database.JSONDatabase(work_dir=str(selected), allow_missing=True, module_equality=module_equality)
        for task in plan_tasks(mod, tvm_target, module_equality=module_equality).tasks:
            name = task.task_name
            if name in meta.hand_scheduled_kernels or name in meta.untuned_kernels:
                schedules[name] = HAND if name in meta.hand_scheduled_kernels else DEFAULT
                continue
            record = db.query_tuning_record(task.dispatched[0], tvm_target, name)
            seconds = mean_run_seconds(record.run_secs) if record is not None else None
            if seconds is None:
                schedules[name] = DEFAULT
            elif measured_on(dict(record.target.attrs)) != cpu:
                schedules[name] = OTHER_CPU
            else:
                schedules[name], times[name] = RECORD, seconds * 1e3
    return KernelSources(schedules, times)

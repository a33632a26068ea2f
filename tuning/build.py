"""Build and export the default (untuned) and tuned libraries of a model."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import tvm
from tvm import s_tir

from runtime.acquire import ResolvedModel
from runtime.artifacts import LibraryMetadata, build_dir, library_paths
from runtime.target import TargetSpec

from . import STRUCTURAL
from .database import build_cpu, read_records, select_for, write_database
from .default_schedule import default_database, default_schedule
from .errors import MissingRecordsError
from .hand_schedules import HandChoice, ahead_of, applied, choices_digest, read_choices
from .importer import STOCK_GRAPH, TUNED_GRAPH, GraphOptions, finalize, import_tflite, optimize
from .records import RecordSet
from .tasks import plan_tasks, task_flops

log = logging.getLogger(__name__)


def tuning_module(model: ResolvedModel, target: TargetSpec, options: GraphOptions = TUNED_GRAPH) -> tvm.IRModule:
    """The optimised module whose kernels are tuned (and later get the records applied)."""
    return optimize(import_tflite(model.path, model.spec.name, options), target.to_tvm(), options)


@dataclass(frozen=True)
class Coverage:
    """Which tuned kernels of a module found a record in a database."""

    kernels: int
    untuned: list[str]
    untuned_flop_share: float
    naive: list[str] = ()  # untuned kernels the default schedule refuses too: naive loops


@contextmanager
def selected_records(records: Path, target: TargetSpec, ranked_by: str | None = None) -> Iterator[Path]:
    """A temporary plain database with the one record each kernel's build uses: the fastest valid
    one measured on `ranked_by` (default: this target's CPU; a portable build's: this host's), else the
    fastest of the ISA level (`database.select_for`)."""
    with tempfile.TemporaryDirectory(prefix="selfie-tvm-records-") as selected:
        cpu = ranked_by or build_cpu(target)
        write_database(Path(selected), select_for(read_records(records), cpu), compressed=False)
        yield Path(selected)


def coverage(mod: tvm.IRModule, target: TargetSpec, selected: Path, module_equality: str = STRUCTURAL) -> Coverage:
    """`selected`: a database holding only valid measured records (see `compile_module`), so a
    kernel whose workload is known but whose trials were never measured counts as untuned.
    Every kernel is counted, also those that share their anchor group's record (`module_equality`)."""
    from tvm.s_tir import meta_schedule as ms

    plan = plan_tasks(mod, target.to_tvm())
    db = ms.database.JSONDatabase(work_dir=str(selected), allow_missing=True, module_equality=module_equality)
    untuned, naive, flops_missing, flops_total = [], [], 0.0, 0.0
    for task in plan.tasks:
        flops = task_flops(task) * int(task.weight)
        flops_total += flops
        if not db.has_workload(task.dispatched[0]):
            untuned.append(task.task_name)
            flops_missing += flops
            if not default_schedule(s_tir.Schedule(task.dispatched[0]), target.num_cores):
                naive.append(task.task_name)
    return Coverage(len(plan.tasks), untuned, flops_missing / flops_total if flops_total else 0.0, naive)


def record_coverage(mod: tvm.IRModule, target: TargetSpec, records: RecordSet) -> Coverage:
    """How much of `mod` (a tuning module on the records' graph options) the records cover, without building it."""
    with selected_records(records.path, target) as selected:
        return coverage(mod, target, selected, records.provenance.module_equality)


def compile_module(model: ResolvedModel, target: TargetSpec, records: Path | None = None,
                   options: GraphOptions | None = None, module_equality: str = STRUCTURAL,
                   hand: list[HandChoice] | None = None, ranked_by: str | None = None):
    """What TVM gives without tuning (records=None: the stock graph, no schedules), or the given
    graph with the records' best schedules applied, matched to kernels by the `module_equality`
    they were tuned with, and the hand schedules chosen for some kernels (`hand`, default: the
    record set's committed choices) ahead of them. Returns (executable, coverage or None, names of
    the hand-scheduled kernels). `ranked_by`: see `selected_records`."""
    tvm_target = target.to_tvm()
    if records is None:
        options = options or STOCK_GRAPH
        return tvm.compile(tuning_module(model, target, options), target=tvm_target), None, []
    options = options or TUNED_GRAPH
    hand = read_choices(records) if hand is None else hand
    mod = tuning_module(model, target, options)
    hand_kernels = applied(mod, tvm_target, hand)
    with selected_records(records, target, ranked_by) as selected:
        cover = coverage(mod, target, selected, module_equality)
        mod = apply_records(mod, tvm_target, selected, module_equality, hand)
    return tvm.compile(finalize(mod, tvm_target, options), target=tvm_target), cover, hand_kernels


def apply_records(mod: tvm.IRModule, target: tvm.target.Target, database: Path,
                  module_equality: str = STRUCTURAL, hand: list[HandChoice] = ()) -> tvm.IRModule:
    """Replace every kernel that has a record in `database` (a plain JSONDatabase) with its best schedule,
    except the kernels `hand` schedules (tuning/hand_schedules.py): they get the hand schedule. Every
    other kernel gets the default schedule (tuning/default_schedule.py: parallel, vectorised).

    With anchor-block records the database finds a kernel's group record by its anchor block, and
    the pass replays the anchor's trace on the kernel (MetaSchedule's ScheduleUsingAnchorTrace)."""
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    # Opened here rather than by path in the pass, which announces "Creating JSONDatabase" on stderr.
    db = ms.database.JSONDatabase(work_dir=str(database), allow_missing=False, module_equality=module_equality)
    cores = int(target.attrs.get("num-cores", 1))
    # Kernels without a record (nor a hand schedule) get the default schedule, not naive loops.
    with (target, ms.database.OrderedUnionDatabase(ahead_of(db, list(hand), cores), default_database(cores)),
          tvm.transform.PassContext(opt_level=3)):
        return relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)


def export(model: ResolvedModel, target: TargetSpec, kind: str, *, records: RecordSet | None = None,
           budget: int | None = None, out_root: Path | None = None, warn: bool = True,
           ranked_by: str | None = None) -> Path:
    """Compile and write <kind>.so (weights inside) with <kind>.json metadata beside it.

    A tuned build uses the graph options its records were tuned on (their provenance), and its
    metadata says where the records came from and which kernels, if any, found none (logged as a
    warning unless `warn` is False: an intermediate build the user never runs). `ranked_by`: the CPU whose
    records rank first (default: the target's, for a portable target this host's; a farm's devices' CPU
    after a farm run).
    """
    if kind == "tuned" and (records is None or records.trials == 0):
        raise MissingRecordsError(model.spec.name, records.path if records else None)
    directory = build_dir(model.spec.name, target) if out_root is None else out_root
    directory.mkdir(parents=True, exist_ok=True)
    lib_path, meta_path = library_paths(directory, kind)
    tuned = kind == "tuned"
    options = records.provenance.graph_options if tuned else STOCK_GRAPH
    ranked_by = (ranked_by or build_cpu(target)) if tuned else None  # resolved once: the build and its metadata
    executable, cover, hand_kernels = compile_module(model, target, records.path if tuned else None, options,
                                                     records.provenance.module_equality if tuned else STRUCTURAL,
                                                     ranked_by=ranked_by)
    tmp = lib_path.with_suffix(".so.part")
    executable.export_library(str(tmp))
    tmp.replace(lib_path)
    meta = LibraryMetadata(
        kind=kind, model=model.spec.name, model_sha256=model.sha256(), target=target.as_dict(),
        tvm_version=tvm.__version__, budget=budget if tuned else None,
        trials=records.trials_behind if tuned else None, records=str(records.path) if tuned else None,
        synthetic_weights=model.spec.synthetic, graph=options.as_dict(),
        records_provenance=asdict(records.provenance) if tuned else None,
        kernels=cover.kernels if cover else None, untuned_kernels=cover.untuned if cover else [],
        untuned_flop_share=cover.untuned_flop_share if cover else None,
        naive_kernels=list(cover.naive) if cover else None,
        hand_scheduled_kernels=hand_kernels,
        hand_schedules_sha256=choices_digest(records.path) if tuned else "",
        records_ranked_by=ranked_by,
    )
    meta.write(meta_path)
    if warn and meta.tuning_warning:
        log.warning("%s: %s; `selfie-tvm tune --model %s` reaches them", lib_path, meta.tuning_warning,
                    model.spec.name)
    log.info("wrote %s", lib_path)
    return lib_path

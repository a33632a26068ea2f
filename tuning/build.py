"""Build and export the default (untuned) and tuned libraries of a model."""

from __future__ import annotations

import logging
from pathlib import Path

import tvm

from runtime.acquire import ResolvedModel
from runtime.artifacts import LibraryMetadata, build_dir, library_paths
from runtime.target import TargetSpec

from .errors import MissingRecordsError
from .importer import import_tflite, optimize
from .tune import apply_records, count_records

log = logging.getLogger(__name__)


def compile_module(model: ResolvedModel, target: TargetSpec, records: Path | None = None):
    """What TVM gives without tuning (records=None), or with the records' best schedules applied."""
    tvm_target = target.to_tvm()
    mod = optimize(import_tflite(model.path, model.spec.name), tvm_target)
    if records is not None:
        mod = apply_records(mod, tvm_target, records)
    return tvm.compile(mod, target=tvm_target)


def export(model: ResolvedModel, target: TargetSpec, kind: str, *, records: Path | None = None,
           budget: int | None = None, out_root: Path | None = None) -> Path:
    """Compile and write <kind>.so (weights inside) with <kind>.json metadata beside it."""
    if kind == "tuned" and (records is None or count_records(records) == 0):
        raise MissingRecordsError(model.spec.name, records)
    directory = build_dir(model.spec.name, target) if out_root is None else out_root
    directory.mkdir(parents=True, exist_ok=True)
    lib_path, meta_path = library_paths(directory, kind)
    executable = compile_module(model, target, records if kind == "tuned" else None)
    tmp = lib_path.with_suffix(".so.part")
    executable.export_library(str(tmp))
    tmp.replace(lib_path)
    LibraryMetadata(
        kind=kind, model=model.spec.name, model_sha256=model.sha256(), target=target.as_dict(),
        tvm_version=tvm.__version__, budget=budget if kind == "tuned" else None,
        trials=count_records(records) if kind == "tuned" else None,
        records=str(records) if kind == "tuned" else None, synthetic_weights=model.spec.synthetic,
    ).write(meta_path)
    log.info("wrote %s", lib_path)
    return lib_path

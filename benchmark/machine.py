"""What a benchmark run is measured on, captured by the measuring process itself.

pytest-benchmark records the machine in every run's `machine_info`; benchmark/conftest.py adds this
under `selfie_tvm`: the environment (CPU, library versions, date), the target, the model file and the
TVM libraries measured. A report rendered later, on any machine, names these, not the renderer's.
"""

from __future__ import annotations

from dataclasses import asdict

from runtime.acquire import ResolvedModel
from runtime.artifacts import KINDS, LibraryMetadata, build_dir, library_paths
from runtime.engines import tvm_engine
from runtime.target import TargetSpec, host_target

from . import environment

KEY = "selfie_tvm"  # this project's entry in pytest-benchmark's machine_info


def capture(model: ResolvedModel, engines: list[str]) -> dict:
    target = host_target()
    return {"environment": environment.collect(target.vector_isa).as_dict(), "target": target.as_dict(),
            "model": model.spec.name, "model_sha256": model.sha256(),
            "libraries": libraries(model.spec.name, target, engines)}


def libraries(model: str, target: TargetSpec, engines: list[str]) -> dict[str, dict]:
    """The metadata of each TVM library measured, by kind (default, tuned)."""
    found = {}
    for kind in KINDS:
        meta = library_paths(build_dir(model, target), kind)[1]
        if tvm_engine(kind) in engines and meta.is_file():
            found[kind] = asdict(LibraryMetadata.read(meta))
    return found

"""Where build outputs live and the metadata that ties each library to its model and target.

Runtime facts: the runtime loads libraries; `tuning` writes them.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from .errors import EngineError
from .settings import get_settings
from .target import TargetSpec, cpu_model_name

KINDS = ("default", "tuned")


class ArtifactMetadataError(EngineError):
    """A library's metadata file that this version cannot read (corrupt, or written by another version)."""


def build_root() -> Path:
    """Where libraries are built (SELFIE_TVM_BUILD_DIR, default tvm_model/), read when asked."""
    return get_settings().build_dir


def results_root() -> Path:
    """Where reports and tuning records live (SELFIE_TVM_RESULTS_DIR, default results/), read when asked."""
    return get_settings().results_dir


def build_dir(model: str, target: TargetSpec, root: Path | None = None) -> Path:
    return (root or build_root()) / model / target.id


def report_dir(model: str, target: TargetSpec, root: Path | None = None) -> Path:
    """Benchmark reports and tuning statistics of one model on one target."""
    return (root or results_root()) / model / target.id


@dataclass
class LibraryMetadata:
    kind: str
    model: str
    model_sha256: str
    target: dict
    tvm_version: str
    built_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    cpu: str = field(default_factory=cpu_model_name)
    budget: int | None = None
    trials: int | None = None
    records: str | None = None
    synthetic_weights: bool = False
    # Where the records came from (ISA level, CPU and target they were tuned on, graph options).
    records_provenance: dict | None = None
    graph: dict | None = None
    # Kernels of the tuned library that found no record run with the default schedule (parallel,
    # vectorised, not tuned), those it cannot schedule as naive loops: never silently.
    kernels: int | None = None
    untuned_kernels: list[str] = field(default_factory=list)
    untuned_flop_share: float | None = None
    # None: built before untuned kernels got the default schedule, so all of them ran as naive loops.
    naive_kernels: list[str] | None = None
    # Kernels given a hand-written schedule (tuning/hand_schedules.py) instead of their record.
    hand_scheduled_kernels: list[str] = field(default_factory=list)
    # sha256 of the records' hand_schedules.json it was built with ("" without one): a new choice rebuilds it.
    hand_schedules_sha256: str = ""
    # The CPU whose records of a kernel the tuned build preferred (the host's, or a farm's devices').
    records_ranked_by: str | None = None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> LibraryMetadata:
        """The metadata in `path`; ArtifactMetadataError naming the file and the fix if it cannot be read."""
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ArtifactMetadataError(f"{path} is not valid JSON ({e}): {_rebuild({})}") from None
        if not isinstance(raw, dict):
            raise ArtifactMetadataError(f"{path} holds a JSON {type(raw).__name__}, not library metadata: "
                                        f"{_rebuild({})}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        missing = sorted(name for name, f in known.items()
                         if name not in raw and f.default is MISSING and f.default_factory is MISSING)
        if unknown or missing:
            problems = ([f"unknown fields {', '.join(unknown)}"] if unknown else []) + (
                [f"missing fields {', '.join(missing)}"] if missing else [])
            raise ArtifactMetadataError(f"{path} was written by another version of selfie-tvm "
                                        f"({'; '.join(problems)}): {_rebuild(raw)}")
        return cls(**raw)

    @classmethod
    def from_saved(cls, raw: dict) -> LibraryMetadata:
        """Metadata as a saved benchmark run recorded it, possibly by another version of selfie-tvm: fields
        this version does not know are left out, fields it added since take their defaults. For describing a
        past measurement only; `read` stays strict for libraries about to be loaded."""
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in raw.items() if name in known})

    @property
    def target_spec(self) -> TargetSpec:
        return TargetSpec.from_dict(self.target)

    @property
    def tuning_origins(self) -> list[tuple[str, dict, float]]:
        """Where the records' tuning ran (`tuning_origins`); none without records."""
        return tuning_origins(self.records_provenance) if self.records_provenance else []

    @property
    def tuning_warning(self) -> str | None:
        """'partially tuned: ...' when some kernels of a tuned library have no record, else None."""
        if self.kind != "tuned" or not self.untuned_kernels:
            return None
        share = f", {self.untuned_flop_share:.1%} of the FLOPs" if self.untuned_flop_share is not None else ""
        if self.naive_kernels is None:
            return (f"partially tuned: {len(self.untuned_kernels)} of {self.kernels} kernels without a record{share} "
                    "(they run as naive loops)")
        naive = (f"; {len(self.naive_kernels)} of them as naive loops ({', '.join(self.naive_kernels)})"
                 if self.naive_kernels else "")
        return (f"partially tuned: {len(self.untuned_kernels)} of {self.kernels} kernels without a record{share} "
                f"(they run with the default schedule: parallel and vectorised, not tuned{naive})")


def tuning_origins(provenance: dict) -> list[tuple[str, dict, float]]:
    """Where a record set's tuning ran: (CPU name, LLVM target, seconds), one entry per CPU and target in
    the order they first tuned the set. The run that started it is the provenance's total less the
    continuations it lists; a set continued elsewhere holds records of several CPUs, so all are named."""
    continued = provenance.get("continued", [])
    runs = [(provenance.get("tuned_on_cpu"), provenance.get("tuned_for_target", {}), first_run_seconds(provenance)),
            *((c.get("cpu"), c.get("target", {}), c.get("seconds", 0.0)) for c in continued)]
    merged: dict[tuple, tuple[str, dict, float]] = {}
    for cpu, target, seconds in runs:
        key = (cpu, target.get("mcpu"), target.get("num_cores"))
        before = merged.get(key, (cpu, target, 0.0))[2]
        merged[key] = (cpu, target, before + max(seconds, 0.0))
    return [origin for origin in merged.values() if origin[2] > 0.5] or [runs[0]]


def describe_origins(origins: list[tuple[str, dict, float]]) -> str:
    """'CPU, LLVM CPU x, N cores' per origin, joined by '; ', with each one's minutes when there are several."""
    return "; ".join(f"{cpu}, LLVM CPU {target.get('mcpu', '?')}, {target.get('num_cores', '?')} cores"
                     + (f", {seconds / 60:.0f} min" if len(origins) > 1 else "") for cpu, target, seconds in origins)


def first_run_seconds(provenance: dict) -> float:
    """Seconds of the run that started a record set: provenance lists only the runs that continued it."""
    continued = provenance.get("continued", [])
    return provenance.get("tuning_seconds", 0.0) - sum(c.get("seconds", 0.0) for c in continued)


def _rebuild(raw: dict) -> str:
    """How to replace a library whose metadata says (or does not say) what it was built from."""
    command = "selfie-tvm compile"
    if raw.get("model") and raw.get("kind") in KINDS:
        command += f" --model {raw['model']}" + (" --tuned" if raw["kind"] == "tuned" else "")
    return f"rebuild the library with `{command}`"


def library_paths(directory: Path, kind: str) -> tuple[Path, Path]:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    return directory / f"{kind}.so", directory / f"{kind}.json"


def check_metadata(meta: LibraryMetadata, model_name: str, model_sha256: str, target: TargetSpec | None,
                   path: Path) -> None:
    """Refuse a library built for another model file or another target."""
    if meta.model != model_name or meta.model_sha256 != model_sha256:
        raise EngineError(
            f"{path} was built from {meta.model} (sha256 {meta.model_sha256[:12]}...), not from this "
            f"{model_name} file (sha256 {model_sha256[:12]}...): rebuild it with `selfie-tvm compile`")
    if target is not None and meta.target_spec != target:
        raise EngineError(
            f"{path} was built for target {meta.target_spec.id} {meta.target}, not for {target.id} "
            f"{target.as_dict()}: rebuild it for this target or pass the matching --target options")

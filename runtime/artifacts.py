"""Where build outputs live and the metadata that ties each library to its model and target.

Runtime facts: the runtime loads libraries; `tuning` writes them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from .errors import EngineError
from .settings import get_settings
from .target import TargetSpec, cpu_model_name

KINDS = ("default", "tuned")


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
    # Kernels of the tuned library that found no record run as naive loops: never silently.
    kernels: int | None = None
    untuned_kernels: list[str] = field(default_factory=list)
    untuned_flop_share: float | None = None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> LibraryMetadata:
        """The metadata beside a library; EngineError when another version of selfie-tvm wrote it (other
        fields) or it is damaged."""
        rebuild = "rebuild the library with `selfie-tvm compile`"
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise EngineError(f"{path} is damaged ({e}); {rebuild}") from None
        unknown = sorted(set(data) - {f.name for f in fields(cls)}) if isinstance(data, dict) else []
        try:
            return cls(**data)
        except TypeError as e:
            why = f"fields this version does not know: {', '.join(unknown)}" if unknown else str(e)
            raise EngineError(f"{path} was written by another version of selfie-tvm ({why}); {rebuild}") from None

    @property
    def target_spec(self) -> TargetSpec:
        return TargetSpec.from_dict(self.target)

    @property
    def tuning_warning(self) -> str | None:
        """'partially tuned: ...' when some kernels of a tuned library have no record, else None."""
        if self.kind != "tuned" or not self.untuned_kernels:
            return None
        share = f", {self.untuned_flop_share:.1%} of the FLOPs" if self.untuned_flop_share is not None else ""
        return (f"partially tuned: {len(self.untuned_kernels)} of {self.kernels} kernels without a record{share} "
                "(they run as naive loops)")


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

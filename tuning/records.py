"""Where tuning records live and which ones a target can use.

A schedule depends on the kernel (its structural hash, whatever model it came from) and on the
vector ISA it was measured with, not on the LLVM CPU name: records are kept per ISA level in
results/tuning/<isa>/ (e.g. x86-64-v3 = AVX2+FMA, x86-64-v4 = AVX-512), shared by every model and
every machine of that level. Models with identical kernels (the real selfie model and its twin)
share them. `provenance.json` beside the database says where they were tuned and on which graph.

What is committed there is pruned (tuning/database.py); tuning measures into a working database in
the build directory (tvm_model/tuning/<isa>/), seeded from the committed set, and prunes back into it.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from runtime.artifacts import build_root, describe_origins, results_root, tuning_origins
from runtime.errors import SelfieTvmError
from runtime.target import TargetSpec, cpu_model_name

from . import HOT, STRUCTURAL
from .database import KEEP_PER_CPU, build_cpu, count_records, is_generic_cpu, merge, prune, read_records, write_database
from .importer import TUNED_GRAPH, GraphOptions

PROVENANCE = "provenance.json"
_X86_LEVELS = {"avx512": "x86-64-v4", "avx2": "x86-64-v3", "sse": "x86-64"}


def isa_level(target: TargetSpec) -> str:
    """The vector ISA a target's schedules depend on, e.g. x86-64-v3 (AVX2+FMA)."""
    arch = (target.mtriple or platform.machine()).split("-")[0]
    if arch in ("x86_64", "amd64"):
        return _X86_LEVELS[target.vector_isa]
    return arch


@dataclass
class Provenance:
    isa: str
    graph: dict = field(default_factory=TUNED_GRAPH.as_dict)
    tuned_on_cpu: str = field(default_factory=cpu_model_name)
    tuned_for_target: dict = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    tvm_version: str = ""
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    tuning_seconds: float = 0.0
    trials_measured: int = 0  # by every run behind the set (it keeps only the best few per kernel)
    continued: list[dict] = field(default_factory=list)  # later runs that added records
    # How the records were matched to kernels (tuning.MODULE_EQUALITIES): a build must match them the same way.
    module_equality: str = STRUCTURAL
    # How candidates were timed (tuning/measure.py): "hot", back to back with their data cached, or "cold", with
    # the cache flushed of their weights and output before each run (`tune --cold-cache`). One set holds one kind.
    measured: str = HOT

    @property
    def graph_options(self) -> GraphOptions:
        return GraphOptions(**self.graph)

    @property
    def origins(self) -> list[tuple[str, dict, float]]:
        """Where the set's tuning ran (`runtime.artifacts.tuning_origins`)."""
        return tuning_origins(asdict(self))

    @property
    def cores(self) -> int | None:
        return self.tuned_for_target.get("num_cores")


@dataclass(frozen=True)
class RecordSet:
    path: Path
    provenance: Provenance

    @property
    def trials(self) -> int:
        return count_records(self.path)

    @property
    def trials_behind(self) -> int:
        """Trials measured to find these records (a pruned set keeps only the best few of them)."""
        return max(self.trials, self.provenance.trials_measured)

    def summary(self) -> str:
        p = self.provenance
        behind = f" (best of {p.trials_measured} trials)" if p.trials_measured > self.trials else ""
        shared = f", one per {p.module_equality} group" if p.module_equality != STRUCTURAL else ""
        shared += ", measured cold" if p.measured != HOT else ""
        origins = describe_origins(p.origins)
        return (f"{self.trials} tuning records{behind}{shared} for {p.isa} in {self.path} "
                f"(tuned on {origins}, {p.updated_at[:10]})")

    def notes_for(self, target: TargetSpec, ranked_by: str | None = None) -> list[str]:
        """What a user of these records on `target` should know (none when it is where they were made);
        `ranked_by`: the CPU whose records the build ranks first (`build.export`)."""
        notes = []
        p = self.provenance
        # The records say where each was measured: a set first tuned elsewhere may hold this CPU's too.
        cpus = {r.cpu or "?" for r in read_records(self.path)}
        cpu = ranked_by or build_cpu(target)
        if cpu not in cpus:
            names = sorted(f"{c} (portable, CPU not recorded)" if is_generic_cpu(c) else c for c in cpus)
            notes.append(f"they were measured on {', '.join(names)} CPUs, this is {cpu}: "
                         "re-tuning here may gain more (`selfie-tvm tune` continues from them)")
        if p.cores is not None and p.cores != target.num_cores:
            notes.append(f"they were tuned for {p.cores} cores, this target has {target.num_cores}: "
                         "schedules still work, their parallel split may not be the best here")
        return notes


def records_root(root: Path | None = None) -> Path:
    return (root or results_root()) / "tuning"


def record_set_dir(target: TargetSpec, root: Path | None = None) -> Path:
    return records_root(root) / isa_level(target)


def working_dir(target: TargetSpec, root: Path | None = None) -> Path:
    """Where tuning measures into: every record of this ISA level measured here, outside git."""
    return (root or build_root()) / "tuning" / isa_level(target)


def read_provenance(path: Path, isa: str) -> Provenance:
    file = Path(path) / PROVENANCE
    if file.is_file():
        data = json.loads(file.read_text())
        unknown = sorted(set(data) - {f.name for f in fields(Provenance)})
        if unknown:
            raise SelfieTvmError(f"{file} has fields this version does not know ({', '.join(unknown)}): "
                                 "it was written by another version of selfie-tvm; update it or remove the file")
        return Provenance(**data)
    # Records without provenance (a --work-dir of one's own): assume the current tuned graph.
    return Provenance(isa=isa)


def find_records(target: TargetSpec, root: Path | None = None) -> RecordSet | None:
    """The record set a target can use, or None when there is none for its ISA level."""
    path = record_set_dir(target, root)
    if count_records(path) == 0:
        return None
    return RecordSet(path, read_provenance(path, isa_level(target)))


def available_levels(root: Path | None = None) -> list[str]:
    base = records_root(root)
    return sorted(p.name for p in base.iterdir() if count_records(p) > 0) if base.is_dir() else []


def write_provenance(path: Path, target: TargetSpec, model: str, options: GraphOptions,
                     tuning_seconds: float = 0.0, trials: int = 0, cpu: str | None = None,
                     module_equality: str = STRUCTURAL, measured: str = HOT) -> Provenance:
    """Record (or update) where a record set comes from, after tuning into it. A set first tuned
    elsewhere keeps its origin; later runs are listed under `continued`. `cpu`: where the
    measurements ran, when not on this host (an RPC farm's devices). A set's `module_equality`
    never changes (`check_module_equality`)."""
    cpu = cpu or cpu_model_name()
    import tvm

    path = Path(path)
    existing = read_provenance(path, isa_level(target)) if (path / PROVENANCE).is_file() else None
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if existing is None or (existing.trials_measured == 0 and existing.tuning_seconds == 0):
        # None, or a mark written before a first run (cli/tune.py): this run is the origin.
        prov = Provenance(isa=isa_level(target), graph=options.as_dict(), tuned_on_cpu=cpu,
                          tuned_for_target=target.as_dict(), models=[model], tvm_version=tvm.__version__,
                          updated_at=now, tuning_seconds=tuning_seconds, trials_measured=trials,
                          module_equality=module_equality, measured=measured)
    else:
        prov = existing
        prov.graph = options.as_dict()
        prov.models = sorted({*prov.models, model})
        prov.updated_at = now
        prov.tuning_seconds += tuning_seconds
        prov.trials_measured += trials
        if tuning_seconds:
            prov.continued.append({"target": target.as_dict(), "cpu": cpu, "at": now,
                                   "seconds": round(tuning_seconds, 1), "model": model, "trials": trials})
    save_provenance(path, prov)
    return prov


def save_provenance(path: Path, prov: Provenance) -> None:
    """Write `provenance.json` beside a set's records."""
    (Path(path) / PROVENANCE).write_text(json.dumps(asdict(prov), indent=2) + "\n")


def resolve_records(model: str, target: TargetSpec, explicit: Path | None = None,
                    root: Path | None = None) -> RecordSet:
    """The records a tuned build of `model` for `target` uses, or an error naming the fix."""
    from .errors import MissingRecordsError, NoRecordsForTargetError

    if explicit is not None:
        if count_records(explicit) == 0:
            raise MissingRecordsError(model, explicit)
        return RecordSet(Path(explicit), read_provenance(explicit, isa_level(target)))
    found = find_records(target, root)
    if found is None:
        raise NoRecordsForTargetError(model, isa_level(target), available_levels(root))
    return found


def check_measured(path: Path, provenance: Provenance, wanted: str) -> None:
    """Refuse to tune cold into records measured hot, or the reverse: their latencies are on different scales,
    so a database of both would rank one kind above the other, whatever the schedules."""
    if count_records(path) and provenance.measured != wanted:
        raise SelfieTvmError(
            f"the records in {path} were measured {provenance.measured} ({PROVENANCE}), this run measures {wanted} "
            f"(--cold-cache): they cannot share a database; use an empty --work-dir for {wanted} records")


def check_module_equality(path: Path, provenance: Provenance, wanted: str) -> None:
    """Refuse to tune into records matched to kernels another way: one database holds one kind."""
    if count_records(path) and provenance.module_equality != wanted:
        raise SelfieTvmError(
            f"the records in {path} were tuned with --module-equality {provenance.module_equality} "
            f"({PROVENANCE}; records without one count as {STRUCTURAL}), this run asks for {wanted}: "
            f"they cannot share a database; use an empty --work-dir for {wanted} records")


def describe_use(records: RecordSet, target: TargetSpec, ranked_by: str | None = None) -> list[str]:
    """Lines telling the user which records a build uses and what to know about them."""
    return [f"using {records.summary()}", *(f"note: {n}" for n in records.notes_for(target, ranked_by))]


def seed_working(committed: Path, working: Path) -> int:
    """Bring the committed records into the working database (a fresh clone starts from them), and mark it
    with the graph and module equality they were tuned with (`records merge` of this database checks them)."""
    added = merge(committed, working) if count_records(committed) else 0
    if not (Path(working) / PROVENANCE).is_file():
        origin = read_provenance(committed, Path(committed).name)
        Path(working).mkdir(parents=True, exist_ok=True)
        save_provenance(working, Provenance(isa=origin.isa, graph=origin.graph,
                                            module_equality=origin.module_equality, measured=origin.measured))
    return added


def publish(working: Path, committed: Path, target: TargetSpec, model: str, options: GraphOptions,
            tuning_seconds: float, trials: int, cpu: str | None = None) -> RecordSet:
    """After a run that measured something: the pruned working database becomes the committed set."""
    write_database(committed, prune(read_records(working), KEEP_PER_CPU), compressed=True)
    return RecordSet(Path(committed), write_provenance(committed, target, model, options, tuning_seconds, trials,
                                                       cpu=cpu))

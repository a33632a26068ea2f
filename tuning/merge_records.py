"""Bring records tuned elsewhere (another machine, a `--work-dir` of one's own) into the committed set.

The set a record joins is decided by the records themselves: the ISA level of the code each was built
for. What joins is pruned as tuning prunes (the best few per kernel and measuring CPU), and the set's
provenance lists the run it came from, so reports keep naming every origin.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from runtime.artifacts import first_run_seconds
from runtime.errors import SelfieTvmError
from runtime.target import TargetSpec

from . import HOT, STRUCTURAL
from .database import KEEP_PER_CPU, Record, count_records, new_records, prune, read_records, write_database
from .records import PROVENANCE, Provenance, RecordSet, isa_level, read_provenance, records_root, save_provenance


@dataclass(frozen=True)
class MergeResult:
    record_set: RecordSet
    added: int  # records of the source that the set did not hold
    kept: int  # of them, what pruning kept (none: the set is unchanged)
    faster: Counter  # measuring CPU -> kernels whose best record is now faster (or that had none)


def record_level(record: Record) -> str:
    """The ISA level of the code a record was measured with (its target's CPU and features)."""
    t = record.body[2] or {}
    return isa_level(TargetSpec(t.get("mcpu") or "generic", 1, t.get("mtriple"), tuple(t.get("mattr") or ())))


def _best(records: list[Record]) -> dict[tuple[str, str | None], float]:
    best: dict[tuple[str, str | None], float] = {}
    for r in records:
        if r.cost_s is not None:
            key = (r.shash, r.cpu)
            best[key] = min(best.get(key, r.cost_s), r.cost_s)
    return best


def _runs(source: Path, prov: Provenance, records: int, now: str) -> list[dict]:
    """Provenance entries for what the source brings: each run of its own history."""
    tag = {"merged_from": str(source), "merged_at": now}
    first = {"target": prov.tuned_for_target, "cpu": prov.tuned_on_cpu, "at": prov.updated_at,
             "seconds": round(first_run_seconds(asdict(prov)), 1), "model": ", ".join(prov.models),
             "trials": max(0, (prov.trials_measured or records) - sum(c.get("trials", 0) for c in prov.continued))}
    return [{**run, **tag} for run in (first, *prov.continued)]


def merge_into_committed(source: Path, root: Path | None = None) -> MergeResult:
    """Add the records of `source` to the committed set of their ISA level (under `root`, default results/),
    pruned to the best KEEP_PER_CPU per kernel and CPU. Nothing is written when none of them is kept (all there
    already, or slower than the set's best of their kernel and CPU): merging twice counts once."""
    source = Path(source)
    if count_records(source) == 0:
        raise SelfieTvmError(f"{source} holds no tuning records (a MetaSchedule database: "
                             "database_tuning_record.json and database_workload.json, plain or .gz)")
    incoming = read_records(source)
    levels = Counter(record_level(r) for r in incoming)
    if len(levels) > 1:
        raise SelfieTvmError(f"{source} mixes records of several ISA levels ("
                             + ", ".join(f"{n} {level}" for level, n in sorted(levels.items()))
                             + "): each level has a set of its own; split them first")
    (isa,) = levels
    committed = records_root(root) / isa
    # The graph decides the kernels, and nothing in the records says which graph they were tuned on: a
    # database without its provenance cannot be checked (tuning writes one into every database it measures into).
    if not (source / PROVENANCE).is_file():
        raise SelfieTvmError(f"{source} has no {PROVENANCE}, so the graph its records were tuned on is unknown: "
                             "they cannot be checked against the committed set (every database `selfie-tvm tune` "
                             "measures into has one; copy it with the records)")
    source_prov = read_provenance(source, isa)
    prov = read_provenance(committed, isa) if (committed / PROVENANCE).is_file() else None
    if source_prov.module_equality != STRUCTURAL:
        raise SelfieTvmError(f"the records in {source} were tuned with --module-equality "
                             f"{source_prov.module_equality}: the committed sets hold {STRUCTURAL} records only")
    if source_prov.measured != HOT:
        raise SelfieTvmError(f"the records in {source} were measured {source_prov.measured} (--cold-cache): the "
                             f"committed sets hold records measured {HOT} only, and the two rank on different scales")
    if prov is not None and source_prov.graph != prov.graph:
        raise SelfieTvmError(f"the records in {source} were tuned on the graph {source_prov.graph}, those in "
                             f"{committed} on {prov.graph}: their kernels differ, so they cannot share a set")

    known = read_records(committed) if count_records(committed) else []
    new = new_records(known, incoming)
    joining = {r.identity for r in new}
    before = _best(known)
    merged = prune([*known, *new], KEEP_PER_CPU)
    kept = sum(r.identity in joining for r in merged)
    faster = Counter(cpu for (shash, cpu), cost in _best(merged).items()
                     if cost < before.get((shash, cpu), float("inf")))
    if not kept:  # nothing new, or nothing that beats what the set keeps: it is left as it was
        return MergeResult(RecordSet(committed, prov or Provenance(isa=isa)), len(new), 0, faster)

    write_database(committed, merged, compressed=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if prov is None:  # an empty set: the source's history becomes the set's
        prov = source_prov
        prov.isa = isa
        prov.trials_measured = prov.trials_measured or len(incoming)  # a database marked before its first run
        prov.updated_at = now
    else:
        runs = _runs(source, source_prov, len(incoming), now)
        prov.continued += runs
        prov.tuning_seconds += sum(r.get("seconds", 0.0) for r in runs)
        prov.trials_measured += sum(r["trials"] for r in runs)
        prov.models = sorted({*prov.models, *source_prov.models})
        prov.updated_at = now
    save_provenance(committed, prov)
    return MergeResult(RecordSet(committed, prov), len(new), kept, faster)

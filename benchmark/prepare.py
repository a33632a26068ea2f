"""Build whatever the benchmark needs and is missing: default.so, then tuned.so from records.

Records come from the tuning-records lookup (committed records for this vector ISA, or an earlier
`selfie-tvm tune`); only when there are none is the model tuned, within `--budget` trials, and only
when the caller allows it: the leaderboard (`--model all`) never starts a tuning run, it measures
the tuned module of whatever records exist (the report's coverage names the kernels without one)
or, with none for this ISA, leaves the tuned module out and says why.
"""

from __future__ import annotations

from pathlib import Path

from runtime.acquire import ResolvedModel
from runtime.artifacts import ArtifactMetadataError, LibraryMetadata, build_dir, library_paths
from runtime.engines import TVM_DEFAULT, TVM_TUNED
from runtime.target import TargetSpec
from tuning import DEFAULT_BUDGET
from tuning.build import export
from tuning.hand_schedules import HAND_SCHEDULES, choices_digest
from tuning.records import describe_use, find_records, isa_level, record_set_dir, resolve_records, working_dir


def prepare(model: ResolvedModel, target: TargetSpec, engines: list[str], budget: int = DEFAULT_BUDGET, *,
            tune_if_missing: bool = True) -> dict[str, str]:
    """Build what `engines` need; the engines left out (only without `tune_if_missing`), each with the reason."""
    out = build_dir(model.spec.name, target)
    if TVM_DEFAULT in engines and not library_paths(out, "default")[0].is_file():
        print(f"building default library for {model.spec.name} ({target.id})", flush=True)
        export(model, target, "default")
    if TVM_TUNED in engines and _tuned_missing_or_stale(out, target):
        if find_records(target) is None and not tune_if_missing:
            reason = (f"not measured: no tuning records for {isa_level(target)} (the leaderboard does not tune; "
                      f"`./nox -s tune -- --model {model.spec.name}` makes them)")
            print(f"{model.spec.name}: TVM tuned {reason}", flush=True)
            return {TVM_TUNED: reason}
        if find_records(target) is None:
            committed, work = record_set_dir(target), working_dir(target)
            print(f"no tuning records for this CPU's vector ISA: tuning within {budget} trials into {work} first",
                  flush=True)
            from tuning.build import tuning_module
            from tuning.importer import TUNED_GRAPH
            from tuning.records import publish
            from tuning.tune import tune

            result = tune(tuning_module(model, target), target.to_tvm(), work, budget=budget)
            publish(work, committed, target, model.spec.name, TUNED_GRAPH, result.seconds, result.trials_run)
        records = resolve_records(model.spec.name, target)
        print("\n".join(describe_use(records, target)), flush=True)
        export(model, target, "tuned", records=records)
    return {}


def _tuned_missing_or_stale(out: Path, target: TargetSpec) -> bool:
    """No tuned.so, or one built before the records it came from were updated (a tuning run since)."""
    library, meta_path = library_paths(out, "tuned")
    if not library.is_file():
        return True
    records = find_records(target)
    if records is None:
        return False  # the records it was built from are gone: it is the best there is
    try:
        meta = LibraryMetadata.read(meta_path)
        built_from, hand_digest = (meta.records_provenance or {}).get("updated_at"), meta.hand_schedules_sha256
    except (OSError, ArtifactMetadataError):
        built_from = hand_digest = None
    if built_from != records.provenance.updated_at:
        print(f"{library} was built from records of {built_from}, the records are of "
              f"{records.provenance.updated_at}: rebuilding it", flush=True)
        return True
    if hand_digest != choices_digest(records.path):
        print(f"{library} was built with other hand-written schedules than {records.path / HAND_SCHEDULES}: "
              "rebuilding it", flush=True)
        return True
    return False

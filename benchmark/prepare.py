"""Build whatever the benchmark needs and is missing: default.so, then tuned.so from records.

Records come from the tuning-records lookup (committed records for this vector ISA, or an earlier
`selfie-tvm tune`); only when there are none is the model tuned, within `--budget` trials.
"""

from __future__ import annotations

from runtime.acquire import ResolvedModel
from runtime.artifacts import build_dir, library_paths
from runtime.engines import TVM_DEFAULT, TVM_TUNED
from runtime.target import TargetSpec
from tuning import DEFAULT_BUDGET
from tuning.build import export
from tuning.records import describe_use, find_records, record_set_dir, resolve_records, working_dir


def prepare(model: ResolvedModel, target: TargetSpec, engines: list[str], budget: int = DEFAULT_BUDGET) -> None:
    out = build_dir(model.spec.name, target)
    if TVM_DEFAULT in engines and not library_paths(out, "default")[0].is_file():
        print(f"building default library for {model.spec.name} ({target.id})", flush=True)
        export(model, target, "default")
    if TVM_TUNED in engines and not library_paths(out, "tuned")[0].is_file():
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

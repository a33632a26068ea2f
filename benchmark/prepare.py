"""Build whatever the benchmark needs and is missing: default.so, then tuned.so from records.

Records come from the tuning-records lookup (committed records for this vector ISA, or an earlier
`selfie-tvm tune`); only when there are none is the model tuned, within `--budget` trials.
"""

from __future__ import annotations

from runtime.acquire import ResolvedModel
from runtime.artifacts import build_dir, library_paths, records_dir
from runtime.target import TargetSpec
from tuning.build import export
from tuning.tune import count_records

from .options import PREPARE_BUDGET


def prepare(model: ResolvedModel, target: TargetSpec, engines: list[str], budget: int = PREPARE_BUDGET) -> None:
    out = build_dir(model.spec.name, target)
    if "tvm-default" in engines and not library_paths(out, "default")[0].is_file():
        print(f"building default library for {model.spec.name} ({target.id})", flush=True)
        export(model, target, "default")
    if "tvm-tuned" in engines and not library_paths(out, "tuned")[0].is_file():
        records = records_dir(model.spec.name, target)
        if count_records(records) == 0:
            print(f"no tuning records in {records}: tuning within {budget} trials first", flush=True)
            from tuning.build import tuning_module
            from tuning.tune import tune

            tune(tuning_module(model, target), target.to_tvm(), records, budget=budget)
        print(f"building tuned library from {count_records(records)} records in {records}", flush=True)
        export(model, target, "tuned", records=records)

"""Build whatever the benchmark needs and is missing: default.so, then tuned.so from records.

Records come from results/<model>/<target>/tuning (committed for the twin on the reference
machine) or an earlier `selfie-tvm tune`; only when there are none is the model tuned, within
PREPARE_BUDGET trials.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from runtime.acquire import ResolvedModel, resolve_model
from runtime.artifacts import build_dir, library_paths, records_dir
from runtime.errors import SelfieTvmError
from runtime.registry import registry
from runtime.target import TargetSpec, host_target
from tuning.build import export
from tuning.tune import count_records

PREPARE_BUDGET = 500
log = logging.getLogger(__name__)


def prepare(model: ResolvedModel, target: TargetSpec, engines: list[str], budget: int = PREPARE_BUDGET) -> None:
    out = build_dir(model.spec.name, target)
    if "tvm-default" in engines and not library_paths(out, "default")[0].is_file():
        print(f"building default library for {model.spec.name} ({target.id})", flush=True)
        export(model, target, "default")
    if "tvm-tuned" in engines and not library_paths(out, "tuned")[0].is_file():
        records = records_dir(model.spec.name, target)
        if count_records(records) == 0:
            print(f"no tuning records in {records}: tuning within {budget} trials first", flush=True)
            from tuning.importer import import_tflite, optimize
            from tuning.tune import tune

            tvm_target = target.to_tvm()
            tune(optimize(import_tflite(model.path, model.spec.name), tvm_target), tvm_target, records,
                 budget=budget)
        print(f"building tuned library from {count_records(records)} records in {records}", flush=True)
        export(model, target, "tuned", records=records)


def choose_model(name: str) -> ResolvedModel:
    """`auto`: the main model if it can be had (locally or by download), else its architecture twin."""
    if name != "auto":
        return resolve_model(name)
    main = registry().default
    try:
        return resolve_model(main)
    except SelfieTvmError as e:
        twin = next(m for m in registry().models.values() if m.twin_of == main)
        print(f"{main} is not available ({str(e).splitlines()[0]}).\nBenchmarking {twin.name} instead: "
              f"{twin.synthetic_notice}", flush=True)
        return resolve_model(twin.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="auto", help="registry name, or auto (the main model, else its twin)")
    p.add_argument("--engines", default="litert,tvm-default,tvm-tuned")
    p.add_argument("--budget", type=int, default=PREPARE_BUDGET)
    p.add_argument("--chosen-model-file", type=Path, default=None, help="write the chosen model's name here")
    args = p.parse_args(argv)
    model = choose_model(args.model)
    if args.chosen_model_file:
        args.chosen_model_file.write_text(model.spec.name)
    prepare(model, host_target(), args.engines.split(","), args.budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

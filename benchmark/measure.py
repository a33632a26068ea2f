"""What a run measures after its latency runs: agreement with LiteRT, the tuned module's per-kernel profile.

    python -m benchmark.measure RUN.json --out MEASURED.json [--no-profile]

RUN.json is the run's latency results (benchmark/saved_run.py): which model file, engines and thread
counts, and which engines were slow. Measured at the largest thread count; `python -m benchmark` runs
this in a fresh process with TVM_NUM_THREADS set to it, and saves the result into the run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from runtime.acquire import ResolvedModel, resolve_model
from runtime.artifacts import LibraryMetadata, build_dir, library_paths
from runtime.engines import LITERT, TVM_TUNED, create_engine
from runtime.target import host_target

from . import agreement
from .saved_run import SavedRun


def measure(model: ResolvedModel, engines: list[str], threads: int, slow: set[str], *,
            with_profile: bool = True) -> dict:
    """{"threads", "agreement": rows, "profile": rows or None, "default_graph_flop"}; a slow engine is compared
    on the first input only. Without a profile, the FLOPs per image of the default graph stand in for the
    profile's (None when TVM cannot import the model)."""
    created = {e: create_engine(e, model, threads) for e in engines}
    agree = (agreement.compare(model, created, max_inputs={e: 1 for e in slow})
             if LITERT in created and len(created) > 1 else pd.DataFrame())
    prof = tuned_profile(model, threads) if with_profile and TVM_TUNED in created else None
    return {"threads": threads, "agreement": agree.to_dict("records"),
            "profile": None if prof is None else prof.to_dict("records"),
            "default_graph_flop": default_graph_flop(model) if prof is None else None}


def default_graph_flop(model: ResolvedModel) -> float | None:
    from tuning.importer import UnsupportedOperatorError

    from . import profile

    try:
        return profile.graph_flop(model, host_target())
    except UnsupportedOperatorError:
        return None


def tuned_profile(model: ResolvedModel, threads: int) -> pd.DataFrame:
    from runtime.engines.tvm import set_tvm_threads
    from tuning.record_latency import kernel_sources

    from . import profile

    set_tvm_threads(threads)
    target = host_target()
    library, meta_path = library_paths(build_dir(model.spec.name, target), "tuned")
    meta = LibraryMetadata.read(meta_path)
    mod = profile.library_module(model, target, meta.graph)  # imported once, for the FLOPs and the records
    table = profile.profile(library, agreement.inputs_for(model)[0][1], profile.module_kernel_flops(mod))
    sources = kernel_sources(mod, target, meta)
    return profile.with_isolated(table, sources.isolated_ms, sources.schedules)


def measure_run(run: SavedRun, *, with_profile: bool = True) -> dict:
    model = resolve_model(run.model)
    if model.sha256() != run.machine["model_sha256"]:
        raise ValueError(f"{model.path} is not the model file {run.path} measured "
                         f"(sha256 {run.machine['model_sha256']})")
    return measure(model, run.inference_engines(), max(run.thread_counts()), run.slow_engines(),
                   with_profile=with_profile)


def main(argv: list[str] | None = None) -> int:
    from .options import add_options

    p = argparse.ArgumentParser(prog="python -m benchmark.measure", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_json", type=Path)
    p.add_argument("--out", type=Path, required=True, help="where the measurements are written (JSON)")
    add_options(p.add_argument, only=("no_profile",))
    args = p.parse_args(argv)
    try:
        run = SavedRun.read(args.run_json)
    except ValueError as e:
        p.error(str(e))
    args.out.write_text(json.dumps(measure_run(run, with_profile=not args.no_profile), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

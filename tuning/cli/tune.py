"""`selfie-tvm tune`: MetaSchedule tuning (resumable), tuned library export, statistics."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from runtime.cli.common import positive_int
from runtime.errors import SelfieTvmError

from .options import add_model_option, add_target_options, ensure_tvm_threads, rpc_tracker, target_from

DEFAULT_BUDGET = 2000


def register(sub) -> None:
    p = sub.add_parser("tune", help="auto-tune a model with MetaSchedule and export tuned.so")
    add_model_option(p)
    add_target_options(p)
    p.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET,
                   help="total trials, counting those already in the records (default: %(default)s)")
    p.add_argument("--per-task", type=positive_int, default=None, help="cap on trials per task")
    p.add_argument("--per-iter", type=positive_int, default=16, help="candidates measured per search iteration")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="tuning records directory (default: results/tuning/<ISA level>, shared by all models "
                        "and machines of that level; tuning continues from the records already there)")
    p.add_argument("--isolated-estimates", action="store_true",
                   help="when continuing from records, aim trials by the tuner's isolated kernel latencies "
                        "instead of a profile of the current tuned build (the default)")
    p.add_argument("--only", action="append", default=None, metavar="KERNEL_PREFIX",
                   help="tune only kernels whose names start with this (repeatable): top-ups and experiments; "
                        "the tuned library then says which kernels have no record")
    p.add_argument("--time-limit", type=positive_int, default=None, metavar="MINUTES",
                   help="start no new batch after this many minutes (re-run to continue)")
    p.add_argument("--rpc-tracker", type=rpc_tracker, default=None, metavar="HOST:PORT",
                   help="measure on devices registered with this TVM RPC tracker")
    p.add_argument("--rpc-key", default=None, help="device key at the RPC tracker")
    p.add_argument("--rpc-devices", type=positive_int, default=None, metavar="N",
                   help="measure on at most N devices of the key at once (default: every one the tracker has)")
    p.add_argument("--out", type=Path, default=None, help="library directory (default: tvm_model/<model>/<target>)")
    p.set_defaults(run=run)


def _median_ms(engine, x, runs: int = 3) -> float:
    engine.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _profile_current_build(model, target, records, out: Path, x) -> dict[str, float]:
    """Kernel -> ms per inference in the tuned library built from the records so far."""
    from runtime.artifacts import library_paths
    from runtime.profiling import kernel_times
    from tuning.build import export

    print("profiling the current tuned build, to aim the trials where the model spends its time")
    export(model, target, "tuned", records=records, out_root=out)
    times = kernel_times(library_paths(out, "tuned")[0], x)
    return {name: t.ms_per_run for name, t in times.items()}


def _farm(args):
    """The farm to measure on and what its devices are; fails in one sentence before any work."""
    from tuning.farm import RpcSpec, describe_device

    rpc = RpcSpec.parse(args.rpc_tracker, args.rpc_key, args.rpc_devices)
    device = describe_device(rpc)
    print(f"measuring on {device.describe(rpc)}")
    return rpc, device


def run(args) -> int:
    if (args.rpc_tracker is None) != (args.rpc_key is None):
        raise SelfieTvmError("--rpc-tracker and --rpc-key go together: pass both, e.g. "
                             "`selfie-tvm tune --rpc-tracker 127.0.0.1:9190 --rpc-key mydevice`")
    ensure_tvm_threads(args.num_cores)
    rpc, device = _farm(args) if args.rpc_tracker else (None, None)
    import numpy as np

    from runtime.acquire import resolve_model
    from runtime.artifacts import LibraryMetadata, build_dir, library_paths, report_dir
    from runtime.engines import create_engine
    from runtime.engines.tvm import TVMDefaultEngine, TVMTunedEngine
    from tuning import stats
    from tuning.build import export, tuning_module
    from tuning.records import (
        describe_use,
        isa_level,
        read_provenance,
        record_set_dir,
        resolve_records,
        write_provenance,
    )
    from tuning.tune import count_records, tune

    model = resolve_model(args.model, path=args.model_path)
    target = target_from(args, device.llvm_cpu if device else None, device.threads if device else None)
    tvm_target = target.to_tvm()
    work_dir = args.work_dir or record_set_dir(target)
    out = args.out or build_dir(model.spec.name, target)
    existing = resolve_records(model.spec.name, target, work_dir) if count_records(work_dir) else None
    if existing is not None:
        print("continuing from " + existing.summary())
    print(f"tuning {model.spec.name} for {target.id} ({isa_level(target)}); records in {work_dir}")
    # Continue on the graph the records were tuned on, so that their kernels stay the same.
    options = read_provenance(work_dir, isa_level(target)).graph_options

    if not library_paths(out, "default")[0].is_file():
        export(model, target, "default", out_root=out)
    mod = tuning_module(model, target, options)
    x = np.random.default_rng(0).random((1, model.spec.input.height, model.spec.input.width,
                                          model.spec.input.channels), dtype=np.float32)
    in_model_ms = None
    if existing is not None and rpc is None and not args.isolated_estimates and count_records(work_dir) < args.budget:
        in_model_ms = _profile_current_build(model, target, existing, out, x)
    result = tune(mod, tvm_target, work_dir, budget=args.budget, per_task=args.per_task,
                  per_iter=args.per_iter, rpc=rpc, time_limit_s=args.time_limit * 60 if args.time_limit else None,
                  in_model_ms=in_model_ms, only=args.only)
    print(f"trials: {result.trials_run} new, {result.trials_total} in total ({result.seconds / 60:.1f} min)")
    if count_records(work_dir):
        write_provenance(work_dir, target, model.spec.name, options, result.seconds,
                         cpu=device.describe(rpc) if device else None)
    records = resolve_records(model.spec.name, target, work_dir)
    print("\n".join(describe_use(records, target)))
    lib = export(model, target, "tuned", records=records, budget=args.budget, out_root=out)
    print(f"wrote {lib}")
    warning = LibraryMetadata.read(library_paths(out, "tuned")[1]).tuning_warning
    if warning:
        print(f"warning: {warning}; give `selfie-tvm tune` a budget that reaches them")

    default_ms = tuned_ms = litert_ms = None
    if rpc is None:
        threads = target.num_cores
        default_ms = _median_ms(TVMDefaultEngine(model, threads, target=target, build_root=out), x)
        tuned_ms = _median_ms(TVMTunedEngine(model, threads, target=target, build_root=out), x)
        litert_ms = _median_ms(create_engine("litert", model, threads), x)
        print(f"median of 3 ({threads} threads): default {default_ms:.1f} ms, tuned {tuned_ms:.1f} ms "
              f"({default_ms / tuned_ms:.1f}x), LiteRT {litert_ms:.1f} ms")
    s = stats.collect(mod, tvm_target, work_dir)
    paths = stats.write(s, report_dir(model.spec.name, target), title=f"{model.spec.name} on {target.id}",
                        default_ms=default_ms, litert_ms=litert_ms)
    print("statistics: " + ", ".join(str(p) for p in paths))
    if model.spec.synthetic_notice:
        print(f"note: {model.spec.synthetic_notice}")
    return 0

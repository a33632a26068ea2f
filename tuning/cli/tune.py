"""`selfie-tvm tune`: MetaSchedule tuning (resumable), tuned library export, statistics."""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
from pathlib import Path

from runtime.acquire import ALL
from runtime.cli.common import positive_int
from runtime.errors import SelfieTvmError
from tuning import COLD, DEFAULT_BUDGET, HOT, MODULE_EQUALITIES, STRUCTURAL
from tuning.errors import NoKernelMatchedError

from .options import add_model_option, add_target_options, ensure_tvm_threads, rpc_tracker, target_from

log = logging.getLogger(__name__)

DEFAULT_TIME_LIMIT_MIN = 60
MEASURE_ROUNDS = 20
SLOW_ROUNDS, SLOW_MS = 3, 1000.0  # an engine whose warm-up run took longer (an untuned library) runs 3 rounds
BEFORE = "before"  # the library the run started from (untuned, or tuned from the records before it)
STATISTICS = "statistics"  # under a --work-dir: that run's statistics (tuning_summary.md, ...)
SEARCHES = ("default", "small")  # --search: MetaSchedule's evolutionary search, or tuning.tune.small_search


def minutes(text: str) -> float:
    """argparse type for --time-limit: a positive number of minutes (fractions allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 minutes, got {text}")
    return value


def register(sub) -> None:
    p = sub.add_parser("tune", help="auto-tune a model with MetaSchedule and export tuned.so")
    add_model_option(p, all_models=True)
    add_target_options(p)
    p.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET,
                   help="trials to measure in this run (default: %(default)s)")
    p.add_argument("--per-task", type=positive_int, default=None, help="cap on trials per task")
    p.add_argument("--per-iter", type=positive_int, default=16, help="candidates measured per search iteration")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="a records directory of your own, used as it is (default: measure into "
                        "tvm_model/tuning/<ISA level>, seeded from the committed results/tuning/<ISA level>, "
                        "and keep the best records of each kernel there)")
    p.add_argument("--profile-guided", action="store_true",
                   help="when continuing from records, aim trials by a profile of the current tuned build instead "
                        "of the tuner's isolated kernel latencies (no gain measured: README, Tuning)")
    p.add_argument("--only", action="append", default=None, metavar="KERNEL_PREFIX",
                   help="tune only kernels whose names start with this (repeatable): top-ups and experiments; "
                        "the tuned library then says which kernels have no record")
    p.add_argument("--cold-cache", action="store_true",
                   help="time each candidate with its weights and output flushed from the cache before every run, "
                        "as the kernel meets them inside the model (MetaSchedule's enable_cpu_cache_flush), instead "
                        "of back to back with all its data cached. Needs a --work-dir of its own: the committed "
                        "records are measured hot, and the two kinds rank on different scales")
    p.add_argument("--time-limit", type=minutes, default=DEFAULT_TIME_LIMIT_MIN, metavar="MINUTES",
                   help="start no new batch after this many minutes (default: %(default)s; re-run to continue)")
    p.add_argument("--module-equality", choices=MODULE_EQUALITIES, default=STRUCTURAL,
                   help="structural: one task and record per distinct kernel; anchor-block: kernels whose "
                        "anchor block (their convolution) is the same share one task and one record, replayed "
                        "on each of them at build time. Needs a --work-dir of its own (default: %(default)s)")
    p.add_argument("--register-tiles", action=argparse.BooleanOptionalAction, default=None,
                   help="add 4-6 x 16 register-tile designs for 1x1 convs to the search space "
                        "(default: on for AVX2 targets without AVX-512, e.g. --portable)")
    p.add_argument("--search", choices=SEARCHES, default="default",
                   help="small = a quick search for smoke runs and tests: records, not performance (default: "
                        "MetaSchedule's evolutionary search)")
    p.add_argument("--rpc-tracker", type=rpc_tracker, default=None, metavar="HOST:PORT",
                   help="measure on devices registered with this TVM RPC tracker")
    p.add_argument("--rpc-key", default=None, metavar="KEY",
                   help="the devices' key at the tracker: the --key their RPC servers registered with (`./nox -s "
                        "farm -- --key farm`, compose's SELFIE_RPC_KEY, default farm)")
    p.add_argument("--rpc-devices", type=positive_int, default=None, metavar="N",
                   help="measure on at most N devices of the key at once (default: every one the tracker has)")
    p.add_argument("--out", type=Path, default=None, help="library directory (default: tvm_model/<model>/<target>)")
    p.set_defaults(run=run)


def _timed_rounds(engines: dict, x, rounds: int = MEASURE_ROUNDS) -> dict[str, list[float]]:
    """Each engine's latencies (ms), measured in interleaved rounds (these machines drift), each run once the
    other engines' pools are idle (runtime/idle.py: the benchmark's and the bot's protocol)."""
    from runtime.idle import timed_after_idle_ms

    warm_up_ms = {name: timed_after_idle_ms(lambda engine=engine: engine.run(x))[0] for name, engine in engines.items()}
    # A slow engine (seconds per run) takes part in the first SLOW_ROUNDS rounds only.
    own_rounds = {name: min(rounds, SLOW_ROUNDS) if ms > SLOW_MS else rounds for name, ms in warm_up_ms.items()}
    times: dict[str, list[float]] = {name: [] for name in engines}
    for i in range(rounds):
        for name, engine in engines.items():
            if i < own_rounds[name]:
                times[name].append(timed_after_idle_ms(lambda engine=engine: engine.run(x))[0])
    return times


def _medians_ms(engines: dict, x, rounds: int = MEASURE_ROUNDS) -> dict[str, float]:
    return {name: statistics.median(t) for name, t in _timed_rounds(engines, x, rounds).items()}


def _paired(times: dict[str, list[float]], first: str, second: str) -> tuple[float, int, int]:
    """first / second round by round (the rounds both ran): the median ratio, in how many rounds first was the
    faster, and of how many. Drift between rounds moves both sides of a round alike."""
    ratios = [a / b for a, b in zip(times[first], times[second], strict=False)]
    return statistics.median(ratios), sum(r < 1 for r in ratios), len(ratios)


def _keep(library: Path, into: Path) -> Path:
    """A copy of a library and its metadata, to be timed beside the one that replaces it."""
    kept = into / library.name
    shutil.copy2(library, kept)
    shutil.copy2(library.with_suffix(".json"), kept.with_suffix(".json"))
    return kept


def _fmt(ms: float | None) -> str:
    return f"{ms:.1f} ms" if ms is not None else "n/a"


def _estimate(ms: float | None, measured: int, kernels: int) -> str:
    return _fmt(ms) if ms is not None else f"n/a ({measured} of {kernels} kernels measured)"


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
    if args.model == ALL and (args.model_path is not None or args.out is not None):
        raise SelfieTvmError(f"--model {ALL} tunes every available model into its own library directory: "
                             "drop --model-path and --out, or name one model")
    if args.module_equality != STRUCTURAL and args.work_dir is None:
        raise SelfieTvmError(f"--module-equality {args.module_equality} records cannot join the {STRUCTURAL} ones "
                             "kept in results/tuning: give them a --work-dir of their own")
    if args.cold_cache and args.work_dir is None:
        raise SelfieTvmError("--cold-cache records cannot join the ones kept in results/tuning, which are measured "
                             "hot: give them a --work-dir of their own")
    ensure_tvm_threads(args.num_cores)
    rpc, device = _farm(args) if args.rpc_tracker else (None, None)
    from runtime.acquire import available_models, resolve_model

    if args.model != ALL:
        tune_model(args, resolve_model(args.model, path=args.model_path), rpc, device)
        return 0
    models = available_models()
    print(f"tuning {len(models)} models one after another, each for up to {args.budget} trials or "
          f"{args.time_limit:g} min: {', '.join(m.spec.name for m in models)}")
    failed, unmatched = [], []
    for i, model in enumerate(models, 1):
        print(f"\n[{i}/{len(models)}] {model.spec.name}")
        try:
            tune_model(args, model, rpc, device)
        except NoKernelMatchedError:  # --only aimed at other models' kernels
            print(f"{model.spec.name}: no kernel starts with --only {' '.join(args.only)}; left alone")
            unmatched.append(model.spec.name)
        except SelfieTvmError as e:  # one model's failure does not cost the others their time
            print(f"error: {model.spec.name}: {e}")
            failed.append(model.spec.name)
        except Exception as e:  # a TVM or MetaSchedule failure: the traceback is worth having
            log.error("%s: %s: %s", model.spec.name, type(e).__name__, e, exc_info=True)
            failed.append(model.spec.name)
    if failed:
        print(f"{len(failed)} of {len(models)} models failed: {', '.join(failed)}")
    if args.only and models and len(unmatched) == len(models):
        raise SelfieTvmError(f"--only {' '.join(args.only)}: no kernel of any model starts with that")
    return 1 if failed else 0


def tune_model(args, model, rpc, device) -> None:
    """One model's run: tune, publish the records, export tuned.so, statistics, the summary."""
    # A copy of the library the run starts from lives here until it has been timed beside its successor.
    with tempfile.TemporaryDirectory(prefix="selfie-tvm-before-") as kept:
        _tune_model(args, model, rpc, device, Path(kept))


def _tune_model(args, model, rpc, device, kept: Path) -> None:
    import numpy as np

    from runtime.artifacts import build_dir, library_paths, report_dir
    from runtime.engines import LITERT, TVM_TUNED, create_engine
    from runtime.engines.litert_isa import AVX2, AVX2_LEVEL, NATIVE
    from runtime.engines.tvm import TVMDefaultEngine, TVMTunedEngine
    from runtime.profiling import kernel_times
    from runtime.target import host_target
    from tuning import stats
    from tuning.build import export, record_coverage, tuning_module
    from tuning.database import count_records, tag_measuring_cpu
    from tuning.records import (
        PROVENANCE,
        RecordSet,
        check_measured,
        check_module_equality,
        describe_use,
        isa_level,
        publish,
        read_provenance,
        record_set_dir,
        seed_working,
        working_dir,
        write_provenance,
    )
    from tuning.tasks import plan_tasks
    from tuning.tune import small_search, tune

    target = target_from(args, device.llvm_cpu if device else None, device.threads if device else None)
    # A portable target's records name the CPU that measured them (`model`), as a CPU's records do (`mcpu`).
    tvm_target = tag_measuring_cpu(target.to_tvm(), device.llvm_cpu if device else host_target().mcpu)
    # After a farm run the library is for the devices: their records rank first, also for a portable target.
    ranked_by = device.llvm_cpu if device else None
    isa = isa_level(target)
    committed = None if args.work_dir else record_set_dir(target)
    work_dir = args.work_dir or working_dir(target)
    kept_in = committed or work_dir
    out = args.out or build_dir(model.spec.name, target)
    provenance = read_provenance(kept_in, isa)
    check_module_equality(kept_in, provenance, args.module_equality)
    timing = COLD if args.cold_cache else HOT
    check_measured(kept_in, provenance, timing)
    print(f"tuning {model.spec.name} for {target.id} ({isa}): up to {args.budget} trials or {args.time_limit:g} min; "
          f"measuring into {work_dir}" + (f", best records kept in {committed}" if committed else "")
          + (f"; kernels sharing an anchor block share a task ({args.module_equality})"
             if args.module_equality != STRUCTURAL else ""))
    # Continue on the graph the records were tuned on, so that their kernels stay the same.
    options = provenance.graph_options
    mod = tuning_module(model, target, options)
    # Before anything is written or built: a prefix that matches no task is most likely a typo.
    plan = plan_tasks(mod, tvm_target, args.only, args.module_equality) if args.only else None
    if committed is not None:
        seed_working(committed, work_dir)
    if not (work_dir / PROVENANCE).is_file():
        # Mark the directory before a record lands: its graph and module equality (records without provenance
        # would count as structural), which `records merge` checks, also after a run that was killed.
        work_dir.mkdir(parents=True, exist_ok=True)
        provenance = write_provenance(work_dir, target, model.spec.name, options,
                                      module_equality=args.module_equality, measured=timing)
    existing = RecordSet(kept_in, provenance) if count_records(kept_in) else None
    if existing is not None:
        cover = record_coverage(mod, target, existing)
        if len(cover.untuned) == cover.kernels:
            # Records of other models only: this model starts from its untuned build.
            print(f"{existing.summary()}: none for {model.spec.name}'s {cover.kernels} kernels")
            existing = None
        elif cover.untuned:
            print(f"{model.spec.name}: {cover.kernels - len(cover.untuned)} of {cover.kernels} kernels have records")

    if not library_paths(out, "default")[0].is_file():
        export(model, target, "default", out_root=out)
    x = np.random.default_rng(0).random((1, model.spec.input.height, model.spec.input.width,
                                          model.spec.input.channels), dtype=np.float32)
    threads = target.num_cores
    in_model_ms = None
    # The library before the run, timed at the end in the same interleaved rounds as its successor and LiteRT
    # (a copy: the export below replaces tuned.so).
    before_library = library_paths(out, "default")[0]
    if existing is not None:
        print("continuing from " + existing.summary())
        export(model, target, "tuned", records=existing, out_root=out, warn=False, ranked_by=ranked_by)
        if rpc is None:
            before_library = _keep(library_paths(out, "tuned")[0], kept)
        if rpc is None and args.profile_guided:
            # Aim the trials at where the current tuned build spends its time.
            times = kernel_times(library_paths(out, "tuned")[0], x)
            in_model_ms = {name: t.ms_per_run for name, t in times.items()}
            print(f"aiming trials by a profile of the current tuned build ({len(in_model_ms)} kernels, "
                  f"{sum(in_model_ms.values()):.1f} ms per inference)")
    result = tune(mod, tvm_target, work_dir, budget=args.budget, per_task=args.per_task,
                  per_iter=args.per_iter, rpc=rpc, time_limit_s=args.time_limit * 60,
                  in_model_ms=in_model_ms, only=args.only, module_equality=args.module_equality,
                  register_tiles=args.register_tiles, search=small_search() if args.search == "small" else None,
                  cold=args.cold_cache, plan=plan)
    measured_on = device.describe(rpc) if device else None
    measured = (f"{result.trials_run} trials measured ({result.valid_trials} built and ran) in "
                f"{result.seconds / 60:.1f} min; stopped because {result.stopped_because}")
    if result.valid_trials == 0:
        if result.trials_run:
            raise SelfieTvmError(f"{measured}: no candidate built and ran, so nothing was kept; "
                                 f"see {work_dir / 'logs'}")
        print(f"summary: nothing measured ({measured}); no records, library or statistics changed")
        return

    if committed is not None:
        records = publish(work_dir, committed, target, model.spec.name, options, result.seconds,
                          result.trials_run, cpu=measured_on)
    else:
        records = RecordSet(work_dir, write_provenance(work_dir, target, model.spec.name, options,
                                                         result.seconds, result.trials_run, cpu=measured_on,
                                                         module_equality=args.module_equality, measured=timing))
    print("\n".join(describe_use(records, target, ranked_by)))
    lib = export(model, target, "tuned", records=records, budget=args.budget, out_root=out, ranked_by=ranked_by)
    print(f"wrote {lib}")

    before_ms = after_ms = litert_ms = None
    # An x86-64-v3 library is compared with LiteRT's AVX2 kernels, also on a host that has AVX-512.
    litert_kernels = AVX2 if isa == AVX2_LEVEL else NATIVE
    s = stats.collect(mod, tvm_target, work_dir, args.module_equality)
    # A directory of one's own is an experiment: its statistics stay beside its records, and the committed
    # report (which describes the committed records) is left as it is.
    stats_dir = report_dir(model.spec.name, target, root=None if committed else work_dir / STATISTICS)
    if rpc is None:
        before_engine = TVMTunedEngine if existing is not None else TVMDefaultEngine
        times = _timed_rounds({BEFORE: before_engine(model, threads, target=target, library=before_library),
                               TVM_TUNED: TVMTunedEngine(model, threads, target=target, build_root=out),
                               LITERT: create_engine(LITERT, model, threads, isa=litert_kernels)}, x)
        before_ms, after_ms, litert_ms = (statistics.median(times[name]) for name in (BEFORE, TVM_TUNED, LITERT))
        paired = _paired(times, TVM_TUNED, BEFORE)
        stats.append_run(stats_dir, s.total_trials, result.seconds / 60, after_ms,
                         litert_ms, litert_kernels=litert_kernels, threads=threads,
                         cpu=host_target().mcpu)
    paths = stats.write(s, stats_dir, title=f"{model.spec.name} on {target.id}",
                        default_ms=before_ms if existing is None else None, litert_ms=litert_ms)
    print("statistics: " + ", ".join(str(p) for p in paths))
    print(f"summary: {measured}; {result.kernels_improved} of {result.kernels} kernels improved")
    print(f"  estimated model latency (sum of best kernel latencies): "
          f"{_estimate(result.estimated_ms_before, result.kernels_measured_before, result.kernels)} -> "
          f"{_estimate(result.estimated_ms_after, result.kernels_measured_after, result.kernels)}")
    if rpc is None:
        print(f"  measured at {threads} threads (medians of {MEASURE_ROUNDS} interleaved rounds, each run once "
              f"the others' threads were idle): "
              f"{'tuned' if existing is not None else 'untuned'} {_fmt(before_ms)} -> tuned {_fmt(after_ms)}; "
              f"LiteRT{' (AVX2 kernels)' if litert_kernels == AVX2 else ''} {_fmt(litert_ms)} "
              f"(tuned/LiteRT {after_ms / litert_ms:.2f})")
        ratio, faster, rounds = paired
        print(f"  round by round, tuned / {'tuned before' if existing is not None else 'untuned'}: median {ratio:.2f}, "
              f"the new library faster in {faster} of {rounds} rounds")
    else:
        print("  measured on the RPC devices only: run `./nox -s benchmark` there for model latencies")
    if committed is None and args.module_equality == STRUCTURAL:
        print(f"to add these records to the committed set of {isa}: `selfie-tvm records merge {work_dir}`")
    if model.spec.synthetic_notice:
        print(f"note: {model.spec.synthetic_notice}")

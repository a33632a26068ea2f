"""`python -m benchmark` (what `nox -s benchmark` runs): build what is missing, measure, save, report.

1. `benchmark.prepare` builds the TVM libraries that are missing (from tuning records when they exist).
2. Each thread count in a fresh process: pytest-benchmark runs `benchmark/test_latency.py` with the same
   options (benchmark/options.py), saving raw samples (`--benchmark-save-data`) and the run
   (`--benchmark-autosave`, one file per thread count).
3. `benchmark.measure`, in another fresh process: agreement with LiteRT and the tuned module's profile.
4. For a real model, `benchmark.pipeline` in a fresh process per thread count: the whole pipeline
   (photo in, masks out) of MediaPipe Tasks beside the project's with LiteRT and TVM tuned.
5. The processes' results are saved as one run, `benchmark.json` (benchmark/saved_run.py), and
   `benchmark.report` renders it into results/<model>/<target>/.

`--model all` (or several names, comma-separated) does this for every registry model available here,
without ever tuning (benchmark/prepare.py), then renders results/leaderboard.md from the saved runs
(benchmark/leaderboard.py).

Arguments that are not benchmark options go to pytest, e.g. `--benchmark-compare`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime.acquire import ResolvedModel
from runtime.engines import LITERT, TVM_TUNED

from .options import add_options, choose_model, choose_models, is_several, parse_engines, parse_threads, pytest_argv

HERE = Path(__file__).resolve().parent


def fresh_process_env(threads: int) -> dict[str, str]:
    """A child's environment with TVM's pool sized before TVM starts there.

    One thread count per process: a pool resized earlier in a process slowed LiteRT's 2-thread runs
    about 2x in half the runs (TVM pins its workers to cores, XNNPACK keeps a pool of its own).
    """
    return {**os.environ, "TVM_NUM_THREADS": str(threads)}


def measure_latency(threads: int, bench_json: Path, options: list[str], pytest_args: list[str], *,
                    processing: bool) -> int:
    """One thread count's latency benchmarks in a fresh process (`processing`: also pre/post-processing)."""
    tests = str(HERE) if processing else f"{HERE / 'test_latency.py'}::test_inference"
    command = [sys.executable, "-m", "pytest", tests, "-v", "--benchmark-enable", "--benchmark-save-data",
               "--benchmark-autosave", f"--benchmark-json={bench_json}",
               "--benchmark-columns=min,median,iqr,max,rounds", "-p", "no:cacheprovider",
               *options, "--threads", str(threads), *pytest_args]
    return subprocess.run(command, cwd=HERE.parent, env=fresh_process_env(threads)).returncode


def measure_after(run_json: Path, measured_json: Path, threads: int, *, with_profile: bool) -> int:
    """benchmark/measure.py in a fresh process at `threads` (the run's largest count)."""
    command = [sys.executable, "-m", "benchmark.measure", str(run_json), "--out", str(measured_json),
               *([] if with_profile else ["--no-profile"])]
    return subprocess.run(command, cwd=HERE.parent, env=fresh_process_env(threads)).returncode


PIPELINE_ENGINES = (LITERT, TVM_TUNED)


def measure_pipelines(model: ResolvedModel, engines: list[str], threads: list[int], runs: int,
                      work: Path) -> dict | int:
    """The whole-pipeline comparison with MediaPipe, one fresh process per thread count (benchmark/pipeline.py);
    or an exit code."""
    if model.spec.synthetic:
        return {"skipped": "synthetic weights: its masks are meaningless, so it is not compared with MediaPipe"}
    if runs < 1:
        return {"skipped": "--pipeline-runs 0"}
    ours = [e for e in PIPELINE_ENGINES if e in engines]
    parts = []
    for n in threads:
        part = work / f"pipeline_{n}t.json"
        command = [sys.executable, "-m", "benchmark.pipeline", "--model", model.spec.name, "--engines", ",".join(ours),
                   "--runs", str(runs), "--out", str(part)]
        if code := subprocess.run(command, cwd=HERE.parent, env=fresh_process_env(n)).returncode:
            return code
        parts.append(json.loads(part.read_text()))
    return {"runs": runs, "parts": parts}


def run_benchmark(args: argparse.Namespace, model: ResolvedModel, engines: list[str], pytest_args: list[str],
                  work: Path, phases: dict[str, float], not_measured: dict[str, str] | None = None) -> Path | int:
    """Measure every thread count and what follows, each in a fresh process; the saved run, or an exit code."""
    from .machine import KEY
    from .saved_run import merge

    threads = parse_threads(args.threads)
    options = pytest_argv({**vars(args), "model": model.spec.name, "engines": ",".join(engines), "threads": None})
    t0 = time.perf_counter()
    parts = []
    for i, n in enumerate(threads):
        part = work / f"latency_{n}t.json"
        if code := measure_latency(n, part, options, pytest_args, processing=i == 0):
            return code
        parts.append(json.loads(part.read_text()))
    run_json = work / "benchmark.json"
    run_json.write_text(json.dumps(merge(parts), indent=1) + "\n")
    phases["measure"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    measured_json = work / "measured.json"
    if code := measure_after(run_json, measured_json, max(threads), with_profile=not args.no_profile):
        return code
    phases["agreement and profile"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    pipeline = measure_pipelines(model, engines, threads, args.pipeline_runs, work)
    if isinstance(pipeline, int):
        return pipeline
    phases["whole pipelines vs MediaPipe"] = time.perf_counter() - t2
    run = json.loads(run_json.read_text())
    run[KEY] = {**json.loads(measured_json.read_text()), "pipeline": pipeline, "not_measured": not_measured or {}}
    run_json.write_text(json.dumps(run, indent=1) + "\n")
    return run_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p.add_argument)
    args, pytest_args = p.parse_known_args(argv)
    try:
        engines = parse_engines(args.engines)
        parse_threads(args.threads)
    except ValueError as e:
        p.error(str(e))
    if is_several(args.model):
        if args.out:
            p.error("--out names one report directory: with several models each report goes to "
                    "results/<model>/<target>/")
        return leaderboard(args, engines, pytest_args)
    result = benchmark_model(args, choose_model(args.model), engines, pytest_args, tune_if_missing=True)
    return result if isinstance(result, int) else 0


def benchmark_model(args: argparse.Namespace, model: ResolvedModel, engines: list[str], pytest_args: list[str], *,
                    tune_if_missing: bool) -> Path | int:
    """Prepare, measure, save and render one model; its report, or an exit code."""
    from runtime.target import host_target

    from .prepare import prepare

    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    not_measured = prepare(model, host_target(), engines, args.budget, tune_if_missing=tune_if_missing)
    engines = [e for e in engines if e not in not_measured]
    phases["prepare"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="selfie-tvm-bench-") as work:
        run_json = run_benchmark(args, model, engines, pytest_args, Path(work), phases, not_measured)
        if isinstance(run_json, int):
            return run_json
        t2 = time.perf_counter()
        from .report import write_report

        report = write_report(run_json, Path(args.out) if args.out else None)
        phases["report"] = time.perf_counter() - t2
    print(f"report: {report}")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
          + f", total {sum(phases.values()):.0f} s")
    return report


def leaderboard(args: argparse.Namespace, engines: list[str], pytest_args: list[str]) -> int:
    """Every model of `--model` benchmarked in turn (never tuning), then results/leaderboard.md from the saved runs."""
    from .leaderboard import write_leaderboard

    models, missing = choose_models(args.model)
    for note in missing:
        print(f"leaderboard: {note}", flush=True)
    runs = []
    for model in models:
        print(f"== {model.spec.name} ==", flush=True)
        result = benchmark_model(args, model, engines, pytest_args, tune_if_missing=False)
        if isinstance(result, int):
            return result
        runs.append(result.parent / "benchmark.json")
    print(f"leaderboard: {write_leaderboard(runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

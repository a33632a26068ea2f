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
without ever tuning (benchmark/prepare.py); a model that fails does not stop the others (each failure is
named at the end, and the exit status is non-zero). Then it renders results/leaderboard.md from every
saved run of this host's target (benchmark/leaderboard.py, as `python -m benchmark.leaderboard` does).

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
import traceback
from pathlib import Path

from runtime.acquire import ResolvedModel
from runtime.engines import LITERT, TVM_TUNED
from runtime.errors import SelfieTvmError

from .options import add_options, choose_model, choose_models, is_several, parse_engines, parse_threads, pytest_argv

HERE = Path(__file__).resolve().parent


class StageFailed(RuntimeError):
    """A measuring process exited with an error (its own output, above, says why)."""

    def __init__(self, stage: str, code: int) -> None:
        super().__init__(f"{stage} exited with code {code} (its output is above)")
        self.code = code


def _run_stage(stage: str, command: list[str], threads: int) -> None:
    if code := subprocess.run(command, cwd=HERE.parent, env=fresh_process_env(threads)).returncode:
        raise StageFailed(stage, code)


def fresh_process_env(threads: int) -> dict[str, str]:
    """A child's environment with TVM's pool sized before TVM starts there.

    One thread count per process: a pool resized earlier in a process slowed LiteRT's 2-thread runs
    about 2x in half the runs (TVM pins its workers to cores, XNNPACK keeps a pool of its own).
    """
    # The latency run is a pytest session of its own: started from a pytest-xdist worker (the test suite), it must
    # not inherit the worker's variables, with which pytest-benchmark disables itself.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    return {**inherited, "TVM_NUM_THREADS": str(threads)}


def measure_latency(threads: int, bench_json: Path, options: list[str], pytest_args: list[str], *,
                    processing: bool) -> None:
    """One thread count's latency benchmarks in a fresh process (`processing`: also pre/post-processing)."""
    tests = str(HERE) if processing else f"{HERE / 'test_latency.py'}::test_inference"
    command = [sys.executable, "-m", "pytest", tests, "-v", "--benchmark-enable", "--benchmark-save-data",
               "--benchmark-autosave", f"--benchmark-json={bench_json}",
               "--benchmark-columns=min,median,iqr,max,rounds", "-p", "no:cacheprovider",
               *options, "--threads", str(threads), *pytest_args]
    _run_stage(f"the latency runs at {threads} thread(s)", command, threads)


def measure_after(run_json: Path, measured_json: Path, threads: int, *, with_profile: bool) -> None:
    """benchmark/measure.py in a fresh process at `threads` (the run's largest count)."""
    command = [sys.executable, "-m", "benchmark.measure", str(run_json), "--out", str(measured_json),
               *([] if with_profile else ["--no-profile"])]
    _run_stage("the agreement and profile process", command, threads)


PIPELINE_ENGINES = (LITERT, TVM_TUNED)


def measure_pipelines(model: ResolvedModel, engines: list[str], threads: list[int], runs: int,
                      work: Path) -> dict:
    """The whole-pipeline comparison with MediaPipe, one fresh process per thread count (benchmark/pipeline.py)."""
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
        _run_stage(f"the whole-pipeline comparison at {n} thread(s)", command, n)
        parts.append(json.loads(part.read_text()))
    return {"runs": runs, "parts": parts}


def run_benchmark(args: argparse.Namespace, model: ResolvedModel, engines: list[str], pytest_args: list[str],
                  work: Path, phases: dict[str, float], not_measured: dict[str, str] | None = None) -> Path:
    """Measure every thread count and what follows, each in a fresh process; the saved run (StageFailed if a
    process fails)."""
    from .machine import KEY
    from .saved_run import merge

    threads = parse_threads(args.threads)
    options = pytest_argv({**vars(args), "model": model.spec.name, "engines": ",".join(engines), "threads": None})
    t0 = time.perf_counter()
    parts = []
    for i, n in enumerate(threads):
        part = work / f"latency_{n}t.json"
        measure_latency(n, part, options, pytest_args, processing=i == 0)
        parts.append(json.loads(part.read_text()))
    run_json = work / "benchmark.json"
    run_json.write_text(json.dumps(merge(parts), indent=1) + "\n")
    phases["measure"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    measured_json = work / "measured.json"
    measure_after(run_json, measured_json, max(threads), with_profile=not args.no_profile)
    phases["agreement and profile"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    pipeline = measure_pipelines(model, engines, threads, args.pipeline_runs, work)
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
        try:
            models, notes = choose_models(args.model)
        except SelfieTvmError as e:
            p.error(str(e))
        return leaderboard(args, models, notes, engines, pytest_args)
    try:
        benchmark_model(args, choose_model(args.model), engines, pytest_args, tune_if_missing=True)
    except StageFailed as e:
        print(f"benchmark: {e}", file=sys.stderr)
        return e.code
    return 0


def benchmark_model(args: argparse.Namespace, model: ResolvedModel, engines: list[str], pytest_args: list[str], *,
                    tune_if_missing: bool) -> Path:
    """Prepare, measure, save and render one model; its report (StageFailed if a measuring process fails)."""
    from runtime.target import host_target

    from .prepare import prepare

    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    not_measured = prepare(model, host_target(), engines, args.budget, tune_if_missing=tune_if_missing)
    engines = [e for e in engines if e not in not_measured]
    phases["prepare"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="selfie-tvm-bench-") as work:
        run_json = run_benchmark(args, model, engines, pytest_args, Path(work), phases, not_measured)
        t2 = time.perf_counter()
        from .report import write_report

        report = write_report(run_json, Path(args.out) if args.out else None)
        phases["report"] = time.perf_counter() - t2
    print(f"report: {report}")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
          + f", total {sum(phases.values()):.0f} s")
    return report


def leaderboard(args: argparse.Namespace, models: list[ResolvedModel], notes: dict[str, str], engines: list[str],
                pytest_args: list[str]) -> int:
    """Every model of `--model` benchmarked in turn (never tuning; a failure does not stop the others), then
    results/leaderboard.md from every saved run of this target, `notes` (options.choose_models) saying why a
    model has none. Non-zero if a model failed."""
    from runtime.target import host_target

    from .leaderboard import saved_runs, write_leaderboard

    for name, note in notes.items():
        print(f"leaderboard: {name}: {note}", flush=True)
    failed: dict[str, str] = {}
    for model in models:
        print(f"== {model.spec.name} ==", flush=True)
        try:
            benchmark_model(args, model, engines, pytest_args, tune_if_missing=False)
        except Exception as e:  # any failure of one model (a process, a build, its file): the others still run
            if not isinstance(e, StageFailed):
                traceback.print_exc()
            failed[model.spec.name] = _one_line(e)
    paths, missing = saved_runs(host_target().id, {**notes, **{name: f"its benchmark failed: {reason}"
                                                               for name, reason in failed.items()}})
    if paths:
        print(f"leaderboard: {write_leaderboard(paths, missing=missing)}")
    else:
        print("leaderboard: no saved run for this target, nothing to render", file=sys.stderr)
    for name, reason in failed.items():
        print(f"leaderboard: {name} failed: {reason}", file=sys.stderr)
    return 1 if failed or not paths else 0


def _one_line(error: Exception, limit: int = 300) -> str:
    """The error's message on one line: its first line, or its last after a traceback (TVM's errors)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    text = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    if not isinstance(error, StageFailed | SelfieTvmError):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 1] + "…"


if __name__ == "__main__":
    raise SystemExit(main())

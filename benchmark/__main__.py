"""`python -m benchmark` (what `nox -s benchmark` runs): build what is missing, measure, report.

1. `benchmark.prepare` builds the TVM libraries that are missing (from tuning records when they exist).
2. pytest-benchmark runs `benchmark/test_latency.py` with the same options (benchmark/options.py),
   saving raw samples (`--benchmark-save-data`) and the run (`--benchmark-autosave`).
3. `benchmark.report` writes results/<model>/<target>/.

Arguments that are not benchmark options go to pytest, e.g. `--benchmark-compare`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .options import add_options, choose_model, parse_engines, parse_threads, pytest_argv

HERE = Path(__file__).resolve().parent


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
    phases: dict[str, float] = {}
    t0 = time.perf_counter()

    from runtime.target import host_target

    from .prepare import prepare

    model = choose_model(args.model)
    prepare(model, host_target(), engines, args.budget)
    phases["prepare"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    bench_json = Path(tempfile.mkdtemp(prefix="selfie-tvm-bench-")) / "benchmark.json"
    command = [sys.executable, "-m", "pytest", str(HERE), "-v", "--benchmark-enable", "--benchmark-save-data",
               "--benchmark-autosave", f"--benchmark-json={bench_json}",
               "--benchmark-columns=min,median,iqr,max,rounds", "-p", "no:cacheprovider",
               *pytest_argv({**vars(args), "model": model.spec.name}), *pytest_args]
    code = subprocess.run(command, cwd=HERE.parent).returncode
    phases["measure"] = time.perf_counter() - t1
    if code:
        return code

    t2 = time.perf_counter()
    from .report import write_report

    out = Path(args.out) if args.out else None
    report = write_report(bench_json, model.spec.name, out, with_profile=not args.no_profile)
    phases["report"] = time.perf_counter() - t2
    print(f"report: {report}")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
          + f", total {sum(phases.values()):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

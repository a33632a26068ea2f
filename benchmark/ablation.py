"""Ablation: several TVM libraries of one model and LiteRT, timed side by side in one interleaved run.

    python -m benchmark.ablation --model selfie_multiclass_twin --out results/<model>/<target> \
        --variant "tuned (all levers)=tvm_model/.../tuned.so" --variant "previous records=/tmp/prev.so"

Every round runs each variant once, in a rotating order, so drift and noise hit all of them alike;
p50 with a distribution-free 95 % confidence interval per variant and thread count.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.summary import median_ci


@dataclass
class Variant:
    name: str
    library: Path | None  # None: LiteRT


def _tvm_runner(library: Path):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    main = vm["main"]
    dev = tvm.cpu()
    return lambda x: main(tvm.runtime.tensor(x, dev)).numpy()


def run_ablation(model_name: str, variants: list[Variant], threads: list[int], rounds: int,
                 warmup: int = 2) -> pd.DataFrame:
    from runtime.acquire import resolve_model
    from runtime.engines import create_engine
    from runtime.engines.tvm import set_tvm_threads

    model = resolve_model(model_name)
    spec = model.spec.input
    x = np.random.default_rng(0).random((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    rows = []
    for n_threads in threads:
        set_tvm_threads(n_threads)
        runners = {}
        reference = None
        for v in variants:
            if v.library is None:
                engine = create_engine("litert", model, n_threads)
                runners[v.name] = engine.run
            else:
                runners[v.name] = _tvm_runner(v.library)
        for v in variants:
            out = runners[v.name](x)
            reference = out if reference is None else reference
            for _ in range(warmup):
                runners[v.name](x)
        samples: dict[str, list[float]] = {v.name: [] for v in variants}
        names = [v.name for v in variants]
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                runners[name](x)
                samples[name].append((time.perf_counter() - t0) * 1e3)
        for name in names:
            s = np.asarray(samples[name])
            lo, hi = median_ci(s)
            rows.append({"variant": name, "threads": n_threads, "runs": len(s), "p50_ms": float(np.median(s)),
                         "p50_ci95_low": lo, "p50_ci95_high": hi, "min_ms": float(s.min())})
    df = pd.DataFrame(rows)
    base = df[df.variant == variants[0].name].set_index("threads")["p50_ms"]
    df["vs_litert"] = df.apply(lambda r: r.p50_ms / base[r.threads], axis=1)
    return df


def _in_fresh_process(argv: list[str], threads: int, out: Path) -> pd.DataFrame:
    """One thread count per process: TVM pins pool workers to cores and XNNPACK keeps its own pool,
    and a pool resized earlier in the process slowed LiteRT's 2-thread runs about 2x in one run."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--threads", "--out"):
            skip = True
            continue
        if not a.startswith(("--threads=", "--out=")):
            rest.append(a)
    part = Path(out) / f".ablation_{threads}t"
    subprocess.run([sys.executable, "-m", "benchmark.ablation", *rest, "--threads", str(threads), "--out", str(part)],
                   check=True)
    df = pd.read_csv(part / "ablation_latency.csv")
    shutil.rmtree(part)
    return df


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="selfie_multiclass_twin")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=LIBRARY.so",
                   help="a TVM library to compare (repeat); LiteRT is always the first variant")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--out", type=Path, required=True, help="writes ablation_latency.csv there")
    args = p.parse_args(argv)
    variants = [Variant("LiteRT (XNNPACK)", None)]
    for item in args.variant:
        name, _, path = item.partition("=")
        variants.append(Variant(name, Path(path)))
    threads = [int(t) for t in args.threads.split(",")]
    if len(threads) == 1:
        df = run_ablation(args.model, variants, threads, args.rounds)
    else:
        df = pd.concat([_in_fresh_process(argv or sys.argv[1:], n, args.out) for n in threads], ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "ablation_latency.csv", index=False, float_format="%.3f")
    table = df.assign(p50_ci95=df.apply(lambda r: f"{r.p50_ci95_low:.1f}-{r.p50_ci95_high:.1f}", axis=1))
    table = table[["variant", "threads", "runs", "p50_ms", "p50_ci95", "min_ms", "vs_litert"]]
    markdown = table.to_markdown(index=False, floatfmt=".2f")
    (args.out / "ablation_latency.md").write_text(
        f"Interleaved run, {args.rounds} rounds, model {args.model}, inference only, ms; "
        "vs_litert = p50 / LiteRT p50 at the same thread count.\n\n" + markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

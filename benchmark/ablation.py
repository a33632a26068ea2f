"""Ablation: several TVM libraries of one model and LiteRT, timed side by side in one interleaved run.

    python -m benchmark.ablation --model selfie_multiclass_twin --out results/<model>/<target> \
        --variant "tuned (all levers)=tvm_model/.../tuned.so" --variant "previous records=/tmp/prev.so"

Every round runs each variant once, in a rotating order, so drift and noise hit all of them alike;
each timed run starts once the other variants' pool threads are idle (benchmark/idle.py). p50 with a
distribution-free 95 % confidence interval per variant and thread count. Before timing, every variant
must compute what LiteRT computes on the same input. Writes ablation_samples.csv (each
timed run), ablation_latency.csv and ablation_latency.md (the summary).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.idle import wait_until_idle
from benchmark.summary import median_ci
from runtime.acquire import AUTO
from runtime.engines.litert_isa import AVX2, ISA_LEVELS, NATIVE
from runtime.errors import SelfieTvmError
from runtime.processing import to_probabilities
from runtime.ratios import in_words
from runtime.registry import ModelSpec

# Max |delta probability| a variant may differ from LiteRT by (what benchmark/test_latency.py allows).
TOLERANCE = 1e-3
SAMPLES = "ablation_samples.csv"
SUMMARY = "ablation_latency.csv"
PAGE = "ablation_latency.md"
SAMPLE_COLUMNS = ["variant", "threads", "round", "position", "ms", "busy_before", "waited_ms", "idle"]


class VariantMismatchError(SelfieTvmError):
    """A variant does not compute what LiteRT computes: its timing would compare nothing."""


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


def check_agreement(outputs: dict[str, np.ndarray], spec: ModelSpec, threads: int) -> None:
    """Refuse variants that do not compute what the first one (LiteRT) computes on the same input:
    timing a library of another model, or a miscompiled one, would compare nothing."""
    (reference, ref_out), *others = outputs.items()
    ref = to_probabilities(ref_out, spec)
    for name, out in others:
        if out.shape != ref_out.shape:
            raise VariantMismatchError(f"variant {name!r} outputs shape {out.shape}, {reference} {ref_out.shape}: "
                                       f"its library is not of model {spec.name}")
        worst = float(np.abs(to_probabilities(out, spec) - ref).max())
        if worst > TOLERANCE:
            raise VariantMismatchError(
                f"variant {name!r} disagrees with {reference} at {threads} threads: max |delta probability| "
                f"{worst:.3g} > {TOLERANCE} on the same input; its library is of another model or miscompiled")


def run_ablation(model_name: str, variants: list[Variant], threads: list[int], rounds: int,
                 warmup: int = 2, litert_isa: str = NATIVE) -> pd.DataFrame:
    """Raw samples: one row per timed run (variant, threads, round, position in the round, ms).
    `litert_isa="avx2"` limits LiteRT to its AVX2 kernels (runtime/engines/litert_isa.py) in this process."""
    from runtime.acquire import resolve_model
    from runtime.engines import LITERT, create_engine
    from runtime.engines.tvm import set_tvm_threads

    model = resolve_model(model_name)
    spec = model.spec.input
    x = np.random.default_rng(0).random((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    rows = []
    for n_threads in threads:
        set_tvm_threads(n_threads)
        runners = {v.name: create_engine(LITERT, model, n_threads, isa=litert_isa).run if v.library is None
                   else _tvm_runner(v.library) for v in variants}
        check_agreement({name: run(x) for name, run in runners.items()}, model.spec, n_threads)
        for run in runners.values():
            for _ in range(warmup):
                run(x)
        names = [v.name for v in variants]
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for position, name in enumerate(order):
                wait = wait_until_idle()
                t0 = time.perf_counter()
                runners[name](x)
                rows.append({"variant": name, "threads": n_threads, "round": r, "position": position,
                             "ms": (time.perf_counter() - t0) * 1e3, **wait.as_dict()})
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def summarise(samples: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """p50 with its 95 % interval per variant and thread count; vs_litert: its p50 over the first variant's (LiteRT)
    at the same thread count, below 1 the variant is faster."""
    rows = []
    for n_threads, at in samples.groupby("threads", sort=True):
        for name in variants:
            s = at.loc[at.variant == name, "ms"].to_numpy()
            lo, hi = median_ci(s)
            rows.append({"variant": name, "threads": n_threads, "runs": len(s), "p50_ms": float(np.median(s)),
                         "p50_ci95_low": lo, "p50_ci95_high": hi, "min_ms": float(s.min())})
    df = pd.DataFrame(rows)
    base = df[df.variant == variants[0]].set_index("threads")["p50_ms"]
    df["vs_litert"] = df.p50_ms / df.threads.map(base)
    return df


def _in_fresh_process(argv: list[str], threads: int) -> pd.DataFrame:
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
    with tempfile.TemporaryDirectory(prefix=f"selfie-tvm-ablation-{threads}t-") as part:
        done = subprocess.run([sys.executable, "-m", "benchmark.ablation", *rest, "--threads", str(threads),
                               "--out", part], check=False)
        if done.returncode != 0:
            raise SelfieTvmError(f"the {threads}-thread ablation run failed (exit status {done.returncode}; "
                                 "its error is above)")
        return pd.read_csv(Path(part) / SAMPLES)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=AUTO,
                   help=f"registry name (default {AUTO}: the registry default if it can be had, else its twin)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=LIBRARY.so",
                   help="a TVM library to compare (repeat); LiteRT is always the first variant")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--out", type=Path, required=True, help="writes the samples and the summary there")
    p.add_argument("--litert-isa", choices=ISA_LEVELS, default=NATIVE,
                   help="avx2: LiteRT runs only its AVX2 kernels (to compare x86-64-v3 TVM libraries on an "
                        "AVX-512 host; runtime/engines/litert_isa.py)")
    args = p.parse_args(argv)
    variants = [Variant("LiteRT (XNNPACK, AVX2 kernels only)" if args.litert_isa == AVX2 else "LiteRT (XNNPACK)",
                        None)]
    for item in args.variant:
        name, _, path = item.partition("=")
        variants.append(Variant(name, Path(path)))
    threads = [int(t) for t in args.threads.split(",")]
    try:
        from runtime.acquire import resolve_model

        model = resolve_model(args.model).spec.name
        if len(threads) == 1:
            samples = run_ablation(model, variants, threads, args.rounds, litert_isa=args.litert_isa)
        else:
            argv = [*(argv or sys.argv[1:]), "--model", model]  # each process times the model resolved here
            samples = pd.concat([_in_fresh_process(argv, n) for n in threads], ignore_index=True)
    except SelfieTvmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    samples.to_csv(args.out / SAMPLES, index=False, float_format="%.4f")
    write_summary(summarise(samples, [v.name for v in variants]), args.out)
    print(render_page(args.out, model))
    return 0


def write_summary(summary: pd.DataFrame, out: Path) -> None:
    summary.to_csv(out / SUMMARY, index=False, float_format="%.3f")


def page_text(summary: pd.DataFrame, model: str) -> str:
    """ablation_latency.md from the summary (ablation_latency.csv): every number, and the rounds and the LiteRT
    variant's kernels, read from it, so a page rendered again from the saved summary says the same."""
    table = summary.assign(
        p50_ci95=summary.apply(lambda r: f"{r.p50_ci95_low:.1f}-{r.p50_ci95_high:.1f}", axis=1),
        **{"in words": [in_words(r, "", "LiteRT").lstrip() if name != summary["variant"].iloc[0] else ""
                        for name, r in zip(summary["variant"], summary["vs_litert"], strict=True)]})
    table = table[["variant", "threads", "runs", "p50_ms", "p50_ci95", "min_ms", "vs_litert", "in words"]]
    table = table.rename(columns={"vs_litert": "variant / LiteRT"})
    avx2_only = "AVX2 kernels only" in summary["variant"].iloc[0]
    return (f"Interleaved run, {int(summary['runs'].max())} rounds, model {model}, inference only, ms; "
            "variant / LiteRT = the variant's p50 over LiteRT's at the same thread count: below 1, the variant is "
            "faster (0.91: it takes 0.91x LiteRT's time, 9 % faster)."
            + (" LiteRT limited to its AVX2 kernels on this host (runtime/engines/litert_isa.py)."
               if avx2_only else "") + "\n\n" + table.to_markdown(index=False, floatfmt=".2f") + "\n")


def render_page(out: Path, model: str) -> str:
    """Render ablation_latency.md again from the summary saved beside it (and that summary from the timed runs,
    where they were saved); returns the page's text."""
    if (out / SAMPLES).is_file():
        samples = pd.read_csv(out / SAMPLES)
        write_summary(summarise(samples, list(dict.fromkeys(samples["variant"]))), out)
    text = page_text(pd.read_csv(out / SUMMARY), model)
    (out / PAGE).write_text(text)
    return text


if __name__ == "__main__":
    raise SystemExit(main())

"""Turn a pytest-benchmark JSON file into results/<model>/<cpu-id>/: report.md, tables, figures."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from runtime.acquire import resolve_model
from runtime.artifacts import build_dir, library_paths, results_root
from runtime.engines import ENGINE_NAMES, create_engine, engine_label
from runtime.target import host_target

from . import agreement, environment, profile, summary


def load_samples(bench_json: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw per-round latencies of inference benchmarks, and per-benchmark extra info."""
    samples, info = [], []
    for b in bench_json["benchmarks"]:
        extra = b.get("extra_info", {})
        data = b["stats"].get("data")
        if data is None:
            raise ValueError("the benchmark JSON has no raw data: run pytest with --benchmark-save-data")
        for i, seconds in enumerate(data):
            samples.append({"kind": extra.get("kind"), "engine": extra.get("engine"),
                            "threads": extra.get("threads"), "round": i, "latency_ms": seconds * 1e3})
        info.append({"kind": extra.get("kind"), "engine": extra.get("engine"), "threads": extra.get("threads"),
                     "load_ms": extra.get("load_ms"), "first_run_ms": extra.get("first_run_ms"),
                     "rss_delta_mb": extra.get("rss_delta_mb"),
                     "process_peak_rss_mb": extra.get("process_peak_rss_mb"),
                     "protocol": extra.get("protocol"), "slow": extra.get("slow"), "warmup": extra.get("warmup"),
                     "interleaved_with": extra.get("interleaved_with"), "slow_ms": extra.get("slow_ms")})
    return pd.DataFrame(samples), pd.DataFrame(info)


def _log_ms_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def plot(samples: pd.DataFrame, out: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = samples.assign(engine=samples["engine"].map(engine_label),
                          threads=samples["threads"].astype(str) + " thread(s)")
    order = [engine_label(e) for e in ENGINE_NAMES if e in set(samples["engine"])]
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.boxplot(data=data, x="latency_ms", y="engine", hue="threads", order=order, ax=ax, fliersize=2)
    sns.stripplot(data=data, x="latency_ms", y="engine", hue="threads", order=order, dodge=True, ax=ax,
                  size=2.5, palette="dark:black", alpha=0.4, legend=False)
    _log_ms_axis(ax)
    ax.set_xlabel("inference latency per image (ms, log scale; lower is better)")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    paths.append(out / "latency_box.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    data["engine, threads"] = data["engine"] + ", " + data["threads"]
    sns.ecdfplot(data=data, x="latency_ms", hue="engine, threads", ax=ax)
    _log_ms_axis(ax)
    ax.set_xlabel("inference latency per image (ms, log scale)")
    ax.set_ylabel("fraction of runs at or below")
    ax.set_title(title + ": ECDF")
    fig.tight_layout()
    paths.append(out / "latency_ecdf.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def _md(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt)


def _ci(low: float, high: float) -> str:
    return "n/a (< 6 runs)" if pd.isna(low) else f"{low:.2f} - {high:.2f}"


def latency_table(table: pd.DataFrame) -> pd.DataFrame:
    """The statistics as the report shows them: engine labels, the p50's confidence interval in one column."""
    ci = f"p50 {summary.CONFIDENCE:.0%} CI"
    bounds = zip(table["p50_ci_low"], table["p50_ci_high"], strict=True)
    shown = table.assign(engine=table["engine"].map(engine_label), **{ci: [_ci(lo, hi) for lo, hi in bounds]})
    return shown[["engine", "threads", "runs", "min", "p50", ci, "p90", "p99", "mean", "std", "iqr"]]


def _names(engines) -> str:
    return ", ".join(engine_label(e) for e in engines) or "none"


def protocol_section(info: pd.DataFrame) -> list[str]:
    """How each engine was measured, from what the benchmark recorded (benchmark/options.py: Protocol)."""
    inf = info[info["kind"] == "inference"]
    rows = pd.DataFrame({
        "engine": inf["engine"].map(engine_label), "threads": inf["threads"].astype(int),
        "timed runs": inf["runs"].astype(int), "warm-up runs": inf["warmup"].fillna(0).astype(int),
        "each timed run follows one untimed run of": [_names(w or []) for w in inf["interleaved_with"]],
    })
    protocols = set(inf["protocol"].dropna())
    order = [e for e in ENGINE_NAMES if e in set(inf["engine"])]
    slow = [e for e in order if inf[inf["engine"] == e]["slow"].fillna(False).astype(bool).any()]
    fast = [e for e in order if e not in slow]
    if protocols == {"quick"}:
        threshold = inf["slow_ms"].dropna()
        over = f"over {threshold.iloc[0]:.0f} ms" if len(threshold) else "slow"
        text = (f"Quick protocol (the default of `nox -s benchmark`). Fast engines ({_names(fast)}) are interleaved "
                "round by round: before every timed run of one, each other fast engine runs once, untimed, so slow "
                f"drifts of the machine hit them alike. Slow engines (first run {over}: {_names(slow)}) get a few "
                "timed runs, each after one untimed run of every fast engine, and never run between the fast "
                "engines' rounds. `nox -s benchmark -- --full` runs the long protocol: every engine equally often, "
                "each timed run after one untimed run of every other engine.")
    elif protocols == {"full"}:
        text = ("Full protocol (`nox -s benchmark -- --full`): every engine gets the same number of timed runs, "
                "and before each of them every other engine runs once, untimed, so slow drifts of the machine hit "
                "all engines alike.")
    else:
        text = "Protocol not recorded in the benchmark JSON."
    return ["## Protocol", "", text + " The first run after loading is not timed (see Start-up).", "", _md(rows),
            "", f"p50 {summary.CONFIDENCE:.0%} CI: distribution-free confidence interval of the median, between two "
            "order statistics chosen from the binomial distribution (the sign test inverted, "
            "`scipy.stats.quantile_test`); at 95 % it needs at least 6 runs.", ""]


def write_report(bench_path: Path, model_name: str, out: Path | None = None, *, with_profile: bool = True) -> Path:
    model = resolve_model(model_name)
    target = host_target()
    out = out or results_root() / model.spec.name / target.id
    out.mkdir(parents=True, exist_ok=True)
    bench_json = json.loads(bench_path.read_text())
    if bench_path.resolve() != (out / "benchmark.json").resolve():
        shutil.copyfile(bench_path, out / "benchmark.json")
    samples, info = load_samples(bench_json)
    inference = samples[samples["kind"] == "inference"]
    table = summary.summarise(inference)
    ratio = summary.ratios(table)
    processing = (summary.summarise(samples[samples["kind"].isin(["preprocess", "postprocess"])])
                  .drop(columns="threads").rename(columns={"engine": "step"}))
    runs = inference.groupby(["engine", "threads"]).size().rename("runs").reset_index()
    info = info.merge(runs, on=["engine", "threads"], how="left")
    startup = info[info["kind"] == "inference"][["engine", "threads", "load_ms", "first_run_ms", "rss_delta_mb",
                                                  "process_peak_rss_mb"]]
    startup = startup.assign(engine=startup["engine"].map(engine_label))
    inference.to_csv(out / "latency_samples.csv", index=False)
    table.to_csv(out / "latency_stats.csv", index=False, float_format="%.4f")

    engines_run = [e for e in ENGINE_NAMES if e in set(table["engine"])]
    max_threads = int(table["threads"].max())
    engines = {e: create_engine(e, model, max_threads) for e in engines_run}
    # A slow engine (the untuned module, seconds per run) is compared on the first input only.
    slow = set(info[(info["kind"] == "inference") & info["slow"].fillna(False).astype(bool)]["engine"])
    agree = (agreement.compare(model, engines, max_inputs={e: 1 for e in slow})
             if "litert" in engines and len(engines) > 1 else pd.DataFrame())
    agree.to_csv(out / "agreement.csv", index=False, float_format="%.6g")
    env = environment.collect(target.vector_isa)
    (out / "environment.json").write_text(json.dumps({**env.as_dict(), "target": target.as_dict(),
                                                      "model": model.spec.name, "model_sha256": model.sha256()},
                                                     indent=2) + "\n")
    title = f"{model.spec.name} on {env.cpu} ({env.cores} cores)"
    figures = plot(inference, out, title)

    prof_md = ""
    tuned_lib = library_paths(build_dir(model.spec.name, target), "tuned")[0]
    if with_profile and "tvm-tuned" in engines:
        from runtime.engines.tvm import set_tvm_threads

        set_tvm_threads(max_threads)
        from runtime.artifacts import LibraryMetadata

        graph = LibraryMetadata.read(library_paths(build_dir(model.spec.name, target), "tuned")[1]).graph
        flops = profile.kernel_flops(model, target, graph)
        x = agreement.inputs_for(model)[0][1]
        prof = profile.profile(tuned_lib, x, flops)
        prof.to_csv(out / "profile_tuned.csv", index=False, float_format="%.6g")
        total_flop = prof["flop"].sum()
        p50 = float(table[(table.engine == "tvm-tuned") & (table.threads == max_threads)]["p50"].iloc[0])
        achieved = total_flop / p50 / 1e6
        peak = env.peak_gflops
        top = prof.head(10)[["kernel", "calls", "ms", "share", "gflops"]]
        prof_md = "\n".join([
            f"## Where the tuned module spends its time ({max_threads} threads)", "",
            _md(top.assign(share=top["share"].map("{:.1%}".format))), "",
            f"Whole model: {total_flop / 1e9:.2f} GFLOP per image (sum of TVM's FLOP estimates of every kernel "
            f"call) / p50 {p50:.1f} ms = **{achieved:.1f} GFLOP/s**"
            + (f", {achieved / peak:.1%} of the machine's fp32 peak of {peak:.0f} GFLOP/s "
               f"({env.peak_formula})." if peak else "."), ""])

    synthetic = model.spec.synthetic_notice
    lines = [f"# Benchmark: {model.spec.name}", ""]
    if synthetic:
        lines += [f"> **{synthetic}** Agreement below is measured on synthetic inputs.", ""]
    lines += [
        f"Machine: {env.cpu}, {env.cores} cores ({env.flags}), target `{target.id}`. "
        f"Python {env.python}, apache-tvm {env.tvm}, ai-edge-litert {env.litert}, numpy {env.numpy}. {env.date}.",
        "",
        *libraries_section(model.spec.name, target, engines),
        "## Latency", "", "Inference alone, in ms (protocol below).", "", _md(latency_table(table)), "",
        "## Speed-ups (ratio of medians, measured in the same run)", "", _md(ratio), "",
        "## Start-up", "",
        "Load: creating the engine (reading the model / library). First run: the first inference after it. "
        "Memory: growth of the process's resident set over load and first run, and the process's peak "
        "resident set after the engine's benchmark (all engines loaded so far).", "",
        _md(startup), "",
        "## Pre- and post-processing (512x512 photo)", "", _md(processing), "",
        *protocol_section(info),
    ]
    if not agree.empty:
        worst = agree.groupby("engine").agg(max_abs_dprob=("max_abs_dprob", "max"), min_iou=("iou", "min"),
                                            min_pixels_equal=("pixels_equal", "min")).reset_index()
        worst["engine"] = worst["engine"].map(engine_label)
        inputs = ", ".join(sorted(set(agree["input"])))
        partial = "".join(f" {engine_label(e)}: the first input only (a slow engine)." for e in sorted(slow)
                          if e in engines and e != "litert")
        lines += ["## Agreement with LiteRT", "",
                  f"Inputs: {inputs}.{partial} Worst case over inputs and classes:", "", _md(worst, ".6f"), "",
                  "Per class in `agreement.csv`.", ""]
    lines += [prof_md, "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    lines += ["", "Raw data: `benchmark.json` (pytest-benchmark), `latency_samples.csv`, `latency_stats.csv`."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def libraries_section(model: str, target, engines) -> list[str]:
    """Which TVM libraries were measured: graph, records and where they were tuned, coverage."""
    from runtime.artifacts import LibraryMetadata

    lines = []
    for kind in ("default", "tuned"):
        meta_path = library_paths(build_dir(model, target), kind)[1]
        if f"tvm-{kind}" not in engines or not meta_path.is_file():
            continue
        meta = LibraryMetadata.read(meta_path)
        graph = ", ".join(k for k, v in (meta.graph or {}).items() if v) or "stock graph"
        line = f"- {engine_label('tvm-' + kind)}: `{meta.target['id']}`, {graph}"
        prov = meta.records_provenance
        if prov:
            tuned_for = prov.get("tuned_for_target", {})
            line += (f"; {meta.trials} tuning records for {prov['isa']} (tuned on {prov.get('tuned_on_cpu')}, "
                     f"LLVM CPU {tuned_for.get('mcpu')}, {tuned_for.get('num_cores')} cores, "
                     f"{prov.get('tuning_seconds', 0) / 60:.0f} min of tuning)")
        if meta.tuning_warning:
            line += f". **{meta.tuning_warning}**"
        lines.append(line)
    return ["## Libraries", "", *lines, ""] if lines else []


def main(argv: list[str] | None = None) -> int:
    """Rewrite a report from a saved pytest-benchmark JSON (`python -m benchmark` does all three steps)."""
    from .options import add_options, choose_model

    p = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__)
    p.add_argument("bench_json", type=Path)
    add_options(p.add_argument, only=("model", "out", "no_profile"))
    args = p.parse_args(argv)
    model = choose_model(args.model).spec.name
    out = Path(args.out) if args.out else None
    print(f"report: {write_report(args.bench_json, model, out, with_profile=not args.no_profile)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Render a saved run (benchmark/saved_run.py) into results/<model>/<its target id>/: report.md, tables, figures.

Renders only: everything shown, the machine, target and date included, was saved when the run was
measured, so a report rendered again later or elsewhere says the same.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from runtime.acquire import resolve_model
from runtime.artifacts import LibraryMetadata, describe_origins, results_root
from runtime.engines import ENGINE_NAMES, TVM_TUNED, engine_label, tvm_engine
from runtime.errors import SelfieTvmError
from runtime.file_model import is_file_model_name
from runtime.registry import registry

from . import summary
from .environment import Environment
from .figures import plot
from .load.section import report_section as throughput_section
from .profile import ISOLATION_BOUND, isolation_table
from .saved_run import SavedRun


def _md(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    # Integer columns as objects: in an all-numeric table tabulate would format them with floatfmt (1.00).
    ints = {c: "object" for c in df.columns if pd.api.types.is_integer_dtype(df[c])}
    return df.astype(ints).to_markdown(index=False, floatfmt=floatfmt)


def _ci(low: float, high: float, fmt: str = ".2f") -> str:
    return "n/a (< 6 runs)" if pd.isna(low) else f"{low:{fmt}} - {high:{fmt}}"


def latency_table(table: pd.DataFrame) -> pd.DataFrame:
    """The statistics as the report shows them: engine labels, the p50's confidence interval in one column."""
    ci = f"p50 {summary.CONFIDENCE:.0%} CI"
    bounds = zip(table["p50_ci_low"], table["p50_ci_high"], strict=True)
    shown = table.assign(engine=table["engine"].map(engine_label), **{ci: [_ci(lo, hi) for lo, hi in bounds]})
    return shown[["engine", "threads", "runs", "min", "p50", ci, "p90", "p99", "mean", "std", "iqr"]]


def ratios_section(ratio: pd.DataFrame) -> list[str]:
    """Ratios of medians (summary.ratios), each said in words per thread count."""
    words = [f"- {n} thread{'s' if n != 1 else ''}: " + "; ".join(
        summary.ratio_in_words(label, row[label]) for label in ratio.columns if label != "threads")
        for n, (_, row) in zip(ratio["threads"], ratio.iterrows(), strict=True)]
    return ["## Ratios of medians (measured in the same run)", "",
            "Each column is the first engine's p50 over the second's at the same thread count: below 1, the "
            "first engine is faster.", "", _md(ratio), "", *words, ""]


def paired_section(paired: pd.DataFrame) -> list[str]:
    """Ratios from adjacent pairs of runs (summary.paired_ratio_table); nothing for runs saved without them."""
    if paired.empty:
        return []
    ci = f"{summary.CONFIDENCE:.0%} CI"
    bounds = zip(paired["ci_low"], paired["ci_high"], strict=True)
    shown = paired.assign(**{ci: [_ci(lo, hi, ".3f") for lo, hi in bounds]},
                          **{"in words": [summary.ratio_in_words(label, m)
                                          for label, m in zip(paired["ratio"], paired["median"], strict=True)]})
    return ["## Ratios, paired (drift between the engines' blocks cancels)", "",
            "Each timed run of an engine follows one run of each other fast engine, timed as well, both from an "
            "idle process: the two make a pair. Per pair, the first engine's time over the second's (below 1: "
            "the first engine of the label is faster); pairs of both directions pooled, their median with its "
            "confidence interval. The ratio of medians above compares blocks of runs seconds or minutes apart, "
            "which a drifting machine moves; this one does not.", "",
            _md(shown[["ratio", "threads", "pairs", "median", ci, "in words"]], floatfmt=".3f"), ""]


def _names(engines) -> str:
    return ", ".join(engine_label(e) for e in engines) or "none"


def protocol_section(info: pd.DataFrame) -> list[str]:
    """How each engine was measured, from what the benchmark recorded (benchmark/options.py: Protocol)."""
    inf = info[info["kind"] == "inference"]
    rows = pd.DataFrame({
        "engine": inf["engine"].map(engine_label), "threads": inf["threads"].astype(int),
        "timed runs": inf["runs"].astype(int), "warm-up runs": inf["warmup"].fillna(0).astype(int),
        "each timed run follows one run of": [_names(w or []) for w in inf["interleaved_with"]],
    })
    protocols = set(inf["protocol"].dropna())
    order = [e for e in ENGINE_NAMES if e in set(inf["engine"])]
    slow = [e for e in order if inf[inf["engine"] == e]["slow"].fillna(False).astype(bool).any()]
    fast = [e for e in order if e not in slow]
    if protocols == {"quick"}:
        threshold = inf["slow_ms"].dropna()
        over = f"over {threshold.iloc[0]:.0f} ms" if len(threshold) else "slow"
        text = (f"Quick protocol (the default of `nox -s benchmark`). Fast engines ({_names(fast)}) are interleaved "
                "round by round: before every timed run of one, each other fast engine runs once (not among its own "
                "samples; it pairs with the run after it, see the paired ratios), so slow "
                f"drifts of the machine hit them alike. Slow engines (first run {over}: {_names(slow)}) get a few "
                "timed runs, each after one run of every fast engine, and never run between the fast "
                "engines' rounds. `nox -s benchmark -- --full` runs the long protocol: every engine equally often, "
                "each timed run after one untimed run of every other engine.")
    elif protocols == {"full"}:
        text = ("Full protocol (`nox -s benchmark -- --full`): every engine gets the same number of timed runs, "
                "and before each of them every other engine runs once, untimed, so slow drifts of the machine hit "
                "all engines alike.")
    else:
        text = "Protocol not recorded in the benchmark JSON."
    waits = [w for w in inf["idle_wait"] if isinstance(w, dict)] if "idle_wait" in inf else []
    if waits:
        timed_out = sum(w["timed_out"] for w in waits)
        text += (" Each timed run starts once the process's other threads are idle (benchmark/idle.py): TVM's pool "
                 "workers spin about 0.1 s after a run and would otherwise share a core with the next engine; "
                 f"{sum(w['busy_before'] for w in waits)} of {sum(w['runs'] for w in waits)} runs found them busy "
                 f"and waited, {timed_out} wait{'s' if timed_out != 1 else ''} timed out.")
    return ["## Protocol", "", text + " The first run after loading is not timed (see Start-up).", "", _md(rows),
            "", f"p50 {summary.CONFIDENCE:.0%} CI: distribution-free confidence interval of the median, between two "
            "order statistics chosen from the binomial distribution (the sign test inverted, "
            "`scipy.stats.quantile_test`); at 95 % it needs at least 6 runs.", ""]


def _model_spec(name: str):
    """The registry's facts, or a file model's (read from its cached copy: `file-<sha256>` names)."""
    if is_file_model_name(name):
        return resolve_model(name, allow_download=False, progress=False).spec
    return registry().get(name)


def write_report(run_path: Path, out: Path | None = None) -> Path:
    """Render a saved run (benchmark/saved_run.py) into `out` (default: results/<model>/<its target id>/)."""
    run = SavedRun.read(run_path)
    spec = _model_spec(run.model)
    target, env, measured = run.target, run.environment, run.measurements
    samples, info = run.samples()
    out = out or results_root() / spec.name / target["id"]
    out.mkdir(parents=True, exist_ok=True)
    if run_path.resolve() != (out / "benchmark.json").resolve():
        shutil.copyfile(run_path, out / "benchmark.json")
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
    agree = pd.DataFrame(measured.get("agreement", []))
    agree.to_csv(out / "agreement.csv", index=False, float_format="%.6g")
    (out / "environment.json").write_text(json.dumps({**env.as_dict(), "target": target, "model": spec.name,
                                                      "model_sha256": run.machine["model_sha256"]},
                                                     indent=2) + "\n")
    figures = plot(inference, out, f"{spec.name} on {env.cpu} ({env.cores} cores)")
    prof_md = []
    if measured.get("profile"):
        prof = pd.DataFrame(measured["profile"])
        prof.to_csv(out / "profile_tuned.csv", index=False, float_format="%.6g")
        prof_md = profile_section(prof, table, int(measured["threads"]), env)
    else:  # an earlier run's profile is not this run's
        (out / "profile_tuned.csv").unlink(missing_ok=True)

    slow = run.slow_engines()
    lines = [f"# Benchmark: {spec.name}", ""]
    if spec.synthetic_notice:
        lines += [f"> **{spec.synthetic_notice}** Agreement below is measured on synthetic inputs.", ""]
    lines += [
        f"Machine: {env.cpu}, {env.cores} cores ({env.flags}), target `{target['id']}`. "
        f"Python {env.python}, apache-tvm {env.tvm}, ai-edge-litert {env.litert}, numpy {env.numpy}. "
        f"{env.date}{commit_note(run.commit)}.",
        "",
        *libraries_section(run.libraries),
        "## Latency", "", "Inference alone, in ms (protocol below).", "", _md(latency_table(table)), "",
        *ratios_section(ratio),
        *paired_section(summary.paired_ratio_table(run.pairs())),
        "## Start-up", "",
        "Load: creating the engine (reading the model / library). First run: the first inference after it. "
        "Memory: growth of the process's resident set over load and first run, and the process's peak "
        "resident set after the engine's benchmark (all engines of its thread count loaded so far; each "
        "thread count runs in a process of its own).", "",
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
                          if e in set(agree["engine"]))
        lines += ["## Agreement with LiteRT", "",
                  f"Inputs: {inputs}.{partial} Worst case over inputs and classes "
                  f"({measured['threads']} threads):", "", _md(worst, ".6f"), "",
                  "Per class in `agreement.csv`.", ""]
    lines += [*prof_md, *pipeline_section(measured.get("pipeline")), *throughput_section(out), "## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures]
    lines += ["", "Raw data: `benchmark.json` (pytest-benchmark, every thread count's process, with what the run "
              "measured on and after it), `latency_samples.csv`, `latency_stats.csv`."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def pipeline_section(saved: dict | None) -> list[str]:
    """The whole pipeline, photo in and masks out, of MediaPipe Tasks and of the project (benchmark/pipeline.py)."""
    if not saved:
        return []
    if "skipped" in saved:
        return ["## Whole pipeline against MediaPipe", "", f"Not measured: {saved['skipped']}.", ""]
    rows, notes = [], set()
    for part in saved["parts"]:
        samples = pd.DataFrame(part["samples"])
        for side, group in samples.groupby("side", sort=False):
            stats = summary.describe(group["ms"])
            rows.append({"side": "MediaPipe Tasks" if side == "mediapipe" else f"project, {engine_label(side)}",
                         "threads": part["threads"], "runs": stats["runs"], "p50": stats["p50"],
                         f"p50 {summary.CONFIDENCE:.0%} CI": _ci(stats["p50_ci_low"], stats["p50_ci_high"]),
                         **_agreement_with_mediapipe(part.get("agreement", {}).get(side))})
        if part["mediapipe_error"]:
            notes.add(part["mediapipe_error"])
    first = saved["parts"][0]
    text = (f"{first['photo']} ({first['photo_shape'][1]}x{first['photo_shape'][0]}) in, confidence masks and "
            "category mask at photo size out, every side once per round in a rotating order; ms. MediaPipe's "
            f"inference runs on {first['mediapipe_threads']} thread whatever the row (its Tasks API cannot set it). "
            "Last columns: the project's masks against MediaPipe's (untimed warm-up run), worst per-class IoU of the "
            "category masks and max |Δconfidence|.")
    return ["## Whole pipeline against MediaPipe", "", text, *(f"**{n}**" for n in sorted(notes)), "",
            _md(pd.DataFrame(rows), ".4g"), ""]


def _agreement_with_mediapipe(agreement: dict | None) -> dict[str, str]:
    agreement = agreement or {}
    iou, delta = agreement.get("worst_iou"), agreement.get("max_abs_dconfidence")
    return {"worst IoU vs MediaPipe": "-" if iou is None else f"{iou:.4f}",
            "max abs Δconf vs MediaPipe": "-" if delta is None else f"{delta:.1e}"}


def commit_note(commit: dict) -> str:
    if not commit.get("id"):
        return ""
    return f", commit `{commit['id'][:12]}`" + (" with uncommitted changes" if commit.get("dirty") else "")


def profile_section(prof: pd.DataFrame, table: pd.DataFrame, threads: int, env: Environment) -> list[str]:
    """Where the tuned module spends its time, and what the whole model achieves against the machine's peak."""
    total_flop = prof["flop"].sum()
    p50 = float(table[(table.engine == TVM_TUNED) & (table.threads == threads)]["p50"].iloc[0])
    achieved = total_flop / p50 / 1e6
    peak = env.peak_gflops
    top = prof.head(10)[["kernel", "calls", "ms", "share", "gflops"]]
    return [
        f"## Where the tuned module spends its time ({threads} threads)", "",
        _md(top.assign(share=top["share"].map("{:.1%}".format))), "",
        f"Whole model: {total_flop / 1e9:.2f} GFLOP per image (sum of TVM's FLOP estimates of every kernel "
        f"call) / p50 {p50:.1f} ms = **{achieved:.1f} GFLOP/s**"
        + (f", {achieved / peak:.1%} of the machine's fp32 peak of {peak:.0f} GFLOP/s "
           f"({env.peak_formula})." if peak else "."), "", *isolation_section(prof)]


def isolation_section(prof: pd.DataFrame) -> list[str]:
    """The ten slowest kernels' isolated timings (their tuning records) against their in-model times."""
    table = isolation_table(prof)
    if table is None or table["isolated_ms"].isna().all():  # saved before the profile kept them, or no record here
        return []
    with_record = int(table["within_bound"].notna().sum())
    within = int(table["within_bound"].eq(True).sum())  # NaN for a kernel without a record
    shown = table.assign(
        calls=table["calls"].map(lambda v: f"{v:.0f}"),
        in_model_ms=table["in_model_ms"].map("{:.3f}".format),
        isolated_ms=table["isolated_ms"].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}"),
        isolated_over_in_model=table["isolated_over_in_model"].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}"),
        within_bound=table["within_bound"].map(lambda v: "-" if pd.isna(v) else "yes" if v else "**no**"))
    return [
        "### What tuning measured for these kernels", "",
        shown.rename(columns={"in_model_ms": "in the model, ms per call", "isolated_ms": "alone, ms per call",
                              "isolated_over_in_model": "alone / in the model",
                              "within_bound": f"within {ISOLATION_BOUND:g}x"}
                     ).to_markdown(index=False, disable_numparse=True), "",  # the strings as formatted here
        f"{within} of the {with_record} kernels here that run their tuning record are within {ISOLATION_BOUND:g}x "
        "of their in-model time either way. *Alone*: the record's mean latency as MetaSchedule's runner measured "
        "the kernel by itself while tuning, the figure the search ranked candidates by; *in the model*: the "
        "instrumented whole-model run's mean per call. A hand or default schedule has no record, and a record "
        "measured on another CPU no isolated time of this one.", ""]


def libraries_section(libraries: dict[str, dict]) -> list[str]:
    """Which TVM libraries were measured: graph, records and where they were tuned, coverage."""
    lines = []
    for kind, saved in libraries.items():
        meta = LibraryMetadata.from_saved(saved)
        graph = ", ".join(k for k, v in (meta.graph or {}).items() if v) or "stock graph"
        line = f"- {engine_label(tvm_engine(kind))}: `{meta.target['id']}`, {graph}"
        prov = meta.records_provenance
        if prov:
            origins = meta.tuning_origins
            total = prov.get("tuning_seconds", 0) / 60
            in_all = f", {total:.0f} min of tuning)" if len(origins) == 1 else f"; {total:.0f} min of tuning in all)"
            line += (f"; records for {prov['isa']} from {meta.trials} tuning trials (tuned on "
                     f"{describe_origins(origins)}{in_all}")
            if meta.records_ranked_by:
                line += f", a kernel's records measured on `{meta.records_ranked_by}` preferred"
        if meta.tuning_warning:
            line += f". **{meta.tuning_warning}**"
        lines.append(line)
    return ["## Libraries", "", *lines, ""] if lines else []


def main(argv: list[str] | None = None) -> int:
    """Render a report again from a saved run (`python -m benchmark` measures, saves and renders)."""
    from .options import add_options

    p = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__)
    p.add_argument("run_json", type=Path, help="a run saved by `python -m benchmark` (its report's benchmark.json)")
    add_options(p.add_argument, only=("out",))
    args = p.parse_args(argv)
    try:
        report = write_report(args.run_json, Path(args.out) if args.out else None)
    except (ValueError, SelfieTvmError) as e:
        p.error(str(e))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The leaderboard: every model's saved run (results/<model>/<target>/benchmark.json) in one table and figure.

    python -m benchmark.leaderboard [RUN.json ...] [--target ID] [--out DIR]

Renders only, like benchmark/report.py: every number comes from the saved runs (latency samples, the
tuned module's profile, agreement, the libraries' metadata and provenance, the whole-pipeline
comparison with MediaPipe), so it can be rendered again without measuring. Without RUN.json, the
saved runs on this host's target (`--target` another's) are used.
`python -m benchmark --model all` measures them and renders this.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from runtime.acquire import ALL
from runtime.artifacts import first_run_seconds, results_root
from runtime.engines import LITERT, TVM_DEFAULT, TVM_TUNED
from runtime.registry import registry
from runtime.target import TargetSpec, host_target

from . import summary
from .load.section import leaderboard_section as throughput_section
from .options import choose_models
from .pipeline import MEDIAPIPE
from .saved_run import SavedRun

NAN = float("nan")


def _p50(table: pd.DataFrame, engine: str, threads: int) -> tuple[float, float, float]:
    row = table[(table["engine"] == engine) & (table["threads"] == threads)]
    if row.empty:
        return NAN, NAN, NAN
    r = row.iloc[0]
    return float(r["p50"]), float(r["p50_ci_low"]), float(r["p50_ci_high"])


def _isa(target: dict) -> str:
    from tuning.records import isa_level

    return isa_level(TargetSpec.from_dict(target))


def _tuning(run: SavedRun) -> dict:
    """What is knowable about the records behind the tuned library: they are shared by every model of an
    ISA level, so the trials and minutes are the set's; a model's own minutes only where `continued` names it."""
    tuned = run.libraries.get("tuned")
    if not tuned or not tuned.get("records_provenance"):
        return {"records_trials": NAN, "records_minutes": NAN, "model_minutes": NAN, "model_minutes_at_least": False,
                "kernels": NAN,
                "kernels_without_record": NAN, "untuned_flop_share": NAN, "records_models": ""}
    prov = tuned["records_provenance"]
    models = prov.get("models", [])
    continued = prov.get("continued", [])
    # The run that started the set is not listed under `continued`, and its model is known only when
    # the set has one model; a model tuned later is known to have had at least its `continued` runs.
    first_run = first_run_seconds(prov)
    own = sum(c.get("seconds", 0.0) for c in continued if c.get("model") == run.model)
    only_model = models == [run.model]
    model_minutes = (own + (first_run if only_model else 0.0)) / 60
    at_least = run.model in models and not only_model and first_run > 0
    return {"records_trials": float(tuned.get("trials") or prov.get("trials_measured") or 0),
            "records_minutes": prov.get("tuning_seconds", 0.0) / 60, "model_minutes": model_minutes,
            "model_minutes_at_least": at_least,
            "kernels": float(tuned.get("kernels") or NAN),
            "kernels_without_record": float(len(tuned.get("untuned_kernels") or [])),
            "untuned_flop_share": float(tuned.get("untuned_flop_share") or 0.0),
            "records_models": ", ".join(prov.get("models", []))}


def _agreement(run: SavedRun) -> tuple[float, float, str]:
    """Worst max |Δprob| and per-class IoU against LiteRT: the tuned module's, else the default's."""
    rows = pd.DataFrame(run.measurements.get("agreement", []))
    for engine in (TVM_TUNED, TVM_DEFAULT):
        if not rows.empty and engine in set(rows["engine"]):
            mine = rows[rows["engine"] == engine]
            return float(mine["max_abs_dprob"].max()), float(mine["iou"].min()), engine
    return NAN, NAN, ""


# engine -> the prefix of its columns, its label in the markdown
PIPELINE_SIDES = {LITERT: ("pipeline_litert", "LiteRT"), TVM_TUNED: ("pipeline_tuned", "TVM tuned")}
AGREEMENT_METRICS = ("worst_iou", "max_abs_dconfidence")  # against MediaPipe (benchmark/pipeline.py)


def _pipeline(run: SavedRun, threads: int) -> dict:
    """p50 of each side's whole pipeline at `threads`, or why there is none."""
    saved = run.measurements.get("pipeline") or {"skipped": "not measured (a run saved before this comparison)"}
    out = {"mediapipe_p50": NAN, "pipeline_litert_p50": NAN, "pipeline_tuned_p50": NAN, "mediapipe_note": "",
           **{f"{prefix}_{m}": NAN for prefix, _ in PIPELINE_SIDES.values() for m in AGREEMENT_METRICS}}
    if "skipped" in saved:
        out["mediapipe_note"] = saved["skipped"]
        return out
    part = next((p for p in saved["parts"] if p["threads"] == threads), None)
    if part is None:
        out["mediapipe_note"] = f"not measured at {threads} threads"
        return out
    samples = pd.DataFrame(part["samples"])
    p50 = samples.groupby("side")["ms"].median()
    out.update(mediapipe_p50=float(p50.get(MEDIAPIPE, NAN)), pipeline_litert_p50=float(p50.get(LITERT, NAN)),
               pipeline_tuned_p50=float(p50.get(TVM_TUNED, NAN)),
               mediapipe_note=part["mediapipe_error"] or "",
               mediapipe_threads=part["mediapipe_threads"], photo=f"{part['photo']} "
               f"{part['photo_shape'][1]}x{part['photo_shape'][0]}")
    for engine, (prefix, _) in PIPELINE_SIDES.items():
        agreement = part.get("agreement", {}).get(engine, {})
        out.update({f"{prefix}_{m}": float(agreement.get(m, NAN)) for m in AGREEMENT_METRICS})
    return out


def _gflop(run: SavedRun) -> tuple[float, str]:
    """GFLOP per image: the tuned module's profile, else the default graph's FLOP estimate (benchmark/measure.py)."""
    profile = run.measurements.get("profile")
    if profile:
        return sum(k["flop"] for k in profile) / 1e9, "tuned profile"
    if (flop := run.measurements.get("default_graph_flop")) is not None:
        return flop / 1e9, "default graph"
    return NAN, ""


def _paired(pairs: pd.DataFrame, threads: int) -> float:
    """Median of tuned / LiteRT over pairs of adjacent runs (summary.paired_ratios); NaN without pairs."""
    ratios = summary.paired_ratios(pairs, TVM_TUNED, LITERT, threads)
    return float(np.median(ratios)) if ratios.size else NAN


def rows(run: SavedRun) -> list[dict]:
    """One leaderboard row per thread count of a saved run; numbers as measured (NaN: not measured)."""
    samples, _ = run.samples()
    table = summary.summarise(samples[samples["kind"] == "inference"])
    pairs = run.pairs()
    gflop, gflop_source = _gflop(run)
    dprob, iou, agreement_engine = _agreement(run)
    env = run.environment
    spec = registry().models.get(run.model)
    not_measured = run.measurements.get("not_measured", {})
    out = []
    for n in run.thread_counts():
        litert, litert_low, litert_high = _p50(table, LITERT, n)
        tuned, tuned_low, tuned_high = _p50(table, TVM_TUNED, n)
        out.append({
            "model": run.model, "synthetic": bool(spec.synthetic) if spec else False, "threads": n,
            "gflop": gflop, "gflop_source": gflop_source,
            "litert_p50": litert, "litert_ci_low": litert_low, "litert_ci_high": litert_high,
            "default_p50": _p50(table, TVM_DEFAULT, n)[0],
            "tuned_p50": tuned, "tuned_ci_low": tuned_low, "tuned_ci_high": tuned_high,
            "tuned_vs_litert": tuned / litert, "tuned_vs_litert_paired": _paired(pairs, n),
            "tuned_gflops": gflop / tuned * 1e3,
            **_tuning(run), "max_abs_dprob": dprob, "worst_iou": iou, "agreement_engine": agreement_engine,
            "isa": _isa(run.target), "target": run.target["id"], "host": f"{env.cpu}, {env.cores} cores",
            "date": env.date, "tuned_note": not_measured.get(TVM_TUNED, ""),
            **_pipeline(run, n)})
    return out


def table(runs: list[SavedRun]) -> pd.DataFrame:
    frame = pd.DataFrame([r for run in runs for r in rows(run)])
    frame["pipeline_litert_vs_mediapipe"] = frame["pipeline_litert_p50"] / frame["mediapipe_p50"]
    frame["pipeline_tuned_vs_mediapipe"] = frame["pipeline_tuned_p50"] / frame["mediapipe_p50"]
    return frame


def _num(v: float, fmt: str = ".2f") -> str:
    return "-" if pd.isna(v) else format(v, fmt)


def _with_ci(p50: float, low: float, high: float) -> str:
    if pd.isna(p50):
        return "-"
    return f"{p50:.2f} ({low:.2f}-{high:.2f})" if not pd.isna(low) else f"{p50:.2f} (< 6 runs)"


def _markdown(frame: pd.DataFrame, missing: list[str]) -> str:
    inference = pd.DataFrame({
        "model": frame["model"] + np.where(frame["synthetic"], " (twin)", ""), "threads": frame["threads"],
        "GFLOP": [_num(v) + (" †" if source == "default graph" else "")
                  for v, source in zip(frame["gflop"], frame["gflop_source"], strict=True)],
        "LiteRT p50 (95% CI)": [_with_ci(*v) for v in zip(frame["litert_p50"], frame["litert_ci_low"],
                                                          frame["litert_ci_high"], strict=True)],
        "TVM default p50": frame["default_p50"].map(lambda v: _num(v, ".1f")),
        "TVM tuned p50 (95% CI)": [note or _with_ci(*v) for *v, note in zip(
            frame["tuned_p50"], frame["tuned_ci_low"], frame["tuned_ci_high"], frame["tuned_note"], strict=True)],
        "tuned / LiteRT": frame["tuned_vs_litert"].map(lambda v: "-" if pd.isna(v) else f"**{v:.2f}**"),
        "tuned / LiteRT, paired": frame["tuned_vs_litert_paired"].map(_num),
        "in words": [summary.ratio_in_words("tuned / LiteRT", paired if not pd.isna(paired) else medians)
                     for medians, paired in zip(frame["tuned_vs_litert"], frame["tuned_vs_litert_paired"],
                                                strict=True)],
        "tuned GFLOP/s": frame["tuned_gflops"].map(lambda v: _num(v, ".0f")),
        "max abs Δprob": frame["max_abs_dprob"].map(lambda v: _num(v, ".1e")),
        "worst IoU": frame["worst_iou"].map(lambda v: _num(v, ".4f")),
    })
    pipeline = pd.DataFrame({
        "model": frame["model"], "threads": frame["threads"],
        "MediaPipe p50": [_num(v) if not pd.isna(v) else (note or "-")
                          for v, note in zip(frame["mediapipe_p50"], frame["mediapipe_note"], strict=True)],
        "project, LiteRT p50": frame["pipeline_litert_p50"].map(_num),
        "project, TVM tuned p50": frame["pipeline_tuned_p50"].map(_num),
        "LiteRT / MediaPipe": frame["pipeline_litert_vs_mediapipe"].map(_num),
        "TVM tuned / MediaPipe": frame["pipeline_tuned_vs_mediapipe"].map(_num),
        **{f"{label}: worst IoU": frame[f"{prefix}_worst_iou"].map(lambda v: _num(v, ".4f"))
           for prefix, label in PIPELINE_SIDES.values()},
        **{f"{label}: max abs Δconf": frame[f"{prefix}_max_abs_dconfidence"].map(lambda v: _num(v, ".1e"))
           for prefix, label in PIPELINE_SIDES.values()},
    })
    per_model = frame.drop_duplicates("model")
    records = pd.DataFrame({
        "model": per_model["model"], "ISA": per_model["isa"], "target": per_model["target"],
        "host": per_model["host"], "measured": per_model["date"].str[:16],
        "record trials (shared by the ISA)": per_model["records_trials"].map(lambda v: _num(v, ".0f")),
        "tuning min (shared)": per_model["records_minutes"].map(lambda v: _num(v, ".0f")),
        "tuning min (this model)": [("≥ " if at_least else "") + _num(v, ".0f") for v, at_least in zip(
            per_model["model_minutes"], per_model["model_minutes_at_least"], strict=True)],
        "kernels without a record": [
            "-" if pd.isna(k) else f"{w:.0f} of {k:.0f} ({s:.1%} of FLOPs)"
            for k, w, s in zip(per_model["kernels"], per_model["kernels_without_record"],
                               per_model["untuned_flop_share"], strict=True)],
    })
    photo = frame.get("photo", pd.Series(dtype=str)).dropna()
    mp_threads = frame.get("mediapipe_threads", pd.Series(dtype=float)).dropna()
    lines = [
        "# Leaderboard", "",
        "Every model's saved benchmark run (`python -m benchmark --model all`; rendered again from the saved runs "
        "by `python -m benchmark.leaderboard`). Latencies in ms, p50 with its distribution-free 95 % confidence "
        "interval; \"-\": not measured.", "",
        "## Inference", "",
        "One inference, same protocol as each model's report (`results/<model>/<target>/report.md`). GFLOP: TVM's "
        "FLOP estimate of every kernel of the tuned module per image (†: of the default graph's kernels, where "
        "the tuned module was not profiled); tuned GFLOP/s = GFLOP / tuned p50. tuned / LiteRT: the tuned p50 "
        "over LiteRT's, below 1 the tuned module is faster (0.91: tuned takes 0.91x LiteRT's time, 9 % faster); "
        "paired: the median over pairs of adjacent runs (each timed run and the other engine's run "
        "just before it, both ways), which drift of the machine between the engines' blocks does not move "
        "(\"-\" for runs saved before the pairs were timed); in words: the paired ratio, else the ratio of the "
        "p50s. "
        "Agreement: the tuned module (the untuned one where there is no tuned) against LiteRT on real photos "
        "(seeded synthetic inputs for the twin), worst over inputs and classes.", "",
        inference.to_markdown(index=False, disable_numparse=True), "",
        "## Whole pipeline against MediaPipe", "",
        "Photo in, confidence masks and category mask at photo size out. Timed: MediaPipe Tasks "
        "`ImageSegmenter.segment()` alone (CPU, same model file; its masks stay MediaPipe images) beside the "
        "project's `Segmenter.segment()` (pre-processing, inference and post-processing, as the CLI and the bot "
        "run it) and its category mask, interleaved round by round"
        + (f", on {photo.iloc[0]}" if len(photo) else "") + ". MediaPipe's inference runs on "
        + (f"{int(mp_threads.iloc[0])} thread" if len(mp_threads) else "its default thread count")
        + " whatever the row (its Tasks API cannot set it); the project's at the row's thread count. "
          "Ratios below 1: the project is faster. Agreement with MediaPipe's masks (of the untimed warm-up run): "
          "worst per-class IoU of the category masks and max |Δconfidence| over the photo.", "",
        pipeline.to_markdown(index=False, disable_numparse=True), "",
        "## Records, coverage, machine", "",
        "Tuning records are kept per ISA level and shared by every model of it: their trials and minutes are the "
        "set's; a model's own minutes are those of the runs the records' provenance names it in (≥: the set's "
        "first run is not attributed to a model when the set holds several; 0: never tuned for it, it uses "
        "the records of the kernels it shares). Kernels without a record run with the default schedule (parallel "
        "and vectorised, not tuned; naive loops in libraries built before Dec 7).", "",
        records.to_markdown(index=False, disable_numparse=True), "",
    ]
    if missing:
        lines += ["Not on the leaderboard:", "", *(f"- {m}" for m in missing), ""]
    lines += ["![leaderboard](leaderboard.png)", ""]
    return "\n".join(lines)


def plot(frame: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = frame.assign(threads=frame["threads"].astype(str) + " thread(s)")
    pipeline = frame.melt(id_vars=["model", "threads"], var_name="project",
                          value_vars=["pipeline_litert_vs_mediapipe", "pipeline_tuned_vs_mediapipe"])
    pipeline["project"] = (pipeline["project"].map({"pipeline_litert_vs_mediapipe": "LiteRT",
                                                    "pipeline_tuned_vs_mediapipe": "TVM tuned"})
                           + ", " + pipeline["threads"].astype(str) + " thread(s)")
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.5 + 0.8 * frame["model"].nunique()), sharey=True)
    panels = ((data, "tuned_vs_litert", "threads", "inference: TVM tuned p50 / LiteRT p50"),
              (pipeline, "value", "project", "whole pipeline: project p50 / MediaPipe p50"))
    order = list(dict.fromkeys(frame["model"]))
    for ax, (df, column, hue, title) in zip(axes, panels, strict=True):
        sns.barplot(data=df, y="model", x=column, hue=hue, order=order, ax=ax, orient="h")
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xlim(left=0)
        ax.set_title(title)
        ax.set_xlabel("ratio of medians (< 1: faster; no bar: not measured)")
        ax.set_ylabel("")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def saved_runs(target_id: str | None = None, notes: dict[str, str] | None = None) -> tuple[list[Path], list[str]]:
    """Every saved run on `target_id` (default: this host's; registry models in registry order, then file
    models), and why each model without one has none: its note in `notes` (options.choose_models': not
    available here, or a twin standing in; a failed benchmark), else that it has no saved run."""
    if target_id is None:
        from runtime.target import host_target

        target_id = host_target().id
    notes = notes or {}
    names = list(registry().models)
    found = sorted(results_root().glob(f"*/{target_id}/benchmark.json"),
                   key=lambda p: (names.index(p.parents[1].name) if p.parents[1].name in names else len(names),
                                  p.parents[1].name))
    measured = {p.parents[1].name for p in found}
    missing = [f"{name}: {notes.get(name, f'no saved run for {target_id}')}"
               for name in dict.fromkeys([*names, *notes]) if name not in measured]
    return found, missing


INPUTS = "leaderboard_runs.json"  # which saved runs a leaderboard shows, and why the others are missing


def save_inputs(paths: list[Path], out: Path, missing: list[str]) -> None:
    """What the page is rendered from besides the runs themselves, so it can be rendered again exactly
    (`python -m benchmark.rerender`): the runs, relative to the page where they lie under it, and the notes."""
    def where(p: Path) -> str:
        p = Path(p).resolve()
        return str(p.relative_to(out.resolve())) if p.is_relative_to(out.resolve()) else str(p)

    (out / INPUTS).write_text(json.dumps({"runs": [where(p) for p in paths], "missing": missing}, indent=2) + "\n")


def saved_inputs(out: Path) -> tuple[list[Path], list[str]]:
    """The runs and notes a leaderboard in `out` was rendered from (save_inputs)."""
    saved = json.loads((out / INPUTS).read_text())
    return [out / p for p in saved["runs"]], saved["missing"]


def write_leaderboard(paths: list[Path], out: Path | None = None, missing: list[str] | None = None) -> Path:
    """Render results/leaderboard.md, .csv and .png from saved runs; `missing`: the models without one, and why
    (saved_runs)."""
    if not paths:
        raise ValueError("no saved runs to put on the leaderboard: run `python -m benchmark --model all`")
    frame = table([SavedRun.read(p) for p in paths])
    out = out or results_root()
    out.mkdir(parents=True, exist_ok=True)
    save_inputs(paths, out, missing or [])
    frame.to_csv(out / "leaderboard.csv", index=False, float_format="%.6g")
    plot(frame, out / "leaderboard.png")
    report = out / "leaderboard.md"
    throughput = throughput_section([Path(p).parent for p in paths])  # each model's load run, where there is one
    report.write_text(_markdown(frame, missing or []) + "\n".join(["", *throughput] if throughput else []))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.leaderboard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="saved runs (default: every model's on --target)")
    p.add_argument("--target", help="target id of the runs (default: this host's)")
    p.add_argument("--out", type=Path, help="directory of leaderboard.md (default: results/)")
    args = p.parse_args(argv)
    if args.runs:
        paths, missing = args.runs, []
    else:
        # Why a model has no run is known only of this host (what is available here).
        notes = choose_models(ALL)[1] if args.target in (None, host_target().id) else {}
        paths, missing = saved_runs(args.target, notes)
    try:
        report = write_leaderboard(paths, args.out, missing)
    except ValueError as e:
        p.error(str(e))
    print(f"leaderboard: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

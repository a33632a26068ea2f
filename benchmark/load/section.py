"""Render a load run (throughput.json) into throughput.md, a latency-vs-offered-load plot, the report's
section and the leaderboard's table. Renders only: every number comes from the saved run, which holds
what LoadGen's summary files said (they are kept beside it, under throughput_loadgen/)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from runtime.engines import engine_label

from .options import OFFLINE, SERVER, SINGLE_STREAM, Layout

SAVED = "throughput.json"
BOT_SAVED = "throughput_bot.json"
AGREE = 0.10  # SingleStream p50 within this fraction of the benchmark's p50: they agree
WORK_TEXT = {
    "inference": "inference alone: each photo is pre-processed (stretched to the model's input and scaled, "
                 "runtime/processing.py) once, when LoadGen loads it into the sample library, as MLPerf does",
    "segment": "the whole segmentation of the photo: pre-processing, inference and post-processing at the model's "
               "resolution (runtime.segmenter.Segmenter)",
    "reply": "the bot's /segmentation reply on its reply lane: segmentation, then the original, one mask per class "
             "and the overlay encoded (bot/service.py), without the download and the upload",
}


def read(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the load run {path}: {e}") from e


def _config_label(c: dict) -> str:
    return f"{engine_label(c['engine'])}, {Layout(c['instances'], c['threads']).label}"


def _num(v, fmt: str = ".1f") -> str:
    return "-" if v is None or pd.isna(v) else format(v, fmt)


def table(run: dict) -> pd.DataFrame:
    """One row per configuration: what each scenario measured (NaN: not run; `note`: why not measured)."""
    rows = []
    for c in run["configurations"]:
        ss, off, srv = c.get(SINGLE_STREAM) or {}, c.get(OFFLINE) or {}, c.get(SERVER) or {}
        held = bool(srv.get("max_rate"))  # the kept Server run is then the one at the max rate
        at_max = next(p for p in srv["probes"] if p["rate"] == srv["kept_rate"]) if held else {}
        rows.append({
            "configuration": c["configuration"], "engine": c["engine"], "instances": c["instances"],
            "threads": c["threads"], "label": _config_label(c),
            "ss_p50": ss.get("p50_ms", np.nan), "ss_p90": ss.get("p90_ms", np.nan), "ss_p99": ss.get("p99_ms", np.nan),
            "offline_per_s": off.get("photos_per_s", np.nan), "server_max_rate": srv.get("max_rate", np.nan),
            "server_p50": at_max.get("p50_ms", np.nan), "server_p99": at_max.get("p99_ms", np.nan),
            "server_verdict": _verdict(at_max) if held else "-", "note": c.get("error", "")})
    return pd.DataFrame(rows)


def probes(run: dict) -> pd.DataFrame:
    """Every Server run of every configuration: offered rate, achieved rate, latencies, verdicts."""
    rows = [{"configuration": _config_label(c), "rate": p["rate"], "scheduled_per_s": p["scheduled_per_s"],
             "completed_per_s": p["photos_per_s"], "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"],
             "p99_under_bound": bool(p["latency_ok"]), "loadgen_valid": bool(p["valid"])}
            for c in run["configurations"] for p in (c.get(SERVER) or {}).get("probes", [])]
    return pd.DataFrame(rows, columns=["configuration", "rate", "scheduled_per_s", "completed_per_s", "p50_ms",
                                       "p99_ms", "p99_under_bound", "loadgen_valid"]).sort_values(
        ["configuration", "rate"], kind="stable")


def cross_check(run: dict, stats: pd.DataFrame | None) -> pd.DataFrame:
    """SingleStream p50/p90 beside the benchmark's (latency_stats.csv of the same results directory) at the
    same threads per engine; empty when the queries do more than inference or there is no benchmark."""
    if stats is None or stats.empty or run["work"] != "inference":
        return pd.DataFrame()
    rows = []
    for c in run["configurations"]:
        ss = c.get(SINGLE_STREAM)
        bench = stats[(stats["engine"] == c["engine"]) & (stats["threads"] == c["threads"])]
        if not ss or bench.empty:
            continue
        b = bench.iloc[0]
        ratio = ss["p50_ms"] / float(b["p50"])
        rows.append({"configuration": _config_label(c), "SingleStream p50": ss["p50_ms"],
                     "benchmark p50": float(b["p50"]), "SingleStream p90": ss["p90_ms"],
                     "benchmark p90": float(b["p90"]), "p50 ratio": ratio,
                     "agree": "yes" if abs(ratio - 1) <= AGREE else "no"})
    return pd.DataFrame(rows)


def plot(run: dict, path: Path) -> Path | None:
    """p50 and p99 against the offered Server rate, one line per engine and layout, the bound dashed."""
    data = probes(run)
    if data.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = data.melt(id_vars=["configuration", "rate"], value_vars=["p50_ms", "p99_ms"], var_name="percentile",
                     value_name="latency_ms")
    long["percentile"] = long["percentile"].map({"p50_ms": "p50", "p99_ms": "p99"})
    fig, ax = plt.subplots(figsize=(10, 4.8))
    sns.lineplot(data=long, x="rate", y="latency_ms", hue="configuration", style="percentile", markers=True,
                 dashes={"p50": (2, 2), "p99": ""}, ax=ax)
    ax.axhline(run["bound_ms"], color="black", linestyle="--", linewidth=1,
               label=f"p99 bound {run['bound_ms']:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (Poisson arrivals, photos/s)")
    ax.set_ylabel("latency per photo (ms, log scale)")
    ax.set_title(f"{run['model']}: latency against offered load (LoadGen Server)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bound_text(run: dict) -> str:
    return "Server not run" if run["bound_ms"] is None else f"{run['bound_ms']:g} ms: {run['bound_rule']}"


def _verdict(result: dict) -> str:
    """LoadGen's verdict on a Server run, with the reason when it is INVALID only for want of queries."""
    if result["valid"]:
        return "VALID"
    if result["latency_ok"] and result["min_duration_ok"] and result["min_queries_ok"]:
        return "INVALID: too few queries for early stopping"
    return "INVALID"


def _results_table(frame: pd.DataFrame, bound_ms: float | None) -> str:
    shown = pd.DataFrame({
        "engine, layout": frame["label"],
        "SingleStream p50 / p90 / p99 (ms)": [
            "-" if pd.isna(a) else f"{a:.2f} / {b:.2f} / {c:.2f}"
            for a, b, c in zip(frame["ss_p50"], frame["ss_p90"], frame["ss_p99"], strict=True)],
        "Offline photos/s": frame["offline_per_s"].map(_num),
        ("Server: not run" if bound_ms is None else f"Server max rate, p99 ≤ {bound_ms:g} ms (photos/s)"): [
            "not measured" if note else ("none held" if r == 0 else _num(r)) for r, note in zip(
                frame["server_max_rate"], frame["note"], strict=True)],
        "p50 / p99 there (ms)": [
            "-" if pd.isna(a) else f"{a:.1f} / {b:.1f}" for a, b in zip(frame["server_p50"], frame["server_p99"],
                                                                        strict=True)],
        "LoadGen's verdict there": frame["server_verdict"],
    })
    notes = [f"- {label}: {note}" for label, note in zip(frame["label"], frame["note"], strict=True) if note]
    return "\n".join([shown.to_markdown(index=False, disable_numparse=True), *([""] + notes if notes else [])])


def headline(frame: pd.DataFrame) -> str:
    """Which configuration serves most at the bound, and which has the highest Offline throughput."""
    parts = []
    if frame["server_max_rate"].notna().any() and frame["server_max_rate"].max() > 0:
        best = frame.loc[frame["server_max_rate"].idxmax()]
        parts.append(f"most photos/s at the p99 bound: {best['label']} ({best['server_max_rate']:.1f})")
    if frame["offline_per_s"].notna().any():
        best = frame.loc[frame["offline_per_s"].idxmax()]
        parts.append(f"highest Offline throughput: {best['label']} ({best['offline_per_s']:.1f} photos/s)")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "." if parts else ""


def markdown(run: dict, stats: pd.DataFrame | None, figure: str | None, logs: str, server_csv: str) -> str:
    frame = table(run)
    env = run["machine"]["environment"]
    settings = run["settings"]
    lines = [f"# Throughput under load: {run['model']}" + (" (the bot's layout)" if run.get("bot") else ""), "",
             f"Machine: {env['cpu']}, {env['cores']} cores, target `{run['machine']['target']['id']}`; {run['date']}. "
             f"`{run['command']}`.", "",
             "MLPerf LoadGen (mlcommons-loadgen " + run["loadgen"] + ") drives the engines. SingleStream: one photo "
             "at a time, the next when the last is done. Offline: every photo queued at once; photos/s is the "
             "throughput. Server: photos arrive at random (Poisson) at an offered rate; the table gives the "
             "highest rate whose 99th-percentile latency stays under the bound "
             f"({_bound_text(run)}), found by bisection between 0 and the "
             f"configuration's Offline throughput ({settings['search_steps']} LoadGen runs at most, "
             "benchmark/load/search.py). *LoadGen's verdict* at that rate is VALID when its early-stopping test "
             "also passes (enough queries that the p99 holds with 99 % confidence); near the knee it needs thousands "
             "of queries (MLPerf's own Server runs have at least 270,336), more than these runs have: there the "
             "verdict says so.", "",
             f"A query is {WORK_TEXT[run['work']]}. Each engine and layout runs in a fresh process; an *instance* "
             "is one engine with its own thread pool, on a thread of its own, all instances taking photos from one "
             f"queue. Every LoadGen run lasts at least {settings['min_duration_s']:g} s and "
             f"{settings['min_queries']} queries; the photos are the benchmark's two real portraits.", "",
             _results_table(frame, run["bound_ms"]), ""]
    if text := headline(frame):
        lines += [f"**{text}**", ""]
    check = cross_check(run, stats)
    if not check.empty:
        lines += ["## SingleStream against the benchmark", "",
                  "The same engine and threads, one photo at a time, in ms: LoadGen's SingleStream against the "
                  f"benchmark's latency runs (latency_stats.csv). They agree when the p50s are within {AGREE:.0%}. "
                  "Differences to expect: LoadGen's query passes through a queue to the instance's thread, and "
                  "it issues the next photo as soon as the last is done, while the benchmark waits until TVM's "
                  "pool workers are idle before each timed run (benchmark/idle.py) and may have run on a quieter "
                  "machine, at another time.", "",
                  check.to_markdown(index=False, floatfmt=".2f"), ""]
    elif run["work"] != "inference":
        lines += ["No cross-check with the benchmark: its latencies are of inference alone, these queries do more.",
                  ""]
    if figure:
        lines += [f"![latency against offered load]({figure})", ""]
    lines += [f"LoadGen's own summary and detail logs of every reported run: `{logs}/<engine>-<layout>/<scenario>/` "
              "(the detail log without its line of LoadGen source-file hashes). Every Server run of the search: "
              f"`{server_csv}`.", ""]
    return "\n".join(lines)


def render(saved: Path) -> Path:
    """throughput.md (or throughput_bot.md), its plot and the Server runs' CSV beside the saved run."""
    run = read(saved)
    out = saved.parent
    stem = saved.stem
    stats_path = out / "latency_stats.csv"
    stats = pd.read_csv(stats_path) if stats_path.is_file() else None
    probes(run).to_csv(out / f"{stem}_server.csv", index=False, float_format="%.4f")
    figure = plot(run, out / f"{stem}_load.png")
    report = out / f"{stem}.md"
    report.write_text(markdown(run, stats, figure.name if figure else None, f"{stem}_loadgen", f"{stem}_server.csv"))
    return report


def report_section(out: Path) -> list[str]:
    """The model report's `Throughput under load` section, from the load runs saved in its directory."""
    lines = []
    for name in (SAVED, BOT_SAVED):
        if not (out / name).is_file():
            continue
        run = read(out / name)
        frame = table(run)
        title = "## Throughput under load" + (" (the bot's layout)" if run.get("bot") else "")
        lines += [title, "", f"MLPerf LoadGen, {run['date'][:10]}; a query is {WORK_TEXT[run['work']]}. "
                  f"Details, the cross-check with the latencies above and LoadGen's logs: [{Path(name).stem}.md]"
                  f"({Path(name).stem}.md).", "", _results_table(frame, run["bound_ms"]), ""]
        if text := headline(frame):
            lines += [f"**{text}**", ""]
    return lines


def leaderboard_section(run_dirs: list[Path]) -> list[str]:
    """The leaderboard's throughput table: per model, engine and layout, Offline photos/s and the Server
    max rate at the model's p99 bound (from each model's throughput.json)."""
    rows = []
    for directory in run_dirs:
        if not (directory / SAVED).is_file():
            continue
        run = read(directory / SAVED)
        for _, r in table(run).iterrows():
            rows.append({"model": run["model"], "p99 bound (ms)": _num(run["bound_ms"], "g"),
                         "engine, layout": r["label"], "Offline photos/s": _num(r["offline_per_s"]),
                         "Server max rate at the bound": "not measured" if r["note"] else _num(r["server_max_rate"])})
    if not rows:
        return []
    return ["## Throughput under load", "",
            "MLPerf LoadGen (`./nox -s load`): Offline throughput and the highest Poisson arrival rate whose p99 "
            "stays under the model's bound, in photos/s, per engine and layout (instances x threads each). Each "
            "model's throughput.md has the details and LoadGen's logs.", "",
            pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.load.section",
                                description="Render throughput.md, its plot and CSV again from a saved load run "
                                            "(no measuring).")
    p.add_argument("saved", type=Path, help="a load run's throughput.json (or throughput_bot.json)")
    args = p.parse_args(argv)
    try:
        print(f"throughput: {render(args.saved)}")
    except (ValueError, KeyError) as e:
        p.error(f"{args.saved}: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

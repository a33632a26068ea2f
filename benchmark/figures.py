"""The report's figures: latency box plot and ECDF per engine and thread count."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from runtime.engines import ENGINE_NAMES, engine_label


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

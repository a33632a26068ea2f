"""Latency statistics from raw samples."""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["runs", "min", "p50", "p90", "p99", "mean", "std", "iqr"]


def describe(samples_ms) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    q25, p50, q75, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99])
    return {"runs": int(a.size), "min": float(a.min()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "iqr": float(q75 - q25)}


def summarise(samples: pd.DataFrame) -> pd.DataFrame:
    """samples: columns engine, threads, latency_ms -> one row of statistics per (engine, threads)."""
    rows = [{"engine": engine, "threads": threads, **describe(group["latency_ms"])}
            for (engine, threads), group in samples.groupby(["engine", "threads"], sort=True)]
    return pd.DataFrame(rows, columns=["engine", "threads", *COLUMNS])


def ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Median speed-ups per thread count: default/tuned and LiteRT/tuned (>1 means tuned is faster)."""
    p50 = table.pivot(index="threads", columns="engine", values="p50")
    out = pd.DataFrame(index=p50.index)
    if {"tvm-default", "tvm-tuned"} <= set(p50.columns):
        out["tuned vs default"] = p50["tvm-default"] / p50["tvm-tuned"]
    if {"litert", "tvm-tuned"} <= set(p50.columns):
        out["tuned vs LiteRT"] = p50["litert"] / p50["tvm-tuned"]
    if {"litert", "tvm-default"} <= set(p50.columns):
        out["default vs LiteRT"] = p50["litert"] / p50["tvm-default"]
    out = out.reset_index()
    out["threads"] = out["threads"].astype(int)
    return out

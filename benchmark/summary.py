"""Latency statistics from raw samples, with a distribution-free confidence interval of the median."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from runtime.engines import LITERT, TVM_DEFAULT, TVM_TUNED
from runtime.ratios import in_words

CONFIDENCE = 0.95
# label, engine whose time is divided, engine whose time divides (runtime/ratios.py: below 1, the first is faster),
# and the two engines' names as the ratio's words say them
RATIOS = (("tuned / default", TVM_TUNED, TVM_DEFAULT), ("tuned / LiteRT", TVM_TUNED, LITERT),
          ("default / LiteRT", TVM_DEFAULT, LITERT))
SHORT_NAMES = {TVM_TUNED: "tuned", TVM_DEFAULT: "default", LITERT: "LiteRT"}
COLUMNS = ["runs", "min", "p50", "p50_ci_low", "p50_ci_high", "p90", "p99", "mean", "std", "iqr"]


def median_ci(samples, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Order-statistic confidence interval of the median (binomial, no assumption on the distribution).

    scipy's `quantile_test` inverts the sign test: the interval runs between two order statistics
    chosen so that it holds the population median with probability >= `confidence`. With fewer than
    6 samples no such pair exists at 95 % and both bounds are NaN.
    """
    a = np.asarray(samples, dtype=np.float64)
    ci = stats.quantile_test(a, q=float(np.median(a)), p=0.5).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def describe(samples_ms) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    q25, p50, q75, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99])
    low, high = median_ci(a)
    return {"runs": int(a.size), "min": float(a.min()), "p50": float(p50), "p50_ci_low": low, "p50_ci_high": high,
            "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "iqr": float(q75 - q25)}


def summarise(samples: pd.DataFrame) -> pd.DataFrame:
    """samples: columns engine, threads, latency_ms -> one row of statistics per (engine, threads)."""
    rows = [{"engine": engine, "threads": threads, **describe(group["latency_ms"])}
            for (engine, threads), group in samples.groupby(["engine", "threads"], sort=True)]
    return pd.DataFrame(rows, columns=["engine", "threads", *COLUMNS])


def ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Ratios of medians per thread count: tuned / default, tuned / LiteRT, default / LiteRT (below 1: the first
    engine is faster)."""
    p50 = table.pivot(index="threads", columns="engine", values="p50")
    out = pd.DataFrame(index=p50.index)
    for label, first, second in RATIOS:
        if {first, second} <= set(p50.columns):
            out[label] = p50[first] / p50[second]
    out = out.reset_index()
    out["threads"] = out["threads"].astype(int)
    return out


def paired_ratios(pairs: pd.DataFrame, numerator: str, denominator: str, threads: int) -> np.ndarray:
    """`numerator`'s time over `denominator`'s in each pair of their adjacent runs at `threads` (SavedRun.pairs),
    both directions: the one timed after the other, and the other way round."""
    ratios = []
    for timed, partner in ((numerator, denominator), (denominator, numerator)):
        these = pairs[(pairs["threads"] == threads) & (pairs["engine"] == timed) & (pairs["partner"] == partner)]
        ms = {timed: these["engine_ms"].to_numpy(), partner: these["partner_ms"].to_numpy()}
        ratios.append(ms[numerator] / ms[denominator])
    return np.concatenate(ratios)


def paired_ratio_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Ratios from pairs of adjacent runs (SavedRun.pairs), both directions pooled: for each RATIOS label,
    the first engine's time over the second's in each pair (below 1: the first is faster); the median of
    those ratios and its confidence interval, per thread count. Drift of the machine between the
    engines' blocks of runs, which moves a ratio of medians, cancels in each pair."""
    rows = []
    for label, first, second in RATIOS:
        for threads in sorted(set(pairs["threads"])):
            ratios = paired_ratios(pairs, first, second, threads)
            if ratios.size:
                low, high = median_ci(ratios)
                rows.append({"ratio": label, "threads": int(threads), "pairs": int(ratios.size),
                             "median": float(np.median(ratios)), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["ratio", "threads", "pairs", "median", "ci_low", "ci_high"])


def ratio_in_words(label: str, ratio: float) -> str:
    """A RATIOS label's value in words (runtime/ratios.py): `tuned takes 0.91x LiteRT's time: 9 % faster`."""
    _, first, second = next(r for r in RATIOS if r[0] == label)
    return in_words(ratio, SHORT_NAMES[first], SHORT_NAMES[second])

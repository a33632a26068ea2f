"""The benchmark's published p50 latencies for this machine's target: what the bot quotes when it is too
busy to time an engine itself."""

from __future__ import annotations

import contextlib
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PublishedLatency:
    p50: dict[tuple[str, int], float] = field(default_factory=dict)  # (engine, threads) -> ms
    date: str | None = None  # when it was measured (YYYY-MM-DD)
    target_id: str = ""


def published_p50(model: str, results_root: Path, target_id: str) -> dict[tuple[str, int], float]:
    """p50 latencies from this model's benchmark report for this machine's target, if there is one."""
    path = results_root / model / target_id / "latency_stats.csv"
    if not path.is_file():
        return {}
    with path.open() as f:
        return {(row["engine"], int(row["threads"])): float(row["p50"]) for row in csv.DictReader(f)}


def read_published(model: str, results_root: Path, target_id: str) -> PublishedLatency:
    date = None
    env = results_root / model / target_id / "environment.json"
    with contextlib.suppress(OSError, ValueError):
        date = str(json.loads(env.read_text()).get("date", ""))[:10] or None
    return PublishedLatency(published_p50(model, results_root, target_id), date, target_id)

"""LoadGen's own logs: its summary file read back into numbers, and the logs kept (small) beside the report.

Every number a load run reports comes from `mlperf_log_summary.txt`, the file a reader can check.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

SUMMARY = "mlperf_log_summary.txt"
DETAIL = "mlperf_log_detail.txt"
# The detail log's one large line: SHA-1s of LoadGen's own source files (20 KB of a 28 KB log).
DETAIL_DROPPED_KEY = '"key": "loadgen_file_sha1"'
_LINE = re.compile(r"^\s*(?:\*\s*)?([^:]+?)\s*:\s*(.+?)\s*$")


class SummaryError(ValueError):
    """A LoadGen summary file without a field every run has (not a LoadGen summary, or another version's)."""


def parse_summary(text: str) -> dict[str, str]:
    """Every `name : value` line of a LoadGen summary (the first one of each name)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if (m := _LINE.match(line)) and m[1] not in fields:
            fields[m[1]] = m[2]
    return fields


def _ms(fields: dict[str, str], name: str) -> float:
    return float(fields[name]) / 1e6 if name in fields else float("nan")


def _yes(fields: dict[str, str], name: str) -> bool | None:
    return fields[name].lower() == "yes" if name in fields else None


# The scenario's headline throughput, as its summary names it.
THROUGHPUT_FIELD = {"SingleStream": "QPS w/ loadgen overhead", "Offline": "Samples per second",
                    "Server": "Completed samples per second"}


@dataclass(frozen=True)
class LoadResult:
    """One LoadGen run, as its summary file reports it (latencies in ms, rates in photos/s)."""

    scenario: str  # LoadGen's spelling: SingleStream, Offline, Server
    valid: bool  # LoadGen's verdict: "Result is : VALID" (Server: p99 under the bound and early stopping met)
    latency_ok: bool | None  # Server: "Performance constraints satisfied" (its p99 at most the bound)
    early_stopping_ok: bool | None
    min_duration_ok: bool | None
    min_queries_ok: bool | None
    photos_per_s: float  # completed photos per second (SingleStream: with LoadGen's overhead)
    scheduled_per_s: float  # Server: the Poisson arrivals' achieved rate; NaN otherwise
    target_per_s: float  # the rate asked for (Server), the expected rate (Offline)
    bound_ms: float  # Server: the p99 bound; NaN otherwise
    min_ms: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def read_summary(path: Path) -> LoadResult:
    fields = parse_summary(path.read_text())
    try:
        scenario = fields["Scenario"]
        headline = fields[THROUGHPUT_FIELD[scenario]]
        valid = fields["Result is"]
        p50 = fields["50.00 percentile latency (ns)"]
    except KeyError as e:
        raise SummaryError(f"{path}: no {e.args[0]!r} line; not a LoadGen summary this version can read") from None
    target_latency = float(fields.get("target_latency (ns)", "0"))
    return LoadResult(
        scenario=scenario, valid=valid == "VALID", latency_ok=_yes(fields, "Performance constraints satisfied"),
        early_stopping_ok=_yes(fields, "Early stopping satisfied"),
        min_duration_ok=_yes(fields, "Min duration satisfied"), min_queries_ok=_yes(fields, "Min queries satisfied"),
        photos_per_s=float(headline),
        scheduled_per_s=float(fields.get("Scheduled samples per second", "nan")),
        target_per_s=float(fields.get("target_qps", "nan")),
        bound_ms=target_latency / 1e6 if scenario == "Server" and target_latency > 0 else float("nan"),
        min_ms=_ms(fields, "Min latency (ns)"), mean_ms=_ms(fields, "Mean latency (ns)"), p50_ms=float(p50) / 1e6,
        p90_ms=_ms(fields, "90.00 percentile latency (ns)"), p99_ms=_ms(fields, "99.00 percentile latency (ns)"),
        max_ms=_ms(fields, "Max latency (ns)"))


def keep_logs(run_dir: Path, dest: Path) -> Path:
    """Copy a run's summary and detail logs to `dest` (replacing what was there); the detail log without its
    line of LoadGen source-file hashes. The trace and the (empty) accuracy log are not kept."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copyfile(run_dir / SUMMARY, dest / SUMMARY)
    detail = run_dir / DETAIL
    if detail.is_file():
        kept = [line for line in detail.read_text().splitlines(keepends=True) if DETAIL_DROPPED_KEY not in line]
        (dest / DETAIL).write_text("".join(kept))
    return dest

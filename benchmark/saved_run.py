"""A saved benchmark run: one JSON file holding everything its report is rendered from.

pytest-benchmark's format, merged over the processes of one run (one per thread count), plus one key:
- `machine_info`, `commit_info`, `datetime`, `version`: the first process's; `machine_info["selfie_tvm"]`
  is what the run was measured on (benchmark/machine.py), the same in every process;
- `benchmarks`: every process's, in thread-count order;
- `selfie_tvm`: what was measured after the latency runs (benchmark/measure.py): agreement with
  LiteRT and the tuned module's per-kernel profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from runtime.engines import ENGINE_NAMES

from .environment import Environment
from .machine import KEY

# What must be the same in every process of one run.
_SAME_MACHINE = ("target", "model", "model_sha256")
_MACHINE_FIELDS = ("environment", *_SAME_MACHINE)


def merge(parts: list[dict]) -> dict:
    """pytest-benchmark's JSON of each thread count's process -> one run."""
    if not parts:
        raise ValueError("no benchmark results to merge")
    first = parts[0]
    for part in parts[1:]:
        for key in _SAME_MACHINE:
            if part["machine_info"].get(KEY, {}).get(key) != first["machine_info"].get(KEY, {}).get(key):
                raise ValueError(f"the processes of one run disagree on {key}: they cannot be merged")
    return {**first, "benchmarks": [b for part in parts for b in part["benchmarks"]]}


@dataclass(frozen=True)
class SavedRun:
    path: Path
    data: dict

    @classmethod
    def read(cls, path: Path) -> SavedRun:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read the saved run {path}: {e}") from e
        if KEY not in data.get("machine_info", {}):
            raise ValueError(f"{path} does not say what it was measured on (no machine_info.{KEY}): it was not "
                             "saved by `python -m benchmark`; measure again")
        missing = [k for k in _MACHINE_FIELDS if k not in data["machine_info"][KEY]]
        if missing or "benchmarks" not in data:
            raise ValueError(f"{path} is incomplete: no {', '.join(missing or ['benchmarks'])}")
        return cls(Path(path), data)

    @property
    def machine(self) -> dict:
        return self.data["machine_info"][KEY]

    @property
    def model(self) -> str:
        return self.machine["model"]

    @property
    def target(self) -> dict:
        """The measuring machine's target, as TargetSpec.as_dict wrote it (with its `id`)."""
        return self.machine["target"]

    @property
    def environment(self) -> Environment:
        saved = self.machine["environment"]
        return Environment(**{f.name: saved[f.name] for f in fields(Environment)})

    @property
    def libraries(self) -> dict[str, dict]:
        return self.machine.get("libraries", {})

    @property
    def commit(self) -> dict:
        return self.data.get("commit_info", {})

    @property
    def measurements(self) -> dict:
        return self.data.get(KEY, {})

    def samples(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Raw per-round latencies of every benchmark, and each benchmark's extra info."""
        samples, info = [], []
        for b in self.data["benchmarks"]:
            extra = b.get("extra_info", {})
            data = b["stats"].get("data")
            if data is None:
                raise ValueError(f"{self.path} has no raw data: run pytest with --benchmark-save-data")
            for i, seconds in enumerate(data):
                samples.append({"kind": extra.get("kind"), "engine": extra.get("engine"),
                                "threads": extra.get("threads"), "round": i, "latency_ms": seconds * 1e3})
            info.append({key: extra.get(key) for key in (
                "kind", "engine", "threads", "load_ms", "first_run_ms", "rss_delta_mb", "process_peak_rss_mb",
                "protocol", "slow", "warmup", "interleaved_with", "slow_ms", "idle_wait")})
        return pd.DataFrame(samples), pd.DataFrame(info)

    def pairs(self) -> pd.DataFrame:
        """Each timed run with the run of each other engine just before it (`partner_ms`; runs saved before
        partners were timed have none): threads, engine, partner, engine_ms, partner_ms."""
        rows = []
        for b in self.data["benchmarks"]:
            extra = b.get("extra_info", {})
            if extra.get("kind") != "inference":
                continue
            timed = [seconds * 1e3 for seconds in b["stats"].get("data") or []]
            for partner, before in (extra.get("partner_ms") or {}).items():
                rows += [{"threads": extra["threads"], "engine": extra["engine"], "partner": partner, "engine_ms": t,
                          "partner_ms": p} for t, p in zip(timed, before, strict=False)]
        return pd.DataFrame(rows, columns=["threads", "engine", "partner", "engine_ms", "partner_ms"])

    def slow_engines(self) -> set[str]:
        """Engines measured as slow (the quick protocol's few runs) at any thread count."""
        return {b["extra_info"]["engine"] for b in self.data["benchmarks"]
                if b.get("extra_info", {}).get("kind") == "inference" and b["extra_info"].get("slow")}

    def inference_engines(self) -> list[str]:
        """The engines timed, in the engine table's order."""
        timed = {b["extra_info"]["engine"] for b in self.data["benchmarks"]
                 if b.get("extra_info", {}).get("kind") == "inference"}
        return [e for e in ENGINE_NAMES if e in timed]

    def thread_counts(self) -> list[int]:
        return sorted({int(b["extra_info"]["threads"]) for b in self.data["benchmarks"]
                       if b.get("extra_info", {}).get("kind") == "inference"})

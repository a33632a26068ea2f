"""Tuning databases as files: pruning, selection by CPU, merging, compressed committed sets."""

from __future__ import annotations

import json
from pathlib import Path

from tuning.database import (
    RECORDS,
    WORKLOADS,
    Record,
    count_records,
    is_compressed,
    merge,
    prune,
    read_records,
    select_for,
    write_database,
)

FAILED = 1e10  # how MetaSchedule marks a candidate that did not build or run


def record(kernel: str, seconds: float, mcpu: str, trace: str = "") -> Record:
    body = [[["trace", kernel, mcpu, seconds, trace]], [seconds, seconds], {"kind": "llvm", "mcpu": mcpu}, []]
    return Record(shash=kernel, workload_line=json.dumps([kernel, f"module-{kernel}"]), body=body)


def costs(records: list[Record]) -> list[tuple[str, str, float]]:
    return [(r.shash, r.mcpu, r.cost_s) for r in records]


def test_prune_keeps_the_fastest_valid_records_per_kernel_and_cpu_in_measured_order():
    measured = [record("k1", s, "znver3") for s in (5.0, 1.0, 4.0, 2.0, FAILED, 3.0)]
    measured += [record("k1", 9.0, "znver5"), record("k2", FAILED, "znver3"), record("k2", 7.0, "znver3")]
    kept = prune(measured, keep=3)
    assert costs(kept) == [("k1", "znver3", 1.0), ("k1", "znver3", 2.0), ("k1", "znver3", 3.0),
                           ("k1", "znver5", 9.0), ("k2", "znver3", 7.0)]


def test_a_build_prefers_records_measured_on_its_own_cpu():
    measured = [record("k1", 1.0, "znver5"), record("k1", 3.0, "znver3"), record("k1", 2.0, "znver3"),
                record("k2", 4.0, "znver5"), record("k2", 0.5, "x86-64-v3"), record("k3", FAILED, "znver3")]
    chosen = {r.shash: (r.mcpu, r.cost_s) for r in select_for(measured, "znver3")}
    # k1: this CPU's best even though another CPU measured faster; k2: none from this CPU, so the
    # level's best; k3: only a failed measurement, so no record (the kernel counts as untuned).
    assert chosen == {"k1": ("znver3", 2.0), "k2": ("x86-64-v3", 0.5)}


def test_compressed_sets_round_trip_with_the_same_bytes(tmp_path):
    measured = [record("k1", 1.0, "znver3"), record("k2", 2.0, "znver3"), record("k1", 3.0, "znver5")]
    write_database(tmp_path / "a", measured, compressed=True)
    write_database(tmp_path / "b", read_records(tmp_path / "a"), compressed=True)
    for name in (RECORDS, WORKLOADS):
        data = (tmp_path / "a" / f"{name}.gz").read_bytes()
        assert data == (tmp_path / "b" / f"{name}.gz").read_bytes()
        assert data[4:8] == bytes(4)  # no time stamp in the gzip header: a rewrite changes no byte
    assert is_compressed(tmp_path / "a") and count_records(tmp_path / "a") == 3
    assert costs(read_records(tmp_path / "a")) == costs(measured)
    write_database(tmp_path / "a", measured, compressed=False)
    assert not is_compressed(tmp_path / "a") and not (tmp_path / "a" / f"{RECORDS}.gz").exists()


def test_plain_files_are_what_metaschedule_reads(tmp_path):
    write_database(tmp_path, [record("k1", 1.0, "znver3"), record("k2", 2.0, "znver3"), record("k1", 3.0, "z")],
                   compressed=False)
    workloads = [json.loads(line) for line in (tmp_path / WORKLOADS).read_text().splitlines()]
    rows = [json.loads(line) for line in (tmp_path / RECORDS).read_text().splitlines()]
    assert [w[0] for w in workloads] == ["k1", "k2"]
    assert [r[0] for r in rows] == [0, 1, 0]


def test_merge_adds_only_what_is_missing(tmp_path):
    committed, working = tmp_path / "committed", tmp_path / "working"
    write_database(committed, [record("k1", 1.0, "znver3"), record("k2", 2.0, "znver3")], compressed=True)
    write_database(working, [record("k1", 1.0, "znver3"), record("k1", 5.0, "znver3", trace="other")],
                   compressed=False)
    assert merge(committed, working) == 1
    assert merge(committed, working) == 0
    assert sorted(costs(read_records(working))) == [("k1", "znver3", 1.0), ("k1", "znver3", 5.0),
                                                     ("k2", "znver3", 2.0)]
    assert merge(tmp_path / "nothing", working) == 0


def test_committed_record_sets_are_pruned_and_small():
    root = Path(__file__).resolve().parents[1] / "results" / "tuning"
    for level in root.iterdir():
        assert is_compressed(level), f"{level}: commit the pruned, compressed set"
        for f in level.iterdir():
            assert f.stat().st_size <= 5 * 2**20, f"{f} is over 5 MB"
        records = read_records(level)
        assert len(prune(records)) == len(records), f"{level} holds records that pruning would drop"

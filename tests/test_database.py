"""Tuning databases as files: pruning, selection by CPU, merging, compressed committed sets."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from runtime.target import TargetSpec, host_target, portable_target
from tuning.database import (
    COMMIT,
    RECORDS,
    WORKLOADS,
    Record,
    build_cpu,
    count_records,
    is_compressed,
    merge,
    new_records,
    prune,
    read_records,
    select_for,
    tag_measuring_cpu,
    write_database,
)

FAILED = 1e10  # how MetaSchedule marks a candidate that did not build or run


def record(kernel: str, seconds: float, mcpu: str, trace: str = "", model: str | None = None) -> Record:
    target = {"kind": "llvm", "mcpu": mcpu, **({"model": model} if model else {})}
    body = [[["trace", kernel, mcpu, seconds, trace]], [seconds, seconds], target, []]
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


def test_portable_records_are_told_apart_by_the_cpu_that_measured_them():
    """x86-64-v3 code is the same on every CPU: `model` names where a portable record was measured."""
    measured = [record("k1", 1.0, "x86-64-v3"),  # tuned --portable before records were tagged
                record("k1", 2.0, "x86-64-v3", model="rocketlake"), record("k1", 3.0, "x86-64-v3", model="znver1"),
                record("k1", 4.0, "x86-64-v3", model="znver1", trace="b"), record("k2", 5.0, "znver1"),
                record("k2", 0.5, "x86-64-v3", model="rocketlake")]
    assert [r.cpu for r in measured] == ["x86-64-v3", "rocketlake", "znver1", "znver1", "znver1", "rocketlake"]
    chosen = {r.shash: (r.mcpu, r.cpu, r.cost_s) for r in select_for(measured, "znver1")}
    # This CPU's measurements, portable (k1) or built for it (k2), over faster ones from elsewhere.
    assert chosen == {"k1": ("x86-64-v3", "znver1", 3.0), "k2": ("znver1", "znver1", 5.0)}
    # Pruning keeps each CPU's best of each code target: one per group here.
    assert costs(prune(measured, keep=1)) == [("k1", "x86-64-v3", 1.0), ("k1", "x86-64-v3", 2.0),
                                             ("k1", "x86-64-v3", 3.0), ("k2", "znver1", 5.0), ("k2", "x86-64-v3", 0.5)]


def test_the_tuner_tags_a_generic_target_with_the_measuring_cpu_and_a_build_ranks_by_the_right_cpu():
    portable = tag_measuring_cpu(portable_target(2).to_tvm(), "znver1")
    assert portable.attrs["model"] == "znver1" and portable.attrs["mcpu"] == "x86-64-v3"
    own = TargetSpec("znver3", 2).to_tvm()
    assert tag_measuring_cpu(own, "znver3") is own  # measured on the CPU it was compiled for: mcpu says it
    assert tag_measuring_cpu(own, "znver1").attrs["model"] == "znver1"  # --mcpu znver3 measured on a znver1
    assert tag_measuring_cpu(portable, "other").attrs["model"] == "znver1"  # an existing tag stays
    assert build_cpu(TargetSpec("znver3", 2)) == "znver3"
    assert build_cpu(portable_target(2)) == host_target().mcpu  # a portable build runs here first


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


def _writer(directory: Path, stop_at: int, compressed: bool, pipe) -> None:
    """In a forked child: write the new database, pausing before its `stop_at`-th rename or unlink to say so on
    `pipe` and wait there to be killed (0: no pause; it says how many steps the write took)."""
    import os

    import tuning.database as database

    calls = [0]

    def pausing(step):
        def call(*args, **kwargs):
            calls[0] += 1
            if calls[0] == stop_at:
                pipe.send(f"paused before {step.__name__} {args[0]}")
                pipe.recv()  # never answered: killed here
            return step(*args, **kwargs)
        return call

    os.replace, os.unlink = pausing(os.replace), pausing(os.unlink)
    database.write_database(directory, NEW, compressed=compressed)
    pipe.send(f"done {calls[0]}")


def _run_writer(directory: Path, stop_at: int, compressed: bool) -> str:
    """Fork a writer of the new database that pauses before its `stop_at`-th step and says so on a pipe; SIGKILL
    it there (no clean-up runs). Returns what it said."""
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    writer = context.Process(target=_writer, args=(directory, stop_at, compressed, theirs), daemon=True)
    writer.start()
    try:
        assert ours.poll(60), "the writer neither paused nor finished"
        return ours.recv()
    finally:
        writer.kill()
        writer.join(30)


OLD = [record("k1", 5.0, "znver3", trace="old"), record("k2", 6.0, "znver3", trace="old")]
NEW = [record(k, 1.0, "znver3", trace="new") for k in ("k3", "k2", "k1")]


@pytest.mark.parametrize("form", ["plain", "gz"])
def test_a_writer_killed_at_any_step_leaves_the_old_database_or_the_new_one(tmp_path, form):
    """The new database indexes its workloads in another order than the old one: a mix of the two files
    would give records the wrong kernels (what replacing one file after the other did)."""
    compressed = form == "gz"
    old_view, new_view = sorted(costs_and_traces(OLD)), sorted(costs_and_traces(NEW))
    write_database(tmp_path / "probe", OLD, compressed=compressed)
    said = _run_writer(tmp_path / "probe", 0, compressed)  # no pause: how many steps a whole write takes
    steps = int(said.split()[1])
    assert steps >= 3, said  # the commit, and a move for each of the two files at least
    seen = []
    for stop_at in range(1, steps + 1):
        directory = tmp_path / f"killed-{stop_at}"
        write_database(directory, OLD, compressed=compressed)
        said = _run_writer(directory, stop_at, compressed)
        assert said.startswith("paused before"), said
        found = sorted(costs_and_traces(read_records(directory)))
        assert found in (old_view, new_view), f"{said}: a mix of the two databases: {found}"
        seen.append(found == new_view)
        assert not (directory / COMMIT).exists() and is_compressed(directory) == compressed
    # Killed before its commit point the write left the old database, after it the new one: both happen.
    assert seen[0] is False and seen[-1] is True and seen == sorted(seen), seen


def costs_and_traces(records: list[Record]) -> list[tuple[str, str, float]]:
    """What a reader gets from each record: its kernel, schedule and cost (a mix shows as a kernel's schedule
    under another kernel)."""
    return [(r.shash, json.dumps(r.body[0]), r.cost_s) for r in records]


def test_one_merge_for_the_working_database_and_the_committed_set():
    known = [record("k1", 1.0, "znver3")]
    first = known[0]
    again = Record(first.shash, first.workload_line, [first.body[0], [7.0], *first.body[2:]])  # measured again
    other = record("k1", 1.0, "znver3", trace="other")
    assert new_records(known, [again, other, other]) == [other]

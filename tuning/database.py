"""Tuning databases as files: MetaSchedule's JSONDatabase pair, read, merged, pruned and selected.

A database directory holds `database_workload.json` (one line per kernel: structural hash, module)
and `database_tuning_record.json` (one line per measurement: workload index, [trace, run_secs,
target, args]). Each record's target names the LLVM CPU it was measured on: its `mcpu`, or, when the
code was compiled for another CPU (a generic x86-64 level, `--portable`: mcpu x86-64-v3 on every CPU;
or `--mcpu` naming another CPU), TVM's `model` attribute, which the tuner sets to the measuring CPU
(code generation ignores it).

Two kinds live on disk:
- the *working* database (plain JSON, outside git, in the build directory): everything measured
  here, append-only, what MetaSchedule tunes into;
- the *committed* set (results/tuning/<ISA>/, gzip-compressed, deterministic bytes): the best
  `KEEP_PER_CPU` records of each kernel per CPU, all a build needs and enough to seed the search.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .tasks import mean_run_seconds

RECORDS = "database_tuning_record.json"
WORKLOADS = "database_workload.json"
PROGRESS = "progress.jsonl"
COMMIT = "database.commit"  # write_database's journal: present only while a write is past its commit point
# The best record builds the library; two more per kernel and CPU keep the evolutionary search's
# seeds (and a fallback if the best one fails elsewhere) at ~1/15 of the working database's size.
KEEP_PER_CPU = 3
MEASURED_ON = "model"  # target attribute naming the measuring CPU of a generic-level (portable) record


def is_generic_cpu(mcpu: str | None) -> bool:
    """An x86-64 level (x86-64-v3, ...) rather than a CPU: its code runs on many CPUs."""
    return bool(mcpu) and mcpu.startswith("x86-64")


def measured_on(target_attrs: dict) -> str | None:
    """The CPU a record with this target was measured on (`model` when the code was for another CPU, else
    `mcpu`); portable records tuned before the tag existed say only their level (x86-64-v3)."""
    return target_attrs.get(MEASURED_ON) or target_attrs.get("mcpu")


def build_cpu(target) -> str:
    """The CPU whose measurements rank records for a build for `target` (a runtime.target.TargetSpec):
    its own, or for a generic level (a portable build) this host's, where its library is run first."""
    if not is_generic_cpu(target.mcpu):
        return target.mcpu
    from runtime.target import host_target

    return host_target().mcpu


def tag_measuring_cpu(target, cpu: str):
    """`target` (a tvm.target.Target) as the tuner measures with it on `cpu`: when its code is for another
    CPU (a generic level, `--portable`, or `--mcpu` naming another CPU), its records would not say which CPU
    measured them, so it carries `cpu` as its `model`."""
    import tvm

    config = dict(target.export())
    if config.get("mcpu") == cpu or config.get(MEASURED_ON):
        return target
    config[MEASURED_ON] = cpu
    return tvm.target.Target(config)


@dataclass(frozen=True)
class Record:
    """One measurement, with the workload line it belongs to (kept verbatim)."""

    shash: str  # the kernel's structural hash (the workload's key)
    workload_line: str
    body: list  # [trace, run_secs, target, args_info], as MetaSchedule wrote it

    @property
    def cost_s(self) -> float | None:
        return mean_run_seconds(self.body[1])

    @property
    def mcpu(self) -> str | None:
        return (self.body[2] or {}).get("mcpu")

    @property
    def cpu(self) -> str | None:
        """The CPU it was measured on (`measured_on`)."""
        return measured_on(self.body[2] or {})

    @property
    def identity(self) -> tuple[str, str, str]:
        return self.shash, json.dumps(self.body[0], sort_keys=True), json.dumps(self.body[2], sort_keys=True)


def _lines(path: Path) -> Iterator[str]:
    gz = path.with_name(path.name + ".gz")
    if not path.is_file() and not gz.is_file():
        return
    with path.open() if path.is_file() else gzip.open(gz, "rt") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\n")


def finish_interrupted_write(directory: Path) -> bool:
    """Complete a write_database that was stopped after its commit point (its journal, COMMIT, is there):
    the new pair replaces the old one before anything reads the directory. A write stopped before that
    point left only `.part` files, which nothing reads: the old pair stands. True when it finished one."""
    journal = Path(directory) / COMMIT
    try:
        steps = json.loads(journal.read_text())
    except FileNotFoundError:
        return False
    for part, final in steps["replace"]:
        with contextlib.suppress(FileNotFoundError):  # moved before the interruption
            os.replace(journal.parent / part, journal.parent / final)
    for name in steps["remove"]:
        (journal.parent / name).unlink(missing_ok=True)
    _sync_dir(journal.parent)
    journal.unlink(missing_ok=True)
    return True


def is_compressed(directory: Path) -> bool:
    finish_interrupted_write(directory)
    return (Path(directory) / (RECORDS + ".gz")).is_file() and not (Path(directory) / RECORDS).is_file()


def count_records(directory: Path) -> int:
    finish_interrupted_write(directory)
    return sum(1 for _ in _lines(Path(directory) / RECORDS))


def read_records(directory: Path) -> list[Record]:
    """Every record of a database directory (plain or compressed), in the order measured."""
    directory = Path(directory)
    finish_interrupted_write(directory)
    workloads = list(_lines(directory / WORKLOADS))
    shashes = [json.loads(line)[0] for line in workloads]
    records = []
    for line in _lines(directory / RECORDS):
        index, body = json.loads(line)
        records.append(Record(str(shashes[index]), workloads[index], body))
    return records


def _write_synced(path: Path, data: bytes, *, compressed: bool) -> None:
    with path.open("wb") as raw:
        if compressed:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
                f.write(data)
        else:
            raw.write(data)
        raw.flush()
        os.fsync(raw.fileno())


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_database(directory: Path, records: Iterable[Record], *, compressed: bool) -> None:
    """Write records (and only the workloads they use) as a JSONDatabase pair: a reader finds the old pair
    or the new one, whenever the writer is killed (one writer at a time).

    The two files cannot be replaced in one step, and records index the workload list, so a mix would
    point records at the wrong kernels. The new pair is written beside the old as `.part` files; one
    atomic rename of a journal (COMMIT) naming the moves is the commit point; then the moves are done and
    the journal removed. Every reader here first finishes a write that passed its commit point
    (`finish_interrupted_write`). Compressed files carry no name or time stamp, so the same records give
    the same bytes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    finish_interrupted_write(directory)
    index: dict[str, int] = {}
    workload_lines, record_lines = [], []
    for r in records:
        if r.shash not in index:
            index[r.shash] = len(workload_lines)
            workload_lines.append(r.workload_line)
        record_lines.append(json.dumps([index[r.shash], r.body], separators=(",", ":")))
    replace, remove = [], []
    for name, lines in ((WORKLOADS, workload_lines), (RECORDS, record_lines)):
        final = name + ".gz" if compressed else name
        _write_synced(directory / (final + ".part"), "".join(line + "\n" for line in lines).encode(),
                      compressed=compressed)
        replace.append((final + ".part", final))
        remove.append(name if compressed else name + ".gz")  # the other form of the same file
    journal = directory / (COMMIT + ".part")
    _write_synced(journal, json.dumps({"replace": replace, "remove": remove}).encode(), compressed=False)
    _sync_dir(directory)
    os.replace(journal, directory / COMMIT)  # the commit point
    finish_interrupted_write(directory)


def new_records(known: Iterable[Record], incoming: Iterable[Record]) -> list[Record]:
    """The records of `incoming` that `known` does not hold (same kernel, schedule and target), each once:
    what a merge adds. Measured latencies do not count: a schedule measured twice is one record."""
    seen = {r.identity for r in known}
    new = []
    for r in incoming:
        if r.identity not in seen:
            seen.add(r.identity)
            new.append(r)
    return new


def merge(source: Path, destination: Path) -> int:
    """Add to `destination` (plain) the records of `source` it does not have; returns how many."""
    known = read_records(destination)
    new = new_records(known, read_records(source))
    if new:
        write_database(destination, [*known, *new], compressed=False)
    return len(new)


def prune(records: Iterable[Record], keep: int = KEEP_PER_CPU) -> list[Record]:
    """The `keep` fastest valid records of every kernel for every code target (mcpu) and measuring CPU,
    in their original order."""
    records = list(records)
    groups: dict[tuple[str, str | None, str | None], list[int]] = {}
    for i, r in enumerate(records):
        if r.cost_s is not None:
            groups.setdefault((r.shash, r.mcpu, r.cpu), []).append(i)
    kept = sorted(i for group in groups.values() for i in sorted(group, key=lambda i: records[i].cost_s)[:keep])
    return [records[i] for i in kept]


def select_for(records: Iterable[Record], cpu: str | None) -> list[Record]:
    """The record a build uses for each kernel: the fastest measured on `cpu` (`Record.cpu`) when there
    is one (latencies from other hardware do not rank schedules for this one), else the fastest of all."""
    best: dict[str, Record] = {}
    for r in records:
        if r.cost_s is None:
            continue
        current = best.get(r.shash)
        if current is None:
            best[r.shash] = r
            continue
        same_now, same_new = current.cpu == cpu, r.cpu == cpu
        if (same_new and not same_now) or (same_new == same_now and r.cost_s < current.cost_s):
            best[r.shash] = r
    return list(best.values())

"""`selfie-tvm records merge`: records tuned elsewhere join the committed set of their ISA level, pruned,
with their history in its provenance; what cannot join is refused and the set is left as it was."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from runtime.artifacts import first_run_seconds
from runtime.cli import main
from runtime.errors import SelfieTvmError
from runtime.target import SEED_TRIPLE, TargetSpec
from tuning.database import RECORDS, read_records, write_database
from tuning.importer import TUNED_GRAPH
from tuning.merge_records import merge_into_committed
from tuning.records import PROVENANCE, Provenance, find_records, save_provenance, seed_working, write_provenance

from .test_database import record

ZEN5 = TargetSpec("znver5", 2, SEED_TRIPLE)
ZEN4 = TargetSpec("znver4", 2, SEED_TRIPLE)


def committed_set(root: Path) -> Path:
    """An AVX-512 set tuned on a Zen 5 for 20 min: kernel k1 only."""
    level = root / "tuning" / "x86-64-v4"
    write_database(level, [record("k1", s, "znver5") for s in (1.0, 2.0, 3.0)], compressed=True)
    write_provenance(level, ZEN5, "selfie_multiclass_twin", TUNED_GRAPH, tuning_seconds=1200.0, trials=500,
                     cpu="AMD EPYC 9005")
    return level


def zen4_run(path: Path, costs=(0.5,), **provenance) -> Path:
    """A --work-dir tuned on a Zen 4 for 10 min: k1 at `costs`, and k2."""
    write_database(path, [*(record("k1", s, "znver4", trace=str(s)) for s in costs), record("k2", 4.0, "znver4")],
                   compressed=False)
    write_provenance(path, ZEN4, "selfie_segmenter", TUNED_GRAPH, tuning_seconds=600.0, trials=300,
                     cpu="AMD EPYC 9004", **provenance)
    return path


def snapshot(level: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(level.iterdir())}


def test_records_from_another_machine_join_pruned_with_their_history(tmp_path):
    level = committed_set(tmp_path / "results")
    source = zen4_run(tmp_path / "zen4", costs=(4.0, 3.0, 2.0, 1.0))

    result = merge_into_committed(source, tmp_path / "results")
    assert (result.added, result.kept) == (5, 4)  # k1's slowest Zen 4 record is pruned (3 per kernel and CPU)
    assert result.faster == {"znver4": 2}  # k1 and k2 had no Zen 4 record
    kept = sorted((r.shash, r.cpu, r.cost_s) for r in read_records(level))
    assert kept == [("k1", "znver4", 1.0), ("k1", "znver4", 2.0), ("k1", "znver4", 3.0), ("k1", "znver5", 1.0),
                    ("k1", "znver5", 2.0), ("k1", "znver5", 3.0), ("k2", "znver4", 4.0)]
    assert (level / f"{RECORDS}.gz").is_file() and not (level / RECORDS).exists()  # still committed form

    prov = json.loads((level / PROVENANCE).read_text())
    assert (prov["tuning_seconds"], prov["trials_measured"]) == (1800.0, 800)
    assert first_run_seconds(prov) == 1200.0  # the run that started the set is still the Zen 5 one
    (joined,) = prov["continued"]
    assert joined["cpu"] == "AMD EPYC 9004" and joined["target"]["mcpu"] == "znver4"
    assert (joined["seconds"], joined["trials"], joined["merged_from"]) == (600.0, 300, str(source))
    assert prov["models"] == ["selfie_multiclass_twin", "selfie_segmenter"]
    # What compile and tune print about the set names both machines, not only the first.
    summary = find_records(ZEN4, tmp_path / "results").summary()
    assert "tuned on AMD EPYC 9005, LLVM CPU znver5, 2 cores, 20 min; AMD EPYC 9004, LLVM CPU znver4, 2 cores, " \
           "10 min" in summary

    before = snapshot(level)
    again = merge_into_committed(source, tmp_path / "results")
    # Nothing new (the pruned record is not taken for new): the set is unchanged, its trials not counted twice.
    assert (again.added, again.kept) == (1, 0) and snapshot(level) == before


def test_a_faster_record_for_a_kernel_and_cpu_the_set_has_counts_as_faster(tmp_path):
    committed_set(tmp_path / "results")
    source = tmp_path / "zen5"
    write_database(source, [record("k1", 0.5, "znver5", trace="new"), record("k1", 9.0, "znver5", trace="slow")],
                   compressed=False)
    save_provenance(source, Provenance(isa="x86-64-v4"))  # only the mark written before a first run
    result = merge_into_committed(source, tmp_path / "results")
    assert (result.added, result.kept, result.faster) == (2, 1, {"znver5": 1})
    prov = json.loads((tmp_path / "results" / "tuning" / "x86-64-v4" / PROVENANCE).read_text())
    assert prov["continued"][-1]["merged_from"] == str(source) and prov["trials_measured"] == 502


def test_into_an_empty_level_the_source_history_becomes_the_sets(tmp_path):
    source = zen4_run(tmp_path / "zen4")
    result = merge_into_committed(source, tmp_path / "results")
    level = tmp_path / "results" / "tuning" / "x86-64-v4"
    assert result.record_set.path == level and result.added == result.kept == 2
    prov = json.loads((level / PROVENANCE).read_text())
    assert prov["tuned_on_cpu"] == "AMD EPYC 9004" and prov["tuning_seconds"] == 600.0 and prov["continued"] == []


@pytest.mark.parametrize("case, message", [
    ("empty", "holds no tuning records"),
    ("mixed", "mixes records of several ISA levels (1 x86-64-v3, 1 x86-64-v4)"),
    ("anchor", "tuned with --module-equality anchor-block: the committed sets hold structural records only"),
    ("cold", "were measured cold (--cold-cache): the committed sets hold records measured hot only"),
    ("graph", "were tuned on the graph"),
    ("working database of another graph", "were tuned on the graph"),
    ("bare", "has no provenance.json, so the graph its records were tuned on is unknown"),
])
def test_what_cannot_join_is_refused_and_the_set_is_left_as_it_was(tmp_path, case, message):
    level = committed_set(tmp_path / "results")
    before = snapshot(level)
    source = tmp_path / "source"
    source.mkdir()
    if case == "mixed":
        write_database(source, [record("k1", 1.0, "znver4"), record("k2", 1.0, "znver3")], compressed=False)
    elif case == "anchor":
        zen4_run(source, module_equality="anchor-block")
    elif case == "cold":
        zen4_run(source, measured="cold")
    elif case == "graph":
        zen4_run(source)
        prov = json.loads((source / PROVENANCE).read_text())
        (source / PROVENANCE).write_text(json.dumps({**prov, "graph": {**prov["graph"], "weight_prepack": False}}))
    elif case == "working database of another graph":  # seeded from a set of another graph, then tuned into
        other = tmp_path / "other-graph"
        write_database(other, [record("k9", 1.0, "znver4")], compressed=True)
        write_provenance(other, ZEN4, "selfie_segmenter", dataclasses.replace(TUNED_GRAPH, weight_prepack=False))
        seed_working(other, source)
        write_database(source, [*read_records(source), record("k9", 0.5, "znver4", trace="new")], compressed=False)
    elif case == "bare":  # records without the provenance every database tuning writes into has
        write_database(source, [record("k1", 0.5, "znver5", trace="new")], compressed=False)
    with pytest.raises(SelfieTvmError, match=message.replace("(", r"\(").replace(")", r"\)")):
        merge_into_committed(source, tmp_path / "results")
    assert snapshot(level) == before


def test_the_records_verb_shows_the_sets_and_merges(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    assert main(["records"]) == 0
    assert "no tuning records in" in capsys.readouterr().out
    committed_set(tmp_path / "results")
    source = zen4_run(tmp_path / "zen4")

    assert main(["records", "merge", str(source)]) == 0
    out = capsys.readouterr().out
    assert f"merged 2 new records from {source}" in out and "kernels with a faster best record: 2 on znver4" in out
    assert "selfie-tvm compile --tuned" in out
    assert main(["records", "merge", str(source)]) == 0
    assert "brings nothing new" in capsys.readouterr().out

    assert main(["records", "show"]) == 0
    out = capsys.readouterr().out
    assert "x86-64-v4 (" in out and "5 records of 2 kernels, best of 800 trials, 30 min of tuning" in out
    assert "records measured on: znver5 3, znver4 2" in out
    assert "tuned on: AMD EPYC 9005, LLVM CPU znver5, 2 cores, 20 min; AMD EPYC 9004" in out

    assert main(["records", "merge", str(tmp_path / "nothing")]) == 2
    assert "holds no tuning records" in capsys.readouterr().err

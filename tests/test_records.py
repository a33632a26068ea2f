"""Tuning records are found by vector ISA (not LLVM CPU name) and shared by models with the same kernels."""

from __future__ import annotations

from pathlib import Path

import pytest
import tvm_ffi

from runtime.target import SEED_TRIPLE, TargetSpec, host_target, portable_target
from tuning.build import coverage, selected_records, tuning_module
from tuning.database import write_database
from tuning.errors import NoRecordsForTargetError
from tuning.importer import TUNED_GRAPH
from tuning.records import find_records, isa_level, resolve_records, write_provenance
from tuning.tasks import plan_tasks

from .test_database import record


@pytest.fixture(scope="module")
def avx2_only_root(tmp_path_factory) -> Path:
    """A results folder holding one AVX2 (x86-64-v3) record set, tuned where LLVM said znver4 with
    AVX-512 hidden (as the committed one was), on 2 cores."""
    root = tmp_path_factory.mktemp("results")
    level = root / "tuning" / "x86-64-v3"
    tuned_on = TargetSpec("znver4", 2, SEED_TRIPLE, ("-avx512f",))
    write_database(level, [record("k1", 1.0, "znver4"), record("k2", 2.0, "znver4")], compressed=True)
    write_provenance(level, tuned_on, "selfie_multiclass_twin", TUNED_GRAPH, tuning_seconds=60.0, trials=1500)
    return root


def test_isa_levels():
    assert isa_level(TargetSpec("znver3", 2, SEED_TRIPLE)) == "x86-64-v3"
    assert isa_level(TargetSpec("znver4", 2, SEED_TRIPLE, ("-avx512f",))) == "x86-64-v3"
    assert isa_level(TargetSpec("skylake-avx512", 2, SEED_TRIPLE)) == "x86-64-v4"
    assert isa_level(TargetSpec("x86-64", 2, SEED_TRIPLE)) == "x86-64"
    assert isa_level(TargetSpec("cortex-a72", 4, "aarch64-linux-gnu")) == "aarch64"
    assert isa_level(portable_target(2)) == "x86-64-v3"


def test_a_cpu_with_another_name_but_the_same_isa_uses_the_records(avx2_only_root):
    znver3 = TargetSpec("znver3", 2, SEED_TRIPLE)  # AVX2 too, under another LLVM name
    records = find_records(znver3, avx2_only_root)
    assert records is not None and records.trials == 2
    summary = records.summary()
    assert "2 tuning records (best of 1500 trials) for x86-64-v3" in summary and "LLVM CPU znver4" in summary
    notes = records.notes_for(znver3)
    assert len(notes) == 1 and "measured on znver4 CPUs, this is znver3: re-tuning here may gain more" in notes[0]


def test_a_set_first_tuned_elsewhere_but_holding_this_cpus_records_needs_no_re_tuning_note(tmp_path):
    level = tmp_path / "tuning" / "x86-64-v3"
    write_database(level, [record("k1", 1.0, "znver4"), record("k2", 2.0, "znver3")], compressed=True)
    write_provenance(level, TargetSpec("znver4", 2, SEED_TRIPLE, ("-avx512f",)), "selfie_multiclass_twin",
                     TUNED_GRAPH, tuning_seconds=60.0, trials=1500)
    znver3 = TargetSpec("znver3", 2, SEED_TRIPLE)
    assert find_records(znver3, tmp_path).notes_for(znver3) == []
    assert len(find_records(TargetSpec("znver2", 2, SEED_TRIPLE), tmp_path).notes_for(
        TargetSpec("znver2", 2, SEED_TRIPLE))) == 1


def test_a_core_count_mismatch_is_reported_not_fatal(avx2_only_root):
    four_cores = TargetSpec("znver3", 4, SEED_TRIPLE)
    records = resolve_records("selfie_multiclass_twin", four_cores, root=avx2_only_root)
    assert any("tuned for 2 cores, this target has 4" in n for n in records.notes_for(four_cores))


@pytest.mark.parametrize(("target", "isa"), [
    (TargetSpec("skylake-avx512", 2, SEED_TRIPLE), "x86-64-v4"),
    (TargetSpec("x86-64", 2, SEED_TRIPLE), "x86-64"),
    (TargetSpec("cortex-a72", 4, "aarch64-linux-gnu"), "aarch64"),
])
def test_another_isa_gets_a_clear_message(avx2_only_root, target, isa):
    with pytest.raises(NoRecordsForTargetError) as err:
        resolve_records("selfie_multiclass_twin", target, root=avx2_only_root)
    message = str(err.value)
    assert f"no tuning records for {isa} CPUs" in message and "x86-64-v3" in message
    assert "selfie-tvm tune --model selfie_multiclass_twin" in message


def _workloads(model, target, options) -> set[int]:
    return {tvm_ffi.structural_hash(t.dispatched[0]) for t in plan_tasks(tuning_module(model, target, options),
                                                                      target.to_tvm()).tasks}


def test_models_with_the_twins_kernels_share_its_records(twin, tmp_path):
    """Another model with the twin's architecture and other weights (as the real model is) has the
    same workloads, and the committed records of this host's ISA cover every one of them."""
    from runtime.acquire import ResolvedModel
    from runtime.twin import twin_bytes

    target = host_target()
    records = resolve_records("selfie_multiclass_twin", target)  # the committed ones for this ISA
    options = records.provenance.graph_options
    other_path = tmp_path / "other_weights.tflite"
    other_path.write_bytes(twin_bytes(seed=7))
    other = ResolvedModel(twin.spec, other_path, "test")
    assert other.sha256() != twin.sha256()
    assert _workloads(other, target, options) == _workloads(twin, target, options)
    with selected_records(records.path, target) as selected:
        cover = coverage(tuning_module(other, target, options), target, selected)
    assert cover.kernels > 60 and cover.untuned == []

"""Where a record set comes from (tuning/records.py): provenance.json written on first tuning, kept by later runs."""

from __future__ import annotations

import json

import pytest
import tvm

from runtime.target import SEED_TRIPLE, TargetSpec, cpu_model_name
from tuning.importer import STOCK_GRAPH, TUNED_GRAPH
from tuning.records import PROVENANCE, isa_level, read_provenance, write_provenance

ORIGIN = TargetSpec("znver4", 2, SEED_TRIPLE, ("-avx512f",))  # where the committed AVX2 records were tuned
LATER = TargetSpec("znver3", 4, SEED_TRIPLE)  # the same ISA level elsewhere


def test_records_without_provenance_are_assumed_tuned_on_the_current_graph(tmp_path):
    prov = read_provenance(tmp_path, "x86-64-v3")
    assert prov.isa == "x86-64-v3" and prov.graph_options == TUNED_GRAPH
    assert prov.models == [] and prov.continued == [] and prov.cores is None
    assert not (tmp_path / PROVENANCE).exists()  # reading writes nothing


def test_the_first_run_records_its_origin(tmp_path):
    written = write_provenance(tmp_path, ORIGIN, "selfie_multiclass_twin", STOCK_GRAPH, tuning_seconds=12.5)
    on_disk = json.loads((tmp_path / PROVENANCE).read_text())
    assert on_disk["isa"] == isa_level(ORIGIN) == "x86-64-v3"
    assert on_disk["tuned_for_target"] == ORIGIN.as_dict() and on_disk["tuned_on_cpu"] == cpu_model_name()
    assert on_disk["graph"] == STOCK_GRAPH.as_dict() and on_disk["models"] == ["selfie_multiclass_twin"]
    assert on_disk["tuning_seconds"] == 12.5 and on_disk["continued"] == []
    assert on_disk["tvm_version"] == tvm.__version__
    assert read_provenance(tmp_path, "ignored when the file exists") == written
    assert written.cores == 2 and written.graph_options == STOCK_GRAPH


def test_a_later_run_keeps_the_origin_and_lists_itself(tmp_path):
    write_provenance(tmp_path, ORIGIN, "selfie_multiclass_twin", TUNED_GRAPH, tuning_seconds=100.0)
    later = write_provenance(tmp_path, LATER, "selfie_segmenter", TUNED_GRAPH, tuning_seconds=20.04)
    assert later == read_provenance(tmp_path, isa_level(LATER))
    assert later.tuned_for_target == ORIGIN.as_dict() and later.cores == 2  # the origin, not the later target
    assert later.models == ["selfie_multiclass_twin", "selfie_segmenter"]
    assert later.tuning_seconds == pytest.approx(120.04)
    [entry] = later.continued
    assert entry["target"] == LATER.as_dict() and entry["model"] == "selfie_segmenter" and entry["seconds"] == 20.0
    assert entry["cpu"] == cpu_model_name()


def test_a_run_that_tuned_nothing_adds_no_continuation(tmp_path):
    write_provenance(tmp_path, ORIGIN, "selfie_multiclass_twin", TUNED_GRAPH, tuning_seconds=100.0)
    again = write_provenance(tmp_path, LATER, "selfie_multiclass_twin", TUNED_GRAPH)
    assert again.continued == [] and again.tuning_seconds == 100.0
    assert again.models == ["selfie_multiclass_twin"] and again.tuned_for_target == ORIGIN.as_dict()

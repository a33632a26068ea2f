"""Tuning statistics count a kernel's latency as measured on this CPU, as a build selects its record."""

from __future__ import annotations

import pytest

from runtime.target import host_target
from tuning import stats
from tuning.build import tuning_module

from .tiny_models import simple_records, tiny_depthwise

pytestmark = pytest.mark.slow  # imports a tiny model and writes a database (~3 s)


def test_best_latency_is_this_cpus_when_it_has_a_record(tmp_path):
    target = host_target()
    other = "znver5" if target.mcpu != "znver5" else "icelake-server"
    mod = tuning_module(tiny_depthwise(tmp_path / "tiny_dw.tflite"), target)
    work = tmp_path / "records"
    simple_records(mod, target, work, seconds=2e-3)
    simple_records(mod, target, work, mcpu=other, seconds=1e-3)  # faster, on another CPU
    table = stats.collect(mod, target.to_tvm(), work).table()
    assert (table["trials"] == 2).all()
    assert table["best_us"].tolist() == pytest.approx([2000.0] * len(table))
    # Where only another CPU measured a kernel, its latency is what there is.
    only_other = tmp_path / "other"
    simple_records(mod, target, only_other, mcpu=other, seconds=1e-3)
    assert stats.collect(mod, target.to_tvm(), only_other).table()["best_us"].tolist() == pytest.approx(
        [1000.0] * len(table))

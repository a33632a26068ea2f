"""The report's check of what tuning measured: the slowest kernels' isolated record latencies against their
in-model times (benchmark/profile.py isolation_table, benchmark/report.py isolation_section)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.profile import isolation_table
from benchmark.report import isolation_section


def _profile() -> pd.DataFrame:
    # Sorted slowest first, as benchmark/profile.py returns it; ms is per run (all calls), isolated_ms per call.
    return pd.DataFrame([
        {"kernel": "conv_a", "calls": 2, "ms": 4.0, "schedule": "record", "isolated_ms": 2.5},  # 2.5 / 2 = 1.25
        {"kernel": "conv_b", "calls": 1, "ms": 3.0, "schedule": "record", "isolated_ms": 6.0},  # 2.0: too slow alone
        {"kernel": "dw_c", "calls": 1, "ms": 2.0, "schedule": "hand schedule", "isolated_ms": np.nan},
        {"kernel": "conv_d", "calls": 1, "ms": 1.0, "schedule": "record", "isolated_ms": 0.6},  # 0.6: too fast alone
        {"kernel": "add_e", "calls": 4, "ms": 0.4, "schedule": "record", "isolated_ms": 0.07},  # 0.07 / 0.1 = 0.7
    ])


def test_each_slow_kernel_is_set_beside_its_record_with_the_ratio_and_the_bound_both_ways():
    table = isolation_table(_profile(), top=5).set_index("kernel")
    assert table["in_model_ms"].to_dict() == pytest.approx(
        {"conv_a": 2.0, "conv_b": 3.0, "dw_c": 2.0, "conv_d": 1.0, "add_e": 0.1})
    assert table.loc["conv_a", "isolated_over_in_model"] == pytest.approx(1.25)
    assert table.loc["add_e", "isolated_over_in_model"] == pytest.approx(0.7)
    assert pd.isna(table.loc["dw_c", "within_bound"])  # a hand schedule: no record to compare
    assert table["within_bound"].drop("dw_c").to_dict() == {"conv_a": True, "conv_b": False, "conv_d": False,
                                                            "add_e": True}
    assert list(isolation_table(_profile(), top=2)["kernel"]) == ["conv_a", "conv_b"]


def test_the_report_counts_the_kernels_within_the_bound_among_those_with_a_record():
    lines = "\n".join(isolation_section(_profile()))
    assert "2 of the 4 kernels here that run their tuning record are within 1.5x" in lines
    assert "| conv_b " in lines and "| 2.00 " in lines and "**no**" in lines
    hand_row = next(line for line in lines.splitlines() if line.startswith("| dw_c "))
    assert hand_row.split("|")[5].strip() == "-"  # no record, no isolated time


def test_a_profile_saved_before_it_had_records_gets_no_section():
    old = _profile().drop(columns=["schedule", "isolated_ms"])
    assert isolation_table(old) is None and isolation_section(old) == []


def test_no_section_without_a_record_measured_here_and_no_row_for_the_vms_builtins():
    elsewhere = _profile().assign(isolated_ms=np.nan)  # every record measured on another CPU
    assert isolation_section(elsewhere) == []
    builtin = pd.DataFrame([{"kernel": "vm.builtin.alloc_storage", "calls": 1, "ms": 9.0, "schedule": np.nan,
                             "isolated_ms": np.nan}])
    with_builtin = pd.concat([builtin, _profile()], ignore_index=True)  # the slowest row, but no kernel of ours
    assert list(isolation_table(with_builtin, top=2)["kernel"]) == ["conv_a", "conv_b"]
    assert "vm.builtin" not in "\n".join(isolation_section(with_builtin))

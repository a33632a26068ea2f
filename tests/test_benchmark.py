"""Benchmark statistics, the report writer and a quick end-to-end benchmark run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import summary
from benchmark.report import write_report

from .conftest import need_model

ROOT = Path(__file__).resolve().parents[1]


def test_describe_matches_numpy_definitions():
    rng = np.random.default_rng(3)
    samples = rng.lognormal(3, 0.3, 500)
    d = summary.describe(samples)
    assert d["runs"] == 500
    assert d["min"] == samples.min() and d["p50"] == pytest.approx(np.median(samples))
    assert d["p99"] == pytest.approx(np.quantile(samples, 0.99))
    assert d["iqr"] == pytest.approx(np.subtract(*np.quantile(samples, [0.75, 0.25])))
    assert d["std"] == pytest.approx(pd.Series(samples).std())
    assert d["min"] <= d["p50"] <= d["p90"] <= d["p99"]


def test_describe_rejects_empty():
    with pytest.raises(ValueError, match="no samples"):
        summary.describe([])


def test_ratios_are_ratios_of_medians():
    samples = pd.DataFrame({
        "engine": ["litert"] * 3 + ["tvm-default"] * 3 + ["tvm-tuned"] * 3,
        "threads": [2] * 9,
        "latency_ms": [10, 11, 12, 100, 110, 120, 20, 22, 24],
    })
    table = summary.summarise(samples)
    r = summary.ratios(table).iloc[0]
    assert r["tuned vs default"] == pytest.approx(110 / 22)
    assert r["tuned vs LiteRT"] == pytest.approx(11 / 22)
    assert r["threads"] == 2


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A real, small benchmark run: the real landscape model, LiteRT vs TVM default, 1 thread, 3 rounds."""
    need_model("selfie_segmenter_landscape")
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "TVM_NUM_THREADS": "2"}
    model = ["--model", "selfie_segmenter_landscape"]
    subprocess.run([sys.executable, "-m", "benchmark.prepare", *model, "--engines", "litert,tvm-default"],
                   cwd=ROOT, env=env, check=True)
    bench_json = out / "benchmark.json"
    subprocess.run([sys.executable, "-m", "pytest", "benchmark", "-q", "--benchmark-enable", "--benchmark-save-data",
                    f"--benchmark-json={bench_json}", "-p", "no:cacheprovider", *model,
                    "--engines", "litert,tvm-default", "--threads", "1", "--runs", "3", "--warmup", "1"],
                   cwd=ROOT, env=env, check=True)
    return bench_json, out


def test_quick_run_saves_pytest_benchmark_json(quick_run):
    bench_json, _ = quick_run
    data = json.loads(bench_json.read_text())
    inference = [b for b in data["benchmarks"] if b["extra_info"].get("kind") == "inference"]
    assert {b["extra_info"]["engine"] for b in inference} == {"litert", "tvm-default"}
    assert all(len(b["stats"]["data"]) == 3 for b in inference)
    assert all(b["extra_info"]["load_ms"] > 0 and b["extra_info"]["first_run_ms"] > 0 for b in inference)


def test_report_from_quick_run(quick_run):
    bench_json, out = quick_run
    report = write_report(bench_json, "selfie_segmenter_landscape", out / "report", with_profile=False)
    text = report.read_text()
    for heading in ("## Latency", "## Speed-ups", "## Start-up", "## Agreement with LiteRT", "## Figures"):
        assert heading in text
    stats = pd.read_csv(out / "report" / "latency_stats.csv")
    assert set(stats["engine"]) == {"litert", "tvm-default"} and (stats["runs"] == 3).all()
    agreement = pd.read_csv(out / "report" / "agreement.csv")
    assert set(agreement["input"]) == {"astronaut", "grace_hopper"}
    assert agreement["max_abs_dprob"].max() <= 1e-4
    env = json.loads((out / "report" / "environment.json").read_text())
    assert env["cores"] >= 1 and env["tvm"].startswith("0.27")
    for png in ("latency_box.png", "latency_ecdf.png"):
        assert (out / "report" / png).stat().st_size > 10_000


def test_profile_of_a_library(tmp_path, astronaut):
    from benchmark.profile import kernel_flops, profile
    from runtime.processing import preprocess
    from runtime.target import host_target
    from tuning.build import export

    from .tiny_models import tiny_segmenter

    model = tiny_segmenter(tmp_path / "tiny.tflite")
    target = host_target()
    lib = export(model, target, "default", out_root=tmp_path)
    table = profile(lib, preprocess(astronaut, model.spec), kernel_flops(model, target), repeat=3)
    assert len(table) >= 4 and table["share"].sum() == pytest.approx(1.0)
    assert (table["ms"] > 0).all()
    assert table["ms"].is_monotonic_decreasing
    assert (table.dropna(subset=["gflops"])["gflops"] > 0).all()


def test_auto_model_falls_back_to_the_twin_offline(monkeypatch, capsys):
    from benchmark.prepare import choose_model

    monkeypatch.setenv("SELFIE_TVM_OFFLINE", "1")
    monkeypatch.setenv("SELFIE_TVM_MODELS_DIR", "/nonexistent")
    model = choose_model("auto")
    assert model.spec.name == "selfie_multiclass_twin"
    out = capsys.readouterr().out
    assert "selfie_multiclass_256x256 is not available" in out and "meaningless" in out

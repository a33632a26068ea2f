"""`python -m benchmark` end to end on a tiny model: tuning when no records exist, one fresh process per
thread count, agreement and profile saved into the run, the temporary directory removed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from runtime.registry import registry
from runtime.twin.graph import GraphBuilder
from runtime.twin.tflite_writer import serialise

from .printed_numbers import printed_quotient_bounds

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# The registry's name the tiny file is saved under: a generated model, so no registry checksum to match.
MODEL = "selfie_multiclass_twin"
THREADS = (1, 2)
BUDGET = 4  # the tiny model's one kernel, 4 trials: the least first round tuning.tune accepts


def tiny_twin(path: Path) -> Path:
    """One convolution with the twin's input and output shapes (256x256 RGB -> 256x256 logits of 6 classes):
    a single kernel to tune."""
    spec = registry().get(MODEL)
    g = GraphBuilder(seed=11)
    x = g.input("image", (1, spec.input.height, spec.input.width, 3))
    g.mark_output(g.conv2d(x, len(spec.classes), 3), "logits")
    path.write_bytes(serialise(g, "tiny twin-shaped test model"))
    return path


def isolated_env(root: Path) -> dict[str, str]:
    """Models, libraries, results (tuning records among them) and temporary files under `root` only."""
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    tiny_twin(models / registry().get(MODEL).filename)
    (root / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "SELFIE_TVM_MODELS_DIR": str(models), "SELFIE_TVM_BUILD_DIR": str(root / "build"),
           "SELFIE_TVM_RESULTS_DIR": str(root / "results"), "TMPDIR": str(root / "tmp")}
    env.pop("TVM_NUM_THREADS", None)  # each child's is set by python -m benchmark
    return env


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_main")
    env = isolated_env(root)
    out = root / "report"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmark", "--model", MODEL, "--engines", "litert,tvm-default,tvm-tuned",
         "--threads", ",".join(map(str, THREADS)), "--runs", "3", "--warmup", "1", "--budget", str(BUDGET),
         "--out", str(out), f"--benchmark-storage=file://{root / 'storage'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return root, out, completed.stdout


def inference(saved: dict) -> list[dict]:
    return [b["extra_info"] for b in saved["benchmarks"] if b["extra_info"].get("kind") == "inference"]


def test_each_thread_count_runs_in_a_fresh_process_with_its_pool_size(run):
    _, out, _ = run
    measured = inference(json.loads((out / "benchmark.json").read_text()))
    pids = {n: {e["pid"] for e in measured if e["threads"] == n} for n in THREADS}
    assert all(len(p) == 1 for p in pids.values()), pids  # every engine of one thread count: one process
    assert len(set.union(*pids.values())) == len(THREADS)  # and no process measured two thread counts
    assert os.getpid() not in set.union(*pids.values())
    for e in measured:
        assert e["TVM_NUM_THREADS"] == str(e["threads"])
        if e["engine"] != "litert":
            assert e["pool_threads"] == e["threads"]
    assert {(e["engine"], e["threads"]) for e in measured} == {
        (engine, n) for engine in ("litert", "tvm-default", "tvm-tuned") for n in THREADS}
    # Pre- and post-processing are measured once, not once per thread count.
    kinds = [b["extra_info"]["kind"] for b in json.loads((out / "benchmark.json").read_text())["benchmarks"]]
    assert kinds.count("preprocess") == 1 and kinds.count("postprocess") == 1


def test_no_records_means_tuning_first_within_the_budget(run):
    root, out, stdout = run
    assert f"no tuning records for this CPU's vector ISA: tuning within {BUDGET} trials" in stdout
    records = next((root / "results" / "tuning").iterdir())
    provenance = json.loads((records / "provenance.json").read_text())
    assert provenance["models"] == [MODEL]
    saved = json.loads((out / "benchmark.json").read_text())
    tuned = saved["machine_info"]["selfie_tvm"]["libraries"]["tuned"]
    # The tuned library measured was built from the records that run made.
    assert tuned["records"] == str(records) and tuned["trials"] >= BUDGET


def test_agreement_and_profile_are_measured_and_saved_with_the_run(run):
    _, out, _ = run
    saved = json.loads((out / "benchmark.json").read_text())["selfie_tvm"]
    assert saved["threads"] == max(THREADS)
    agreement = pd.DataFrame(saved["agreement"])
    assert set(agreement["engine"]) == {"tvm-default", "tvm-tuned"}
    assert agreement["max_abs_dprob"].max() <= 1e-4
    kernels = pd.DataFrame(saved["profile"])
    assert (kernels["ms"] > 0).all()
    # The one convolution: 256 x 256 x 6 outputs, each 3 x 3 x 3 multiply-adds and a bias add.
    conv = kernels[kernels["kernel"].str.contains("conv2d")]
    assert len(conv) == 1 and conv["flop"].iloc[0] == 256 * 256 * 6 * (2 * 27 + 1)
    assert pd.read_csv(out / "profile_tuned.csv")["kernel"].tolist() == kernels["kernel"].tolist()


def test_the_profile_sets_each_kernel_beside_what_tuning_measured_for_it(run):
    """The conv's record, as tuning measured it alone, is saved beside its in-model time and shown in the report."""
    from tuning.database import read_records

    root, out, _ = run
    kernels = pd.DataFrame(json.loads((out / "benchmark.json").read_text())["selfie_tvm"]["profile"])
    conv = kernels[kernels["kernel"].str.contains("conv2d")].iloc[0]
    records = next((root / "results" / "tuning").iterdir())
    fastest = min(r.cost_s for r in read_records(records) if r.cost_s is not None)  # the model's one kernel
    assert conv["schedule"] == "record" and conv["isolated_ms"] == pytest.approx(fastest * 1e3, rel=1e-9)
    text = (out / "report.md").read_text()
    row = re.search(rf"\| {conv['kernel']} +\| record +\| 1 +\| ([\d.]+) +\| ([\d.]+) +\| ([\d.]+) +\|", text)
    assert row is not None, text[text.index("### What tuning measured"):]
    assert float(row[2]) == pytest.approx(fastest * 1e3, abs=6e-4)
    low, high = printed_quotient_bounds(float(row[2]), float(row[1]))  # times printed to 0.001 ms, the ratio to 0.01
    assert low <= float(row[3]) <= high


def test_the_temporary_directory_is_removed(run):
    root, _, _ = run
    assert list((root / "tmp").iterdir()) == []


def test_the_report_shows_the_tuned_profile_against_the_tuned_p50(run):
    _, out, _ = run
    text = (out / "report.md").read_text()
    n = max(THREADS)
    assert f"## Where the tuned module spends its time ({n} threads)" in text
    kernels = pd.read_csv(out / "profile_tuned.csv")
    stats = pd.read_csv(out / "latency_stats.csv").set_index(["engine", "threads"])
    p50 = stats.loc[("tvm-tuned", n), "p50"]
    gflops = kernels["flop"].sum() / p50 / 1e6
    # The CSVs are rounded (flop to 6 digits, p50 to 4 decimals): compare to the report's 0.1 with a margin.
    shown = re.search(r"/ p50 ([\d.]+) ms = \*\*([\d.]+) GFLOP/s\*\*", text)
    assert shown is not None, "the report states the whole model's GFLOP/s"
    assert float(shown[1]) == pytest.approx(p50, abs=0.051) and float(shown[2]) == pytest.approx(gflops, abs=0.11)
    assert f"| {kernels['kernel'].iloc[0]} " in text


def test_a_saved_run_rendered_on_another_machine_keeps_the_measuring_machine(run, tmp_path, monkeypatch, capsys):
    """`python -m benchmark.report` elsewhere: same report, filed under the measuring machine's target."""
    import runtime.target
    from benchmark.report import main

    _, out, _ = run
    measured_env = json.loads((out / "environment.json").read_text())
    # Another machine: every way of detecting the host says something else, and a later date.
    other = runtime.target.TargetSpec("x86-64-v3", 7, "x86_64-linux-gnu")
    monkeypatch.setattr(runtime.target, "host_target", lambda *a, **k: other)
    monkeypatch.setattr(runtime.target, "_cpuinfo", lambda: ({"model name": "Renderer CPU", "flags": "sse2"}, (99.0,)))
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    saved = tmp_path / "saved.json"
    saved.write_bytes((out / "benchmark.json").read_bytes())

    assert main([str(saved)]) == 0
    again = tmp_path / "results" / MODEL / measured_env["target"]["id"]
    assert capsys.readouterr().out.strip() == f"report: {again / 'report.md'}"
    assert json.loads((again / "environment.json").read_text()) == measured_env
    assert (again / "report.md").read_text() == (out / "report.md").read_text()
    for csv in ("latency_stats.csv", "agreement.csv", "profile_tuned.csv"):
        assert (again / csv).read_text() == (out / csv).read_text()
    assert "Renderer CPU" not in (again / "report.md").read_text()

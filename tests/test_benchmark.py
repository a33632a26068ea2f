"""Benchmark statistics, the report writer and a quick end-to-end benchmark run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import summary
from benchmark.options import Plan, Protocol

from .conftest import need_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # builds, measures and reports tiny models end to end


def test_describe_on_a_sample_worked_by_hand():
    # 1..10 shuffled: median 5.5; linear-interpolation quartiles 3.25 and 7.75; p90 9.1; p99 9.91;
    # sample standard deviation sqrt(sum((k - 5.5)^2) / 9) = sqrt(82.5 / 9).
    samples = np.random.default_rng(3).permutation(np.arange(1.0, 11.0))
    d = summary.describe(samples)
    assert d["runs"] == 10 and d["min"] == 1.0 and d["mean"] == 5.5
    assert d["p50"] == pytest.approx(5.5) and d["iqr"] == pytest.approx(4.5)
    assert d["p90"] == pytest.approx(9.1) and d["p99"] == pytest.approx(9.91)
    assert d["std"] == pytest.approx((82.5 / 9) ** 0.5)
    # The median's 95 % interval for n = 10 runs from the 2nd to the 9th order statistic (binomial table).
    assert (d["p50_ci_low"], d["p50_ci_high"]) == (2.0, 9.0)


@pytest.mark.parametrize(("n", "ranks"), [(6, (1, 6)), (20, (6, 15)), (30, (10, 21))])
def test_median_ci_is_the_order_statistic_interval(n, ranks):
    """Ranks from the binomial tables of the sign-test interval (e.g. Conover, Practical Nonparametric Statistics)."""
    samples = np.random.default_rng(n).permutation(np.arange(1.0, n + 1))
    assert summary.median_ci(samples) == (float(ranks[0]), float(ranks[1]))


def test_median_ci_needs_six_runs():
    low, high = summary.median_ci([5.0, 1.0, 4.0, 2.0, 3.0])
    assert np.isnan(low) and np.isnan(high)


def test_median_ci_covers_the_true_median_at_least_95_percent_of_the_time():
    # Lognormal latencies (skewed, like real ones): true median exp(mu). Exact coverage for n = 20 is 95.9 %.
    rng = np.random.default_rng(7)
    mu, sigma, trials = np.log(100.0), 0.3, 2000
    hits = 0
    for _ in range(trials):
        low, high = summary.median_ci(rng.lognormal(mu, sigma, 20))
        hits += low <= 100.0 <= high
    assert 0.945 <= hits / trials <= 0.975


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
    # One direction everywhere: the first engine's time over the second's, below 1 the first is faster.
    assert r["tuned / default"] == pytest.approx(22 / 110)
    assert r["tuned / LiteRT"] == pytest.approx(22 / 11)
    assert r["default / LiteRT"] == pytest.approx(110 / 11)
    assert r["threads"] == 2


def test_paired_ratios_are_not_moved_by_drift_between_the_engines_blocks():
    """LiteRT's 20 timed runs fell in a slow spell of the host (2x), the tuned module's in a quiet one: the
    ratio of medians says tuned / LiteRT = 1 / 2.2; each pair (a timed run and the other engine's run just
    before it) says 1 / 1.1."""
    drift = np.linspace(1.0, 1.2, 20)
    pairs = pd.DataFrame(
        [{"threads": 2, "engine": "tvm-tuned", "partner": "litert", "engine_ms": 50 * d, "partner_ms": 55 * d}
         for d in drift]
        + [{"threads": 2, "engine": "litert", "partner": "tvm-tuned", "engine_ms": 110 * d, "partner_ms": 100 * d}
           for d in drift])
    samples = pd.DataFrame({"engine": ["tvm-tuned"] * 20 + ["litert"] * 20, "threads": 2,
                            "latency_ms": [*(50 * drift), *(110 * drift)]})
    assert summary.ratios(summary.summarise(samples)).iloc[0]["tuned / LiteRT"] == pytest.approx(1 / 2.2)
    paired = summary.paired_ratio_table(pairs).set_index("ratio")
    row = paired.loc["tuned / LiteRT"]
    assert (row["threads"], row["pairs"]) == (2, 40)
    assert row["median"] == pytest.approx(1 / 1.1) and row["ci_high"] == pytest.approx(1 / 1.1)
    assert set(paired.index) == {"tuned / LiteRT"}  # no pairs of the other labels' engines
    assert summary.ratio_in_words("tuned / LiteRT", row["median"]) == "tuned takes 0.91x LiteRT's time: 9 % faster"


def test_a_saved_run_pairs_each_timed_run_with_the_partner_run_before_it(tmp_path):
    from benchmark.report import paired_section
    from benchmark.saved_run import SavedRun

    def bench(engine, partner, timed_s, partner_ms):
        extra = {"kind": "inference", "engine": engine, "threads": 1}
        if partner_ms is not None:
            extra["partner_ms"] = {partner: partner_ms}
        return {"extra_info": extra, "stats": {"data": timed_s}}

    run = SavedRun(tmp_path / "run.json", {"benchmarks": [
        bench("litert", "tvm-tuned", [0.010, 0.030], [20.0, 40.0]),
        bench("tvm-tuned", "litert", [0.020], [10.0])]})
    pairs = run.pairs()
    assert pairs.to_dict("records") == [
        {"threads": 1, "engine": "litert", "partner": "tvm-tuned", "engine_ms": 10.0, "partner_ms": 20.0},
        {"threads": 1, "engine": "litert", "partner": "tvm-tuned", "engine_ms": 30.0, "partner_ms": 40.0},
        {"threads": 1, "engine": "tvm-tuned", "partner": "litert", "engine_ms": 20.0, "partner_ms": 10.0}]
    assert summary.paired_ratio_table(pairs).iloc[0]["median"] == pytest.approx(2.0)  # tuned / LiteRT: 2, 4/3, 2
    # A run saved before partners were timed has no pairs, and its report no paired section.
    old = SavedRun(tmp_path / "old.json", {"benchmarks": [bench("litert", "tvm-tuned", [0.01], None)]})
    assert old.pairs().empty and paired_section(summary.paired_ratio_table(old.pairs())) == []


# First runs of the twin on a 2-core machine (ms): the untuned module is slow, the others fast.
FIRST_RUNS = {"litert": 160.0, "tvm-default": 5700.0, "tvm-tuned": 240.0}


def test_quick_protocol_interleaves_only_the_fast_engines():
    protocol = Protocol(runs=20, slow_runs=6, slow_ms=1000.0, warmup=3)
    assert protocol.plan("litert", FIRST_RUNS) == Plan(20, 3, ("tvm-tuned",), slow=False)
    assert protocol.plan("tvm-tuned", FIRST_RUNS) == Plan(20, 3, ("litert",), slow=False)
    # The slow engine: few runs, its first run as warm-up, each run after the fast engines.
    assert protocol.plan("tvm-default", FIRST_RUNS) == Plan(6, 0, ("litert", "tvm-tuned"), slow=True)


def test_full_protocol_interleaves_every_engine_equally():
    protocol = Protocol(runs=20, slow_runs=6, slow_ms=1000.0, warmup=3, full=True)
    for engine in FIRST_RUNS:
        others = tuple(e for e in FIRST_RUNS if e != engine)
        assert protocol.plan(engine, FIRST_RUNS) == Plan(20, 3, others, slow=False)


def test_options_are_defined_once_for_the_command_and_pytest():
    import argparse

    from benchmark.options import OPTIONS, add_options, pytest_argv

    command = argparse.ArgumentParser()
    add_options(command.add_argument)
    values = vars(command.parse_args(["--engines", "litert,tvm-tuned", "--runs", "7", "--full", "--budget", "9"]))
    # What `python -m benchmark` hands to pytest, parsed as the benchmark's conftest registers it.
    inner = argparse.ArgumentParser()
    add_options(inner.add_argument, pytest_only=True)
    forwarded = vars(inner.parse_args(pytest_argv(values)))
    assert forwarded == {o.dest: values[o.dest] for o in OPTIONS if o.pytest}
    assert forwarded["runs"] == 7 and forwarded["full"] is True and "budget" not in forwarded
    # Unset options keep the one default.
    assert vars(inner.parse_args([])) == {o.dest: o.kwargs.get("default") for o in OPTIONS if o.pytest}


def test_the_protocol_defaults_are_the_options_defaults():
    from benchmark.options import OPTIONS

    defaults = {o.dest: o.kwargs.get("default") for o in OPTIONS}
    assert Protocol.from_values(defaults.get) == Protocol()


def test_unknown_engine_is_refused():
    from benchmark.options import parse_engines

    assert parse_engines("litert, tvm-tuned") == ["litert", "tvm-tuned"]
    with pytest.raises(ValueError, match="tvm-fast"):
        parse_engines("litert,tvm-fast")


# Under the test's own deadline (tests/conftest.py), so a run that hangs ends as this command's timeout.
QUICK_RUN_TIMEOUT_S = 480


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A real, small `python -m benchmark` run: the real landscape model, LiteRT vs TVM default, 1 thread."""
    need_model("selfie_segmenter_landscape")
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "TVM_NUM_THREADS": "2"}
    subprocess.run([sys.executable, "-m", "benchmark", "--model", "selfie_segmenter_landscape",
                    "--engines", "litert,tvm-default", "--threads", "1", "--runs", "3", "--warmup", "1",
                    "--out", str(out / "report"), "--no-profile", f"--benchmark-storage=file://{out / 'storage'}"],
                   cwd=ROOT, env=env, check=True, timeout=QUICK_RUN_TIMEOUT_S)
    return out / "report" / "benchmark.json", out


def test_quick_run_saves_pytest_benchmark_json(quick_run):
    bench_json, out = quick_run
    data = json.loads(bench_json.read_text())
    inference = {b["extra_info"]["engine"]: b for b in data["benchmarks"] if b["extra_info"].get("kind") == "inference"}
    assert set(inference) == {"litert", "tvm-default"}
    # Both engines are fast here (ms per run), so both get --runs runs, interleaved with each other.
    assert all(len(b["stats"]["data"]) == 3 for b in inference.values())
    assert inference["litert"]["extra_info"]["interleaved_with"] == ["tvm-default"]
    assert inference["tvm-default"]["extra_info"]["interleaved_with"] == ["litert"]
    assert all(b["extra_info"]["load_ms"] > 0 and b["extra_info"]["first_run_ms"] > 0 for b in inference.values())
    # The partner's run before each timed round (the warm-up round's left out) is timed for the pairs.
    assert {e: {p: len(ms) for p, ms in b["extra_info"]["partner_ms"].items()} for e, b in inference.items()} == {
        "litert": {"tvm-default": 3}, "tvm-default": {"litert": 3}}
    # Every run (the warm-up one too) waited for the other engine's threads to go idle, and they did.
    assert all(b["extra_info"]["idle_wait"]["runs"] == 4 and b["extra_info"]["idle_wait"]["timed_out"] == 0
               for b in inference.values())
    assert list((out / "storage").rglob("*.json")), "--benchmark-autosave saved nothing"


def test_report_from_quick_run(quick_run):
    _, out = quick_run
    text = (out / "report" / "report.md").read_text()
    for heading in ("## Latency", "## Ratios of medians", "## Start-up", "## Protocol", "## Agreement with LiteRT",
                    "## Figures"):
        assert heading in text
    assert "Each timed run starts once the process's other threads are idle" in text
    assert "0 waits timed out" in text
    assert "p50 95% CI" in text and "n/a (< 6 runs)" in text  # 3 runs: too few for a 95 % interval
    assert "## Ratios, paired" in text
    ratios = text.split("## Ratios of medians", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\n\|\s+1 \|", ratios), ratios  # a thread count, not 1.00
    assert re.search(r"- 1 thread: default takes [0-9.]+x LiteRT's time: ", ratios), ratios  # said in words
    assert re.search(r"\| default / LiteRT \|\s+1 \|\s+6 \|", text)  # 3 pairs each way, pooled
    stats = pd.read_csv(out / "report" / "latency_stats.csv").set_index("engine")
    assert set(stats.index) == {"litert", "tvm-default"} and (stats["runs"] == 3).all()
    # The statistics are those of the runs pytest-benchmark saved (seconds there, ms here), engine by engine.
    saved = {b["extra_info"]["engine"]: np.asarray(b["stats"]["data"]) * 1e3
             for b in json.loads((out / "report" / "benchmark.json").read_text())["benchmarks"]
             if b["extra_info"].get("kind") == "inference"}
    for engine, runs in saved.items():
        assert stats.loc[engine, "p50"] == pytest.approx(np.median(runs), abs=1e-3)  # the CSV keeps 4 decimals
        assert stats.loc[engine, "min"] == pytest.approx(runs.min(), abs=1e-3)
    agreement = pd.read_csv(out / "report" / "agreement.csv")
    assert set(agreement["input"]) == {"astronaut", "grace_hopper"}
    assert agreement["max_abs_dprob"].max() <= 1e-4
    env = json.loads((out / "report" / "environment.json").read_text())
    assert env["cores"] >= 1 and env["tvm"].startswith("0.27")
    for png in ("latency_box.png", "latency_ecdf.png"):
        assert (out / "report" / png).stat().st_size > 10_000


def test_report_states_runs_and_confidence_interval_per_engine(tmp_path):
    """The quick protocol's report: each engine's runs, p50 CI and what it was interleaved with."""
    from benchmark.report import latency_table, protocol_section

    rng = np.random.default_rng(0)
    samples = pd.DataFrame(
        [{"engine": "litert", "threads": 2, "latency_ms": v} for v in rng.normal(74, 3, 20)]
        + [{"engine": "tvm-tuned", "threads": 2, "latency_ms": v} for v in rng.normal(115, 5, 20)]
        + [{"engine": "tvm-default", "threads": 2, "latency_ms": v} for v in rng.normal(5500, 80, 6)])
    shown = latency_table(summary.summarise(samples)).set_index("engine")
    assert shown.loc["TVM default", "runs"] == 6 and shown.loc["TFLite (LiteRT)", "runs"] == 20
    default = np.sort(samples[samples.engine == "tvm-default"]["latency_ms"])
    assert shown.loc["TVM default", "p50 95% CI"] == f"{default[0]:.2f} - {default[-1]:.2f}"
    info = pd.DataFrame([
        {"kind": "inference", "engine": "litert", "threads": 2, "runs": 20, "warmup": 3, "slow": False,
         "protocol": "quick", "slow_ms": 1000.0, "interleaved_with": ["tvm-tuned"]},
        {"kind": "inference", "engine": "tvm-default", "threads": 2, "runs": 6, "warmup": 0, "slow": True,
         "protocol": "quick", "slow_ms": 1000.0, "interleaved_with": ["litert", "tvm-tuned"]},
    ])
    text = "\n".join(protocol_section(info))
    assert "Quick protocol" in text and "first run over 1000 ms: TVM default" in text
    assert "| TVM default     |         2 |            6 |              0 | TFLite (LiteRT), TVM tuned" in text


def test_profile_of_a_library(tmp_path, astronaut):
    from benchmark.profile import kernel_flops, profile
    from runtime.processing import preprocess
    from runtime.target import host_target
    from tuning.build import export

    from .tiny_models import tiny_segmenter

    model = tiny_segmenter(tmp_path / "tiny.tflite")
    target = host_target()
    lib = export(model, target, "default", out_root=tmp_path)
    from tuning.importer import STOCK_GRAPH

    flops = kernel_flops(model, target, STOCK_GRAPH.as_dict())
    x = preprocess(astronaut, model.spec)
    table = profile(lib, x, flops, repeat=3)
    kernels = table[~table["kernel"].str.startswith("vm.builtin.")]
    # Every kernel the library ran is named as in the module the FLOPs come from (the stock graph's).
    assert len(kernels) >= 4 and set(kernels["kernel"]) <= set(flops)
    convs = table[table["kernel"].str.contains("conv2d")]
    assert len(convs) >= 3 and (convs["gflops"] > 0).all()
    # Calls and FLOPs are per inference, whatever the number of profiled runs.
    once = profile(lib, x, flops, repeat=1).set_index("kernel")
    assert once["calls"].to_dict() == table.set_index("kernel")["calls"].to_dict()
    assert once["flop"].sum() == pytest.approx(table["flop"].sum())


def test_auto_model_falls_back_to_the_twin_offline(monkeypatch, capsys):
    from benchmark.options import choose_model

    monkeypatch.setenv("SELFIE_TVM_OFFLINE", "1")
    monkeypatch.setenv("SELFIE_TVM_MODELS_DIR", "/nonexistent")
    model = choose_model("auto")
    assert model.spec.name == "selfie_multiclass_twin"
    err = capsys.readouterr().err
    assert "selfie_multiclass_256x256 is not available" in err and "meaningless" in err


@pytest.fixture(scope="module")
def ablation_libraries(tmp_path_factory):
    """The tiny model; two different libraries of it (stock and tuned graph, both untuned); one of other weights."""
    from runtime.target import host_target
    from tuning.build import compile_module, export
    from tuning.importer import TUNED_GRAPH

    from .tiny_models import tiny_segmenter

    root = tmp_path_factory.mktemp("ablation")
    model = tiny_segmenter(root / "tiny.tflite")
    stock = export(model, host_target(), "default", out_root=root / "stock")
    tuned_graph = root / "tuned_graph.so"
    compile_module(model, host_target(), None, TUNED_GRAPH)[0].export_library(str(tuned_graph))
    (root / "other").mkdir()
    other = export(tiny_segmenter(root / "other" / "tiny.tflite", seed=8), host_target(), "default",
                   out_root=root / "other")
    return model, stock, tuned_graph, other


@pytest.mark.serial  # every timed run waits for idle threads, which another test's load delays
def test_ablation_times_every_variant_in_one_interleaved_run(ablation_libraries, tmp_path, monkeypatch):
    from benchmark.ablation import main

    model, stock, tuned_graph, _ = ablation_libraries
    monkeypatch.setattr("runtime.acquire.resolve_model", lambda name, **_: model)
    assert main(["--model", "tiny", "--variant", f"stock graph={stock}", "--variant", f"tuned graph={tuned_graph}",
                 "--threads", "2", "--rounds", "6", "--out", str(tmp_path)]) == 0
    samples = pd.read_csv(tmp_path / "ablation_samples.csv")
    variants = ["LiteRT (XNNPACK)", "stock graph", "tuned graph"]
    # Interleaved: every round runs each variant once, and the order rotates, so that over 6 rounds
    # each variant is timed first, second and third twice.
    assert (samples.groupby("round")["variant"].apply(sorted) == pd.Series([variants] * 6)).all()
    assert (samples.groupby(["variant", "position"]).size() == 2).all() and len(samples) == 18
    # Each timed run started with the other variants' threads idle (benchmark/idle.py).
    assert samples["idle"].all() and (samples["waited_ms"] >= 0).all()
    # The summary is that of these samples.
    df = pd.read_csv(tmp_path / "ablation_latency.csv").set_index("variant")
    assert list(df.index) == variants and (df["runs"] == 6).all() and (df["threads"] == 2).all()
    for name, runs in samples.groupby("variant")["ms"]:
        assert df.loc[name, "p50_ms"] == pytest.approx(np.median(runs), abs=1e-3)
    page = (tmp_path / "ablation_latency.md").read_text()
    assert "variant / LiteRT" in page and "x LiteRT's time: " in page


def test_ablation_refuses_a_variant_that_computes_something_else(ablation_libraries, tmp_path, monkeypatch, capsys):
    from benchmark.ablation import main

    model, stock, _, other = ablation_libraries
    monkeypatch.setattr("runtime.acquire.resolve_model", lambda name, **_: model)
    code = main(["--model", "tiny", "--variant", f"stock graph={stock}", "--variant", f"other weights={other}",
                 "--threads", "2", "--rounds", "6", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "variant 'other weights' disagrees with LiteRT (XNNPACK) at 2 threads" in err
    assert "stock graph" not in err and not (tmp_path / "out").exists()


def test_ablation_summary_per_thread_count():
    """p50, its interval and vs_litert per (variant, threads), each against LiteRT at the same thread count."""
    from benchmark.ablation import SAMPLE_COLUMNS, summarise

    rng = np.random.default_rng(1)
    rows = []
    for threads, litert_scale, tvm_scale in ((1, 1.0, 3.0), (2, 2.0, 1.0)):
        for name, scale in (("LiteRT", litert_scale), ("TVM", tvm_scale)):
            # 1..20 shuffled, scaled: median 10.5, 95 % interval from the 6th to the 15th value
            for r, v in enumerate(rng.permutation(np.arange(1.0, 21.0))):
                rows.append({"variant": name, "threads": threads, "round": r, "position": 0, "ms": v * scale})
    df = summarise(pd.DataFrame(rows, columns=SAMPLE_COLUMNS), ["LiteRT", "TVM"]).set_index(["variant", "threads"])
    assert df.loc[("TVM", 1), "p50_ms"] == 31.5 and df.loc[("LiteRT", 2), "p50_ms"] == 21.0
    assert (df.loc[("TVM", 1), "p50_ci95_low"], df.loc[("TVM", 1), "p50_ci95_high"]) == (18.0, 45.0)
    assert df.loc[("TVM", 1), "vs_litert"] == 3.0 and df.loc[("TVM", 2), "vs_litert"] == 0.5
    assert df.loc[("LiteRT", 2), "min_ms"] == 2.0 and (df["runs"] == 20).all()

"""benchmark/load: the engines under MLPerf LoadGen, end to end on a tiny model (real LoadGen, real engines,
real photos, a fresh process per configuration), and the bad options refused in one line. No timing goals:
the numbers asserted on are the ones LoadGen's own summary files hold."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from benchmark.load import section
from benchmark.load.__main__ import bot_layout, main, measure_all, write_run
from benchmark.load.configuration import Configuration
from benchmark.load.logs import DETAIL, DETAIL_DROPPED_KEY, SUMMARY, SummaryError, read_summary
from benchmark.load.options import Layout, LoadOptionError, RunSettings

from .tiny_models import tiny_segmenter

# Short LoadGen runs: enough queries for LoadGen's p90 early-stopping estimate (64), a fraction of a second each.
QUICK = RunSettings(min_duration_s=0.3, min_queries=64, search_steps=2)
GENEROUS_MS = 10_000.0  # a p99 bound every rate under the Offline throughput holds on any machine
IMPOSSIBLE_MS = 0.001  # 1 µs: no photo is ever that fast


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_segmenter(tmp_path_factory.mktemp("load") / "tiny.tflite")


@pytest.fixture(scope="module")
def tiny_library(tiny, tmp_path_factory):
    """The tiny model's untuned TVM library."""
    from runtime.target import host_target
    from tuning.build import export

    return export(tiny, host_target(), "default", out_root=tmp_path_factory.mktemp("tvm"))


@pytest.fixture(scope="module")
def litert_run(tiny, tmp_path_factory):
    """LiteRT in two layouts, every scenario, a bound every rate holds: the Server search climbs."""
    out = tmp_path_factory.mktemp("litert_run")
    configurations = [Configuration("litert", Layout(1, 2)), Configuration("litert", Layout(2, 1))]
    measured = measure_all(tiny, configurations, QUICK, ["singlestream", "offline", "server"],
                           out / "throughput_loadgen", bound=GENEROUS_MS, bound_rule="given", rates=[])
    saved = write_run(out, "throughput", tiny, ["litert"], QUICK, ["singlestream", "offline", "server"], measured,
                      bot=False, command="test")
    return out, json.loads(saved.read_text())


def _logs(out, configuration: str, scenario: str):
    return out / "throughput_loadgen" / configuration / scenario


def test_every_scenario_is_valid_and_its_numbers_are_loadgens_summary(litert_run):
    out, run = litert_run
    assert [c["configuration"] for c in run["configurations"]] == ["litert-1x2", "litert-2x1"]
    for c in run["configurations"]:
        for scenario in ("singlestream", "offline"):
            kept = read_summary(_logs(out, c["configuration"], scenario) / SUMMARY)
            assert kept.valid, f"{c['configuration']} {scenario}: LoadGen did not validate the run"
            assert c[scenario] == pytest.approx(kept.as_dict(), nan_ok=True)
        assert c["offline"]["photos_per_s"] > 0 and c["singlestream"]["p50_ms"] <= c["singlestream"]["p99_ms"]
        server = read_summary(_logs(out, c["configuration"], "server") / SUMMARY)
        assert server.scenario == "Server" and server.bound_ms == pytest.approx(GENEROUS_MS)
        assert server.target_per_s == pytest.approx(c["server"]["max_rate"], rel=1e-4)


def test_server_search_bisects_up_to_the_offline_throughput_when_the_bound_holds(litert_run):
    _, run = litert_run
    for c in run["configurations"]:
        ceiling = c["offline"]["photos_per_s"]
        server = c["server"]
        assert server["ceiling"] == ceiling
        assert [p["rate"] for p in server["probes"]] == pytest.approx([ceiling / 2, ceiling * 3 / 4])
        assert all(p["latency_ok"] for p in server["probes"])
        assert server["max_rate"] == pytest.approx(ceiling * 3 / 4)


def test_loadgen_logs_are_kept_small_beside_the_report(litert_run):
    out, _ = litert_run
    for configuration in ("litert-1x2", "litert-2x1"):
        for scenario in ("singlestream", "offline", "server"):
            kept = _logs(out, configuration, scenario)
            assert sorted(p.name for p in kept.iterdir()) == [DETAIL, SUMMARY]
            detail = (kept / DETAIL).read_text()
            assert "result_validity" in detail and DETAIL_DROPPED_KEY not in detail


def test_throughput_page_and_report_section_are_rendered_from_the_summaries(litert_run):
    out, run = litert_run
    page = section.render(out / section.SAVED).read_text()
    for c in run["configurations"]:
        offline = read_summary(_logs(out, c["configuration"], "offline") / SUMMARY).photos_per_s
        row = next(line for line in page.splitlines() if Layout(c["instances"], c["threads"]).label in line)
        assert f"| {offline:.1f} " in row and f"| {c['server']['max_rate']:.1f} " in row
    assert (out / "throughput_load.png").stat().st_size > 0
    server_runs = pd.read_csv(out / "throughput_server.csv")
    assert len(server_runs) == 4 and server_runs["p99_under_bound"].all()
    assert section.main([str(out / section.SAVED)]) == 0  # rendered again from the saved run alone: the same page
    assert (out / "throughput.md").read_text() == page
    lines = section.report_section(out)
    assert lines[0] == "## Throughput under load" and any("(throughput.md)" in line for line in lines)
    board = "\n".join(section.leaderboard_section([out]))
    assert board.count("| tiny ") == 2


def test_singlestream_is_checked_against_the_benchmarks_latencies(litert_run, tiny):
    from benchmark.photos import portraits
    from benchmark.summary import summarise
    from runtime.engines import create_engine
    from runtime.processing import preprocess

    _, run = litert_run
    # The benchmark's statistics (latency_stats.csv), from real timed runs of the same engine here.
    engine = create_engine("litert", tiny, 1)
    x = preprocess(next(iter(portraits().values())), tiny.spec)
    samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        engine.run(x)
        samples.append({"engine": "litert", "threads": 1, "latency_ms": (time.perf_counter() - t0) * 1e3})
    stats = summarise(pd.DataFrame(samples))
    check = section.cross_check(run, stats)
    assert list(check["configuration"]) == ["TFLite (LiteRT), 2 instances x 1 thread"]  # the 1-thread engines
    ss = next(c for c in run["configurations"] if c["threads"] == 1)["singlestream"]
    assert check["p50 ratio"].iloc[0] == pytest.approx(ss["p50_ms"] / stats["p50"].iloc[0])
    assert "## SingleStream against the benchmark" in section.markdown(run, stats, None, "logs", "server.csv")
    assert "## SingleStream against the benchmark" not in section.markdown({**run, "work": "segment"}, stats, None,
                                                                            "logs", "server.csv")


def test_tvm_pools_are_sized_per_instance_thread(tiny, tiny_library, tmp_path):
    configurations = [Configuration("tvm-default", Layout(1, 2)), Configuration("tvm-default", Layout(2, 1))]
    measured = measure_all(tiny, configurations, QUICK, ["offline"], tmp_path, bound=GENEROUS_MS, bound_rule="given",
                           rates=[], engine_options={"library": tiny_library})
    by_name = {c["configuration"]: c for c in measured["configurations"]}
    assert by_name["tvm-default-1x2"]["pool_threads"] == [2]
    assert by_name["tvm-default-2x1"]["pool_threads"] == [1, 1]
    assert all(c["offline"]["valid"] for c in by_name.values())


def test_bot_layout_with_an_impossible_bound_holds_no_rate(tiny, tmp_path, capsys):
    from bot.settings import BotSettings

    out = tmp_path / "out"
    stale = out / "throughput_bot_loadgen" / "litert-2x1"  # an earlier run's layout
    stale.mkdir(parents=True)
    assert main(["--bot", "--model", str(tiny.path), "--engines", "litert", "--scenarios", "server", "--rates", "10",
                 "--p99-bound-ms", str(IMPOSSIBLE_MS), "--min-duration-s", "0.3", "--min-queries", "2",
                 "--out", str(out)]) == 0
    run = json.loads((out / section.BOT_SAVED).read_text())
    threads = BotSettings.model_fields["threads"].default
    assert bot_layout() == (BotSettings.model_fields["model"].default_factory(), Layout(1, threads))
    assert run["bot"] and run["work"] == "reply"
    assert [(c["instances"], c["threads"]) for c in run["configurations"]] == [(1, threads)]
    server = run["configurations"][0]["server"]
    assert server["max_rate"] == 0 and [p["rate"] for p in server["probes"]] == [10.0]
    kept = read_summary(out / "throughput_bot_loadgen" / f"litert-1x{threads}" / "server" / SUMMARY)
    assert kept.latency_ok is False and kept.target_per_s == pytest.approx(10.0)
    assert "none held" in (out / "throughput_bot.md").read_text()
    assert not stale.exists() and not (out / ".throughput_bot_loadgen.partial").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--scenarios", "offline,warp"], "error: unknown scenario 'warp'; choose from: singlestream, offline, server"),
    (["--rates", "10,0"], "error: a Server rate must be a number of photos per second > 0, got 0.0"),
    (["--rates", "-5"], "error: a Server rate must be a number of photos per second > 0, got -5.0"),
    (["--rates", "fast"], "error: rate 'fast' is not a number of photos per second"),
    (["--p99-bound-ms", "0"], "error: --p99-bound-ms must be a number of photos per second > 0, got 0.0"),
    (["--layouts", "2x0"], "error: layout '2x0': write INSTANCESxTHREADS with both >= 1"),
    (["--engines", "litert,onnx"], "error: unknown engine 'onnx'"),
    (["--min-duration-s", "0"], "error: the minimum duration must be > 0 s, got 0.0"),
    (["--scenarios", "singlestream,server"], "error: the Server search climbs up to the Offline throughput: add "
                                             "the offline scenario, or give --rates"),
])
def test_a_bad_option_is_one_clear_line(argv, message, capsys, tiny, tmp_path):
    # Short runs of the tiny model, should an option be let through: a test that fails does not measure for long.
    quick = ["--model", str(tiny.path), "--engines", "litert", "--layouts", "1x1", "--min-duration-s", "0.2",
             "--min-queries", "8", "--search-steps", "1", "--out", str(tmp_path)]
    assert main(quick + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_the_api_refuses_a_rate_or_scenario_it_cannot_run():
    from benchmark.load.driver import loadgen_settings

    with pytest.raises(LoadOptionError, match="rate must be a number of photos per second > 0, got 0"):
        loadgen_settings("server", QUICK, rate=0, bound_ms=100)
    with pytest.raises(LoadOptionError, match="unknown scenario 'multistream'"):
        loadgen_settings("multistream", QUICK)


def test_a_file_that_is_not_a_loadgen_summary_is_refused(tmp_path):
    path = tmp_path / SUMMARY
    path.write_text("Scenario : Offline\n")
    with pytest.raises(SummaryError, match="no 'Samples per second' line"):
        read_summary(path)


def test_the_model_report_and_the_leaderboard_show_the_load_run(litert_run, tmp_path):
    """The hooks: report.md and leaderboard.md rendered from a saved benchmark run gain the throughput tables
    of the load run saved beside it (here a committed benchmark run, with the tiny model's load run)."""
    import shutil

    from benchmark.leaderboard import write_leaderboard
    from benchmark.report import write_report
    from runtime.settings import PROJECT_ROOT

    out, run = litert_run
    directory = tmp_path / "selfie_segmenter"
    saved_run = sorted((PROJECT_ROOT / "results" / "selfie_segmenter").glob("*/benchmark.json"))[0]
    shutil.copytree(saved_run.parent, directory)
    for committed_load_run in directory.glob("throughput*"):  # a committed run may hold one: start without
        shutil.rmtree(committed_load_run) if committed_load_run.is_dir() else committed_load_run.unlink()
    before = write_report(directory / "benchmark.json", directory).read_text()
    assert "## Throughput under load" not in before
    shutil.copyfile(out / section.SAVED, directory / section.SAVED)
    report = write_report(directory / "benchmark.json", directory).read_text()
    offline = [f"{c['offline']['photos_per_s']:.1f}" for c in run["configurations"]]
    shown = report[report.index("## Throughput under load"):report.index("## Figures")]
    assert all(f"| {v} " in shown for v in offline)
    board = write_leaderboard([directory / "benchmark.json"], tmp_path / "board").read_text()
    shown = board[board.index("## Throughput under load"):]
    assert all(f"| {v} " in shown for v in offline)


def test_a_run_that_measures_nothing_leaves_nothing_behind(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--model", str(tiny.path), "--engines", "tvm-tuned", "--layouts", "1x1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no configuration could be measured: tvm-tuned-1x1: not measured: no tvm-tuned "
                          "library") and err.count("\n") == 1, err
    assert not out.exists() or list(out.iterdir()) == []


def test_offline_alone_needs_no_bound(tiny, tmp_path):
    out = tmp_path / "out"
    assert main(["--model", str(tiny.path), "--engines", "litert", "--layouts", "1x1", "--scenarios", "offline",
                 "--min-duration-s", "0.3", "--min-queries", "16", "--out", str(out)]) == 0
    run = json.loads((out / section.SAVED).read_text())
    assert run["bound_ms"] is None and "server" not in run["configurations"][0]
    offline = read_summary(out / "throughput_loadgen" / "litert-1x1" / "offline" / SUMMARY).photos_per_s
    page = (out / "throughput.md").read_text()
    assert "Server: not run" in page and f"| {offline:.1f} " in page


def test_without_loadgen_the_command_says_which_extra_to_install(tiny, monkeypatch, capsys, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # what an environment without it imports
    assert main(["--model", str(tiny.path), "--engines", "litert", "--layouts", "1x1", "--scenarios", "offline",
                 "--min-duration-s", "0.2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "error: load runs need MLPerf LoadGen: pip install 'selfie-tvm[load]' (./nox -s load installs it)\n"

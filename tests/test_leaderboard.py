"""The leaderboard end to end: `python -m benchmark` runs saved for a tiny twin-shaped model (TVM tuned from the
committed records) and for real models (LiteRT, MediaPipe's whole pipeline beside the project's), rendered
again from the saved runs by `python -m benchmark.leaderboard`; its numbers checked against those runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.summary import median_ci
from runtime.target import host_target

from .conftest import need_model
from .test_benchmark_main import isolated_env
from .tiny_models import tiny_segmenter

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TWIN = "selfie_multiclass_twin"
REAL = ("selfie_segmenter", "hair_segmentation")
THREADS = (1, 2)


def _benchmark(env: dict, root: Path, *args: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmark", "--threads", ",".join(map(str, THREADS)), "--warmup", "1",
         f"--benchmark-storage=file://{root / 'storage'}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Saved runs under an isolated results/: real models first, while there are no tuning records (the
    leaderboard must not tune), then the tiny twin with this ISA's committed records."""
    from tuning.records import record_set_dir

    root = tmp_path_factory.mktemp("leaderboard")
    env = isolated_env(root)
    for name in REAL:
        (root / "models" / f"{name}.tflite").symlink_to(need_model(name))
    env["SELFIE_TVM_OFFLINE"] = "1"
    real_out = _benchmark(env, root, "--model", ",".join(REAL), "--engines", "litert,tvm-tuned", "--runs", "3",
                          "--pipeline-runs", "3", "--no-profile")
    records_after_real = (root / "results" / "tuning").exists()
    committed = record_set_dir(host_target(), ROOT / "results")
    assert committed.is_dir(), f"no committed tuning records for this CPU's ISA level in {committed}"
    shutil.copytree(committed, record_set_dir(host_target(), root / "results"))
    _benchmark(env, root, "--model", TWIN, "--engines", "litert,tvm-default,tvm-tuned", "--runs", "6")
    return root, real_out, records_after_real


@pytest.fixture(scope="module")
def rendered(measured):
    """`python -m benchmark.leaderboard` over every saved run of this host's target, in a fresh process."""
    root, _, _ = measured
    env = {**isolated_env(root), "SELFIE_TVM_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-m", "benchmark.leaderboard"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = root / "results"
    return root, (out / "leaderboard.md").read_text(), pd.read_csv(out / "leaderboard.csv")


def _run(root: Path, model: str) -> dict:
    return json.loads((root / "results" / model / host_target().id / "benchmark.json").read_text())


def _samples(run: dict, engine: str, threads: int) -> list[float]:
    return [x * 1e3 for b in run["benchmarks"] for x in b["stats"]["data"]
            if b["extra_info"].get("kind") == "inference" and b["extra_info"]["engine"] == engine
            and b["extra_info"]["threads"] == threads]


def _paired_ratios(run: dict, threads: int) -> list[float]:
    """tuned / LiteRT for each timed run of one and the other's run just before it (`partner_ms`), both ways."""
    ratios = []
    for b in run["benchmarks"]:
        extra = b["extra_info"]
        if extra.get("kind") != "inference" or extra["threads"] != threads:
            continue
        timed = [x * 1e3 for x in b["stats"]["data"]]
        if extra["engine"] == "tvm-tuned":
            ratios += [t / p for t, p in zip(timed, extra["partner_ms"]["litert"], strict=True)]
        elif extra["engine"] == "litert":
            ratios += [p / t for t, p in zip(timed, extra["partner_ms"]["tvm-tuned"], strict=True)]
    assert len(ratios) == 12  # --runs 6, each way
    return ratios


def _markdown_rows(text: str, heading: str) -> list[dict[str, str]]:
    """The first table under `## heading`, one dict per row."""
    block = text.split(f"## {heading}\n", 1)[1]
    lines = block[block.index("\n|") + 1:].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


def test_the_leaderboard_never_tunes_and_says_why_tuned_is_missing(measured, rendered):
    root, real_out, records_after_real = measured
    _, text, frame = rendered
    assert not records_after_real, "the leaderboard's run over several models created tuning records"
    assert "tuning within" not in real_out
    for model in REAL:
        saved = _run(root, model)
        reason = saved["selfie_tvm"]["not_measured"]["tvm-tuned"]
        assert "no tuning records" in reason
        assert {b["extra_info"]["engine"] for b in saved["benchmarks"]
                if b["extra_info"].get("kind") == "inference"} == {"litert"}
        row = next(r for r in _markdown_rows(text, "Inference") if r["model"] == model)
        assert row["TVM tuned p50 (95% CI)"] == reason
        assert frame[frame["model"] == model]["tuned_p50"].isna().all()
        # No tuned profile: GFLOP is the default graph's estimate, saved by the run, marked †.
        assert frame[frame["model"] == model]["gflop"].tolist() == pytest.approx(
            [saved["selfie_tvm"]["default_graph_flop"] / 1e9] * len(THREADS), rel=1e-5)
        assert row["GFLOP"].endswith(" †") and float(row["GFLOP"].split()[0]) > 0


def test_inference_numbers_are_the_saved_runs(measured, rendered):
    root, _, _ = measured
    _, text, frame = rendered
    twin = _run(root, TWIN)
    tuned_meta = twin["machine_info"]["selfie_tvm"]["libraries"]["tuned"]
    agreement = pd.DataFrame(twin["selfie_tvm"]["agreement"])
    agreement = agreement[agreement["engine"] == "tvm-tuned"]
    gflop = sum(k["flop"] for k in twin["selfie_tvm"]["profile"]) / 1e9
    shown = {int(r["threads"]): r for r in _markdown_rows(text, "Inference") if r["model"].startswith(TWIN)}
    for n in THREADS:
        litert, tuned = np.median(_samples(twin, "litert", n)), np.median(_samples(twin, "tvm-tuned", n))
        row = frame[(frame["model"] == TWIN) & (frame["threads"] == n)].iloc[0]
        assert row["litert_p50"] == pytest.approx(litert, rel=1e-5)
        assert row["tuned_p50"] == pytest.approx(tuned, rel=1e-5)
        assert row["default_p50"] == pytest.approx(np.median(_samples(twin, "tvm-default", n)), rel=1e-5)
        # The CI is the one of the saved samples (benchmark.summary.median_ci), not any interval around the p50.
        assert (row["litert_ci_low"], row["litert_ci_high"]) == pytest.approx(median_ci(_samples(twin, "litert", n)),
                                                                            rel=1e-5)
        assert row["tuned_vs_litert"] == pytest.approx(tuned / litert, rel=1e-5)
        assert row["tuned_vs_litert_paired"] == pytest.approx(np.median(_paired_ratios(twin, n)), rel=1e-5)
        assert row["gflop"] == pytest.approx(gflop, rel=1e-5)
        assert row["tuned_gflops"] == pytest.approx(gflop / tuned * 1e3, rel=1e-5)
        assert row["max_abs_dprob"] == pytest.approx(agreement["max_abs_dprob"].max(), rel=1e-5)
        assert row["worst_iou"] == pytest.approx(agreement["iou"].min(), rel=1e-5)
        assert row["kernels_without_record"] == len(tuned_meta["untuned_kernels"])
        assert row["kernels"] == tuned_meta["kernels"]
        assert row["records_trials"] == tuned_meta["trials"]
        # The markdown shows the same numbers, rounded.
        md = shown[n]
        assert float(md["LiteRT p50 (95% CI)"].split()[0]) == pytest.approx(litert, abs=0.006)
        assert float(md["TVM tuned p50 (95% CI)"].split()[0]) == pytest.approx(tuned, abs=0.006)
        assert float(md["tuned / LiteRT"].strip("*")) == pytest.approx(tuned / litert, abs=0.006)
        assert float(md["tuned / LiteRT, paired"]) == pytest.approx(row["tuned_vs_litert_paired"], abs=0.006)
    # Without a profile, GFLOP is counted from the graph (benchmark.profile.graph_flop): the same count.
    from benchmark.profile import graph_flop
    from runtime.acquire import resolve_model
    from runtime.registry import registry
    from tuning.importer import GraphOptions

    twin_model = resolve_model(TWIN, path=root / "models" / registry().get(TWIN).filename)
    assert graph_flop(twin_model, host_target(), GraphOptions(**tuned_meta["graph"])) == pytest.approx(gflop * 1e9)
    prov = tuned_meta["records_provenance"]
    records = next(r for r in _markdown_rows(text, "Records, coverage, machine") if r["model"] == TWIN)
    assert float(records["record trials (shared by the ISA)"]) == tuned_meta["trials"]
    assert float(records["tuning min (shared)"]) == pytest.approx(prov["tuning_seconds"] / 60, abs=0.51)
    assert records["kernels without a record"].startswith(
        f"{len(tuned_meta['untuned_kernels'])} of {tuned_meta['kernels']}")
    assert records["ISA"] == prov["isa"]


def test_whole_pipeline_numbers_are_the_saved_runs(measured, rendered):
    root, _, _ = measured
    _, text, frame = rendered
    saved = _run(root, "selfie_segmenter")["selfie_tvm"]["pipeline"]
    shown = {int(r["threads"]): r for r in _markdown_rows(text, "Whole pipeline against MediaPipe")
             if r["model"] == "selfie_segmenter"}
    for part in saved["parts"]:
        n = part["threads"]
        samples = pd.DataFrame(part["samples"])
        mediapipe = samples[samples["side"] == "mediapipe"]["ms"].median()
        ours = samples[samples["side"] == "litert"]["ms"].median()
        row = frame[(frame["model"] == "selfie_segmenter") & (frame["threads"] == n)].iloc[0]
        assert row["mediapipe_p50"] == pytest.approx(mediapipe, rel=1e-5)
        assert row["pipeline_litert_p50"] == pytest.approx(ours, rel=1e-5)
        assert row["pipeline_litert_vs_mediapipe"] == pytest.approx(ours / mediapipe, rel=1e-5)
        assert float(shown[n]["MediaPipe p50"]) == pytest.approx(mediapipe, abs=0.006)
        agreement = part["agreement"]["litert"]
        assert agreement["worst_iou"] >= 0.99 and agreement["max_abs_dconfidence"] <= 1e-5
        assert row["pipeline_litert_worst_iou"] == pytest.approx(agreement["worst_iou"], rel=1e-5)
        assert row["pipeline_litert_max_abs_dconfidence"] == pytest.approx(agreement["max_abs_dconfidence"], rel=1e-5)
        assert float(shown[n]["LiteRT: worst IoU"]) == pytest.approx(agreement["worst_iou"], abs=6e-5)
        assert float(shown[n]["LiteRT: max abs Δconf"]) == pytest.approx(agreement["max_abs_dconfidence"], rel=0.06)
    assert {p["threads"] for p in saved["parts"]} == set(THREADS)
    twin = next(r for r in _markdown_rows(text, "Whole pipeline against MediaPipe") if r["model"] == TWIN)
    assert "synthetic weights" in twin["MediaPipe p50"]


def test_hair_segmentation_row_says_mediapipe_cannot_load_it(measured, rendered):
    root, _, _ = measured
    _, text, frame = rendered
    parts = _run(root, "hair_segmentation")["selfie_tvm"]["pipeline"]["parts"]
    for part in parts:
        assert "NormalizationOptions" in part["mediapipe_error"]
        assert {s["side"] for s in part["samples"]} == {"litert"}  # the project's pipeline is still timed
    rows = [r for r in _markdown_rows(text, "Whole pipeline against MediaPipe") if r["model"] == "hair_segmentation"]
    assert len(rows) == len(THREADS)
    for row in rows:
        assert row["MediaPipe p50"].startswith("MediaPipe cannot load hair_segmentation.tflite")
        assert "NormalizationOptions" in row["MediaPipe p50"]
    assert frame[frame["model"] == "hair_segmentation"]["mediapipe_p50"].isna().all()
    assert (frame[frame["model"] == "hair_segmentation"]["pipeline_litert_p50"] > 0).all()


def test_models_without_a_saved_run_are_named_with_the_reason(rendered):
    _, text, _ = rendered
    missing = text.split("Not on the leaderboard:\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert {line.split(":")[0] for line in missing} == {
        "- selfie_multiclass_256x256", "- selfie_segmenter_landscape", "- deeplab_v3"}
    assert ("- selfie_multiclass_256x256: not available here (offline); its architecture twin "
            f"{TWIN} stands in") in missing


@pytest.mark.serial  # every timed call waits for idle threads, which another test's load delays
def test_pipeline_timing_returns_both_sides_for_a_real_model():
    from benchmark.pipeline import MEDIAPIPE, photo, time_pipelines
    from runtime.acquire import resolve_model

    model = resolve_model("selfie_segmenter", path=need_model("selfie_segmenter"))
    _, rgb = photo()
    result = time_pipelines(model, ["litert"], 1, rgb, runs=2)
    samples = pd.DataFrame(result["samples"])
    assert result["mediapipe_error"] is None
    assert samples.groupby("side").size().to_dict() == {MEDIAPIPE: 2, "litert": 2}
    assert (samples["ms"] > 0).all()
    assert samples["idle"].all()  # each timed call started once the other side's threads were idle
    assert result["photo_shape"] == [512, 512, 3]
    # Both sides produced the same masks (the project's equal MediaPipe's).
    assert result["agreement"]["litert"]["worst_iou"] >= 0.99
    assert result["agreement"]["litert"]["max_abs_dconfidence"] <= 1e-5


def test_a_tuned_library_older_than_its_records_is_rebuilt(tmp_path, monkeypatch):
    """After a tuning run the records are newer than tuned.so: the benchmark must not measure the old one."""
    from benchmark.prepare import _tuned_missing_or_stale, prepare
    from runtime.artifacts import build_dir
    from runtime.engines import TVM_TUNED
    from tuning.records import record_set_dir

    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "build"))
    model = tiny_segmenter(tmp_path / "tiny.tflite")
    target = host_target()
    # No records: the leaderboard's prepare leaves the tuned module out instead of tuning.
    assert TVM_TUNED in prepare(model, target, [TVM_TUNED], tune_if_missing=False)
    assert not (tmp_path / "results" / "tuning").exists()

    records = record_set_dir(target, tmp_path / "results")
    shutil.copytree(record_set_dir(target, ROOT / "results"), records)
    assert prepare(model, target, [TVM_TUNED], tune_if_missing=False) == {}
    out = build_dir("tiny", target)
    assert not _tuned_missing_or_stale(out, target)
    # New hand-written schedule choices (tuning/measure_hand.py --choose) rebuild it too.
    hand = records / "hand_schedules.json"
    chosen = hand.read_text()
    hand.write_text("[]\n")
    assert _tuned_missing_or_stale(out, target)
    hand.write_text(chosen)
    assert not _tuned_missing_or_stale(out, target)
    provenance = json.loads((records / "provenance.json").read_text())
    provenance["updated_at"] = "2099-01-01T00:00:00+00:00"
    (records / "provenance.json").write_text(json.dumps(provenance))
    assert _tuned_missing_or_stale(out, target)


def test_each_models_report_shows_its_whole_pipeline_comparison(measured):
    root, _, _ = measured
    for model in REAL:
        report = (root / "results" / model / host_target().id / "report.md").read_text()
        rows = _markdown_rows(report, "Whole pipeline against MediaPipe")
        for part in _run(root, model)["selfie_tvm"]["pipeline"]["parts"]:
            samples = pd.DataFrame(part["samples"])
            for side, group in samples.groupby("side"):
                label = "MediaPipe Tasks" if side == "mediapipe" else "project, TFLite (LiteRT)"
                row = next(r for r in rows if r["side"] == label and int(r["threads"]) == part["threads"])
                assert float(row["p50"]) == pytest.approx(group["ms"].median(), rel=1e-3)
    hair = (root / "results" / "hair_segmentation" / host_target().id / "report.md").read_text()
    assert "**MediaPipe cannot load hair_segmentation.tflite" in hair


def test_tuning_minutes_are_given_per_model_only_as_far_as_the_provenance_knows(measured, tmp_path):
    """Records shared by several models: a model's own minutes are its `continued` runs (at least), the first
    run's are unattributed; a model the records were never tuned for gets 0."""
    from benchmark.leaderboard import rows
    from benchmark.saved_run import SavedRun

    root, _, _ = measured
    saved = _run(root, TWIN)
    prov = saved["machine_info"]["selfie_tvm"]["libraries"]["tuned"]["records_provenance"]
    prov["models"] = sorted({*prov["models"], TWIN, "selfie_segmenter"})
    prov["continued"] = [{"model": TWIN, "seconds": 600.0}, {"model": "selfie_segmenter", "seconds": 1200.0}]
    prov["tuning_seconds"] = 3600.0
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps(saved))
    row = rows(SavedRun.read(path))[0]
    assert row["model_minutes"] == pytest.approx(10.0) and row["model_minutes_at_least"]
    assert row["records_minutes"] == pytest.approx(60.0)
    prov["models"] = ["selfie_segmenter"]
    prov["continued"] = []
    path.write_text(json.dumps(saved))
    row = rows(SavedRun.read(path))[0]
    assert row["model_minutes"] == 0.0 and not row["model_minutes_at_least"]

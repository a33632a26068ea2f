"""`python -m benchmark` over several models: a model that fails does not stop the others, and the leaderboard
is rendered from every saved run of the target (not only this invocation's), saying why a model has none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from runtime.target import host_target

from .test_benchmark_main import isolated_env
from .tiny_models import tiny_file_model, tiny_segmenter

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TWIN = "selfie_multiclass_twin"  # isolated_env puts a tiny twin-shaped model under its name


def _benchmark(env: dict, root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark", "--engines", "litert", "--threads", "1", "--runs", "1", "--warmup", "0",
         "--pipeline-runs", "0", "--no-profile", f"--benchmark-storage=file://{root / 'storage'}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def several(tmp_path_factory):
    """The twin benchmarked alone first; then a model LiteRT cannot run (an unknown custom operator) and a good
    file model, in that order, as one leaderboard run."""
    root = tmp_path_factory.mktemp("leaderboard_runs")
    env = {**isolated_env(root), "SELFIE_TVM_OFFLINE": "1", "SELFIE_TVM_CACHE_DIR": str(root / "cache")}
    alone = _benchmark(env, root, "--model", TWIN)
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-3000:]
    bad = tiny_segmenter(root / "bad.tflite", mystery_ops=1).path
    good = tiny_file_model(root / "good.tflite")
    completed = _benchmark(env, root, "--model", f"{bad},{good}")
    results = root / "results"
    return completed, results, pd.read_csv(results / "leaderboard.csv"), (results / "leaderboard.md").read_text()


def _file_model(path: Path) -> str:
    """A file model's name (file-<sha256[:12]>)."""
    from runtime.acquire import sha256_of
    from runtime.file_model import spec_from_file

    return spec_from_file(path, sha256_of(path)).name


def test_a_failing_model_does_not_stop_the_others(several):
    completed, results, frame, _ = several
    bad, good = (_file_model(results.parent / f"{n}.tflite") for n in ("bad", "good"))
    assert completed.returncode != 0, "a failed model must make the run fail"
    failures = [line for line in completed.stderr.splitlines() if line.startswith("leaderboard: ") and "failed" in line]
    assert failures == [f"leaderboard: {bad} failed: the latency runs at 1 thread(s) exited with code 1 "
                        "(its output is above)"]
    assert (results / good / host_target().id / "benchmark.json").is_file(), "the model after the failure ran"
    assert good in set(frame["model"])


def test_the_board_holds_every_saved_run_and_says_why_the_others_have_none(several):
    completed, results, frame, text = several
    bad, good = (_file_model(results.parent / f"{n}.tflite") for n in ("bad", "good"))
    assert set(frame["model"]) == {TWIN, good}, "the twin's run, saved by an earlier invocation, is on the board"
    missing = text.split("Not on the leaderboard:\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert ("- selfie_multiclass_256x256: not available here (offline); its architecture twin "
            f"{TWIN} stands in") in missing
    assert f"- {bad}: its benchmark failed: the latency runs at 1 thread(s) exited with code 1 (its output is above)" \
        in missing
    assert not any(line.startswith((f"- {TWIN}", f"- {good}")) for line in missing)
    assert "no saved run for" not in text, "every registry model without a run here has its reason"


def test_every_model_has_gflop_without_a_tuned_profile(several):
    """No tuned module was profiled: GFLOP per image is the default graph's FLOP estimate, saved in the run."""
    import json

    from benchmark.profile import graph_flop
    from runtime.acquire import resolve_model

    _, results, frame, _ = several
    good_path = results.parent / "good.tflite"
    good = _file_model(good_path)
    for model in (TWIN, good):
        saved = json.loads((results / model / host_target().id / "benchmark.json").read_text())["selfie_tvm"]
        assert saved["profile"] is None
        row = frame[frame["model"] == model].iloc[0]
        assert row["gflop"] == pytest.approx(saved["default_graph_flop"] / 1e9, rel=1e-5)
        assert row["gflop_source"] == "default graph"
    expected = graph_flop(resolve_model(str(good_path), allow_download=False), host_target())
    assert frame[frame["model"] == good].iloc[0]["gflop"] == pytest.approx(expected / 1e9, rel=1e-5)
    assert expected > 0

"""MetaSchedule tuning: budget, resume after interruption, tuned export, statistics, RPC measurement."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.artifacts import LibraryMetadata
from runtime.engines import create_engine
from runtime.processing import preprocess, to_probabilities
from runtime.target import host_target
from tuning import stats
from tuning.build import export, tuning_module
from tuning.errors import MissingRecordsError
from tuning.records import resolve_records
from tuning.tune import RpcSpec, TuningBudgetError, count_records, tune

from .tiny_models import tiny_segmenter

pytestmark = pytest.mark.slow
BUDGET = 20  # the tiny model has 5 kernels: the first round needs 4 trials each
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def target():
    return host_target()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_segmenter(tmp_path_factory.mktemp("tiny") / "tiny.tflite")


@pytest.fixture(scope="module")
def tiny_mod(tiny, target):
    return tuning_module(tiny, target)


@pytest.fixture(scope="module")
def tuned_dir(tiny_mod, target, tmp_path_factory):
    work = tmp_path_factory.mktemp("records")
    result = tune(tiny_mod, target.to_tvm(), work, budget=BUDGET, per_iter=4, progress=False)
    assert result.trials_before == 0 and result.trials_run >= BUDGET
    return work


@pytest.fixture(scope="module")
def tuned_records(tuned_dir, target):
    return resolve_records("tiny", target, tuned_dir)


def test_budget_already_spent_runs_no_trials(tuned_dir, tiny_mod, target):
    before = count_records(tuned_dir)
    result = tune(tiny_mod, target.to_tvm(), tuned_dir, budget=BUDGET, per_iter=4, progress=False)
    assert result.trials_run == 0 and count_records(tuned_dir) == before


def test_tuned_library_matches_litert(tuned_records, tuned_dir, tiny, target, tmp_path, astronaut):
    export(tiny, target, "tuned", records=tuned_records, budget=BUDGET, out_root=tmp_path)
    engine = create_engine("tvm-tuned", tiny, threads=2, target=target, build_root=tmp_path)
    assert engine.metadata.trials == count_records(tuned_dir) and engine.metadata.budget == BUDGET
    # Every kernel was reached by the first round, so nothing runs untuned, and the sub-pixel
    # transposed convolution is what was tuned and built.
    assert engine.metadata.untuned_kernels == [] and engine.metadata.tuning_warning is None
    assert engine.metadata.graph == {"subpixel_transposed_conv": True, "weight_prepack": True}
    # The in-model profile names kernels as the tuner does (prepacked kernels included), so
    # profile-guided tuning can aim at them.
    from runtime.profiling import kernel_times
    from tuning.tasks import plan_tasks

    profiled = kernel_times(engine.library, preprocess(astronaut, tiny.spec), repeat=1)
    assert set(plan_tasks(tuning_module(tiny, target), target.to_tvm()).names) <= set(profiled)
    x = preprocess(astronaut, tiny.spec)
    diff = np.abs(to_probabilities(engine.run(x), tiny.spec)
                  - to_probabilities(create_engine("litert", tiny, 1).run(x), tiny.spec))
    assert diff.max() <= 1e-4


def test_tuned_build_without_records_is_refused(tiny, target, tmp_path):
    with pytest.raises(MissingRecordsError, match="selfie-tvm tune --model tiny"):
        resolve_records("tiny", target, tmp_path)
    with pytest.raises(MissingRecordsError):
        export(tiny, target, "tuned", records=None, out_root=tmp_path)


def test_a_budget_that_cannot_reach_every_kernel_is_refused(tiny_mod, target, tmp_path):
    with pytest.raises(TuningBudgetError, match="cannot reach the 5 kernels"):
        tune(tiny_mod, target.to_tvm(), tmp_path, budget=12, per_iter=4, progress=False)
    assert count_records(tmp_path) == 0


def test_partially_tuned_library_says_so(tiny, tiny_mod, target, tmp_path):
    work = tmp_path / "records"
    tune(tiny_mod, target.to_tvm(), work, budget=4, per_iter=4, progress=False, only=["fused_conv2d_add_relu"])
    export(tiny, target, "tuned", records=resolve_records("tiny", target, work), out_root=tmp_path)
    meta = LibraryMetadata.read(tmp_path / "tuned.json")
    assert meta.kernels == 5 and len(meta.untuned_kernels) == 4
    assert "fused_conv2d_add_relu" not in " ".join(meta.untuned_kernels)
    assert meta.tuning_warning.startswith("partially tuned: 4 of 5 kernels without a record")
    assert 0 < meta.untuned_flop_share < 1


def test_statistics(tuned_dir, tiny_mod, target, tmp_path):
    s = stats.collect(tiny_mod, target.to_tvm(), tuned_dir)
    table = s.table()
    assert len(table) == len(s.tasks) >= 3
    assert table["trials"].sum() == count_records(tuned_dir)
    measured = table.dropna(subset=["best_us"])
    assert len(measured) >= 1
    computing = measured[measured["flops"] > 0]
    assert len(computing) >= 1 and (computing["gflops"] > 0).all()
    assert measured[measured["flops"] == 0]["gflops"].isna().all()  # data movement: no GFLOP/s
    paths = stats.write(s, tmp_path, title="tiny")
    assert all(p.stat().st_size > 0 for p in paths)
    assert "trials measured" in (tmp_path / "tuning_summary.md").read_text()


def _wait_for(condition, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)  # polling interval, not a synchronisation delay


TUNE_SCRIPT = """
import sys
from pathlib import Path
from tests.tiny_models import tiny_segmenter
from tuning.build import tuning_module
from runtime.target import host_target
from tuning.tune import tune
t = host_target()
model = tiny_segmenter(Path(sys.argv[1]))
tune(tuning_module(model, t), t.to_tvm(), Path(sys.argv[2]), budget=400, per_iter=4, progress=False)
"""


def test_interrupted_run_keeps_its_records_and_resumes(tmp_path, tiny_mod, target):
    work = tmp_path / "records"
    proc = subprocess.Popen([sys.executable, "-c", TUNE_SCRIPT, str(tmp_path / "t.tflite"), str(work)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: count_records(work) >= 4, 600, "the first measured batch", proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = count_records(work)
    assert saved >= 4
    # Resuming reaches the kernels the killed run did not, then goes on.
    result = tune(tiny_mod, target.to_tvm(), work, budget=saved + BUDGET, per_iter=4, progress=False)
    assert result.trials_before == saved and result.trials_run >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rpc_tracker():
    import tvm.rpc

    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                               "--port", str(port), "--port-end", str(port + 1)], start_new_session=True)]
    try:
        _wait_for(lambda: _can_connect(port), 60, "the RPC tracker", procs[0])
        procs.append(subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                                       "--tracker", f"127.0.0.1:{port}", "--key", "test-cpu"],
                                      start_new_session=True))
        tracker = tvm.rpc.connect_tracker("127.0.0.1", port)
        _wait_for(lambda: "test-cpu" in tracker.text_summary(), 60, "the RPC server to register", procs[1])
        yield f"127.0.0.1:{port}"
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_tuning_through_an_rpc_tracker(rpc_tracker, tiny_mod, target, tmp_path):
    rpc = RpcSpec.parse(rpc_tracker, "test-cpu")
    result = tune(tiny_mod, target.to_tvm(), tmp_path, budget=BUDGET, per_iter=4, rpc=rpc, progress=False)
    assert result.trials_run >= 4
    s = stats.collect(tiny_mod, target.to_tvm(), tmp_path)
    assert any(t.best_us for t in s.tasks)  # the remote measurements were valid


def test_rpc_spec_parsing():
    assert RpcSpec.parse("10.0.0.1:9190", "k") == RpcSpec("10.0.0.1", 9190, "k")
    with pytest.raises(ValueError, match="host:port"):
        RpcSpec.parse("nohostport", "k")


def test_tune_command_with_a_tiny_budget(tmp_path, capsys, monkeypatch):
    """`selfie-tvm tune` end to end: default export, tuning, tuned export, timing, statistics; a budget
    that cannot reach every kernel is refused, and a library tuned on some kernels says so."""
    from runtime.cli import main

    from .conftest import need_model

    need_model("selfie_segmenter_landscape")
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    common = ["tune", "--model", "selfie_segmenter_landscape", "--per-iter", "4",
              "--work-dir", str(tmp_path / "records"), "--out", str(tmp_path / "lib")]
    assert main([*common, "--budget", "4"]) == 2
    assert "cannot reach the" in capsys.readouterr().err
    args = [*common, "--budget", "8", "--only", "fused_conv2d_"]  # the first convolution only
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tuned" in out and "x)" in out and "LiteRT" in out
    assert "partially tuned:" in out
    assert {p.name for p in (tmp_path / "lib").iterdir()} == {"default.so", "default.json", "tuned.so", "tuned.json"}
    assert len(list((tmp_path / "results" / "selfie_segmenter_landscape").glob("*/tuning_tasks.csv"))) == 1
    assert (tmp_path / "records" / "provenance.json").is_file()
    # the budget is spent: a second run measures nothing new
    assert main(args) == 0
    assert "trials: 0 new" in capsys.readouterr().out

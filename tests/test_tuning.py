"""MetaSchedule tuning: budget, resume after interruption, tuned export, statistics (RPC: test_farm.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runtime.artifacts import LibraryMetadata
from runtime.engines import create_engine
from runtime.processing import preprocess, to_probabilities
from runtime.target import host_target
from tuning import ANCHOR_BLOCK, STRUCTURAL, stats
from tuning.build import export, tuning_module
from tuning.database import KEEP_PER_CPU, count_records, is_compressed, read_records
from tuning.default_schedule import DEFAULT_SCHEDULE_ANNOTATION
from tuning.errors import MissingRecordsError, TuningBudgetError
from tuning.farm import RpcSpec
from tuning.records import isa_level, record_set_dir, resolve_records, working_dir
from tuning.tune import small_search, tune

from .farm_helpers import wait_for
from .tiny_models import tiny_file_model, tiny_segmenter, tiny_shared_anchor

pytestmark = pytest.mark.slow
BUDGET = 20  # the tiny model has 5 kernels: the first round needs 4 trials each
ROOT = Path(__file__).resolve().parents[1]
# Every tune here runs a small search (records, not performance: tuning.tune.small_search) and starts no batch
# after this deadline (pytest-timeout ends a test that hangs all the same).
TUNE_DEADLINE_S = 400
QUICK = ["--search", "small", "--time-limit", str(TUNE_DEADLINE_S / 60)]  # the same through `selfie-tvm tune`


def quick(**options) -> dict:
    """tune()'s options as every tune here runs it: no progress bar, the small search, the deadline."""
    return {"progress": False, "search": small_search(), "time_limit_s": TUNE_DEADLINE_S, **options}


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
    result = tune(tiny_mod, target.to_tvm(), work, **quick(budget=BUDGET, per_iter=4))
    assert result.trials_before == 0 and result.trials_run >= BUDGET
    return work


@pytest.fixture(scope="module")
def tuned_records(tuned_dir, target):
    return resolve_records("tiny", target, tuned_dir)


def test_the_budget_counts_this_run_only(tuned_dir, tiny_mod, target):
    before = count_records(tuned_dir)
    assert before >= BUDGET  # more records already there than this run's budget
    result = tune(tiny_mod, target.to_tvm(), tuned_dir, **quick(budget=4, per_iter=4))
    assert result.trials_before == before and 4 <= result.trials_run < 8
    assert count_records(tuned_dir) == before + result.trials_run


def test_a_time_limit_reached_before_the_first_batch_measures_nothing(tuned_dir, tiny_mod, target):
    before = count_records(tuned_dir)
    result = tune(tiny_mod, target.to_tvm(), tuned_dir, **quick(budget=4, per_iter=4, time_limit_s=1e-6))
    assert result.trials_run == 0 and result.valid_trials == 0 and count_records(tuned_dir) == before
    assert result.stopped_because == "the time limit was reached before the first batch"


def test_tuned_library_matches_litert(tuned_records, tuned_dir, tiny, target, tmp_path, astronaut):
    export(tiny, target, "tuned", records=tuned_records, budget=BUDGET, out_root=tmp_path)
    engine = create_engine("tvm-tuned", tiny, threads=2, target=target, build_root=tmp_path)
    assert engine.metadata.trials == count_records(tuned_dir) and engine.metadata.budget == BUDGET
    # Every kernel was reached by the first round, so nothing runs untuned, and the sub-pixel
    # transposed convolution is what was tuned and built.
    assert engine.metadata.untuned_kernels == [] and engine.metadata.tuning_warning is None
    assert engine.metadata.graph == {"subpixel_transposed_conv": True, "weight_prepack": True, "clean_import": True}
    # The in-model profile names kernels as the tuner does (prepacked kernels included), so
    # profile-guided tuning can aim at them.
    from runtime.profiling import kernel_times
    from tuning.tasks import plan_tasks

    profiled = kernel_times(engine.library, preprocess(astronaut, tiny.spec), repeat=1)
    assert set(plan_tasks(tuning_module(tiny, target), target.to_tvm()).names) <= set(profiled)
    # Folding the prepacked weights leaves no tuple of constants built and unpacked on every inference.
    import tvm
    from tvm import relax

    bytecode = relax.VMExecutable(tvm.runtime.load_module(str(engine.library))).as_text()
    assert "_prepacked in:" in bytecode and "vm.builtin.make_tuple" not in bytecode, bytecode
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
        tune(tiny_mod, target.to_tvm(), tmp_path, **quick(budget=12, per_iter=4))
    assert count_records(tmp_path) == 0


def test_partially_tuned_library_says_so(tiny, tiny_mod, target, tmp_path):
    """A run stopped early leaves every kernel's workload in the database (MetaSchedule commits
    them before measuring), but only the measured ones have a record: coverage counts records."""
    from tvm.s_tir import meta_schedule as ms

    from tuning.tasks import plan_tasks

    work = tmp_path / "records"
    result = tune(tiny_mod, target.to_tvm(), work, **quick(budget=4, per_iter=4, only=["fused_conv2d_add_relu"]))
    assert result.kernels == 1 and result.kernels_improved == 1 and result.valid_trials >= 1
    db = ms.database.JSONDatabase(work_dir=str(work))
    for task in plan_tasks(tiny_mod, target.to_tvm()).tasks:
        db.commit_workload(task.dispatched[0])
    assert len({r.shash for r in read_records(work)}) == 1
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
    assert f"- trials measured: {count_records(tuned_dir)}\n" in (tmp_path / "tuning_summary.md").read_text()


TUNE_SCRIPT = """
import sys
from pathlib import Path
from tests.tiny_models import tiny_segmenter
from tuning.build import tuning_module
from runtime.target import host_target
from tuning.tune import small_search, tune
t = host_target()
model = tiny_segmenter(Path(sys.argv[1]))
tune(tuning_module(model, t), t.to_tvm(), Path(sys.argv[2]), budget=400, per_iter=4, progress=False,
     search=small_search(), time_limit_s=float(sys.argv[3]))
"""


def test_interrupted_run_keeps_its_records_and_resumes(tmp_path, tiny_mod, target):
    work = tmp_path / "records"
    proc = subprocess.Popen([sys.executable, "-c", TUNE_SCRIPT, str(tmp_path / "t.tflite"), str(work),
                             str(TUNE_DEADLINE_S)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: count_records(work) >= 4, 600, "the first measured batch", proc)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a tuner that died by itself: wait_for says why
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    saved = count_records(work)
    assert saved >= 4
    # Resuming reaches the kernels the killed run did not (at most 4 of the 5: one batch each).
    result = tune(tiny_mod, target.to_tvm(), work, **quick(budget=16, per_iter=4))
    assert result.trials_before == saved and result.trials_run >= 1
    assert result.kernels_measured_before >= 1 and result.kernels_measured_after == result.kernels == 5


def test_rpc_spec_parsing():
    assert RpcSpec.parse("10.0.0.1:9190", "k") == RpcSpec("10.0.0.1", 9190, "k")
    for bad in ("nohostport", "host:70000", ":9190"):
        with pytest.raises(ValueError, match="must be HOST:PORT"):
            RpcSpec.parse(bad, "k")


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tune_command_end_to_end(tmp_path, capsys, caplog, monkeypatch):
    """`selfie-tvm tune` as the README runs it: measures into the working database, keeps the pruned
    best in the committed set, builds, ends with one summary; a run that measures nothing changes no
    committed file; a later run (working database gone) continues from the committed set alone."""
    from runtime.acquire import sha256_of
    from runtime.cli import main

    model_file = tiny_file_model(tmp_path / "mine.tflite")  # a model of one's own: no registry entry
    name = f"file-{sha256_of(model_file)[:12]}"
    results, build = tmp_path / "results", tmp_path / "build"
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(results))
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(build))
    committed, working = record_set_dir(host_target()), working_dir(host_target())
    common = ["tune", "--model-path", str(model_file), *QUICK, "--per-iter", "4", "--only", "fused_conv2d_"]
    assert main([*common[:-2], "--budget", "4"]) == 2  # every kernel needs a first batch: 4 cannot reach them
    assert "cannot reach the" in capsys.readouterr().err

    assert main([*common, "--budget", "8"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("summary:"):]
    assert "8 trials measured" in summary and "1 of 1 kernels improved" in summary
    assert "untuned" in summary and "-> tuned" in summary and "LiteRT" in summary
    assert re.search(r"round by round, tuned / untuned: median \d+\.\d\d, the new library faster in \d+ of 20 rounds",
                     summary)
    assert "partially tuned:" in caplog.text and f"selfie-tvm tune --model {name}" in caplog.text
    assert is_compressed(committed) and count_records(working) == 8
    assert 1 <= count_records(committed) <= KEEP_PER_CPU
    assert json.loads((committed / "provenance.json").read_text())["trials_measured"] == 8
    assert len(list((results / "selfie_multiclass_twin").glob("*"))) == 0
    assert len(list((results / name).glob("*/tuning_tasks.csv"))) == 1
    # The run's end, measured on the whole model, is the first point of the measured convergence.
    runs_csv = results / name / host_target().id / stats.RUNS
    runs = pd.read_csv(runs_csv)
    assert len(runs) == 1 and runs["trials"].iloc[0] == 8 and (runs[["tuned_ms", "litert_ms"]] > 0).all(axis=None)
    assert runs["litert_kernels"].iloc[0] == ("avx2" if isa_level(host_target()) == "x86-64-v3" else "native")
    summary_md = (runs_csv.parent / "tuning_summary.md").read_text()
    assert f"{runs['tuned_ms'].iloc[0]:.2f}" in summary_md[summary_md.index("Measured at the end of each run"):]

    before = _tree_bytes(results)
    assert main([*common, "--budget", "8", "--time-limit", "0.000001"]) == 0
    out = capsys.readouterr().out
    assert "nothing measured" in out and "time limit was reached before the first batch" in out
    assert _tree_bytes(results) == before

    shutil.rmtree(working)
    assert main([*common, "--budget", "4", "--profile-guided"]) == 0
    out = capsys.readouterr().out
    assert "continuing from" in out and "tuned " in out[out.index("summary:"):]
    assert "aiming trials by a profile of the current tuned build" in out
    assert count_records(working) >= count_records(committed)
    assert json.loads((committed / "provenance.json").read_text())["trials_measured"] == 12
    runs = pd.read_csv(runs_csv)  # the run that measured nothing added no point
    assert len(runs) == 2 and runs["tuning_min"].iloc[1] > runs["tuning_min"].iloc[0]


def test_measured_runs_accumulate_and_mark_the_first_crossing(tmp_path):
    for trials, minutes, tuned in ((100, 10.0, 60.0), (300, 10.0, 49.5), (500, 20.0, 51.0)):
        stats.append_run(tmp_path, trials, minutes, tuned, 50.0, litert_kernels="avx2", threads=2, cpu="x")
    runs = stats.measured_runs(tmp_path)
    assert list(runs["tuning_min"]) == [10.0, 20.0, 40.0]
    crossing = stats.first_measured_crossing(runs)
    assert crossing["trials"] == 300 and crossing["tuning_min"] == 20.0
    assert stats.first_measured_crossing(runs.iloc[[0]]) is None


def test_convergence_marks_when_the_estimate_reaches_litert():
    s = stats.TuningStats(tasks=[], convergence=[(10, 50.0), (20, 41.0), (30, 39.5), (40, 42.0)], total_trials=40)
    assert s.trials_to_reach(40.0) == 30
    assert s.trials_to_reach(50.0) == 10
    assert s.trials_to_reach(39.0) is None


def test_profile_guided_aiming_weighs_kernels_by_their_share_of_the_built_model():
    """Continuing from records, a kernel's cost to the model is its in-model profile time, scaled by
    how much faster its isolated best became since that profile; without a profile, calls x best."""
    from tuning.scheduler import TuningState

    state = TuningState(weights=[1.0, 1.0], best_s={0: 1e-3, 1: 2e-3},
                        in_model_ms={0: 10.0}, best_at_profile={0: 1e-3})
    assert state.expected_ms(0) == pytest.approx(10.0)  # the profile: the build spends 10 ms here
    assert state.expected_ms(1) == pytest.approx(2.0)  # no profile: 1 call x 2 ms isolated
    state.best_s[0] = 0.5e-3  # tuning halved the kernel since the profile
    assert state.expected_ms(0) == pytest.approx(5.0)
    assert state.estimated_total_ms() == pytest.approx(2.5)  # the isolated estimate is unaffected


def test_tune_all_models_one_after_another(tmp_path, capsys, monkeypatch):
    """`selfie-tvm tune --model all`: every available model in turn, each within the per-model limits; a
    model whose kernels none of the shared records cover starts from its untuned build."""
    from runtime import acquire
    from runtime.acquire import resolve_model
    from runtime.cli import main

    first = resolve_model(tiny_file_model(tmp_path / "mine.tflite"))
    second = tiny_segmenter(tmp_path / "tiny.tflite")  # other shapes: the first model's records fit none of it
    monkeypatch.setattr(acquire, "available_models", lambda settings=None: [first, second])
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "build"))
    assert main(["tune", "--model", "all", "--out", str(tmp_path)]) == 2
    assert "drop --model-path and --out" in capsys.readouterr().err

    # One kernel of each (`--only`) keeps it short; coverage still counts all of them.
    assert main(["tune", "--model", "all", *QUICK, "--per-iter", "4", "--budget", "4", "--only",
                 "fused_conv2d_add_"]) == 0
    out = capsys.readouterr().out
    assert "tuning 2 models one after another, each for up to 4 trials" in out
    one, two = out.split("[2/2] tiny")
    assert "[1/2] " + first.spec.name in one and one.count("summary:") == 1 and "4 trials measured" in one
    assert "none for tiny's 5 kernels" in two and "summary: 4 trials measured" in two
    assert "untuned" in two[two.index("summary:"):]
    for model in (first, second):
        assert (tmp_path / "build" / model.spec.name / host_target().id / "tuned.so").is_file()


def test_a_time_limited_first_round_fits_its_time():
    """The batch is fixed for a run: with a time limit it shrinks so that every kernel gets one in time."""
    from tuning.scheduler import MIN_FIRST_BATCH, TRIALS_PER_MINUTE_GUESS, first_round_batch

    assert first_round_batch(2000, 55, 16) == 16
    for minutes in (15, 25, 40):
        batch = first_round_batch(2000, 55, 16, time_limit_s=minutes * 60)
        assert MIN_FIRST_BATCH <= batch < 16 and batch * 55 <= minutes * TRIALS_PER_MINUTE_GUESS
    assert first_round_batch(2000, 55, 16, time_limit_s=3 * 60) == MIN_FIRST_BATCH  # the floor still holds
    assert first_round_batch(2000, 55, 16, time_limit_s=600 * 60) == 16
    assert first_round_batch(2000, 0, 16, time_limit_s=60) == 16  # no first round left: full batches
    with pytest.raises(TuningBudgetError):
        first_round_batch(100, 55, 16, time_limit_s=600 * 60)
    # Trials measured before the first round (other CPUs' schedules) count in the budget, even with no first round.
    before = "measure here the 30 best schedules other CPUs found"
    with pytest.raises(TuningBudgetError, match=f"budget of 20 trials cannot {before}: use --budget 30 or more"):
        first_round_batch(20 - 30, 0, 16, reserved=30, reserved_for=before)
    with pytest.raises(TuningBudgetError, match=f"cannot {before} and reach the 2 kernels.*use --budget 38 or more"):
        first_round_batch(34 - 30, 2, 16, reserved=30, reserved_for=before)
    assert first_round_batch(38 - 30, 2, 16, reserved=30, reserved_for=before) == MIN_FIRST_BATCH


def test_a_kernel_is_given_up_after_the_same_number_of_trials_whatever_the_batch():
    from tuning.scheduler import STALE_TRIALS, stale_limit

    for batch in (4, 5, 8, 16):
        assert stale_limit(batch) * batch >= STALE_TRIALS > (stale_limit(batch) - 1) * batch


def test_a_continued_run_counts_only_this_cpus_records(tuned_dir, tiny_mod, target):
    """Another CPU's latencies do not say how fast a kernel is here: such a kernel starts unmeasured."""
    from tvm.s_tir import meta_schedule as ms

    from tuning.scheduler import resume_state
    from tuning.tasks import plan_tasks

    plan = plan_tasks(tiny_mod, target.to_tvm())
    db = ms.database.JSONDatabase(work_dir=str(tuned_dir))
    here = resume_state(db, plan, target.mcpu)
    assert len(here.best_s) == len(plan.tasks)
    assert resume_state(db, plan, "another-cpu").best_s == {}
    assert resume_state(db, plan).best_s == here.best_s  # no CPU named: every record counts


def test_a_portable_tune_names_this_cpu_in_its_records_and_a_portable_build_here_prefers_them(tiny_mod, tmp_path):
    """x86-64-v3 code is the same on every CPU, so its records would not say where they were measured:
    the tuner tags them (`model`). Another CPU's records, faster on paper, then neither rank a portable
    build here nor count as this CPU's best when tuning continues here."""
    from tvm.s_tir import meta_schedule as ms

    from runtime.target import portable_target
    from tuning.build import selected_records
    from tuning.database import Record, tag_measuring_cpu, write_database
    from tuning.scheduler import resume_state
    from tuning.tasks import plan_tasks

    here, portable = host_target().mcpu, portable_target(2)
    measuring = tag_measuring_cpu(portable.to_tvm(), here)
    only = [plan_tasks(tiny_mod, measuring).tasks[0].task_name]  # one kernel is enough: minutes on slow hosts
    tune(tiny_mod, measuring, tmp_path, **quick(budget=4, per_iter=4, only=only, register_tiles=False))
    mine = read_records(tmp_path)
    assert {(r.mcpu, r.cpu) for r in mine} == {("x86-64-v3", here)}
    other = [Record(r.shash, r.workload_line, [r.body[0], [t / 10 for t in r.body[1]],
                                               {**r.body[2], "model": "other-cpu"}, r.body[3]])
             for r in mine if r.cost_s is not None]
    write_database(tmp_path, [*mine, *other], compressed=False)
    with selected_records(tmp_path, portable) as selected:
        assert {r.cpu for r in read_records(selected)} == {here}
    with selected_records(tmp_path, portable, ranked_by="other-cpu") as selected:  # a farm of other-cpu devices
        assert {r.cpu for r in read_records(selected)} == {"other-cpu"}
    plan = plan_tasks(tiny_mod, measuring, only)
    db = ms.database.JSONDatabase(work_dir=str(tmp_path))
    ours, theirs = resume_state(db, plan, here).best_s, resume_state(db, plan, "other-cpu").best_s
    assert ours.keys() == theirs.keys() and len(ours) == len(plan.tasks)
    assert all(theirs[i] == pytest.approx(ours[i] / 10) for i in ours)

    # Continuing here from the other CPU's records alone: their best schedules are measured here first.
    elsewhere = tmp_path / "elsewhere"
    write_database(elsewhere, other, compressed=False)
    fastest = sorted(other, key=lambda r: r.cost_s)[:KEEP_PER_CPU]
    with pytest.raises(TuningBudgetError, match=f"use --budget {len(fastest)} or more"):  # refused before measuring
        tune(tiny_mod, measuring, elsewhere, **quick(budget=len(fastest) - 1, only=only))
    assert count_records(elsewhere) == len(other)
    # MetaSchedule's own search here (search=None): that it never proposes a schedule measured already is the claim.
    result = tune(tiny_mod, measuring, elsewhere, **quick(budget=len(fastest) + 4, per_iter=4, only=only,
                                                          register_tiles=False, search=None))
    here_now = read_records(elsewhere)[len(other):]
    remeasured, searched = here_now[:len(fastest)], here_now[len(fastest):]
    assert result.trials_run == len(here_now) == len(fastest) + 4 and result.kernels_measured_before == 1
    assert {r.cpu for r in here_now} == {here}
    assert sorted(json.dumps(r.body[0]) for r in remeasured) == sorted(json.dumps(r.body[0]) for r in fastest)
    assert not {json.dumps(r.body[0]) for r in searched} & {json.dumps(r.body[0]) for r in fastest}
    with selected_records(elsewhere, portable) as selected:
        (chosen,) = read_records(selected)
    assert chosen.cpu == here and chosen.cost_s == min(r.cost_s for r in here_now if r.cost_s is not None)


def test_tune_all_goes_on_after_a_model_fails(tmp_path, capsys, caplog, monkeypatch):
    from runtime import acquire
    from runtime.cli import main
    from runtime.errors import SelfieTvmError
    from tuning.cli import tune as tune_verb

    tiny = tiny_segmenter(tmp_path / "tiny.tflite")
    models = [dataclasses.replace(tiny, spec=dataclasses.replace(tiny.spec, name=n)) for n in "abc"]
    monkeypatch.setattr(acquire, "available_models", lambda settings=None: models)
    tuned = []

    def fake_tune_model(args, model, rpc, device):
        if model.spec.name == "a":
            raise RuntimeError("TVMError: a kernel did not compile")
        if model.spec.name == "b":
            raise SelfieTvmError("no candidate built and ran")
        tuned.append(model.spec.name)

    monkeypatch.setattr(tune_verb, "tune_model", fake_tune_model)
    assert main(["tune", "--model", "all"]) == 1
    out = capsys.readouterr().out
    assert tuned == ["c"] and "error: b: no candidate built and ran" in out and "2 of 3 models failed: a, b" in out
    assert "a: RuntimeError: TVMError: a kernel did not compile" in caplog.text and "Traceback" in caplog.text


def test_anchor_block_kernels_share_one_task_and_its_record(tmp_path, target, capsys, monkeypatch):
    """Two kernels with the same convolution and different epilogues: `selfie-tvm tune
    --module-equality anchor-block` makes them one task with one record, the build replays that
    record on both, and provenance and metadata say how the records match kernels."""
    from runtime.acquire import resolve_model
    from runtime.cli import main
    from tuning.build import apply_records, coverage, selected_records
    from tuning.tasks import plan_tasks

    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "build"))
    model = resolve_model("auto", path=tiny_shared_anchor(tmp_path / "pair.tflite").path)
    mod = tuning_module(model, target)
    assert len(plan_tasks(mod, target.to_tvm()).tasks) == 2
    assert len(plan_tasks(mod, target.to_tvm(), module_equality=ANCHOR_BLOCK).tasks) == 1

    work, out = tmp_path / "records", tmp_path / "lib"
    common = ["tune", "--model-path", str(model.path), *QUICK, "--budget", "4", "--per-iter", "4"]
    assert main([*common, "--module-equality", ANCHOR_BLOCK]) == 2  # not into the committed records
    assert "give them a --work-dir of their own" in capsys.readouterr().err
    anchor_run = [*common, "--module-equality", ANCHOR_BLOCK, "--work-dir", str(work), "--out", str(out)]
    # The directory is marked before any record lands: a run killed later leaves records that say their kind.
    assert main([*anchor_run, "--time-limit", "0.000001"]) == 0 and count_records(work) == 0
    assert json.loads((work / "provenance.json").read_text())["module_equality"] == ANCHOR_BLOCK
    assert main(anchor_run) == 0
    out_text = capsys.readouterr().out
    assert "1 of 1 kernels improved" in out_text and "records merge" not in out_text  # they cannot join
    assert len({r.shash for r in read_records(work)}) == 1
    provenance = resolve_records(model.spec.name, target, work).provenance  # marked before tuning, then this run's
    assert provenance.module_equality == ANCHOR_BLOCK and provenance.trials_measured >= 4 and not provenance.continued
    meta = LibraryMetadata.read(out / "tuned.json")
    assert meta.kernels == 2 and meta.untuned_kernels == []
    assert meta.records_provenance["module_equality"] == ANCHOR_BLOCK
    # Both kernels are scheduled from the one record; matched structurally, it would reach only the
    # kernel it was measured on (the other gets the default schedule, tuning/default_schedule.py).
    kernels = plan_tasks(mod, target.to_tvm()).names
    with selected_records(work, target) as selected:
        for equality, scheduled in ((ANCHOR_BLOCK, 2), (STRUCTURAL, 1)):
            applied = apply_records(mod, target.to_tvm(), selected, equality)
            assert all(applied[k].attrs.get("tirx.is_scheduled") for k in kernels)
            assert sum(DEFAULT_SCHEDULE_ANNOTATION not in applied[k].script() for k in kernels) == scheduled
            assert len(coverage(mod, target, selected, equality).untuned) == 2 - scheduled

    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)
    tuned = create_engine("tvm-tuned", model, threads=2, target=target, build_root=out).run(x)
    assert np.abs(tuned - create_engine("litert", model, 1).run(x)).max() <= 1e-4

    # The two kinds of records never share a database.
    assert main([*common, "--work-dir", str(work)]) == 2
    assert "were tuned with --module-equality anchor-block" in capsys.readouterr().err
    # Structural records of a directory of one's own: the run says how they join the committed set.
    own = tmp_path / "own"
    assert main([*common, "--budget", "8", "--work-dir", str(own), "--out", str(tmp_path / "own_lib")]) == 0
    assert f"`selfie-tvm records merge {own}`" in capsys.readouterr().out
    # Its statistics stay beside its records; the committed report describes the committed records only.
    assert (own / "statistics" / model.spec.name / target.id / "tuning_summary.md").is_file()
    assert not (tmp_path / "results" / model.spec.name / target.id / "tuning_summary.md").exists()


def test_an_only_prefix_that_matches_no_kernel_is_named(tiny_mod, target, tmp_path, capsys, monkeypatch):
    """A typo in --only fails before any build or measurement and lists the kernels there are; a prefix beside
    others that match is tuned without, with a warning."""
    from runtime.acquire import resolve_model, sha256_of
    from runtime.cli import main
    from tuning.errors import NoKernelMatchedError
    from tuning.tasks import plan_tasks

    plan = plan_tasks(tiny_mod, target.to_tvm(), ["fused_conv2d_add_", "fused_conv2d_ad_typo"])
    assert plan.unmatched == ["fused_conv2d_ad_typo"] and plan.names
    assert all(name.startswith("fused_conv2d_add_") for name in plan.names)
    with pytest.raises(NoKernelMatchedError, match="fused_conv2d_ad_typo"):
        plan_tasks(tiny_mod, target.to_tvm(), ["fused_conv2d_ad_typo"])

    model_file = tiny_file_model(tmp_path / "mine.tflite")
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "build"))
    work = tmp_path / "work"
    assert main(["tune", "--model-path", str(model_file), *QUICK, "--work-dir", str(work), "--only", "conv_typo"]) == 2
    err = capsys.readouterr().err
    assert "--only conv_typo: no kernel of this model starts with that" in err and "fused_conv2d_add_" in err
    assert not (tmp_path / "build").exists() and not work.exists()  # nothing built, no provenance written
    assert not (tmp_path / "results" / f"file-{sha256_of(model_file)[:12]}").exists()

    # --model all: a model none of the prefixes match is left alone; when that is every model, it is an error.
    from runtime import acquire

    monkeypatch.setattr(acquire, "available_models", lambda settings=None: [resolve_model(model_file)])
    assert main(["tune", "--model", "all", *QUICK, "--only", "conv_typo"]) == 2
    captured = capsys.readouterr()
    assert "no kernel starts with --only conv_typo; left alone" in captured.out
    assert "no kernel of any model starts with that" in captured.err
    assert not (tmp_path / "build").exists()


def test_the_before_after_ratio_is_taken_round_by_round():
    """A drift that slows whole rounds moves both runs of a round: the per-round ratio sees through it, and the
    rounds a slow engine sat out (tuning/cli/tune.py SLOW_ROUNDS) pair nothing."""
    from tuning.cli.tune import _paired

    times = {"after": [9.0, 18.0, 9.5, 30.0], "before": [10.0, 20.0, 9.0]}  # round 2 ran slow for both
    ratio, faster, rounds = _paired(times, "after", "before")
    assert rounds == 3 and faster == 2 and ratio == pytest.approx(0.9)


def test_a_cold_cache_run_measures_cold_into_a_database_of_its_own(tmp_path, capsys, monkeypatch):
    """`tune --cold-cache`: every candidate timed in single runs, each after the cache was flushed of its weights
    and output (five per record, where a hot record holds one mean of back-to-back runs); its database says so,
    and neither a hot run nor the committed set takes its records."""
    from runtime.cli import main

    model_file = tiny_file_model(tmp_path / "mine.tflite")
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "build"))
    assert main(["tune", "--model-path", str(model_file), *QUICK, "--cold-cache"]) == 2
    assert "--cold-cache records cannot join the ones kept in results/tuning" in capsys.readouterr().err

    cold, hot = tmp_path / "cold", tmp_path / "hot"
    common = ["tune", "--model-path", str(model_file), *QUICK, "--per-iter", "4", "--budget", "4", "--only",
              "fused_conv2d_add_"]
    assert main([*common, "--work-dir", str(cold), "--cold-cache", "--out", str(tmp_path / "lib")]) == 0
    assert main([*common, "--work-dir", str(hot), "--out", str(tmp_path / "lib")]) == 0
    capsys.readouterr()
    samples = {name: {len(r.body[1]) for r in read_records(d)} for name, d in (("cold", cold), ("hot", hot))}
    assert samples == {"cold": {5}, "hot": {1}}
    assert json.loads((cold / "provenance.json").read_text())["measured"] == "cold"
    assert json.loads((hot / "provenance.json").read_text())["measured"] == "hot"

    before = sorted(p.read_bytes() for p in cold.iterdir() if p.is_file())
    assert main([*common, "--work-dir", str(cold), "--out", str(tmp_path / "lib")]) == 2  # hot into cold
    assert "were measured cold (provenance.json), this run measures hot" in capsys.readouterr().err
    assert main(["records", "merge", str(cold)]) == 2
    assert "the committed sets hold records measured hot only" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in cold.iterdir() if p.is_file()) == before

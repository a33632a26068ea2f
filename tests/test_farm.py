"""Tuning on a farm: a real TVM RPC tracker and real RPC servers on 127.0.0.1, devices killed mid-run."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
import threading
from argparse import Namespace
from pathlib import Path

import pytest
from tvm.s_tir import meta_schedule as ms

from runtime.target import host_target
from tuning import measure
from tuning.build import tuning_module
from tuning.cli.options import target_from
from tuning.database import RECORDS, count_records, read_records, write_database
from tuning.errors import DeviceUnresponsiveError, FarmError, NoDeviceError
from tuning.farm import RpcSpec, connect_device, request_device
from tuning.importer import TUNED_GRAPH
from tuning.local_farm import LocalFarm
from tuning.records import read_provenance, write_provenance
from tuning.tasks import FAILED_RUN_S
from tuning.tune import small_search, tune

from .farm_helpers import free_port, sessions_in_progress, sessions_started, wait_for
from .tiny_models import tiny_segmenter

ROOT = Path(__file__).resolve().parents[1]
# One kernel of the tiny model is tuned: its first batch reaches the database after one search
# (~40 s on a busy 2-core host) instead of two, and a run of 3 batches measures before and after a kill.
ONLY = ["fused_conv2d_add_relu"]
KEY = "farm-cpu"
TUNE_DEADLINE_S = 400  # no batch starts later (pytest-timeout ends a test that hangs all the same)
# Every tune here runs a small search (tuning.tune.small_search): these tests are about the farm, not the schedules.


@pytest.fixture(scope="module")
def target():
    return host_target()


@pytest.fixture(scope="module")
def tiny_mod(tmp_path_factory, target):
    return tuning_module(tiny_segmenter(tmp_path_factory.mktemp("tiny") / "tiny.tflite"), target)


def _in_background(action) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def guarded():
        try:
            action()
        except BaseException as e:  # reported by the test, not lost in the thread
            errors.append(e)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread, errors


def _shape(line: str):
    """The structure of one database line (nesting and types, not the values)."""
    workload, (trace, run_secs, target, args_info) = json.loads(line)
    return type(workload), type(trace), frozenset(type(s) for s in run_secs), type(target), type(args_info)


@pytest.mark.slow
def test_a_device_killed_mid_measurement_costs_nothing_and_is_reported_once(tiny_mod, target, tmp_path, capfd,
                                                                            monkeypatch):
    # Each measurement keeps its device >= 0.3 s (min_repeat_ms), so looking at device 0's log every 50 ms finds it
    # measuring; one batch of 4 on 2 devices is enough.
    monkeypatch.setattr(measure, "EVALUATOR", measure.EVALUATOR._replace(min_repeat_ms=300))
    work = tmp_path / "records"
    with LocalFarm(2, KEY) as farm:
        in_flight_when_killed: list[int] = []

        def kill_device_0_while_it_measures():
            wait_for(lambda: sessions_in_progress(farm, 0) > 0, 300, "device 0 to be measuring", interval_s=0.05)
            farm.kill_device(0)
            in_flight_when_killed.append(sessions_in_progress(farm, 0))

        killer, errors = _in_background(kill_device_0_while_it_measures)
        try:
            result = tune(tiny_mod, target.to_tvm(), work, budget=4, per_iter=4, rpc=farm.spec, only=ONLY,
                          register_tiles=False, time_limit_s=TUNE_DEADLINE_S, search=small_search())
        finally:
            killer.join(timeout=60)
        assert not killer.is_alive() and not errors, errors
        assert farm.servers[0].poll() is not None and farm.servers[1].poll() is None
        sessions = sessions_started(farm, 0) + sessions_started(farm, 1)
    assert in_flight_when_killed == [1]  # device 0 died with a measurement under way
    assert result.trials_run >= 4
    err = capfd.readouterr().err
    assert "2 devices measuring" in err and "1 device measuring" in err  # the progress line follows the farm
    assert err.count("stopped answering") == 1
    # The killed device's in-flight measurement was repeated on the other: one session more than measurements,
    # and no failed record.
    lines = (work / RECORDS).read_text().splitlines()
    assert all(max(json.loads(line)[1][1]) < FAILED_RUN_S / 10 for line in lines)  # failures: FAILED_RUN_S
    assert sessions == len(lines) + 1
    # The same JSON database a local run writes (the committed records were tuned locally).
    committed = read_records(ROOT / "results" / "tuning" / "x86-64-v3")[0]
    local = json.dumps([0, committed.body])
    assert {_shape(line) for line in lines} == {_shape(local)}
    tuned_for = {k: list(v) if isinstance(v, tuple) else v for k, v in target.to_tvm().export().items()}
    assert all(json.loads(line)[1][2] == tuned_for for line in lines)  # keyed by the target, as locally
    db = ms.database.JSONDatabase(work_dir=str(work))
    assert len(db.get_all_tuning_records()) == len(lines)


@pytest.mark.slow
def test_a_broken_measurement_call_stops_the_run_and_stores_no_record(tiny_mod, target, tmp_path, monkeypatch):
    """A call TVM no longer accepts (here a wrong argument) says nothing about the candidate: stored as its
    failure, it would rule the schedule out for good. The run stops in one sentence, the records untouched."""
    work = _records_dir(tmp_path)
    before = (work / RECORDS).read_bytes()
    monkeypatch.setattr(measure, "EVALUATOR", measure.EVALUATOR._replace(number="three"))
    with LocalFarm(1, KEY) as farm, pytest.raises(FarmError, match=r"^measuring on the farm failed in a way that "
                                                                   r"says nothing about the candidate \(\w+Error"):
        tune(tiny_mod, target.to_tvm(), work, budget=4, per_iter=4, rpc=farm.spec, progress=False, only=ONLY,
             register_tiles=False, time_limit_s=TUNE_DEADLINE_S, search=small_search())
    assert (work / RECORDS).read_bytes() == before


def test_the_tvm_steps_a_measurement_calls_take_the_arguments_the_farm_passes():
    """The farm measures with TVM's public RPC steps (tuning/farm.py `_measure_once`): a TVM whose steps take
    other arguments fails here, not in the records."""
    from tvm.s_tir.meta_schedule.runner import rpc_runner

    passed = {"default_upload_module": ["session", "local_path", "remote_path"],
              "default_alloc_argument": ["session", "device", "args_info", "alloc_repeat"],
              "default_run_evaluator": ["session", "rt_mod", "device", "evaluator_config", "repeated_args"],
              "default_cleanup": ["session", "remote_path"]}
    for name, arguments in passed.items():
        assert list(inspect.signature(getattr(rpc_runner, name)).parameters) == arguments, name
    assert measure.EVALUATOR._fields == ("number", "repeat", "min_repeat_ms", "enable_cpu_cache_flush")


@pytest.mark.slow
def test_a_tracker_gone_mid_run_is_one_sentence_and_keeps_the_records(tiny_mod, target, tmp_path):
    work = tmp_path / "records"
    with LocalFarm(1, KEY) as farm:
        saved_at_kill: list[int] = []

        def kill_tracker_after_first_batch():
            wait_for(lambda: count_records(work) >= 4, 300, "the first batch to reach the database")
            saved_at_kill.append(count_records(work))
            farm.kill_tracker()

        killer, errors = _in_background(kill_tracker_after_first_batch)
        try:
            one_sentence = rf"^cannot reach the RPC tracker at {farm.tracker} \([^\n]*\)[^\n]*$"
            with pytest.raises(FarmError, match=one_sentence):
                tune(tiny_mod, target.to_tvm(), work, budget=200, per_iter=4, rpc=farm.spec, progress=False,
                     only=ONLY, time_limit_s=TUNE_DEADLINE_S, search=small_search())
        finally:
            killer.join(timeout=60)
        assert not killer.is_alive() and not errors, errors
    lines = (work / RECORDS).read_text().splitlines()
    assert len(lines) >= saved_at_kill[0] >= 4
    assert all(json.loads(line) for line in lines)  # nothing half-written


@pytest.mark.slow
def test_every_device_gone_stops_the_run_in_one_sentence_and_keeps_the_records(tiny_mod, target, tmp_path):
    work = tmp_path / "records"
    with LocalFarm(1, KEY) as farm:
        saved_at_kill: list[int] = []

        def kill_the_only_device_while_it_measures():
            wait_for(lambda: count_records(work) >= 4, 300, "the first batch to reach the database")
            started = sessions_started(farm, 0)
            wait_for(lambda: sessions_started(farm, 0) > started, 300, "the device to start a measurement")
            saved_at_kill.append(count_records(work))
            farm.kill_device(0)

        killer, errors = _in_background(kill_the_only_device_while_it_measures)
        try:
            one_sentence = f"^every device of key '{KEY}' at {farm.tracker} stopped answering[^\n]*$"
            with pytest.raises(FarmError, match=one_sentence):
                tune(tiny_mod, target.to_tvm(), work, budget=200, per_iter=4, rpc=farm.spec, progress=False,
                     only=ONLY, time_limit_s=TUNE_DEADLINE_S, search=small_search())
        finally:
            killer.join(timeout=60)
        assert not killer.is_alive() and not errors, errors
    lines = (work / RECORDS).read_text().splitlines()
    assert len(lines) >= saved_at_kill[0] >= 4 and all(json.loads(line) for line in lines)


@pytest.mark.slow
def test_a_device_whose_tracker_died_is_given_up_at_its_handshake_deadline():
    """TVM's server stops accepting once its tracker is gone, and TVM's connect waits for its answer
    forever: a device the tracker handed out just before dying must not hang the measurement (a
    tuning run once waited 7 minutes here, for its worker pool's timeout)."""
    with LocalFarm(1, KEY) as farm:
        spec = dataclasses.replace(farm.spec, handshake_timeout_s=1)
        host, port, match_key = request_device(spec, wait_s=30)
        farm.kill_tracker()
        server_log = farm.log_dir / "server0.log"
        wait_for(lambda: "Cannot connect to tracker" in server_log.read_text(), 60, "the device to lose its tracker")
        attempt, errors = _in_background(lambda: connect_device(spec, host, port, match_key))
        attempt.join(timeout=30)
        assert not attempt.is_alive(), "the handshake with a device that stopped accepting had no deadline"
        assert len(errors) == 1 and isinstance(errors[0], DeviceUnresponsiveError), errors
        assert f"{host}:{port} did not answer its RPC handshake within 1 s" in str(errors[0])


def _pending_requests(spec: RpcSpec) -> int:
    from tvm.rpc import base as rpc_base

    from tuning.farm import _tracker_socket

    with _tracker_socket(spec) as sock:
        rpc_base.sendjson(sock, [rpc_base.TrackerCode.SUMMARY])
        _, summary = rpc_base.recvjson(sock)
    return summary["queue_info"].get(spec.key, {}).get("pending", 0)


@pytest.mark.slow
def test_a_request_queued_for_a_busy_device_learns_at_once_that_the_last_one_died():
    """The tracker never answers a request queued for a device that then dies: the wait must notice that
    the key has no device left (it once ended only at its 120 s deadline, with the wrong sentence)."""
    with LocalFarm(1, KEY) as farm:
        request_device(farm.spec, wait_s=30)  # the only device, handed out and never released
        waiting, errors = _in_background(lambda: request_device(farm.spec, wait_s=600))
        wait_for(lambda: _pending_requests(farm.spec) == 1, 60, "the second request to queue at the tracker")
        farm.kill_device(0)
        waiting.join(timeout=60)
        assert not waiting.is_alive(), "a request for a dead key's device waited for its deadline"
        assert len(errors) == 1 and isinstance(errors[0], NoDeviceError), errors
        assert f"every device of key '{KEY}' at {farm.tracker} stopped answering" in str(errors[0])


CLI = "import sys; from runtime.cli import main; sys.exit(main())"


def _cli(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """`selfie-tvm tune ...` in a fresh process, with a deadline (a hang fails the test)."""
    return subprocess.run([sys.executable, "-c", CLI, "tune", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)


def _records_dir(tmp_path: Path) -> Path:
    """A records directory holding one record of the committed ones (plain, as a --work-dir is)."""
    work = tmp_path / "records"
    write_database(work, read_records(ROOT / "results" / "tuning" / "x86-64-v3")[:1], compressed=False)
    return work


@pytest.mark.slow
def test_an_unknown_key_is_one_sentence_not_a_hang(tmp_path):
    work = _records_dir(tmp_path)
    before = (work / RECORDS).read_bytes()
    with LocalFarm(1, KEY) as farm:
        done = _cli("--rpc-tracker", farm.tracker, "--rpc-key", "nobody", "--work-dir", str(work))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no device with key 'nobody'" in done.stderr
    assert f"keys there: {KEY}" in done.stderr
    assert (work / RECORDS).read_bytes() == before


def test_an_unreachable_tracker_is_one_sentence_and_touches_nothing(tmp_path):
    work = _records_dir(tmp_path)
    before = sorted((p.name, p.read_bytes()) for p in work.iterdir())
    port = free_port()  # nothing listens there
    done = _cli("--rpc-tracker", f"127.0.0.1:{port}", "--rpc-key", KEY, "--work-dir", str(work))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"error: cannot reach the RPC tracker at 127.0.0.1:{port}")
    assert sorted((p.name, p.read_bytes()) for p in work.iterdir()) == before


def test_a_farm_target_is_the_devices_cpu(target):
    args = Namespace(num_cores=None, mcpu=None, mtriple=None, portable=False)
    other = "skylake-avx512" if target.mcpu != "skylake-avx512" else "znver3"
    farm = target_from(args, other, 1)
    assert (farm.mcpu, farm.num_cores, farm.mattr) == (other, 1, ())
    same = target_from(args, target.mcpu, 1)  # this host's CPU: keeps its corrections for hidden features
    assert (same.mcpu, same.num_cores, same.mattr) == (target.mcpu, 1, target.mattr)
    assert target_from(Namespace(**{**vars(args), "mcpu": "znver3"}), other, 1).mcpu == "znver3"


def test_provenance_names_the_devices_cpu(tmp_path, target):
    write_provenance(tmp_path, target, "tiny", TUNED_GRAPH, 10.0, cpu="znver3 (LLVM name), 2 RPC devices")
    assert read_provenance(tmp_path, "x").tuned_on_cpu == "znver3 (LLVM name), 2 RPC devices"
    write_provenance(tmp_path, target, "tiny", TUNED_GRAPH, 5.0, cpu="skylake (LLVM name), 1 RPC device")
    assert read_provenance(tmp_path, "x").continued[-1]["cpu"] == "skylake (LLVM name), 1 RPC device"


def test_rpc_spec_keeps_the_device_cap():
    assert RpcSpec.parse("10.0.0.1:9190", "k", 3) == RpcSpec("10.0.0.1", 9190, "k", max_devices=3)

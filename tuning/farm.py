"""Measuring candidates on a farm: every device registered under one key at a TVM RPC tracker.

The tracker (`python -m tvm.exec.rpc_tracker`) hands each measurement to a free device of the key.
The farm runner keeps one measurement in flight per device, repeats a measurement whose device
stopped answering on another device, and turns a tracker that cannot be reached, or a key with no
device left, into one FarmError sentence instead of a hang. Every wait on the tracker and on a
device's handshake has a deadline: TVM's own protocols would wait for a device of an unknown key, or
for a device whose server lost its tracker, forever.

Only a measured failure of a candidate becomes its record (MetaSchedule never retries a failed schedule):
errors are told apart by type (`_measure`), and one that says nothing about the candidate (a broken
call, a lost farm) stops the run with the records measured so far kept. A measurement is TVM's public
RPC steps (`rpc_runner.default_upload_module`, ...; tests/test_farm.py pins their signatures).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm
from tvm import error as tvm_error
from tvm.ir.utils import derived_object
from tvm.rpc import base as rpc_base
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.runner import rpc_runner
from tvm.support.popen_pool import PopenPoolExecutor

from .errors import DeviceUnresponsiveError, FarmError, NoDeviceError

log = logging.getLogger(__name__)
TRACKER_TIMEOUT_S = 10  # connecting to the tracker and each of its answers
# A device's RPC handshake: its server answers at once when it is listening. One that lost its
# tracker stops accepting (TVM's server retries the tracker for 60 s, then its listener dies while
# the socket stays open), and TVM's connect would wait for its answer forever.
HANDSHAKE_TIMEOUT_S = 10
DEVICE_POLL_S = 2.0  # how often a request waiting for a free device checks that the key still has one


@dataclass(frozen=True)
class RpcSpec:
    """Where the farm is: the tracker's address, the devices' key, how many of them to use at most."""

    tracker_host: str
    tracker_port: int
    key: str
    session_timeout_s: int = 120
    max_devices: int | None = None
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S

    @classmethod
    def parse(cls, tracker: str, key: str, max_devices: int | None = None) -> RpcSpec:
        host, port = split_host_port(tracker)
        return cls(host, port, key, max_devices=max_devices)

    @property
    def tracker(self) -> str:
        return f"{self.tracker_host}:{self.tracker_port}"


def split_host_port(text: str) -> tuple[str, int]:
    """HOST:PORT (e.g. 127.0.0.1:9190) -> (host, port); ValueError saying what is wrong."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--rpc-tracker must be HOST:PORT, e.g. 127.0.0.1:9190; got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class Device:
    """What the farm's devices say about themselves (through RPC: the device's CPU, not this host's)."""

    llvm_cpu: str
    threads: int
    count: int  # devices of the key the run measures on

    def describe(self, spec: RpcSpec) -> str:
        return (f"{self.llvm_cpu} (LLVM name), {self.count} RPC device{'s' if self.count > 1 else ''} "
                f"of key {spec.key!r} at {spec.tracker}, {self.threads} thread{'s' if self.threads > 1 else ''} each")


def _unreachable(spec: RpcSpec, error: Exception) -> FarmError:
    return FarmError(f"cannot reach the RPC tracker at {spec.tracker} ({error or type(error).__name__}): "
                     f"start one with `python -m tvm.exec.rpc_tracker --host 127.0.0.1 --port "
                     f"{spec.tracker_port}`, or correct --rpc-tracker; the tuning records were not touched")


def _tracker_socket(spec: RpcSpec) -> socket.socket:
    """A connection to the tracker after its handshake; FarmError when there is no tracker there."""
    try:
        sock = socket.create_connection((spec.tracker_host, spec.tracker_port), timeout=TRACKER_TIMEOUT_S)
    except OSError as e:
        raise _unreachable(spec, e) from e
    try:
        sock.sendall(struct.pack("<i", rpc_base.RPC_TRACKER_MAGIC))
        if struct.unpack("<i", rpc_base.recvall(sock, 4))[0] != rpc_base.RPC_TRACKER_MAGIC:
            raise FarmError(f"{spec.tracker} answers, but it is not a TVM RPC tracker: check --rpc-tracker")
    except OSError as e:
        sock.close()
        raise _unreachable(spec, e) from e
    except FarmError:
        sock.close()
        raise
    return sock


def registered_keys(spec: RpcSpec) -> dict[str, int]:
    """Device key -> how many devices of it the tracker knows (free or busy)."""
    try:
        with _tracker_socket(spec) as sock:
            rpc_base.sendjson(sock, [rpc_base.TrackerCode.SUMMARY])
            code, summary = rpc_base.recvjson(sock)
    except (OSError, json.JSONDecodeError, struct.error, ValueError) as e:
        raise _unreachable(spec, e) from e
    if code != rpc_base.TrackerCode.SUCCESS:
        raise FarmError(f"the RPC tracker at {spec.tracker} refused to list its devices ({summary})")
    keys: dict[str, int] = {}
    for server in summary["server_info"]:
        key = server["key"].split(":", 1)[-1]  # "server:<key>"
        keys[key] = keys.get(key, 0) + 1
    return keys


def count_devices(spec: RpcSpec) -> int:
    """How many devices of the key the tracker knows; FarmError when none."""
    keys = registered_keys(spec)
    count = keys.get(spec.key, 0)
    if count == 0:
        others = f"keys there: {', '.join(sorted(keys))}" if keys else "no device is registered at all"
        raise NoDeviceError(f"no device with key {spec.key!r} is registered at the RPC tracker {spec.tracker} "
                        f"({others}): start one with `python -m tvm.exec.rpc_server --host 127.0.0.1 "
                        f"--tracker {spec.tracker} --key {spec.key}`, or correct --rpc-key")
    return count


def every_device_gone(spec: RpcSpec) -> NoDeviceError:
    return NoDeviceError(f"every device of key {spec.key!r} at {spec.tracker} stopped answering: the records "
                         "measured so far are kept; start a device and run the same command again to continue")


def open_session(spec: RpcSpec, wait_s: float):
    """An RPC session on a free device of the key, waiting at most `wait_s` for one to be free."""
    return connect_device(spec, *request_device(spec, wait_s))


def request_device(spec: RpcSpec, wait_s: float) -> tuple[str, int, str]:
    """The tracker's answer for a free device of the key: its host, port and one-time match key."""
    count_devices(spec)  # the tracker would queue a request for an unknown key forever
    deadline = time.monotonic() + wait_s
    try:
        with _tracker_socket(spec) as sock:
            rpc_base.sendjson(sock, [rpc_base.TrackerCode.REQUEST, spec.key, "", 1])
            # A request queued for a device that then dies is never answered: while waiting, check that
            # the key still has a device, so losing the last one is said at once, not after `wait_s`.
            while not select.select([sock], [], [], min(DEVICE_POLL_S, wait_s))[0]:
                if registered_keys(spec).get(spec.key, 0) == 0:
                    raise every_device_gone(spec)
                if time.monotonic() >= deadline:
                    raise TimeoutError
            code, (host, port, match_key) = rpc_base.recvjson(sock)
    except TimeoutError as e:
        raise FarmError(f"no device of key {spec.key!r} at {spec.tracker} became free within {wait_s:.0f} s "
                        "(all busy with other clients, or hung)") from e
    except (OSError, json.JSONDecodeError, struct.error, ValueError) as e:
        raise _unreachable(spec, e) from e
    if code != rpc_base.TrackerCode.SUCCESS:
        raise FarmError(f"the RPC tracker at {spec.tracker} refused a device of key {spec.key!r}")
    return host, port, match_key


def connect_device(spec: RpcSpec, host: str, port: int, match_key: str):
    """TVM's rpc.connect, given spec.handshake_timeout_s to answer (its own wait has no deadline).

    A device that does not answer raises DeviceUnresponsiveError: the caller measures elsewhere,
    and a tracker gone meanwhile is then found at once. The connect that never returns is left in
    a daemon thread: its process is a pool worker that the runner stops at the end of the run.
    """
    from tvm import rpc

    outcome: dict[str, object] = {}

    def connect() -> None:
        try:
            outcome["session"] = rpc.connect(host, port, match_key, session_timeout=spec.session_timeout_s)
        except Exception as e:  # re-raised on the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=connect, name=f"rpc-connect-{host}:{port}", daemon=True)
    thread.start()
    thread.join(spec.handshake_timeout_s)
    if "error" in outcome:
        raise outcome["error"]
    if "session" not in outcome:
        raise DeviceUnresponsiveError(
            f"the device of key {spec.key!r} at {host}:{port} did not answer its RPC handshake within "
            f"{spec.handshake_timeout_s:g} s (its server lost the tracker, or hangs)")
    return outcome["session"]


def usable_devices(spec: RpcSpec) -> int:
    """Devices of the key a run measures on at once: all the tracker has, or at most spec.max_devices."""
    count = count_devices(spec)
    return min(count, spec.max_devices or count)


def describe_device(spec: RpcSpec) -> Device:
    """Ask one device of the farm for its CPU (LLVM's name for it) and TVM thread count; the farm
    is meant to be identical machines, so one speaks for all."""
    count = usable_devices(spec)
    try:
        session = open_session(spec, wait_s=spec.session_timeout_s)
    except DeviceUnresponsiveError as e:
        raise FarmError(f"{e}: restart it, or check the tracker at {spec.tracker}") from e
    try:
        cpu = session.get_function("target.llvm_get_system_cpu")()
        threads = session.get_function("runtime.NumThreads")()
    except Exception as e:  # a runtime-only RPC server (e.g. a phone's) has no LLVM to ask
        raise FarmError(f"a device of key {spec.key!r} cannot say which CPU it has ({e}): "
                        "pass --mcpu and --num-cores for it") from e
    finally:
        del session  # the session closes when its last reference goes
    return Device(str(cpu), int(threads), count)


# How one measurement ended (`_measure`): measured costs; a failure of the candidate that becomes its record
# (a session timeout: too slow; an error of the candidate's run on two devices in a row); a FarmError that
# stops the run; or an error that says nothing about the candidate (a broken call, e.g. after a TVM
# upgrade): that stops the run too, so that no failure it did not measure is stored as the candidate's.
MEASURED, CANDIDATE_FAILED, FARM_FAILED, BROKEN = "measured", "candidate failed", "farm failed", "broken"


@dataclass(frozen=True)
class Outcome:
    kind: str
    costs: list[float] | None = None
    error: str = ""  # why it failed (the record's error message, or the run's)
    device_failed: bool = False  # a device stopped answering on the way (the runner follows the farm)
    farm_error: FarmError | None = None


# Errors of Python code that cannot be the candidate's: a call TVM does not accept (e.g. after an upgrade).
CALL_ERRORS = (TypeError, AttributeError, NameError, ImportError, LookupError, ValueError, NotImplementedError,
               AssertionError)
# Errors of a session on a device (TVM's runtime errors, a lost connection): the device stopped answering or
# died (a killed device's session once ended in InternalError "code == RPCCode::kReturn"), or the candidate's
# run raised or crashed it. The two cannot be told apart from here; a repeat on another device can.
SESSION_ERRORS = (RuntimeError, OSError, EOFError)
ATTEMPTS = 4  # devices one measurement may try before the farm counts as unable to measure


class _NoSession(Exception):
    """No session could be opened on the device the tracker handed out: it is gone, not the candidate."""


def _measure(spec: RpcSpec, evaluator: ms.runner.EvaluatorConfig, artifact_path: str, device_type: str,
             args_info: tuple) -> Outcome:
    """In a pool worker: measure one candidate on a free device, with TVM's public steps of an RPC
    measurement. A device that cannot be reached is replaced by another; a session that fails during the
    candidate's measurement is repeated once on another device, and a second failure is the candidate's.
    Returns, never raises (the pool would replace an error's sentence with its traceback)."""
    device_failed, failed_sessions = False, 0
    for _ in range(ATTEMPTS):
        try:
            return Outcome(MEASURED, costs=_measure_once(spec, evaluator, artifact_path, device_type, args_info),
                           device_failed=device_failed)
        except FarmError as e:
            return Outcome(FARM_FAILED, error=str(e), device_failed=device_failed, farm_error=e)
        except _NoSession:
            device_failed = True
        except tvm_error.RPCSessionTimeoutError as e:  # too slow: slow again elsewhere
            return Outcome(CANDIDATE_FAILED, error=f"farm: {e}", device_failed=device_failed)
        except CALL_ERRORS as e:  # not a failure of the candidate: stop the run, store nothing
            return Outcome(BROKEN, error=f"{type(e).__name__}: {e}", device_failed=device_failed)
        except SESSION_ERRORS as e:
            device_failed, failed_sessions = True, failed_sessions + 1
            if failed_sessions == 2:
                return Outcome(CANDIDATE_FAILED, error=f"farm: its run failed on two devices: {e}",
                               device_failed=True)
        except Exception as e:  # not a failure of the candidate: stop the run, store nothing
            return Outcome(BROKEN, error=f"{type(e).__name__}: {e}", device_failed=device_failed)
    error = FarmError(f"no device of key {spec.key!r} at {spec.tracker} could take a measurement in {ATTEMPTS} "
                      "attempts: the records measured so far are kept")
    return Outcome(FARM_FAILED, error=str(error), device_failed=True, farm_error=error)


def _measure_once(spec: RpcSpec, evaluator: ms.runner.EvaluatorConfig, artifact_path: str, device_type: str,
                  args_info: tuple) -> list[float]:
    """Upload the candidate to a free device of the farm, allocate its arguments and time it there."""
    try:
        session = open_session(spec, wait_s=spec.session_timeout_s)
    except FarmError:
        raise
    except Exception as e:  # whatever the connect raised, no candidate ran: at worst the run ends unmeasured
        raise _NoSession(f"{type(e).__name__}: {e}") from e
    remote_path = None
    try:
        device = session.device(device_type, 0)
        remote_path = os.path.basename(artifact_path)
        module = rpc_runner.default_upload_module(session, artifact_path, remote_path)
        args = rpc_runner.default_alloc_argument(session, device, args_info, 1)
        return rpc_runner.default_run_evaluator(session, module, device, evaluator, args)
    finally:
        with contextlib.suppress(*SESSION_ERRORS):  # a session that is gone has nothing left to clean
            rpc_runner.default_cleanup(session, remote_path)


@derived_object
class _FarmFuture(ms.runner.PyRunnerFuture):
    def __init__(self, runner: FarmRunner, future, measurement: tuple) -> None:
        super().__init__()
        self.runner = runner
        self.future = future
        self.measurement = measurement  # _measure's arguments: measured again if its device went meanwhile

    def done(self) -> bool:
        return self.future.done()

    def result(self) -> ms.runner.RunnerResult:
        while True:
            try:
                outcome = self.future.result()
            except TimeoutError as e:
                raise self.runner.fail(FarmError(
                    f"a measurement on the farm at {self.runner.spec.tracker} did not end within its "
                    f"{self.runner.pool_timeout_s:.0f} s: the records measured so far are kept")) from e
            except Exception as e:  # the pool's worker died: nothing was measured
                raise self.runner.fail(self.runner.broken(f"{type(e).__name__}: {e}")) from e
            if outcome.kind == FARM_FAILED and isinstance(outcome.farm_error, NoDeviceError):
                # The last device went while this measurement waited; fails the run unless one came back.
                self.runner.check_devices()
                self.future = self.runner.pool.submit(_measure, *self.measurement)
                continue
            if outcome.kind == FARM_FAILED:
                raise self.runner.fail(outcome.farm_error)
            if outcome.kind == BROKEN:
                raise self.runner.fail(self.runner.broken(outcome.error))
            if outcome.device_failed:
                self.runner.check_devices()
            if outcome.kind == CANDIDATE_FAILED:
                return ms.runner.RunnerResult(None, error_msg=outcome.error)
            return ms.runner.RunnerResult(outcome.costs, None)


@derived_object
class FarmRunner(ms.runner.PyRunner):
    """MetaSchedule runner measuring on every device of a key at once (at most spec.max_devices)."""

    def __init__(self, spec: RpcSpec, evaluator: ms.runner.EvaluatorConfig, progress: tqdm | None = None,
                 terminal: TextIO | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.evaluator = evaluator
        self.progress = progress
        self.terminal = terminal  # where the user reads (the tuner sends fd 2 to its log file meanwhile)
        self.base_description = getattr(progress, "desc", "")  # a disabled bar has none
        self.failure: FarmError | None = None
        self.in_use = usable_devices(spec)
        # One worker per device; a worker whose device is gone queues at the tracker for another.
        self.pool_size = self.in_use
        self.pool_timeout_s = 3 * spec.session_timeout_s + 30
        self.pool = PopenPoolExecutor(max_workers=self.pool_size, timeout=self.pool_timeout_s)
        self.measuring_s = 0.0  # wall time with a batch on the farm: what more devices can shorten
        self._lock = threading.Lock()
        self._show()

    def _show(self) -> None:
        if self.progress is not None and not self.progress.disable:
            self.progress.set_description_str(
                f"{self.base_description}, {self.in_use} device{'s' if self.in_use > 1 else ''} measuring")

    def fail(self, error: FarmError) -> FarmError:
        """Remember why the farm cannot go on; the caller raises it through MetaSchedule's C++."""
        self.failure = error
        return error

    def broken(self, error: str) -> FarmError:
        return FarmError(f"measuring on the farm failed in a way that says nothing about the candidate ({error}): "
                         "the run stops so that no failure it did not measure is stored as a record (the "
                         "records measured so far are kept); is TVM the version pyproject.toml pins?")

    def check_devices(self) -> None:
        """Follow the devices the tracker still has; say once when fewer measure, fail when none."""
        try:
            usable = min(usable_devices(self.spec), self.pool_size)
        except NoDeviceError:
            raise self.fail(every_device_gone(self.spec)) from None
        except FarmError as e:
            raise self.fail(e) from None
        if usable < self.in_use:
            tqdm.write(f"farm: {self.in_use - usable} device(s) of key {self.spec.key!r} stopped answering; "
                       f"going on with {usable} (a measurement in flight on a lost device is repeated on "
                       "another)", file=self.terminal or sys.stderr)
        if usable != self.in_use:
            self.in_use = usable
            self._show()

    def run(self, runner_inputs: list[ms.runner.RunnerInput]) -> list[ms.runner.RunnerFuture]:
        self.check_devices()
        start = time.monotonic()
        measurements = [(self.spec, self.evaluator, str(inp.artifact_path), str(inp.device_type),
                         tuple(arg.as_json() for arg in inp.args_info)) for inp in runner_inputs]
        futures = [self.pool.submit(_measure, *m) for m in measurements]
        pending = [len(futures)]

        def finished(_future) -> None:
            with self._lock:
                pending[0] -= 1
                if pending[0] == 0:
                    self.measuring_s += time.monotonic() - start

        for future in futures:
            future.add_done_callback(finished)
        return [_FarmFuture(self, future, m) for future, m in zip(futures, measurements, strict=True)]

    def close(self) -> None:
        """Stop the pool's worker processes (a measurement still running is abandoned)."""
        self.pool.shutdown(wait=True)
        log.info("farm: batches were on the devices for %.1f s in all", self.measuring_s,
                 extra={"measuring_s": self.measuring_s})  # the figure itself, for benchmark/farm_scale.py

"""A farm on this machine: a TVM RPC tracker and N RPC servers on 127.0.0.1, each pinned to its own core.

`./nox -s farm` runs one until Ctrl-C; the scale measurement (benchmark/farm_scale.py) and the tests start
their own. On other machines, one device is `python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .errors import FarmError
from .farm import RpcSpec, registered_keys

START_TIMEOUT_S = 120  # a server imports all of TVM before it registers: ~5 s idle, more on a busy box


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(condition: Callable[[], bool], what: str, proc: subprocess.Popen | None = None) -> None:
    """Start-up: until the tracker or the servers are up (they write no other signal), START_TIMEOUT_S at most."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise FarmError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise FarmError(f"timed out after {START_TIMEOUT_S} s waiting for {what}")
        time.sleep(0.2)  # the interval between looks, not a synchronisation delay


class LocalFarm:
    """Context manager; every process it starts is killed (with its session children) on exit."""

    def __init__(self, devices: int, key: str = "local-cpu", threads: int = 1, pin: bool = True,
                 port: int | None = None, log_dir: Path | None = None) -> None:
        self.devices = devices
        self.key = key
        self.threads = threads
        self.pin = pin
        self.port = port
        self._own_logs = log_dir is None
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="selfie-farm-"))
        self.tracker_proc: subprocess.Popen | None = None
        self.servers: list[subprocess.Popen] = []

    @property
    def spec(self) -> RpcSpec:
        return RpcSpec("127.0.0.1", self.port, self.key)

    @property
    def tracker(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, args: list[str], log: Path, env: dict[str, str], prefix: list[str]) -> subprocess.Popen:
        with log.open("w") as out:
            return subprocess.Popen([*prefix, sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)

    def __enter__(self) -> LocalFarm:
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        start = self.port or _free_port()
        log = self.log_dir / "tracker.log"
        self.tracker_proc = self._start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(start),
                                         "--port-end", str(start + 50)], log, dict(os.environ), [])
        bound = re.compile(r"bind to 127\.0\.0\.1:(\d+)")
        _wait_until(lambda: bound.search(log.read_text()) is not None, "the RPC tracker", self.tracker_proc)
        self.port = int(bound.search(log.read_text()).group(1))
        cores = sorted(os.sched_getaffinity(0))
        for i in range(self.devices):
            env = {**os.environ, "TVM_NUM_THREADS": str(self.threads)}
            first = _free_port()
            pin = ["taskset", "-c", str(cores[i % len(cores)])] if self.pin else []
            self.servers.append(self._start(
                ["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(first), "--port-end", str(first + 100),
                 "--tracker", self.tracker, "--key", self.key], self.log_dir / f"server{i}.log", env, pin))
        _wait_until(lambda: registered_keys(self.spec).get(self.key, 0) == self.devices,
                    f"{self.devices} RPC servers to register")

    def kill_device(self, device: int) -> None:
        _kill(self.servers[device])

    def kill_tracker(self) -> None:
        _kill(self.tracker_proc)

    def stop(self) -> None:
        for proc in [*self.servers, self.tracker_proc]:
            if proc is not None:
                _kill(proc)
        if self._own_logs:
            for f in self.log_dir.iterdir():
                f.unlink()
            self.log_dir.rmdir()

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process and its session children (a device that dies, not one that shuts down)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run a tracker and N RPC servers on 127.0.0.1 until Ctrl-C.")
    p.add_argument("--devices", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--key", default="local-cpu")
    p.add_argument("--port", type=int, default=9190)
    p.add_argument("--threads", type=int, default=1, help="TVM threads per device")
    args = p.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # sigwait takes them instead
    with LocalFarm(args.devices, args.key, args.threads, port=args.port) as farm:
        print(f"tracker 127.0.0.1:{farm.port}, {args.devices} devices of key {args.key!r} "
              f"(logs in {farm.log_dir}); tune with `selfie-tvm tune --rpc-tracker {farm.tracker} "
              f"--rpc-key {args.key}`; Ctrl-C stops them", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())

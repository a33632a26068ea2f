"""What the farm and tuning tests wait on: a condition with a deadline, and what a local device's log says."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

from tuning.local_farm import LocalFarm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
             proc: subprocess.Popen | None = None, interval_s: float = 0.2) -> None:
    """Until `condition()` holds; AssertionError after `timeout_s`, or at once when `proc` exits first. Each
    look is cheap (a file's length, a small file), so looking every `interval_s` takes no CPU a run needs."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)  # the interval between looks, not a synchronisation delay


def _server_log(farm: LocalFarm, device: int) -> str:
    return (farm.log_dir / f"server{device}.log").read_text()


def sessions_started(farm: LocalFarm, device: int) -> int:
    """Measurement sessions a device of a local farm has begun (TVM's server logs each one)."""
    return _server_log(farm, device).count("start serving")


def sessions_in_progress(farm: LocalFarm, device: int) -> int:
    """Sessions a device has begun and not yet finished: a measurement in flight."""
    text = _server_log(farm, device)
    return text.count("start serving") - text.count("finish serving")

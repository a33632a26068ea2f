"""The farm recipe of docs/tuning.md, run as written: the same key names on both sides, so the documented
commands find each other (they once started devices of key `local-cpu` and tuned with `--rpc-key farm`).

Only the port (a free one instead of 9190, which another run may hold) and the model (a tiny one, with a
budget of one batch, instead of the twin's hours) are changed.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import pytest

from runtime.settings import PROJECT_ROOT

from .markdown_commands import marked_block
from .tiny_models import tiny_segmenter

DOCUMENTED_PORT = "9190"
CLI = "import sys; from runtime.cli import main; sys.exit(main())"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nox_farm_runs_the_local_farm_with_the_arguments_after_the_double_dash():
    """What lets the test run `./nox -s farm -- ARGS` as `python -m tuning.local_farm ARGS`."""
    noxfile = (PROJECT_ROOT / "noxfile.py").read_text()
    assert re.search(r'def farm\(session[^\n]*\n(?:.*\n)*?\s+session\.run\("python", "-m", "tuning\.local_farm", '
                     r'\*session\.posargs', noxfile)


@pytest.mark.slow
def test_the_documented_farm_recipe_tunes_on_the_farm(tmp_path):
    farm_command, tune_command = marked_block(PROJECT_ROOT / "docs" / "tuning.md", "farm recipe")
    assert farm_command[:4] == ["./nox", "-s", "farm", "--"]
    assert tune_command[:2] == ["selfie-tvm", "tune"]
    port = str(_free_port())
    tracker = f"127.0.0.1:{DOCUMENTED_PORT}"
    assert tracker in tune_command  # the farm's default address, which the docs' tune command must name
    tune_args = [a.replace(tracker, f"127.0.0.1:{port}") for a in tune_command[2:]]
    model = tune_args.index("--model")
    tune_args[model:model + 2] = ["--model-path", str(tiny_segmenter(tmp_path / "tiny.tflite").path)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TVM_NUM_THREADS": "2",
           "SELFIE_TVM_RESULTS_DIR": str(tmp_path / "results"), "SELFIE_TVM_BUILD_DIR": str(tmp_path / "build"),
           "SELFIE_TVM_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(PROJECT_ROOT)}
    farm = subprocess.Popen([sys.executable, "-m", "tuning.local_farm", *farm_command[4:], "--port", port],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        ready = farm.stdout.readline()  # printed once the devices are registered (or EOF if it failed)
        assert f"tracker 127.0.0.1:{port}" in ready, ready + farm.stdout.read() if farm.poll() is not None else ready
        done = subprocess.run(
            [sys.executable, "-c", CLI, "tune", *tune_args, "--only", "fused_conv2d_add_relu", "--budget", "4",
             "--per-iter", "4", "--search", "small", "--work-dir", str(tmp_path / "records"),
             "--out", str(tmp_path / "lib")],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=480)  # under the test's deadline
    finally:
        farm.send_signal(signal.SIGTERM)
        farm.wait(timeout=60)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    key = farm_command[farm_command.index("--key") + 1]
    assert f"RPC devices of key {key!r} at 127.0.0.1:{port}" in done.stdout, done.stdout[-3000:]
    assert (tmp_path / "lib" / "tuned.so").is_file()

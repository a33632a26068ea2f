"""Project tasks. Every session installs what it needs; run them through ./nox on a fresh machine."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
SHARED_MODELS = ROOT.parent / "shared" / "models"
PYTHON = "3.11"

nox.options.reuse_existing_virtualenvs = True
# uv builds a session's virtualenv in seconds from its cache (./nox installs it beside nox); plain virtualenv
# and pip when nox runs without it.
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]


def _env() -> dict[str, str]:
    """Point the project at the real MediaPipe models beside the checkout when they are there."""
    env = {"TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS", str(os.cpu_count() or 1))}
    if "SELFIE_TVM_MODELS_DIR" not in os.environ and SHARED_MODELS.is_dir():
        env["SELFIE_TVM_MODELS_DIR"] = str(SHARED_MODELS)
    return env


def _required(*names: str) -> list[str]:
    """These packages as pyproject.toml requires them (their versions stay in one place)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    by_name = {re.match(r"[A-Za-z0-9_.-]+", spec).group(0).lower(): spec for spec in specs}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ValueError(f"pyproject.toml does not require {', '.join(missing)}")
    return [by_name[name] for name in names]


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite, as CI runs it. Without arguments: every test but the `serial` ones on all cores
    (pytest-xdist, one file per worker at a time, so a file's fixtures are built once), then the serial ones
    alone (they time threads). Arguments go to one plain pytest run: `./nox -s tests -- tests/test_bot.py`."""
    session.install("-e", ".[tune,benchmark,bot,dev,load]")
    if session.posargs:
        session.run("pytest", *session.posargs, env=_env())
        return
    # Every usable CPU (xdist's `auto` counts physical cores: 1 on a VM of 2 hyperthreads); files in the order
    # tests/conftest.py sorts them (slow ones first), not by their number of tests.
    cpus = str(len(os.sched_getaffinity(0)))
    session.run("pytest", "--numprocesses", cpus, "--dist", "loadfile", "--no-loadscope-reorder", "-m", "not serial",
                env=_env())
    session.run("pytest", "-m", "serial", env=_env())


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Segment a real portrait (scikit-image's astronaut) with the LiteRT baseline."""
    session.install("-e", ".[dev]")
    out = ROOT / "results" / "demo"
    photo = out / "astronaut.png"
    session.run("python", "-c", "from pathlib import Path; from skimage import data; from PIL import Image; "
                f"Path({str(out)!r}).mkdir(parents=True, exist_ok=True); "
                f"Image.fromarray(data.astronaut()).save({str(photo)!r})")
    model = session.posargs[0] if session.posargs else "selfie_segmenter"
    session.run("selfie-tvm", "segment", str(photo), "--model", model, "--out", str(out), env=_env())


@nox.session(python=PYTHON)
def tune(session: nox.Session) -> None:
    """Tune a model (default: the twin) and export default.so and tuned.so.

    Arguments after -- go to `selfie-tvm tune`, e.g. `./nox -s tune -- --budget 500`,
    `--model selfie_segmenter`, `--mcpu znver3`, `--rpc-tracker host:port --rpc-key K`.
    """
    session.install("-e", ".[tune]")
    session.run("selfie-tvm", "tune", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def farm(session: nox.Session) -> None:
    """A tuning farm on this machine until Ctrl-C: a TVM RPC tracker on 127.0.0.1:9190 and one RPC
    server per core (each pinned to it, one TVM thread), key `local-cpu`.

    `./nox -s farm -- --devices 2 --key mykey --port 9190 --threads 1`; then
    `selfie-tvm tune --rpc-tracker 127.0.0.1:9190 --rpc-key local-cpu`.
    """
    session.install("-e", ".[tune]")
    session.run("python", "-m", "tuning.local_farm", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def benchmark(session: nox.Session) -> None:
    """Build what is missing, benchmark LiteRT vs TVM default vs TVM tuned, write the report.

    Options (defined once, in benchmark/options.py; `./nox -s benchmark -- --help` lists them):
    `./nox -s benchmark -- --model selfie_segmenter --engines litert,tvm-tuned --threads 1,2 --runs 30`,
    `--full` for the long protocol; other arguments go to pytest, e.g. `--benchmark-compare`.
    """
    session.install("-e", ".[tune,benchmark]")
    session.run("python", "-m", "benchmark", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def leaderboard(session: nox.Session) -> None:
    """Benchmark every registry model available here, then results/leaderboard.md (`python -m benchmark --model all`).

    Never tunes: the tuned module is built from whatever records exist for this CPU's ISA level. Options as for
    `benchmark`, e.g. `./nox -s leaderboard -- --runs 30 --threads 1,2`; `python -m benchmark.leaderboard`
    renders it again from the saved runs without measuring.
    """
    session.install("-e", ".[tune,benchmark]")
    session.run("python", "-m", "benchmark", "--model", "all", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """Photos per second at a p99 bound: MLPerf LoadGen's SingleStream, Offline and Server scenarios per engine
    and layout (instances x threads), into results/<model>/<target>/throughput.md and the model's report.

    `./nox -s load -- --model selfie_segmenter --engines litert,tvm-tuned --layouts 1x2,2x1`, `--p99-bound-ms 50`,
    `--bot` (the bot's model, layout and reply); `./nox -s load -- --help` lists the options (benchmark/load/).
    """
    session.install("-e", ".[benchmark,load]")
    session.run("python", "-m", "benchmark.load", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def gallery(session: nox.Session) -> None:
    """The README's gallery in results/gallery/: overlay, hair colour, background (real photos, real models), latency.

    `./nox -s gallery -- --width 512`.
    """
    session.install("-e", ".[dev]")
    session.run("python", "-m", "benchmark.gallery", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def bot(session: nox.Session) -> None:
    """Run the Telegram bot locally (TELEGRAM_BOT_TOKEN in .env or the environment)."""
    session.install("-e", ".[bot]")
    session.run("python", "-m", "bot", env=_env())


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs.yml) into site/ in strict mode: a broken link or a missing
    page fails. The settings table is generated from the settings classes as it builds (docs/hooks.py).
    `./nox -s docs -- serve` previews it instead."""
    session.install("-e", ".[docs]")
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
        return
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"), *session.posargs)


@nox.session(python=PYTHON)
def container(session: nox.Session) -> None:
    """Build the bot's Docker image with podman and check it (root; installs podman when missing).

    Runs the image's filesystem as its USER with chroot against the tests' fake Bot API server:
    /start, a /segmentation photo answered with the TVM engines present, graceful stop on SIGTERM.
    `./nox -s container -- --no-build` checks the image built last time.
    """
    # The bot runs inside the image; this side only serves the fake Bot API (tests/fake_telegram.py)
    # and sends a photo: not the project with its TVM and LiteRT wheels (a minute of a clean CI run).
    session.install(*_required("aiohttp", "pillow", "scikit-image"))
    session.run("python", ".ci/container_check.py", *session.posargs)

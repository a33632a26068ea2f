from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from .reference_graph import REFERENCE as SHARED_REFERENCE

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
# The real MediaPipe files the suite runs on (the main model itself cannot be downloaded here).
REAL_MODELS = ("selfie_segmenter", "selfie_segmenter_landscape", "deeplab_v3", "hair_segmentation")
# Skips CI accepts: reason -> why. Empty: in CI every test runs.
ALLOWED_CI_SKIPS: dict[str, str] = {}
# No test may hang CI (pytest-timeout): the slowest take about 2 min on a busy 2-core host; a test that
# needs another deadline says so with @pytest.mark.timeout(seconds). Tests of benchmark/ are not limited.
TEST_TIMEOUT_S = 600


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def models_dir() -> Path:
    return Path(os.environ.get("SELFIE_TVM_MODELS_DIR", SHARED_MODELS))


def missing_shared_files() -> list[str]:
    missing = [str(models_dir() / f"{name}.tflite") for name in REAL_MODELS
               if not (models_dir() / f"{name}.tflite").is_file()]
    if not SHARED_REFERENCE.is_file():
        missing.append(str(SHARED_REFERENCE))
    return missing


def pytest_configure(config):
    # Point the project at the real MediaPipe models beside the checkout (never copied into git)
    # and keep generated/downloaded files of the test run out of the user's cache.
    if "SELFIE_TVM_MODELS_DIR" not in os.environ and SHARED_MODELS.is_dir():
        os.environ["SELFIE_TVM_MODELS_DIR"] = str(SHARED_MODELS)
    cache = Path(config.rootpath) / ".pytest_cache"
    os.environ.setdefault("SELFIE_TVM_CACHE_DIR", str(cache / "models"))
    os.environ.setdefault("SELFIE_TVM_BUILD_DIR", str(cache / "tvm_model"))
    # A pytest-xdist worker inherits these from the controller: each takes a directory of its own, so two
    # workers never build or write the same file at once.
    if worker := os.environ.get("PYTEST_XDIST_WORKER"):
        for name in ("SELFIE_TVM_CACHE_DIR", "SELFIE_TVM_BUILD_DIR"):
            os.environ[name] = f"{os.environ[name]}-{worker}"
    if in_ci() and (missing := missing_shared_files()):
        raise pytest.UsageError(
            "CI=true but the real models and reference graph are missing: " + ", ".join(missing)
            + ". Put the shared/ directory (models/, reference/) beside the checkout, or point "
            "SELFIE_TVM_MODELS_DIR at the models; outside CI those tests are skipped instead.")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))
    # Files with slow tests first (a stable sort: each file's tests keep their order): pytest-xdist hands out
    # whole files in this order, so the long ones start early instead of leaving one core busy at the end.
    has_slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in has_slow)


def pytest_sessionfinish(session, exitstatus):
    """In CI a skip is a failure, unless its reason is listed in ALLOWED_CI_SKIPS."""
    if not in_ci():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    unexpected = [r for r in skipped if not any(reason in str(r.longrepr) for reason in ALLOWED_CI_SKIPS)]
    if unexpected:
        reporter.write_line(f"CI=true: {len(unexpected)} test(s) skipped without an allowed reason "
                            "(tests/conftest.py ALLOWED_CI_SKIPS); failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _need(path: Path, missing: str) -> Path:
    """A file from ../shared: skipped when absent on a developer machine, a failure in CI."""
    if not path.is_file():
        if in_ci():
            pytest.fail(f"CI=true: {missing}", pytrace=False)
        pytest.skip(missing)
    return path


def need_model(name: str) -> Path:
    """A real model file (SELFIE_TVM_MODELS_DIR, ../shared/models by default)."""
    return _need(models_dir() / f"{name}.tflite", f"{name}.tflite is not in SELFIE_TVM_MODELS_DIR ({models_dir()})")


def need_reference() -> Path:
    """The real model's graph as TVM printed it (../shared/reference)."""
    return _need(SHARED_REFERENCE, f"{SHARED_REFERENCE} is not beside the checkout")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def grace_hopper_path() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def grace_hopper(grace_hopper_path) -> np.ndarray:
    from runtime.images import load_image

    return load_image(grace_hopper_path)


@pytest.fixture(scope="session")
def twin():
    from runtime.acquire import resolve_model

    return resolve_model("selfie_multiclass_twin")

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def pytest_configure(config):
    # Point the project at the real MediaPipe models beside the checkout (never copied into git)
    # and keep generated/downloaded files of the test run out of the user's cache.
    if "SELFIE_TVM_MODELS_DIR" not in os.environ and SHARED_MODELS.is_dir():
        os.environ["SELFIE_TVM_MODELS_DIR"] = str(SHARED_MODELS)
    os.environ.setdefault("SELFIE_TVM_CACHE_DIR", str(Path(config.rootpath) / ".pytest_cache" / "models"))
    os.environ.setdefault("SELFIE_TVM_BUILD_DIR", str(Path(config.rootpath) / ".pytest_cache" / "tvm_model"))


def need_model(name: str) -> Path:
    path = Path(os.environ.get("SELFIE_TVM_MODELS_DIR", SHARED_MODELS)) / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(f"{name}.tflite is not in SELFIE_TVM_MODELS_DIR")
    return path


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

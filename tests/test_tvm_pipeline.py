"""TVM import (custom ops included), default builds, agreement with LiteRT, exported libraries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.acquire import resolve_model
from runtime.engines import create_engine
from runtime.errors import EngineError
from runtime.processing import category_mask, preprocess, to_probabilities
from runtime.target import SEED_TRIPLE, host_target
from tuning.build import export
from tuning.importer import UnsupportedOperatorError, import_tflite

from .conftest import REAL_MODELS, need_model
from .tiny_models import tiny_segmenter


@pytest.fixture(scope="module")
def target():
    return host_target()


@pytest.fixture(scope="module")
def libraries(tmp_path_factory, target):
    """Lazily built default libraries, one per model, shared by the module's tests."""
    built = {}

    def get(name: str):
        if name not in built:
            if name != "selfie_multiclass_twin":
                need_model(name)
            model = resolve_model(name)
            out = tmp_path_factory.mktemp(name)
            export(model, target, "default", out_root=out)
            built[name] = (model, out)
        return built[name]

    return get


def _agreement(model, engine, inputs):
    litert = create_engine("litert", model, threads=2)
    for x in inputs:
        p_tvm = to_probabilities(engine.run(x), model.spec)
        p_ref = to_probabilities(litert.run(x), model.spec)
        yield np.abs(p_tvm - p_ref).max(), (category_mask(p_tvm) == category_mask(p_ref)).mean()


@pytest.mark.parametrize("name", REAL_MODELS)
def test_real_models_match_litert_on_real_photos(name, libraries, target, astronaut, grace_hopper):
    model, out = libraries(name)
    engine = create_engine("tvm-default", model, threads=2, target=target, build_root=out)
    inputs = [preprocess(photo, model.spec) for photo in (astronaut, grace_hopper)]
    for max_diff, equal in _agreement(model, engine, inputs):
        assert max_diff <= 1e-4
        assert equal >= 0.999


def test_twin_matches_litert_on_synthetic_input(libraries, target):
    model, out = libraries("selfie_multiclass_twin")
    engine = create_engine("tvm-default", model, threads=2, target=target, build_root=out)
    x = np.random.default_rng(1).random((1, 256, 256, 3), dtype=np.float32)
    ((max_diff, equal),) = _agreement(model, engine, [x])
    assert max_diff <= 1e-4 and equal >= 0.999


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory, target):
    """The tiny generated model and its default library: for tests that need no real model."""
    work = tmp_path_factory.mktemp("tiny")
    model = tiny_segmenter(work / "tiny.tflite")
    export(model, target, "default", out_root=work / "lib")
    return model, work / "lib"


def test_reloaded_library_gives_the_same_output(tiny_library, target):
    model, out = tiny_library
    x = np.random.default_rng(2).random((1, 32, 32, 3), dtype=np.float32)
    first = create_engine("tvm-default", model, threads=1, target=target, build_root=out).run(x)
    second = create_engine("tvm-default", model, threads=2, target=target, build_root=out).run(x)
    assert first.shape == (1, 32, 32, 3) and np.abs(first).max() > 0
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_metadata_records_model_target_and_version(tiny_library, target):
    model, out = tiny_library
    meta = json.loads((out / "default.json").read_text())
    assert meta["model"] == "tiny" and meta["model_sha256"] == model.sha256()
    assert meta["target"]["id"] == target.id and meta["target"]["mtriple"] == SEED_TRIPLE
    assert meta["tvm_version"].startswith("0.27")


def test_library_for_another_model_is_refused(tiny_library, target, tmp_path):
    _, out = tiny_library
    other = tiny_segmenter(tmp_path / "other.tflite", seed=8)  # same name and graph, other weights
    with pytest.raises(EngineError, match="built from tiny .*rebuild it with `selfie-tvm compile`"):
        create_engine("tvm-default", other, threads=1, target=target, library=out / "default.so")


def test_library_for_another_target_is_refused(tiny_library):
    model, out = tiny_library
    with pytest.raises(EngineError, match="built for target"):
        create_engine("tvm-default", model, threads=1, target=host_target(mcpu="haswell"), build_root=out)


def test_missing_library_says_how_to_build_it(target, tmp_path):
    model = resolve_model("selfie_multiclass_twin")
    with pytest.raises(EngineError, match="selfie-tvm compile --model selfie_multiclass_twin --tuned"):
        create_engine("tvm-tuned", model, threads=1, target=target, build_root=tmp_path)


def test_unsupported_operators_are_listed_with_counts(tmp_path):
    model = tiny_segmenter(tmp_path / "tiny.tflite", mystery_ops=3)
    with pytest.raises(UnsupportedOperatorError) as err:
        import_tflite(model.path, "tiny")
    assert "AnotherMysteryOp x1, MysteryOp x2" in str(err.value)


def test_target_detection_and_overrides():
    detected = host_target()
    assert detected.num_cores >= 1 and detected.mtriple == SEED_TRIPLE
    explicit = host_target(mcpu="skylake", num_cores=4, mtriple="x86_64-pc-linux-gnu")
    assert (explicit.mcpu, explicit.num_cores, explicit.mattr) == ("skylake", 4, ())
    tvm_target = explicit.to_tvm()
    assert tvm_target.attrs["mcpu"] == "skylake" and int(tvm_target.attrs["num-cores"]) == 4
    # the id describes the target, not the host it was named on
    assert host_target(mcpu="skylake-avx512", num_cores=8).id == "skylake-avx512-avx512-8c"
    assert host_target(mcpu="x86-64", num_cores=1).id == "x86-64-sse-1c"

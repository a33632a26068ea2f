"""A portable (x86-64-v3) library serves any AVX2 machine: the engine finds it when the host has no build of its own."""

from __future__ import annotations

import numpy as np

from runtime.engines import create_engine
from runtime.processing import preprocess, to_probabilities
from runtime.target import host_target, portable_target
from tuning.build import export

from .tiny_models import tiny_segmenter


def test_engine_uses_a_portable_build_when_the_host_has_none(tmp_path, monkeypatch, astronaut):
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "libs"))
    model = tiny_segmenter(tmp_path / "tiny.tflite")
    assert host_target().vector_isa in ("avx2", "avx512")  # what CI machines and the image's hosts have
    export(model, portable_target(), "default")
    engine = create_engine("tvm-default", model, 1)
    assert engine.metadata.target_spec == portable_target()
    assert engine.library.parent.name == portable_target().id
    x = preprocess(astronaut, model.spec)
    ours = to_probabilities(engine.run(x), model.spec)
    theirs = to_probabilities(create_engine("litert", model, 1).run(x), model.spec)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_a_portable_build_for_another_core_count_still_serves(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "libs"))
    model = tiny_segmenter(tmp_path / "tiny.tflite")
    other = host_target().num_cores + 5  # e.g. an image built on a bigger machine
    export(model, portable_target(other), "default")
    engine = create_engine("tvm-default", model, 1)
    assert engine.metadata.target_spec == portable_target(other)

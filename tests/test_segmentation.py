"""The LiteRT runtime on real MediaPipe models and real portraits."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.pipeline import load_segmenter

from .conftest import need_model


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


@pytest.fixture(scope="module")
def selfie():
    need_model("selfie_segmenter")
    return load_segmenter("selfie_segmenter", "litert", threads=2)


@pytest.fixture(scope="module")
def deeplab():
    need_model("deeplab_v3")
    return load_segmenter("deeplab_v3", "litert", threads=2)


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_person_masks_of_two_models_agree(selfie, deeplab, photo, request):
    rgb = request.getfixturevalue(photo)
    a = selfie.segment(rgb).person_confidence() > 0.5
    b = deeplab.segment(rgb).person_confidence() > 0.5
    assert 0.15 < a.mean() < 0.85  # a person, not everything or nothing
    assert iou(a, b) > 0.7  # measured: 0.76 astronaut (deeplab also takes the helmet), 0.9+ grace_hopper


def test_output_is_at_photo_size_and_normalised(selfie, grace_hopper):
    seg = selfie.segment(grace_hopper)
    assert seg.probabilities.shape == grace_hopper.shape[:2] + (2,)
    np.testing.assert_allclose(seg.probabilities.sum(-1), 1.0, atol=1e-5)
    assert seg.category_mask.shape == grace_hopper.shape[:2]
    assert seg.timings.inference_ms > 0


def test_multiclass_logits_get_softmax(twin, astronaut):
    seg = load_segmenter("selfie_multiclass_twin", "litert", threads=2).segment(astronaut)
    assert seg.probabilities.shape == (512, 512, 6)
    np.testing.assert_allclose(seg.probabilities.sum(-1), 1.0, atol=1e-5)
    assert seg.spec.synthetic_notice and "meaningless" in seg.spec.synthetic_notice


def test_hair_model_finds_hair_on_top_of_the_head(astronaut):
    need_model("hair_segmentation")
    seg = load_segmenter("hair_segmentation", "litert", threads=2).segment(astronaut)
    hair = seg.confidence("hair") > 0.5
    assert 0.01 < hair.mean() < 0.3
    rows = np.nonzero(hair.any(axis=1))[0]
    assert np.median(rows) < astronaut.shape[0] * 0.5  # hair is in the upper half of the portrait


def test_landscape_model_runs(grace_hopper):
    need_model("selfie_segmenter_landscape")
    seg = load_segmenter("selfie_segmenter_landscape", "litert").segment(grace_hopper)
    assert seg.probabilities.shape[:2] == grace_hopper.shape[:2]
    assert 0.15 < (seg.person_confidence() > 0.5).mean() < 0.85


def test_one_class_plane_equals_that_class_of_all_planes(deeplab, astronaut):
    """`confidence` resizes only the class asked for, to the same values as `probabilities` (every class);
    the person matte is the sum of the person classes' planes."""
    lazy, full = deeplab.segment(astronaut), deeplab.segment(astronaut)
    for name in ("background", "person", "dog"):
        plane = lazy.confidence(name)
        assert plane.shape == astronaut.shape[:2] and plane.dtype == np.float32
        np.testing.assert_array_equal(plane, full.probabilities[..., deeplab.spec.class_index(name)])
        np.testing.assert_array_equal(full.confidence(name), plane)  # from the planes already made
    person = [deeplab.spec.class_index(c) for c in deeplab.spec.person_classes]
    np.testing.assert_allclose(lazy.person_confidence(), np.clip(full.probabilities[..., person].sum(-1), 0, 1),
                               rtol=0, atol=1e-6)
    assert "probabilities" not in lazy.__dict__  # no photo-size plane of every class was made for those

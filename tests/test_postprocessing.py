"""The fast post-processing (runtime/processing.py) gives the masks of the straightforward one
(tests/reference_processing.py), which tests/test_mediapipe_parity.py showed equal to MediaPipe's:
the same category mask, pixel for pixel, and confidences within float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.pipeline import load_segmenter
from runtime.processing import activate, photo_category_mask, resize_probabilities
from runtime.registry import registry

from . import reference_processing as reference
from .conftest import REAL_MODELS, need_model
from .people_photos import people_photos

MAX_CONFIDENCE_DELTA = 1e-6
PHOTOS = people_photos()


@pytest.mark.parametrize("model", REAL_MODELS)
def test_real_model_masks_equal_the_reference(model):
    segmenter = load_segmenter(model, model_path=need_model(model))
    kind = segmenter.spec.output_kind
    for photo, rgb in PHOTOS.items():
        height, width = rgb.shape[:2]
        seg = segmenter.segment(rgb)
        expected = reference.photo_probabilities(seg.class_scores, kind, width, height)
        delta = float(np.abs(seg.probabilities - expected).max())
        assert delta <= MAX_CONFIDENCE_DELTA, f"{model} on {photo}: max |Δconfidence| {delta}"
        mask = seg.category_mask
        differing = int((mask != reference.photo_category_mask(seg.class_scores, width, height)).sum())
        assert differing == 0, f"{model} on {photo}: {differing} pixels of another class"
        assert len(np.unique(mask)) >= 2 or photo == "lfw_face", f"{model} on {photo}: one class only"


@pytest.mark.parametrize("size", [(600, 512), (97, 130), (3, 2), (33, 41)])
def test_ties_and_near_ties_follow_the_reference(size):
    """Scores from a few values (many exact ties), some nudged by a hair (near ties): the boundary pixels
    the fast path interpolates itself. Photo sizes above, below and equal to the model's."""
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 3, size=(33, 41, 6)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.1] += np.float32(1e-6)
    _assert_like_reference(scores, *size)


def test_one_ulp_leads_follow_the_reference():
    """Class 1 one float step ahead of class 0 at every model pixel: the interpolation's rounding puts
    class 0 ahead at some photo pixels, and the fast path must agree (it cannot take class 1 as given)."""
    base = np.random.default_rng(0).uniform(-10, 10, size=(40, 40, 1)).astype(np.float32)
    scores = np.concatenate([base, np.nextafter(base, np.float32(np.inf))], axis=-1)
    assert (reference.photo_category_mask(scores, 299, 301) == 0).any()  # rounding did flip some
    _assert_like_reference(scores, 301, 299)


def test_nan_scores_follow_the_reference():
    scores = np.random.default_rng(8).normal(size=(20, 30, 6)).astype(np.float32)
    scores[5, 7, 2] = np.nan
    _assert_like_reference(scores, 61, 45)


def _assert_like_reference(scores: np.ndarray, height: int, width: int) -> None:
    expected = reference.photo_category_mask(scores, width, height)
    np.testing.assert_array_equal(photo_category_mask(scores, width, height), expected)
    logits = registry().get("selfie_multiclass_twin")  # a model whose output is logits
    np.testing.assert_allclose(resize_probabilities(activate(scores, logits), width, height),
                               reference.photo_probabilities(scores, "logits", width, height),
                               atol=MAX_CONFIDENCE_DELTA, rtol=0, equal_nan=True)

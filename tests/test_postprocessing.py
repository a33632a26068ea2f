"""The fast pre- and post-processing (runtime/processing.py) give the model input and the masks of the
straightforward ones (tests/reference_processing.py), which tests/test_mediapipe_parity.py showed equal to
MediaPipe's: the same input pixels and category mask, pixel for pixel, and confidences within float32
rounding."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.pipeline import load_segmenter
from runtime.processing import (
    _top_class,
    activate,
    photo_category_mask,
    resize_probabilities,
    scores,
    stretch_to_input,
)
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


def test_a_clear_lead_beside_a_one_ulp_lead_follows_the_reference():
    """Per model row, a pixel whose class 1 leads clearly beside one where it leads by one float step:
    rounding puts class 0 ahead at some photo pixels next to the second, so the first is only sure if
    every pixel of its neighbourhood leads clearly. Photo rows are the model's rows (no blend along y)."""
    rng = np.random.default_rng(0)
    clear, near = (rng.uniform(0.3, 0.7, size=64).astype(np.float32) for _ in range(2))
    scores = np.empty((64, 2, 2), np.float32)
    scores[:, 0, 0], scores[:, 0, 1] = clear, clear + np.float32(3e-5)
    scores[:, 1, 0], scores[:, 1, 1] = near, np.nextafter(near, np.float32(1))
    assert (reference.photo_category_mask(scores, 3000, 64) == 0).any()  # rounding did flip some
    _assert_like_reference(scores, 64, 3000)


def test_nan_scores_follow_the_reference():
    scores = np.random.default_rng(8).normal(size=(20, 30, 6)).astype(np.float32)
    scores[5, 7, 2] = np.nan
    _assert_like_reference(scores, 61, 45)


# Photo sizes (height, width): below, at and above the model's 256x256, odd, one pixel wide, and large enough
# to be scanned in several bands with more unsure pixels than one chunk (runtime/processing.py).
ONE_CHANNEL_PHOTO_SIZES = [(512, 512), (255, 257), (1, 7), (301, 1), (97, 130), (1030, 771)]


@pytest.mark.parametrize("size", ONE_CHANNEL_PHOTO_SIZES)
def test_one_channel_category_mask_follows_the_reference(size):
    """A one-channel (sigmoid) model's scores, (1 - p, p) as scores() makes them: random foreground
    probabilities, regions at exactly 0.5 (1 - p ties p: class 0, the first, wins) and one float step
    either side of it, and a speckled stretch of near-ties that leaves most of a band unsure."""
    spec = registry().get("selfie_segmenter")
    assert spec.output_kind == "probability"
    rng = np.random.default_rng(size[0] * 10_000 + size[1])
    p = rng.random((256, 256, 1)).astype(np.float32)
    p[40:80, 40:80] = np.float32(0.5)
    p[100:140, 60:90] = np.nextafter(np.float32(0.5), rng.choice(np.float32([0.0, 1.0]), size=(40, 30, 1)))
    p[150:] = np.float32(0.5) + rng.choice(np.float32([-1e-7, 0.0, 1e-7]), size=(106, 256, 1))
    class_scores = scores(p[None], spec)
    height, width = size
    expected = reference.photo_category_mask(class_scores, width, height)
    assert (expected == 0).any() and (expected == 1).any()
    np.testing.assert_array_equal(photo_category_mask(class_scores, width, height), expected)


@pytest.mark.parametrize("classes", [1, 2, 3, 21])
def test_top_class_is_the_first_highest_and_its_lead(classes):
    """What the category mask's sure pixels rest on: per pixel the first class with the highest score and
    its lead over the runner-up (0 on a tie, inf without one), ties and infinities included."""
    planes = np.random.default_rng(classes).integers(-2, 3, size=(classes, 30, 40)).astype(np.float32)
    planes[:, :3] = np.float32(np.inf)
    planes[:, 5:8, :4] = -np.float32(np.inf)
    with np.errstate(invalid="ignore"):  # inf - inf where infinities tie: NaN on both sides
        label, lead = _top_class(planes)
        ranked = np.sort(planes, axis=0)
        expected = ranked[-1] - ranked[-2] if classes > 1 else planes[0] - np.float32(-np.inf)
    np.testing.assert_array_equal(label, planes.argmax(axis=0))
    np.testing.assert_array_equal(lead, expected)
    assert label.dtype == np.uint8 and lead.dtype == np.float32


def test_one_channel_scores_and_probabilities_follow_the_reference():
    """(1 - p, p) from a one-channel output, NaN and the 0.5 tie included, and its probabilities."""
    spec = registry().get("selfie_segmenter")
    raw = np.random.default_rng(5).random((1, 144, 256, 1)).astype(np.float32)
    raw[0, :10, :10] = np.float32(0.5)
    raw[0, 20, 30] = np.nan
    class_scores = scores(raw, spec)
    expected = reference.one_channel_scores(raw)
    np.testing.assert_array_equal(class_scores, expected)
    np.testing.assert_array_equal(activate(class_scores, spec), reference.activate(expected, spec.output_kind))


@pytest.mark.parametrize("photo", [(512, 512), (600, 512), (25, 25), (333, 517), (1, 1), (1080, 1920), (7, 300)])
@pytest.mark.parametrize("tensor", [(256, 256), (144, 256), (17, 300)])
def test_stretch_to_input_equals_the_reference(photo, tensor):
    """The input tensor's pixels: photos smaller and larger than the tensor, odd sizes, integer and
    non-integer scales, noise (every rounding shows)."""
    rgb = np.random.default_rng(photo[0] + tensor[1]).integers(0, 256, (*photo, 3), dtype=np.uint8)
    height, width = tensor
    np.testing.assert_array_equal(stretch_to_input(rgb, width, height), reference.stretch_to_input(rgb, width, height))


def _assert_like_reference(scores: np.ndarray, height: int, width: int) -> None:
    expected = reference.photo_category_mask(scores, width, height)
    np.testing.assert_array_equal(photo_category_mask(scores, width, height), expected)
    logits = registry().get("selfie_multiclass_twin")  # a model whose output is logits
    np.testing.assert_allclose(resize_probabilities(activate(scores, logits), width, height),
                               reference.photo_probabilities(scores, "logits", width, height),
                               atol=MAX_CONFIDENCE_DELTA, rtol=0, equal_nan=True)

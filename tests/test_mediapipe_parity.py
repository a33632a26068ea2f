"""The project's masks equal MediaPipe Tasks' ImageSegmenter's on the same model file and photo.

Both run the real model on CPU: the project through runtime/ (pre-processing, LiteRT, post-processing),
MediaPipe through `ImageSegmenter.segment()`. Photos: real people from scikit-image and matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.agreement import per_class_iou
from benchmark.pipeline import mediapipe_masks
from runtime.pipeline import load_segmenter

from .conftest import need_model
from .people_photos import people_photos

mp = pytest.importorskip("mediapipe", reason="mediapipe is in the benchmark extra; `./nox -s tests` installs it")
from mediapipe.tasks.python import BaseOptions, vision  # noqa: E402

MEDIAPIPE_MODELS = ("selfie_segmenter", "selfie_segmenter_landscape", "deeplab_v3")
MIN_IOU = 0.99
# The README states the measured max |Δconfidence| (0 to float32 rounding); this bound keeps it true.
MAX_CONFIDENCE_DELTA = 1e-5


PHOTOS = people_photos()
# A crop whose scale to every model's input is not a whole number: the pre-processing's resampling
# weights differ from an exact halving there (max |Δconfidence| ~9e-6 rather than ~1e-7).
PHOTOS["grace_hopper_383x482"] = np.ascontiguousarray(PHOTOS["grace_hopper"][50:433, 30:512])


def mediapipe_masks_of(model: Path, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's confidence masks (H, W, C) and category mask (H, W), in the project's class order."""
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(model)),
                                           output_confidence_masks=True, output_category_mask=True)
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
        return mediapipe_masks(result.confidence_masks, result.category_mask, rgb.shape[:2])


@pytest.mark.parametrize("model", MEDIAPIPE_MODELS)
def test_masks_equal_mediapipe(model):
    path = need_model(model)
    segmenter = load_segmenter(model, model_path=path)
    worst_delta = 0.0
    for photo, rgb in PHOTOS.items():
        confidence, category = mediapipe_masks_of(path, rgb)
        seg = segmenter.segment(rgb)
        assert seg.probabilities.shape == confidence.shape, photo
        worst_delta = max(worst_delta, float(np.abs(seg.probabilities - confidence).max()))
        ious = per_class_iou(seg.category_mask, category)
        assert min(ious.values()) >= MIN_IOU, f"{model} on {photo}: per-class IoU {ious}"
        assert worst_delta <= MAX_CONFIDENCE_DELTA, f"{model} on {photo}: max |Δconfidence| {worst_delta}"
    print(f"{model}: max |Δconfidence| vs MediaPipe over {len(PHOTOS)} photos = {worst_delta:.2e}")


def test_mediapipe_cannot_load_hair_segmentation():
    """README says so: a float input without normalisation metadata, which MediaPipe requires."""
    path = need_model("hair_segmentation")
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)))
    with pytest.raises(Exception, match="NormalizationOptions"):
        vision.ImageSegmenter.create_from_options(options)


def test_the_timed_mediapipe_call_is_segment_alone():
    """benchmark/pipeline.py times MediaPipe's `segment()` and nothing more: its masks stay MediaPipe images
    (the project's side returns arrays it already has); only the warm-up output is converted, in the
    project's class order."""
    from mediapipe.tasks.python.vision.image_segmenter import ImageSegmenterResult

    from benchmark.pipeline import _mediapipe_side, photo

    path = need_model("selfie_segmenter")
    _, rgb = photo()
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           output_confidence_masks=True, output_category_mask=True)
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        side = _mediapipe_side(segmenter, rgb)
        result = side.timed()
        assert isinstance(result, ImageSegmenterResult)
        confidence, category = side.masks(result)
    expected_confidence, expected_category = mediapipe_masks_of(path, rgb)
    assert confidence.shape == (*rgb.shape[:2], 2)
    np.testing.assert_array_equal(confidence, expected_confidence)
    np.testing.assert_array_equal(category, expected_category)


def test_pipeline_agreement_with_mediapipe_is_per_class_iou_and_confidence():
    """The comparison's agreement (benchmark/pipeline.py): worst per-class IoU and max |Δconfidence| of the
    project's masks against MediaPipe's; a one-channel model's foreground is class 1 on both sides."""
    from benchmark.pipeline import photo, time_pipelines
    from runtime.acquire import resolve_model

    model = resolve_model("selfie_segmenter", path=need_model("selfie_segmenter"))
    _, rgb = photo()
    agreement = time_pipelines(model, ["litert"], 1, rgb, runs=1)["agreement"]["litert"]
    assert agreement["worst_iou"] >= MIN_IOU
    assert agreement["max_abs_dconfidence"] <= MAX_CONFIDENCE_DELTA

"""Pre-processing (model input from a photo) and post-processing (masks back to the photo).

Both follow MediaPipe Tasks' ImageSegmenter on CPU, so that a mask here equals MediaPipe's on the same
model file and photo (tests/test_mediapipe_parity.py):
- input: ImageToTensorCalculator's OpenCV converter stretches the whole photo to the input size
  (keep_aspect_ratio off) with cv::warpPerspective, bilinear, border replicated, mapping the photo's
  corners onto the tensor's corners (tensor pixel x samples photo x * W / w, no half-pixel shift), into
  uint8, then scales linearly to the model's range (its normalisation metadata);
- confidence masks: the activation at the model's resolution, then cv::resize INTER_LINEAR (half-pixel
  centres, edges clamped, no antialiasing) to the photo's size;
- category mask: the raw scores bilinearly interpolated to the photo's size with corners aligned
  ((in - 1) / (out - 1)), then argmax (tasks' TensorsToSegmentationCalculator, ProcessForCategoryMaskCpu).
"""

from __future__ import annotations

import numpy as np

from .registry import ModelSpec


def _axis_samples(n_in: int, n_out: int, scale: float, offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two input indices to blend and the weight of the second, edges clamped."""
    src = np.clip(np.arange(n_out, dtype=np.float64) * scale + offset, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


_BAND = 128  # output rows resampled at a time: temporaries stay small beside a photo-size result


def _bilinear_bands(planes: np.ndarray, height: int, width: int, mapping: str):
    """Bilinear resampling of (h, w, C) float32 to (height, width, C), yielded as (first row, band of rows);
    `mapping` says which pixel grid.

    "centres": half-pixel centres (cv::resize INTER_LINEAR);
    "aligned": the outer pixel centres coincide, scale (w - 1) / (width - 1).
    """
    h, w = planes.shape[:2]

    def samples(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if mapping == "centres":
            return _axis_samples(n_in, n_out, n_in / n_out, 0.5 * n_in / n_out - 0.5)
        if mapping == "aligned":
            return _axis_samples(n_in, n_out, (n_in - 1) / max(n_out - 1, 1), 0.0)
        raise ValueError(f"unknown pixel mapping {mapping!r}")

    y0, y1, ty = samples(h, height)
    x0, x1, tx = samples(w, width)
    rows = planes[y0]  # (height, w, C): the model's width, small
    rows += (planes[y1] - rows) * ty[:, None, None]
    for start in range(0, height, _BAND):
        band = rows[start:start + _BAND]
        out = band[:, x0]
        out += (band[:, x1] - out) * tx[None, :, None]
        yield start, out


def _bilinear(planes: np.ndarray, height: int, width: int, mapping: str) -> np.ndarray:
    out = np.empty((height, width, planes.shape[2]), dtype=planes.dtype)
    for start, band in _bilinear_bands(planes, height, width, mapping):
        out[start:start + len(band)] = band
    return out


# cv::warpPerspective on uint8 images works in fixed point: source positions in 1/32 pixel
# (INTER_BITS = 5), bilinear weights in 1/32768 with rounding (INTER_REMAP_COEF_BITS = 15).
_SUBPIXEL = 32


def _fixed_point_samples(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output pixel: the two input pixels (edges replicated) and the second's weight in 1/32."""
    pos = np.rint(np.arange(n_out, dtype=np.float64) * (n_in / n_out) * _SUBPIXEL).astype(np.int64)
    whole, frac = pos // _SUBPIXEL, pos % _SUBPIXEL
    return np.clip(whole, 0, n_in - 1), np.clip(whole + 1, 0, n_in - 1), frac


def stretch_to_input(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """The photo stretched to width x height, uint8, exactly as MediaPipe's ImageToTensor on CPU does it
    (the photo's corners on the tensor's corners, bilinear in OpenCV's fixed point, border replicated)."""
    y0, y1, fy = _fixed_point_samples(rgb.shape[0], height)
    x0, x1, fx = _fixed_point_samples(rgb.shape[1], width)
    # int32 holds it: at most 255 * 32 * 32.
    pixels = rgb.astype(np.int32)
    fy, fx = fy.astype(np.int32), fx.astype(np.int32)
    rows = pixels[y0] * (_SUBPIXEL - fy)[:, None, None]
    rows += pixels[y1] * fy[:, None, None]
    acc = rows[:, x0] * (_SUBPIXEL - fx)[None, :, None]
    acc += rows[:, x1] * fx[None, :, None]
    # acc is in 1/1024; OpenCV's weights are 32x finer (1/32768) and it rounds half up.
    acc += 512
    acc >>= 10
    return acc.astype(np.uint8)


def preprocess(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Stretch to the model input as MediaPipe does, scale to its range, add extra channels; NHWC float32."""
    inp = spec.input
    pixels = stretch_to_input(rgb, inp.width, inp.height).astype(np.float32)
    lo, hi = inp.range
    x = pixels * np.float32((hi - lo) / 255.0) + np.float32(lo)
    for extra in inp.extra:
        if extra != "previous_mask":
            raise ValueError(f"unknown extra input channel {extra!r}")
        # A still image has no previous frame: the previous-mask channel is all zeros.
        x = np.concatenate([x, np.zeros(x.shape[:2] + (1,), np.float32)], axis=-1)
    return x[None, ...]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def scores(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Model output (1, h, w, C) -> per-class scores (h, w, num_classes) whose argmax is the category:
    the logits or probabilities themselves, or (1 - p, p) for a single foreground probability."""
    out = np.asarray(raw, dtype=np.float32)[0]
    if spec.output_kind in ("logits", "probabilities"):
        result = out
    else:  # "probability": one foreground channel, sigmoid already applied
        p = out[..., :1]
        result = np.concatenate([1.0 - p, p], axis=-1)
    if result.shape[-1] != spec.num_classes:
        raise ValueError(f"{spec.name}: output has {result.shape[-1]} classes, registry says {spec.num_classes}")
    return result


def activate(class_scores: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Per-class scores -> probabilities (softmax of logits; probabilities as they are), float32."""
    probs = softmax(class_scores, axis=-1) if spec.output_kind == "logits" else np.clip(class_scores, 0.0, 1.0)
    return probs.astype(np.float32)


def to_probabilities(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Model output (1, h, w, C) -> per-class probabilities (h, w, num_classes), float32."""
    return activate(scores(raw, spec), spec)


def resize_probabilities(probs: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every class plane to (height, width) as MediaPipe's confidence masks (cv::resize INTER_LINEAR)."""
    if probs.shape[:2] == (height, width):
        return probs
    return _bilinear(probs, height, width, "centres")


def photo_category_mask(class_scores: np.ndarray, width: int, height: int) -> np.ndarray:
    """The category mask at photo size as MediaPipe computes it: scores interpolated (corners aligned), argmax."""
    if class_scores.shape[:2] == (height, width):
        return category_mask(class_scores)
    mask = np.empty((height, width), dtype=np.uint8)
    # The interpolated scores one band of rows at a time: only the mask is kept at photo size.
    for start, band in _bilinear_bands(class_scores, height, width, "aligned"):
        mask[start:start + len(band)] = category_mask(band)
    return mask


def category_mask(probs: np.ndarray) -> np.ndarray:
    return probs.argmax(axis=-1).astype(np.uint8)

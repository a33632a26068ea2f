"""The straightforward pre- and post-processing the fast path in runtime/processing.py must reproduce.

This is the code that was shown equal to MediaPipe's masks (tests/test_mediapipe_parity.py) before the
processing was made fast: the photo stretched to the model's input in OpenCV's fixed point with the
channel axis last, every class bilinearly resampled at photo size in (H, W, C) layout, the category mask
the argmax of the interpolated scores. Kept as the definition the fast path is tested against
(tests/test_postprocessing.py), not used by the project.
"""

from __future__ import annotations

import numpy as np


def _axis_samples(n_in: int, n_out: int, scale: float, offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = np.clip(np.arange(n_out, dtype=np.float64) * scale + offset, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def bilinear(planes: np.ndarray, height: int, width: int, mapping: str) -> np.ndarray:
    """(h, w, C) float32 -> (height, width, C); "centres": cv::resize INTER_LINEAR, "aligned": corners aligned."""
    h, w = planes.shape[:2]

    def samples(n_in: int, n_out: int):
        if mapping == "centres":
            return _axis_samples(n_in, n_out, n_in / n_out, 0.5 * n_in / n_out - 0.5)
        return _axis_samples(n_in, n_out, (n_in - 1) / max(n_out - 1, 1), 0.0)

    y0, y1, ty = samples(h, height)
    x0, x1, tx = samples(w, width)
    rows = planes[y0]
    rows += (planes[y1] - rows) * ty[:, None, None]
    out = rows[:, x0]
    out += (rows[:, x1] - out) * tx[None, :, None]
    return out


def one_channel_scores(raw: np.ndarray) -> np.ndarray:
    """A one-channel model's output (1, h, w, 1), sigmoid applied -> (h, w, 2) scores (1 - p, p)."""
    p = raw[0, ..., :1].astype(np.float32)
    return np.concatenate([1.0 - p, p], axis=-1)


def activate(class_scores: np.ndarray, output_kind: str) -> np.ndarray:
    if output_kind == "logits":
        shifted = class_scores - class_scores.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return np.clip(class_scores, 0.0, 1.0).astype(np.float32)


def photo_probabilities(class_scores: np.ndarray, output_kind: str, width: int, height: int) -> np.ndarray:
    probs = activate(class_scores, output_kind)
    return probs if probs.shape[:2] == (height, width) else bilinear(probs, height, width, "centres")


def photo_category_mask(class_scores: np.ndarray, width: int, height: int) -> np.ndarray:
    resized = class_scores if class_scores.shape[:2] == (height, width) else bilinear(
        class_scores, height, width, "aligned")
    return resized.argmax(axis=-1).astype(np.uint8)


def stretch_to_input(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) as cv::warpPerspective does it: corners on corners, positions in
    1/32 pixel, weights in 1/1024 here (1/32768 in OpenCV), rounded half up, edges replicated."""

    def samples(n_in: int, n_out: int):
        pos = np.rint(np.arange(n_out, dtype=np.float64) * (n_in / n_out) * 32).astype(np.int64)
        whole, frac = pos // 32, pos % 32
        return np.clip(whole, 0, n_in - 1), np.clip(whole + 1, 0, n_in - 1), frac

    y0, y1, fy = samples(rgb.shape[0], height)
    x0, x1, fx = samples(rgb.shape[1], width)
    rows = rgb[y0].astype(np.int64) * (32 - fy)[:, None, None] + rgb[y1] * fy[:, None, None]
    acc = rows[:, x0] * (32 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return ((acc + 512) >> 10).astype(np.uint8)

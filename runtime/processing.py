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

The input and the masks are those of the straightforward computation (tests/reference_processing.py),
computed faster: the photo's rows with their channels interleaved instead of a short channel axis,
per-class planes instead of a short class axis, resampling in cache-sized pieces, and the category mask
interpolated only where the class can change (tests/test_postprocessing.py checks they are equal).
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


def _samples(n_in: int, n_out: int, mapping: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`mapping` says which pixel grid: "centres" is half-pixel centres (cv::resize INTER_LINEAR),
    "aligned" puts the outer pixel centres on each other (scale (n_in - 1) / (n_out - 1))."""
    if mapping == "centres":
        return _axis_samples(n_in, n_out, n_in / n_out, 0.5 * n_in / n_out - 0.5)
    if mapping == "aligned":
        return _axis_samples(n_in, n_out, (n_in - 1) / max(n_out - 1, 1), 0.0)
    raise ValueError(f"unknown pixel mapping {mapping!r}")


# Photo-size work is done this many values at a time: its temporaries stay in the CPU cache, and the
# memory used is that of the result (the bot's load test bounds its peak).
_BAND_VALUES = 1 << 15


def _resize_planes(columns: np.ndarray, height: int, width: int) -> np.ndarray:
    """Planes given column by column, (C, w, h) float32, to (C, height, width) as cv::resize INTER_LINEAR.

    One class at a time: along x first, at the model's height, where a sample is a whole column (a
    contiguous row of `columns`); then along y, where a sample is a whole row, a band of rows at a time.
    Every gather copies contiguous runs, and the buffers are reused: beside the result, only a few
    model-size and band-size arrays are allocated (fresh memory costs page faults)."""
    w, h = columns.shape[1:]
    y0, _, ty = _samples(h, height, "centres")
    x0, _, tx = _samples(w, width, "centres")
    out = np.empty((columns.shape[0], height, width), np.float32)
    band = max(1, _BAND_VALUES // width)
    column_steps = np.zeros((w, h), np.float32)
    across, across_step = np.empty((width, h), np.float32), np.empty((width, h), np.float32)
    rows, row_steps = np.empty((h, width), np.float32), np.zeros((h, width), np.float32)
    step = np.empty((band, width), np.float32)
    for plane, class_columns in zip(out, columns, strict=True):
        # Along x: column x0 moved toward the next one by tx (0 past the last column: the edge is clamped).
        np.subtract(class_columns[1:], class_columns[:-1], out=column_steps[:-1])
        np.take(class_columns, x0, axis=0, out=across, mode="clip")  # "clip": "raise" buffers `out`
        np.take(column_steps, x0, axis=0, out=across_step, mode="clip")
        across_step *= tx[:, None]
        across += across_step
        np.copyto(rows, across.T)
        # Along y, the same with rows.
        np.subtract(rows[1:], rows[:-1], out=row_steps[:-1])
        for start in range(0, height, band):
            ys = y0[start:start + band]
            part, part_step = plane[start:start + band], step[:len(ys)]
            np.take(rows, ys, axis=0, out=part, mode="clip")
            np.take(row_steps, ys, axis=0, out=part_step, mode="clip")
            part_step *= ty[start:start + band, None]
            part += part_step
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
    channels = rgb.shape[2]
    # Rows of interleaved channels: every step works on long runs of one dtype (no short channel axis to
    # broadcast over), and only the sampled rows are read.
    flat = rgb.reshape(rgb.shape[0], -1)
    # Along y first, in 1/32: at most 255 * 32, so uint16 holds it.
    wy = fy.astype(np.uint16)[:, None]
    rows = np.take(flat, y0, axis=0).astype(np.uint16)
    rows *= _SUBPIXEL - wy
    below = np.take(flat, y1, axis=0).astype(np.uint16)
    below *= wy
    rows += below
    # Then along x, in 1/1024: at most 255 * 32 * 32, so uint32.
    lanes = np.arange(channels)
    wx = np.repeat(fx.astype(np.uint32), channels)
    acc = np.take(rows, (x0[:, None] * channels + lanes).ravel(), axis=1).astype(np.uint32)
    acc *= _SUBPIXEL - wx
    right = np.take(rows, (x1[:, None] * channels + lanes).ravel(), axis=1).astype(np.uint32)
    right *= wx
    acc += right
    # OpenCV's weights are 32x finer (1/32768) and it rounds half up.
    acc += 512
    acc >>= 10
    return acc.astype(np.uint8).reshape(height, width, channels)


def preprocess(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Stretch to the model input as MediaPipe does, scale to its range, add extra channels; NHWC float32."""
    inp = spec.input
    x = stretch_to_input(rgb, inp.width, inp.height).astype(np.float32)
    lo, hi = inp.range
    x *= np.float32((hi - lo) / 255.0)
    x += np.float32(lo)
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
    classes = out.shape[-1] if spec.output_kind in ("logits", "probabilities") else 2
    if classes != spec.num_classes:
        raise ValueError(f"{spec.name}: output has {classes} classes, registry says {spec.num_classes}")
    # Stored one class plane after another (see _columns): the post-processing reads them so, without copies.
    if spec.output_kind in ("logits", "probabilities"):
        return _columns(out).transpose(2, 1, 0)
    # "probability": one foreground channel, sigmoid already applied; its two planes made in place.
    planes = np.empty((2, out.shape[1], out.shape[0]), np.float32)
    np.copyto(planes[1], out[..., 0].T)
    np.subtract(np.float32(1), planes[1], out=planes[0])
    return planes.transpose(2, 1, 0)


def _columns(per_pixel: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """(h, w, C) -> (C, w, h) float32, contiguous: one plane per class, so that work across classes is
    elementwise over whole planes (not reductions over a short last axis), stored column by column for the
    resampling along x (_resize_planes). A fresh array, unless `copy` is False and `per_pixel` is a view
    of such planes (what scores() returns); a transposing copy costs as much as the rest of a softmax."""
    columns = per_pixel.transpose(2, 1, 0)
    if columns.flags.c_contiguous and columns.dtype == np.float32:
        return columns.copy() if copy else columns
    out = np.empty(columns.shape, np.float32)
    # A few columns at a time: one transposing copy of the whole array misses the cache at nearly every value
    # (4x slower for deeplab_v3's 257x257x21).
    for x in range(0, out.shape[1], 16):
        np.copyto(out[:, x:x + 16], columns[:, x:x + 16])
    return out


def activate(class_scores: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Per-class scores -> probabilities (softmax of logits; probabilities as they are), float32, (h, w, C)
    (a view of contiguous per-class planes)."""
    planes = _columns(class_scores)
    if spec.output_kind == "logits":
        planes -= planes.max(axis=0)
        np.exp(planes, out=planes)
        planes /= planes.sum(axis=0)
    else:
        np.clip(planes, 0.0, 1.0, out=planes)
    return planes.transpose(2, 1, 0)


def to_probabilities(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Model output (1, h, w, C) -> per-class probabilities (h, w, num_classes), float32."""
    return activate(scores(raw, spec), spec)


def resize_probabilities(probs: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every class plane to (height, width) as MediaPipe's confidence masks (cv::resize INTER_LINEAR);
    (height, width, C), a view of one contiguous plane per class."""
    if probs.shape[:2] == (height, width):
        return probs
    return _resize_planes(_columns(probs, copy=False), height, width).transpose(1, 2, 0)


# A pixel whose four neighbouring model pixels share their top class, each ahead of the runner-up by more
# than this fraction of the largest |score|, has that class: interpolation is a convex combination, and
# float32 rounding moves an interpolated score by less than 1e-6 of the largest |score| (two blends of
# three operations each; 10x margin). Only the other pixels are interpolated: found in bands of rows of
# about _SCAN_PIXELS pixels, and interpolated _CHUNK_PIXELS at a time (bounded memory whatever the model).
_SURE_MARGIN = 1e-5
_SCAN_PIXELS = 1 << 18
_CHUNK_PIXELS = 1 << 14


def photo_category_mask(class_scores: np.ndarray, width: int, height: int) -> np.ndarray:
    """The category mask at photo size as MediaPipe computes it: scores interpolated (corners aligned), argmax.

    Equal to interpolating every class at every pixel (tests/test_postprocessing.py): inside a region of
    one class the answer is known from the model's pixels, and on boundaries each pixel's scores are
    interpolated with exactly the arithmetic of the full interpolation."""
    if class_scores.shape[:2] == (height, width):
        return category_mask(class_scores)
    h, w = class_scores.shape[:2]
    y0, y1, ty = _samples(h, height, "aligned")
    x0, x1, tx = _samples(w, width, "aligned")
    columns = _columns(class_scores, copy=False)
    # Per model pixel its class if sure, else a number that is no class; then one gather to photo size.
    code = np.ascontiguousarray(_sure_classes(columns).T)
    unsure = len(columns)
    mask = np.take(np.take(code, y0, axis=0), x0, axis=1)
    # Each unsure pixel's scores, as (C, n), blended from the four model pixels by flat index into (C, w * h).
    flat = columns.reshape(len(columns), -1)
    band = max(1, _SCAN_PIXELS // width)
    for start in range(0, height, band):
        rows = mask[start:start + band]
        found = np.flatnonzero(rows == unsure)
        for chunk in np.array_split(found, -(-len(found) // _CHUNK_PIXELS)) if len(found) else ():
            y, x = np.divmod(chunk, width)
            y += start
            t, ya, yb = ty[y], y0[y], y1[y]
            left = np.take(flat, x0[x] * h + ya, axis=1)
            left += (np.take(flat, x0[x] * h + yb, axis=1) - left) * t
            right = np.take(flat, x1[x] * h + ya, axis=1)
            right += (np.take(flat, x1[x] * h + yb, axis=1) - right) * t
            right -= left
            right *= tx[x]
            left += right
            rows.flat[chunk] = left.argmax(axis=0)
    return mask.astype(np.uint8, copy=False)


def _sure_classes(columns: np.ndarray) -> np.ndarray:
    """Per model pixel of (C, w, h) scores: its class if the pixel and its neighbours below, right and
    below-right (the last row and column count as their own neighbours) share it with a sure lead, else C.
    uint8 or uint16, (w, h)."""
    label, margin = (_edge_padded(a) for a in _top_class(columns))
    largest = max(float(columns.max()), -float(columns.min()))
    # The 2x2 neighbourhood as slices of the padded arrays.
    here = label[:-1, :-1]
    same = (here == label[1:, :-1]) & (here == label[:-1, 1:]) & (here == label[1:, 1:])
    lowest = np.minimum(np.minimum(margin[:-1, :-1], margin[1:, :-1]), np.minimum(margin[:-1, 1:], margin[1:, 1:]))
    sure = same & (lowest > _SURE_MARGIN * largest) if np.isfinite(largest) else np.zeros_like(same)
    unsure = len(columns)
    return np.where(sure, here, (np.uint8 if unsure <= np.iinfo(np.uint8).max else np.uint16)(unsure))


def _edge_padded(a: np.ndarray) -> np.ndarray:
    """A 2-D array with its last row and column repeated once (np.pad's "edge", without its overhead)."""
    out = np.empty((a.shape[0] + 1, a.shape[1] + 1), a.dtype)
    out[:-1, :-1] = a
    out[-1, :-1] = a[-1]
    out[:, -1] = out[:, -2]
    return out


def _top_class(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of (C, ...) scores: the first class with the highest score (uint8) and how far ahead of
    the second highest score it is (0 on a tie, NaN where a score is NaN)."""
    if len(planes) == 1:  # no runner-up: -inf
        return np.zeros(planes[0].shape, np.uint8), planes[0] - np.float32(-np.inf)
    # The first two classes directly (the one-channel models' only two), then one class at a time.
    label = np.greater(planes[1], planes[0]).view(np.uint8)
    best, second = np.maximum(planes[0], planes[1]), np.minimum(planes[0], planes[1])
    ahead, lower = np.empty(best.shape, bool), np.empty_like(best)
    for c, plane in enumerate(planes[2:], start=2):
        np.greater(plane, best, out=ahead)
        np.copyto(label, c, where=ahead)
        np.minimum(best, plane, out=lower)
        np.maximum(second, lower, out=second)
        np.maximum(best, plane, out=best)
    return label, best - second


def category_mask(probs: np.ndarray) -> np.ndarray:
    return probs.argmax(axis=-1).astype(np.uint8)

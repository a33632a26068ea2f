"""Pre-processing (model input from a photo) and post-processing (masks back to the photo)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .images import resize_rgb
from .registry import ModelSpec


def preprocess(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Resize (stretch) to the model input, scale to its range, add extra channels; NHWC float32."""
    inp = spec.input
    resized = resize_rgb(rgb, inp.width, inp.height).astype(np.float32)
    lo, hi = inp.range
    x = resized * np.float32((hi - lo) / 255.0) + np.float32(lo)
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


def to_probabilities(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Model output (1, h, w, C) -> per-class probabilities (h, w, num_classes), float32."""
    out = np.asarray(raw, dtype=np.float32)[0]
    if spec.output_kind == "logits":
        probs = softmax(out, axis=-1)
    else:  # "probability": one foreground channel, sigmoid already applied
        p = np.clip(out[..., :1], 0.0, 1.0)
        probs = np.concatenate([1.0 - p, p], axis=-1)
    if probs.shape[-1] != spec.num_classes:
        raise ValueError(f"{spec.name}: output has {probs.shape[-1]} classes, registry says {spec.num_classes}")
    return probs.astype(np.float32)


def resize_probabilities(probs: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of every class plane to (height, width); classes still sum to 1."""
    if probs.shape[:2] == (height, width):
        return probs
    planes = [np.asarray(Image.fromarray(probs[..., c], mode="F").resize((width, height),
                                                                          Image.Resampling.BILINEAR))
              for c in range(probs.shape[-1])]
    return np.stack(planes, axis=-1)


def category_mask(probs: np.ndarray) -> np.ndarray:
    return probs.argmax(axis=-1).astype(np.uint8)

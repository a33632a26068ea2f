"""Photo in, per-class masks out: pre-processing, one engine, post-processing, timings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .engines import Engine
from .processing import activate, photo_category_mask, preprocess, resize_probabilities, scores
from .registry import ModelSpec


@dataclass(frozen=True)
class Timings:
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float  # scores and their activation at the model's resolution; photo-size masks are made on use


@dataclass(frozen=True)
class Segmentation:
    """One photo's segmentation. Photo-size masks are made when asked for, one class plane at a time:
    all of them at once is num_classes * H * W * 4 bytes (1.4 GB for deeplab_v3's 21 classes at 4096x4096)."""

    spec: ModelSpec
    engine: str
    model_probabilities: np.ndarray  # (h, w, num_classes) float32 at the model's resolution
    photo_size: tuple[int, int]  # (width, height)
    timings: Timings
    class_scores: np.ndarray  # (h, w, num_classes) at the model's resolution; their argmax is the category

    @cached_property
    def probabilities(self) -> np.ndarray:
        """(H, W, num_classes) float32 at photo size, every class (MediaPipe's confidence masks), made on first use."""
        return resize_probabilities(self.model_probabilities, *self.photo_size)

    @property
    def category_mask(self) -> np.ndarray:
        """(H, W) uint8 class indices, computed on first use as MediaPipe does (not the argmax of `probabilities`)."""
        return photo_category_mask(self.class_scores, *self.photo_size)

    def confidence(self, class_name: str) -> np.ndarray:
        """(H, W) float32 probability of one class at photo size; only that class's plane is resized."""
        c = self.spec.class_index(class_name)
        if "probabilities" in self.__dict__:  # already made
            return self.probabilities[..., c]
        return resize_probabilities(self.model_probabilities[..., c:c + 1], *self.photo_size)[..., 0]

    def person_confidence(self) -> np.ndarray:
        """Soft person matte: the summed probability of the person classes."""
        width, height = self.photo_size
        total = np.zeros((height, width), np.float32)
        for name in self.spec.person_classes:  # one plane at a time
            total += self.confidence(name)
        return np.clip(total, 0.0, 1.0, out=total)


def _ms(t0: int, t1: int) -> float:
    return (t1 - t0) / 1e6


class Segmenter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.spec = engine.spec

    def segment(self, rgb: np.ndarray) -> Segmentation:
        t0 = time.perf_counter_ns()
        x = preprocess(rgb, self.spec)
        t1 = time.perf_counter_ns()
        raw = self.engine.run(x)
        t2 = time.perf_counter_ns()
        class_scores = scores(raw, self.spec)
        probs = activate(class_scores, self.spec)
        t3 = time.perf_counter_ns()
        return Segmentation(self.spec, self.engine.name, probs, (rgb.shape[1], rgb.shape[0]),
                            Timings(_ms(t0, t1), _ms(t1, t2), _ms(t2, t3)), class_scores)

"""Photo in, per-class masks out: pre-processing, one engine, post-processing, timings."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .engines import Engine
from .processing import activate, photo_category_mask, preprocess, resize_probabilities, scores
from .registry import ModelSpec


@dataclass(frozen=True)
class Timings:
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


@dataclass(frozen=True)
class Segmentation:
    spec: ModelSpec
    engine: str
    probabilities: np.ndarray  # (H, W, num_classes) float32 at photo size
    timings: Timings
    class_scores: np.ndarray  # (h, w, num_classes) at the model's resolution; their argmax is the category

    @property
    def category_mask(self) -> np.ndarray:
        """(H, W) uint8 class indices, computed on first use as MediaPipe does (not the argmax of `probabilities`)."""
        height, width = self.probabilities.shape[:2]
        return photo_category_mask(self.class_scores, width, height)

    def confidence(self, class_name: str) -> np.ndarray:
        return self.probabilities[..., self.spec.class_index(class_name)]

    def person_confidence(self) -> np.ndarray:
        """Soft person matte: the summed probability of the person classes."""
        idx = [self.spec.class_index(c) for c in self.spec.person_classes]
        return np.clip(self.probabilities[..., idx].sum(axis=-1), 0.0, 1.0)


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
        probs = resize_probabilities(activate(class_scores, self.spec), rgb.shape[1], rgb.shape[0])
        t3 = time.perf_counter_ns()
        return Segmentation(self.spec, self.engine.name, probs, Timings(_ms(t0, t1), _ms(t1, t2), _ms(t2, t3)),
                            class_scores)

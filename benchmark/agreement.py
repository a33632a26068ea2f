"""Do the TVM engines compute what LiteRT computes? Max |delta probability| and per-class IoU (also used against
MediaPipe: benchmark/pipeline.py, tests/test_mediapipe_parity.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from runtime.acquire import ResolvedModel
from runtime.engines import LITERT
from runtime.processing import category_mask, preprocess, to_probabilities


def inputs_for(model: ResolvedModel) -> list[tuple[str, np.ndarray]]:
    """Real portraits for real models; for the twin, seeded synthetic inputs (its masks mean nothing)."""
    spec = model.spec
    if spec.synthetic:
        rng = np.random.default_rng(0)
        return [(f"synthetic-{i}", rng.random((1, spec.input.height, spec.input.width, spec.input.channels),
                                              dtype=np.float32)) for i in range(3)]
    from .photos import portraits

    return [(name, preprocess(rgb, spec)) for name, rgb in portraits().items()]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (NaN when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def per_class_iou(ours: np.ndarray, theirs: np.ndarray) -> dict[int, float]:
    """IoU of each class present in either category mask."""
    return {int(c): iou(ours == c, theirs == c) for c in np.union1d(np.unique(ours), np.unique(theirs))}


def compare(model: ResolvedModel, engines: dict, reference: str = LITERT,
            max_inputs: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per (engine, input, class): max |dp| over the image, IoU of the class masks.

    `max_inputs`: engine -> how many of the inputs it is compared on (default: all).
    """
    rows = []
    max_inputs = max_inputs or {}
    for i, (input_name, x) in enumerate(inputs_for(model)):
        ref = to_probabilities(engines[reference].run(x), model.spec)
        ref_mask = category_mask(ref)
        for name, engine in engines.items():
            if name == reference or i >= max_inputs.get(name, float("inf")):
                continue
            probs = to_probabilities(engine.run(x), model.spec)
            mask = category_mask(probs)
            for c, cls in enumerate(model.spec.classes):
                rows.append({"engine": name, "input": input_name, "class": cls,
                             "max_abs_dprob": float(np.abs(probs[..., c] - ref[..., c]).max()),
                             "iou": iou(mask == c, ref_mask == c),
                             "pixels_equal": float((mask == ref_mask).mean())})
    return pd.DataFrame(rows)

"""Whole pipelines on a real photo: MediaPipe Tasks' `ImageSegmenter.segment()` beside the project's own.

    python -m benchmark.pipeline --model NAME --engines litert,tvm-tuned --runs 30 --out PART.json

Both sides produce the same outputs at photo size, confidence masks and the category mask, and each
timed call is the side's own API call that produces them, nothing more:
- MediaPipe: `segmenter.segment(image)` with output_category_mask=True; it returns the masks as MediaPipe
  images (`result.confidence_masks`, `result.category_mask`), which are not converted inside the timing.
- the project: what the CLI and the bot run, `runtime.segmenter.Segmenter.segment(rgb)` (pre-processing,
  inference, post-processing; `.probabilities` is the (H, W, C) array of confidence masks) plus its
  `.category_mask` (computed on first use, as MediaPipe computes its own inside `segment()`).
Every round runs each side once, in a rotating order, after one untimed warm-up run of each; each timed
call starts once the other sides' pool threads are idle (benchmark/idle.py). Only the
warm-up outputs are converted to arrays (MediaPipe's into the project's class order, `mediapipe_masks`)
for the shape check and the agreement: per-class IoU of the category masks (worst class) and
max |Δconfidence| of each project engine against MediaPipe.

Threads: MediaPipe's CPU inference (its XNNPACK delegate) uses 1 thread on Linux and its Tasks API
cannot change that (mediapipe/calculators/tensor/inference_calculator_utils.cc); its graph runs on
its own executor. The project runs at this process's thread count (`python -m benchmark` starts one
process per thread count with TVM_NUM_THREADS set).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.acquire import ResolvedModel, resolve_model
from runtime.engines import create_engine
from runtime.segmenter import Segmenter

from .agreement import per_class_iou
from .idle import wait_until_idle

MEDIAPIPE = "mediapipe"
MEDIAPIPE_THREADS = 1  # XNNPACK's default off Android/iOS; see the module docstring
PHOTO = "astronaut"


def photo() -> tuple[str, np.ndarray]:
    """scikit-image's astronaut, 512x512 RGB: a real portrait."""
    from skimage import data

    return PHOTO, data.astronaut()


def _mediapipe_segmenter(model: ResolvedModel, stack: contextlib.ExitStack):
    """MediaPipe's segmenter on the model file, closed by `stack`, or the reason it cannot load the file."""
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(model.path)),
                                           output_confidence_masks=True, output_category_mask=True)
    try:
        segmenter = vision.ImageSegmenter.create_from_options(options)
    except Exception as e:  # MediaPipe raises bare RuntimeError/ValueError with its status text
        return None, f"MediaPipe cannot load {model.path.name}: {' '.join(str(e).split())}"
    stack.enter_context(segmenter)
    return segmenter, None


def mediapipe_masks(confidence_masks: list, category_mask, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's masks (its `ImageSegmenterResult` fields) as the project's arrays: confidence (H, W, C) and
    category (H, W) in the project's class order. Copies: the views point into buffers the segmenter frees.

    A one-channel model (one foreground probability): MediaPipe gives that one confidence mask and labels
    the foreground 0 and the rest 255; the project's classes are (background, person).
    """
    confidence = np.stack([np.array(m.numpy_view()).reshape(shape) for m in confidence_masks], -1)
    category = np.array(category_mask.numpy_view()).reshape(shape)
    if confidence.shape[-1] == 1:
        confidence = np.concatenate([1.0 - confidence, confidence], axis=-1)
        category = np.where(category == 0, 1, 0).astype(np.uint8)
    return confidence, category


@dataclass(frozen=True)
class Side:
    """One side of the comparison: the timed call, and how its output becomes (confidence, category) arrays."""

    timed: Callable[[], Any]
    masks: Callable[[Any], tuple[np.ndarray, np.ndarray]]


def _mediapipe_side(segmenter, rgb: np.ndarray) -> Side:
    import mediapipe as mp

    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
    return Side(timed=lambda: segmenter.segment(image),
                masks=lambda result: mediapipe_masks(result.confidence_masks, result.category_mask, rgb.shape[:2]))


def _project_side(segmenter: Segmenter, rgb: np.ndarray) -> Side:
    def run() -> tuple[np.ndarray, np.ndarray]:
        seg = segmenter.segment(rgb)
        return seg.probabilities, seg.category_mask

    return Side(timed=run, masks=lambda masks: masks)


def agreement_with(ours: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Worst per-class IoU of the category masks and max |Δconfidence|, (confidence, category) each."""
    return {"worst_iou": min(per_class_iou(ours[1], theirs[1]).values()),
            "max_abs_dconfidence": float(np.abs(ours[0] - theirs[0]).max())}


def time_pipelines(model: ResolvedModel, engines: list[str], threads: int, rgb: np.ndarray, runs: int) -> dict:
    """p50-ready samples of every side: MediaPipe (when it can load the model) and the project with each engine.

    Returns {"threads", "mediapipe_threads", "mediapipe_error", "photo_shape", "samples": [{side, round, ms,
    busy_before, waited_ms, idle}] (the wait before the timed call, benchmark/idle.py),
    "agreement": {engine: {"worst_iou", "max_abs_dconfidence"} against MediaPipe}}.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    with contextlib.ExitStack() as stack:
        sides: dict[str, Side] = {}
        mp_segmenter, mp_error = _mediapipe_segmenter(model, stack)
        if mp_segmenter is not None:
            sides[MEDIAPIPE] = _mediapipe_side(mp_segmenter, rgb)
        for engine in engines:
            sides[engine] = _project_side(Segmenter(create_engine(engine, model, threads)), rgb)
        # The warm-up run of each side; its outputs are the ones checked and compared.
        outputs = {name: side.masks(side.timed()) for name, side in sides.items()}
        for name, (confidence, category) in outputs.items():
            if category.shape != rgb.shape[:2] or confidence.shape[:2] != rgb.shape[:2]:
                raise RuntimeError(f"{name} did not return masks at photo size {rgb.shape[:2]}")
        agreement = ({e: agreement_with(outputs[e], outputs[MEDIAPIPE]) for e in engines}
                     if MEDIAPIPE in outputs else {})
        order = list(sides)
        samples = []
        for r in range(runs):
            for name in order[r % len(order):] + order[:r % len(order)]:
                timed = sides[name].timed
                wait = wait_until_idle()
                t0 = time.perf_counter_ns()
                output = timed()
                t1 = time.perf_counter_ns()
                del output  # freed outside the timing, as is the previous round's
                samples.append({"side": name, "round": r, "ms": (t1 - t0) / 1e6, **wait.as_dict()})
    return {"threads": threads, "mediapipe_threads": MEDIAPIPE_THREADS, "mediapipe_error": mp_error,
            "photo": PHOTO, "photo_shape": list(rgb.shape), "samples": samples, "agreement": agreement}


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(prog="python -m benchmark.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registry name or file model name")
    p.add_argument("--engines", required=True, help="the project's engines, comma-separated")
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="where the samples are written (JSON)")
    args = p.parse_args(argv)
    threads = int(os.environ.get("TVM_NUM_THREADS", "1"))
    model = resolve_model(args.model, allow_download=False, progress=False)
    _, rgb = photo()
    result = time_pipelines(model, [e for e in args.engines.split(",") if e], threads, rgb, args.runs)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

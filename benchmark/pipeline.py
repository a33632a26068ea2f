"""Whole pipelines on a real photo: MediaPipe Tasks' `ImageSegmenter.segment()` beside the project's own.

    python -m benchmark.pipeline --model NAME --engines litert,tvm-tuned --runs 30 --out PART.json

The project's pipeline is what the CLI and the bot run (runtime.segmenter.Segmenter: pre-processing,
inference, post-processing) plus the category mask, so both sides produce the same outputs at photo
size: confidence masks and the category mask (MediaPipe with output_category_mask=True). Every round
runs each side once, in a rotating order, after one untimed warm-up run of each.

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
from pathlib import Path

import numpy as np

from runtime.acquire import ResolvedModel, resolve_model
from runtime.engines import create_engine
from runtime.segmenter import Segmenter

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


def _mediapipe_run(segmenter, rgb: np.ndarray) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    import mediapipe as mp

    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))

    def run() -> tuple[np.ndarray, np.ndarray]:
        result = segmenter.segment(image)
        confidence = [m.numpy_view() for m in result.confidence_masks]
        return np.stack(confidence, -1), result.category_mask.numpy_view()

    return run


def _project_run(segmenter: Segmenter, rgb: np.ndarray) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def run() -> tuple[np.ndarray, np.ndarray]:
        seg = segmenter.segment(rgb)
        return seg.probabilities, seg.category_mask

    return run


def _category_agreement(ours: np.ndarray, theirs: np.ndarray, theirs_channels: int) -> float:
    """Share of pixels of the same class. A one-channel model's MediaPipe mask labels the foreground 0 and
    the rest 255; the project's classes are (background, person)."""
    theirs = np.asarray(theirs).reshape(ours.shape)
    if theirs_channels == 1:
        theirs = np.where(theirs == 0, 1, 0)
    return float((ours == theirs).mean())


def time_pipelines(model: ResolvedModel, engines: list[str], threads: int, rgb: np.ndarray, runs: int) -> dict:
    """p50-ready samples of every side: MediaPipe (when it can load the model) and the project with each engine.

    Returns {"threads", "mediapipe_threads", "mediapipe_error", "photo_shape", "samples": [{side, round, ms}],
    "category_agreement": {engine: share of pixels equal to MediaPipe's category mask}}.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    with contextlib.ExitStack() as stack:
        sides: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {}
        mp_segmenter, mp_error = _mediapipe_segmenter(model, stack)
        if mp_segmenter is not None:
            sides[MEDIAPIPE] = _mediapipe_run(mp_segmenter, rgb)
        for engine in engines:
            sides[engine] = _project_run(Segmenter(create_engine(engine, model, threads)), rgb)
        outputs = {side: run() for side, run in sides.items()}  # warm-up, and the outputs compared
        for side, (confidence, category) in outputs.items():
            if np.asarray(category).size != rgb.shape[0] * rgb.shape[1] or confidence.shape[:2] != rgb.shape[:2]:
                raise RuntimeError(f"{side} did not return masks at photo size {rgb.shape[:2]}")
        agreement = {}
        if MEDIAPIPE in outputs:
            confidence, category = outputs[MEDIAPIPE]
            agreement = {e: _category_agreement(outputs[e][1], category, confidence.shape[-1]) for e in engines}
        order = list(sides)
        samples = []
        for r in range(runs):
            for side in order[r % len(order):] + order[:r % len(order)]:
                t0 = time.perf_counter_ns()
                sides[side]()
                samples.append({"side": side, "round": r, "ms": (time.perf_counter_ns() - t0) / 1e6})
    return {"threads": threads, "mediapipe_threads": MEDIAPIPE_THREADS, "mediapipe_error": mp_error,
            "photo": PHOTO, "photo_shape": list(rgb.shape), "samples": samples, "category_agreement": agreement}


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

"""Options shared by the photo commands, and how they report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engines import ENGINE_NAMES, LITERT
from ..segmenter import Segmentation


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a mistake is a usage message, not a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="NAME",
                   help="a model of `selfie-tvm models`, `auto` (the default model if it can be had, else its "
                        "twin) or a .tflite file (default: the registry's default model)")
    p.add_argument("--model-path", type=Path, default=None, metavar="FILE",
                   help="a .tflite file to run: alone, any segmentation model (a registry model's file is "
                        "recognised by its name); with --model, that model's file instead of the one it would "
                        "look up")
    p.add_argument("--engine", default=LITERT, choices=ENGINE_NAMES,
                   help="what runs the model: litert (TFLite/XNNPACK, needs nothing else; the default), "
                        "tvm-tuned or tvm-default (the TVM libraries `selfie-tvm compile` built for this CPU)")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="threads for inference (default: 1)")


def report(seg: Segmentation, label: str = "") -> None:
    t = seg.timings
    prefix = f"{label}: " if label else ""
    print(f"{prefix}{seg.spec.name} on {seg.engine}: inference {t.inference_ms:.1f} ms "
          f"(pre {t.preprocess_ms:.1f} ms, post {t.postprocess_ms:.1f} ms)")
    if seg.spec.synthetic_notice:
        print(f"note: {seg.spec.synthetic_notice}")

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
    p.add_argument("--model", default=None,
                   help="registry model name (default: the registry default); see `selfie-tvm models`")
    p.add_argument("--model-path", type=Path, default=None, help="explicit .tflite file for --model")
    p.add_argument("--engine", default=LITERT, choices=ENGINE_NAMES, help="inference engine")
    p.add_argument("--threads", type=positive_int, default=1, help="inference threads")


def report(seg: Segmentation, label: str = "") -> None:
    t = seg.timings
    prefix = f"{label}: " if label else ""
    print(f"{prefix}{seg.spec.name} on {seg.engine}: inference {t.inference_ms:.1f} ms "
          f"(pre {t.preprocess_ms:.1f} ms, post {t.postprocess_ms:.1f} ms)")
    if seg.spec.synthetic_notice:
        print(f"note: {seg.spec.synthetic_notice}")

"""`selfie-tvm background PHOTO --background BG`: replace the background."""

from __future__ import annotations

from pathlib import Path

from ..effects import replace_background
from ..images import load_image, save_image
from ..pipeline import load_segmenter, require_person_classes
from .common import add_model_options, report


def register(sub) -> None:
    p = sub.add_parser("background", help="replace the background of a portrait",
                       description="Replace the background of a portrait: the person (every class but the "
                                   "background) is blended onto another photo, scaled to cover it.")
    p.add_argument("photo", type=Path, help="a JPEG, PNG or WebP portrait")
    p.add_argument("--background", type=Path, required=True, metavar="PHOTO", help="the new background photo")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="output file (default: PHOTO.background.png)")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    rgb = load_image(args.photo)
    bg = load_image(args.background)
    segmenter = load_segmenter(args.model, args.engine, args.threads, args.model_path)
    require_person_classes(segmenter.spec)
    seg = segmenter.segment(rgb)
    path = save_image(replace_background(rgb, seg.person_confidence(), bg),
                      args.out or args.photo.with_suffix(".background.png"))
    report(seg)
    print(f"background replaced: {path}")
    return 0

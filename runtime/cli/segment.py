"""`selfie-tvm segment PHOTO`: per-class mask PNGs and a coloured overlay with a legend."""

from __future__ import annotations

from pathlib import Path

from ..effects import mask_image, overlay
from ..images import load_image, save_image
from ..pipeline import load_segmenter
from .common import add_model_options, report


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment a photo into per-class masks and an overlay",
                       description="Segment a photo: one greyscale mask per class (PHOTO.mask.CLASS.png) and a "
                                   "coloured overlay with a legend (PHOTO.overlay.png), and the time each step took.")
    p.add_argument("photo", type=Path, help="a JPEG, PNG or WebP photo")
    p.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                   help="directory to write the masks and the overlay to (default: out/)")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    rgb = load_image(args.photo)
    seg = load_segmenter(args.model, args.engine, args.threads, args.model_path).segment(rgb)
    stem = args.photo.stem
    for name in seg.spec.classes:
        save_image(mask_image(seg.confidence(name)), args.out / f"{stem}.mask.{name}.png")
    path = save_image(overlay(rgb, seg.category_mask, seg.spec.classes), args.out / f"{stem}.overlay.png")
    report(seg)
    print(f"wrote {len(seg.spec.classes)} masks and {path}")
    return 0

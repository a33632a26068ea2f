"""`selfie-tvm hair PHOTO --color HEX`: recolour the hair."""

from __future__ import annotations

from pathlib import Path

from ..acquire import resolve_model
from ..colors import parse_color, to_hex
from ..effects import recolor_hair
from ..images import load_image, save_image
from ..pipeline import hair_model_for, load_segmenter
from ..registry import registry
from .common import add_model_options, report


def register(sub) -> None:
    p = sub.add_parser("hair", help="recolour the hair in a photo",
                       description="Recolour the hair in a photo, with the hair class of a model that has one "
                                   "(--model if it has a hair class, else the registry's hair model).")
    p.add_argument("photo", type=Path, help="a JPEG, PNG or WebP photo")
    p.add_argument("--color", required=True, help="the new colour: #RRGGBB, RRGGBB, #RGB or a name (e.g. purple)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="output file (default: PHOTO.hair.png)")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    color = parse_color(args.color)
    rgb = load_image(args.photo)
    spec = (resolve_model(args.model, path=args.model_path).spec if args.model_path
            else registry().get(args.model or registry().default))
    hair_model = hair_model_for(spec)
    model_path = args.model_path if hair_model == spec.name else None
    seg = load_segmenter(hair_model, args.engine, args.threads, model_path).segment(rgb)
    out = recolor_hair(rgb, seg.confidence(seg.spec.hair_class), color)
    path = save_image(out, args.out or args.photo.with_suffix(".hair.png"))
    report(seg)
    print(f"hair recoloured to {to_hex(color)}: {path}")
    return 0

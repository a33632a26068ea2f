"""The README's gallery: what the project does, on real photos with real MediaPipe models.

`python -m benchmark.gallery` (what `nox -s gallery` runs) writes small PNGs to results/gallery/:
the `/segmentation` overlay, hair recolouring, background replacement (each beside the original,
with a caption naming the model that made it) and the latest benchmark's latency box plot. The
effects go through the same runtime functions as the CLI and the bot (runtime.pipeline,
runtime.effects). The main model cannot be downloaded offline, so the pictures use MediaPipe's
other real models; the twin's masks would be meaningless.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from runtime.artifacts import results_root
from runtime.effects import overlay, recolor_hair, replace_background
from runtime.engines import LITERT, engine_label
from runtime.pipeline import load_segmenter

from .photos import portraits, scenery

HAIR_COLOR = (138, 43, 226)  # "#8a2be2", the README's example
ENGINE = LITERT


@dataclass(frozen=True)
class Item:
    path: Path
    caption: str


def _side_by_side(panels: list[np.ndarray], caption: str, width: int) -> Image.Image:
    """Panels in a row at one height, scaled to `width` in all, with a caption strip below."""
    height = min(p.shape[0] for p in panels)
    images = [Image.fromarray(p).resize((round(p.shape[1] * height / p.shape[0]), height), Image.Resampling.LANCZOS)
              for p in panels]
    row = Image.new("RGB", (sum(i.width for i in images), height), (255, 255, 255))
    x = 0
    for img in images:
        row.paste(img, (x, 0))
        x += img.width
    row = row.resize((width, max(1, round(height * width / row.width))), Image.Resampling.LANCZOS)
    size = max(8, width // 40)
    font = ImageFont.load_default(size=size)
    lines = _wrap(caption, font, width - 8)
    strip = Image.new("RGB", (width, (size + 4) * len(lines) + 6), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        draw.text((4, 3 + i * (size + 4)), line, fill=(0, 0, 0), font=font)
    out = Image.new("RGB", (width, row.height + strip.height), (255, 255, 255))
    out.paste(row, (0, 0))
    out.paste(strip, (0, row.height))
    return out


def _wrap(text: str, font, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _save(img: Image.Image, path: Path) -> Path:
    """A small PNG: 256-colour palette (octree keeps the legend's colours; dithered), zlib at its best."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG).save(
        path, optimize=True)
    return path


def _model_note(seg) -> str:
    return f"model {seg.spec.name} (MediaPipe's real weights), engine {engine_label(ENGINE)}"


def segmentation(photo: np.ndarray, out: Path, width: int) -> Item:
    seg = load_segmenter("deeplab_v3", ENGINE).segment(photo)
    caption = f"/segmentation overlay (astronaut): {_model_note(seg)}"
    result = overlay(photo, seg.category_mask, seg.spec.classes)
    return Item(_save(_side_by_side([photo, result], caption, width), out / "segmentation.png"), caption)


def hair(photo: np.ndarray, out: Path, width: int) -> Item:
    seg = load_segmenter("hair_segmentation", ENGINE).segment(photo)
    caption = f"/change_hair_color #8a2be2 (astronaut): {_model_note(seg)}"
    result = recolor_hair(photo, seg.confidence(seg.spec.hair_class), HAIR_COLOR)
    return Item(_save(_side_by_side([photo, result], caption, width), out / "hair_color.png"), caption)


def background(photo: np.ndarray, new_background: np.ndarray, out: Path, width: int) -> Item:
    seg = load_segmenter("selfie_segmenter", ENGINE).segment(photo)
    caption = f"/change_background (Grace Hopper, rocket): {_model_note(seg)}"
    result = replace_background(photo, seg.person_confidence(), new_background)
    return Item(_save(_side_by_side([photo, new_background, result], caption, width), out / "background.png"),
                caption)


def latest_box_plot(root: Path | None = None) -> Path | None:
    """The newest benchmark report's latency box plot (by the report's date), if there is one."""
    def date(box: Path) -> str:
        env = box.parent / "environment.json"
        return json.loads(env.read_text()).get("date", "") if env.is_file() else ""

    boxes = sorted((root or results_root()).glob("*/*/latency_box.png"), key=date)
    return boxes[-1] if boxes else None


def latency(out: Path, width: int, root: Path | None = None) -> Item | None:
    box = latest_box_plot(root)
    if box is None:
        print("no benchmark report yet (./nox -s benchmark): no latency plot in the gallery")
        return None
    img = Image.open(box).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    caption = f"latency per engine and thread count, from {box.parent.relative_to(box.parents[2])}/report.md"
    return Item(_save(img, out / "latency_box.png"), caption)


def make_gallery(out: Path, width: int = 512, results: Path | None = None) -> list[Item]:
    p = portraits()
    items = [segmentation(p["astronaut"], out, width), hair(p["astronaut"], out, width),
             background(p["grace_hopper"], scenery(), out, width), latency(out, width, results)]
    return [i for i in items if i is not None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmark.gallery", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: results/gallery)")
    ap.add_argument("--width", type=int, default=512, help="width of every picture in pixels")
    args = ap.parse_args(argv)
    for item in make_gallery(args.out or results_root() / "gallery", args.width):
        print(f"{item.path} ({item.path.stat().st_size / 1024:.0f} KiB): {item.caption}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

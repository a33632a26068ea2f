"""Image effects built on segmentation masks: hair recolour, background replacement, overlay."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.color import lab2rgb, rgb2lab

from .images import cover

# How far hair lightness moves toward the target colour's lightness (0 keeps it, 1 matches it).
# Partial, so that bleaching dark hair to blond still looks like the same hair.
LIGHTNESS_SHIFT = 0.6
LAB_BAND_ROWS = 256
BLEND_BAND_ROWS = 64


def _row_bands(height: int) -> list[slice]:
    return [slice(y, y + BLEND_BAND_ROWS) for y in range(0, height, BLEND_BAND_ROWS)]


def _blend(base: np.ndarray, top: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """alpha * top + (1 - alpha) * base, rounded; where alpha == 0 the base is returned unchanged.
    A band of rows at a time: the float copies are a band's, not the photo's (several of them at 4096x4096
    would be ~200 MB each)."""
    out = np.empty(base.shape, np.uint8)
    for b in _row_bands(base.shape[0]):
        a = alpha[b, ..., None].astype(np.float32)
        mixed = base[b].astype(np.float32) * (1.0 - a) + top[b].astype(np.float32) * a
        out[b] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out


def recolor_hair(rgb: np.ndarray, hair_mask: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """Give hair the target hue and chroma in CIELAB, keeping its own lightness texture.

    The per-pixel lightness variation (strands, highlights, shadows) is kept and only shifted
    partway toward the target's lightness; chroma follows the local lightness so that shadows
    don't glow. The result is blended under the soft mask.
    """
    mask = np.clip(hair_mask.astype(np.float32), 0.0, 1.0)
    if not mask.any():
        return rgb.copy()
    target = rgb2lab(np.array([[color]], dtype=np.uint8))[0, 0]
    # CIELAB needs float64 copies of the pixels: work in bands of rows, so a large photo needs a band's
    # worth of them at a time, not several of the whole photo. Only rows with hair are converted.
    bands = [slice(y, y + LAB_BAND_ROWS) for y in range(0, rgb.shape[0], LAB_BAND_ROWS)]
    bands = [b for b in bands if mask[b].any()]
    lightness = {b.start: rgb2lab(rgb[b])[..., 0].astype(np.float32) for b in bands}
    weight = float(mask.sum())
    hair_L = sum(float((lightness[b.start] * mask[b]).sum()) for b in bands) / weight
    out = rgb.copy()
    for b in bands:
        new_L = np.clip(lightness.pop(b.start) + LIGHTNESS_SHIFT * (target[0] - hair_L), 0.0, 100.0)
        shade = np.clip(new_L / max(target[0], 1.0), 0.25, 1.25)
        recolored = np.stack([new_L, target[1] * shade, target[2] * shade], axis=-1)
        out[b] = _blend(rgb[b], np.clip(lab2rgb(recolored) * 255.0, 0, 255), mask[b])
    return out


def replace_background(rgb: np.ndarray, person_matte: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Composite the person over `background` (scaled to cover, centre-cropped) with a soft matte."""
    h, w = rgb.shape[:2]
    bg = cover(background, w, h)
    return _blend(bg, rgb, np.clip(person_matte, 0.0, 1.0))


def class_palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct colours; class 0 (background) is black."""
    colors = [(0, 0, 0)]
    for i in range(1, n):
        hue = ((i - 1) * 0.618034) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors


def mask_image(confidence: np.ndarray) -> np.ndarray:
    """A class confidence (H, W) in [0, 1] as an 8-bit grayscale picture."""
    scaled = confidence * np.float32(255.0)  # the one float copy, rounded and clipped in place
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def overlay(rgb: np.ndarray, category: np.ndarray, classes: tuple[str, ...], opacity: float = 0.5,
            legend: bool = True) -> np.ndarray:
    palette = np.array(class_palette(len(classes)), dtype=np.uint8)
    out = np.empty_like(rgb)
    for b in _row_bands(rgb.shape[0]):  # the class colours and their weights made a band at a time too
        out[b] = _blend(rgb[b], palette[category[b]], np.where(category[b] > 0, opacity, 0.0).astype(np.float32))
    return _draw_legend(out, classes, palette) if legend else out


def _draw_legend(rgb: np.ndarray, classes: tuple[str, ...], palette: np.ndarray) -> np.ndarray:
    img = Image.fromarray(rgb)
    size = max(12, min(img.size) // 40)
    font = ImageFont.load_default(size=size)
    row = size + 6
    width = max(int(font.getlength(c)) for c in classes) + row + 16
    panel = Image.new("RGB", (width, row * len(classes) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for i, (name, color) in enumerate(zip(classes, palette, strict=True)):
        y = 4 + i * row
        draw.rectangle([6, y + 2, 6 + size, y + 2 + size], fill=tuple(int(v) for v in color), outline=(0, 0, 0))
        draw.text((12 + size, y), name, fill=(0, 0, 0), font=font)
    canvas = Image.new("RGB", (img.width + panel.width, max(img.height, panel.height)), (255, 255, 255))
    canvas.paste(img, (0, 0))
    canvas.paste(panel, (img.width, 0))
    return np.asarray(canvas)

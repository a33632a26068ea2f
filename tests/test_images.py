"""Photo loading: formats, EXIF orientation, grayscale, alpha, size caps, and specific errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from runtime.errors import CorruptImageError, ImageTooLargeError, UnsupportedImageFormatError
from runtime.images import MAX_PIXELS, cover, load_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_supported_formats(astronaut, fmt):
    rgb = load_image(_encode(Image.fromarray(astronaut), fmt))
    assert rgb.shape == astronaut.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - astronaut).mean() < 8  # lossy formats stay close


def test_exif_orientation_is_applied(astronaut):
    img = Image.fromarray(astronaut[:, :400])  # 512 tall, 400 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rgb = load_image(_encode(img, "JPEG", exif=exif))
    assert rgb.shape[:2] == (400, 512)


def test_grayscale_becomes_rgb(astronaut):
    gray = Image.fromarray(astronaut).convert("L")
    rgb = load_image(_encode(gray, "PNG"))
    assert rgb.shape == (512, 512, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_alpha_is_flattened_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :] = (255, 0, 0, 255)  # opaque red top, transparent bottom
    rgb = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[7, 7]) == (255, 255, 255)


def test_large_photo_is_downscaled_under_the_cap(astronaut):
    big = Image.fromarray(astronaut).resize((3000, 2000))
    rgb = load_image(_encode(big, "PNG"), max_side=1024)
    assert rgb.shape == (683, 1024, 3)


def test_corrupt_jpeg(astronaut):
    data = _encode(Image.fromarray(astronaut), "JPEG")
    with pytest.raises(CorruptImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_truncated_header():
    with pytest.raises(CorruptImageError, match="corrupt or truncated"):
        load_image(b"\xff\xd8\xff\xe0 truncated")


def test_not_an_image():
    with pytest.raises(UnsupportedImageFormatError, match="JPEG, PNG, WEBP"):
        load_image(b"%PDF-1.4 this is not a photo")


def test_empty_file():
    with pytest.raises(CorruptImageError, match="empty"):
        load_image(b"")


def test_unsupported_format(astronaut):
    with pytest.raises(UnsupportedImageFormatError, match="GIF images are not supported"):
        load_image(_encode(Image.fromarray(astronaut), "GIF"))


def test_huge_dimensions_refused():
    side = int(MAX_PIXELS**0.5) + 100
    data = _encode(Image.new("L", (side, side)), "PNG", optimize=False)
    with pytest.raises(ImageTooLargeError, match="the limit is 100,000,000"):
        load_image(data)


def test_cover_keeps_aspect_and_fills(astronaut):
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, 150:250] = 255  # a white band in the middle
    out = cover(wide, 200, 200)
    assert out.shape == (200, 200, 3)
    assert out[100, 100].min() > 200  # centre crop keeps the middle band

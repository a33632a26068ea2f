"""Loading photos safely: formats, EXIF orientation, grayscale/alpha, size caps."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    CorruptImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    UnsupportedImageFormatError,
)

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP")
# Photos whose long side exceeds this are downscaled before anything else (segmentation runs
# at 256 px anyway; this bounds memory and effect cost).
MAX_SIDE = 4096
# Refuse outright what could be a decompression bomb (about 100 megapixels).
MAX_PIXELS = 100_000_000
ALPHA_BACKGROUND = (255, 255, 255)
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # more than 8 bits a channel: scaled to 8 bits


def probe_image(data: bytes) -> Image.Image:
    """Open `data` and check what its header says (format, pixel count), decoding no pixels: the errors
    load_image would raise first, at the cost of a header read."""
    if not data:
        raise CorruptImageError("the file is empty")
    with warnings.catch_warnings():
        # Pillow warns from ~89 Mpx and refuses from twice that; our own, exact limit follows.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise UnsupportedImageFormatError(
                f"not an image this tool can read; send a {', '.join(SUPPORTED_FORMATS)} photo") from None
        except Image.DecompressionBombError:
            raise ImageTooLargeError(
                f"the image has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; the limit is {MAX_PIXELS:,}") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise CorruptImageError(f"the file is corrupt or truncated ({e})") from None
    if img.format not in SUPPORTED_FORMATS:
        raise UnsupportedImageFormatError(
            f"{img.format} images are not supported; send a {', '.join(SUPPORTED_FORMATS)} photo")
    if img.width * img.height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"the image is {img.width}x{img.height} ({img.width * img.height:,} pixels); "
            f"the limit is {MAX_PIXELS:,} pixels")
    return img


def load_image(source: str | Path | bytes, *, max_side: int = MAX_SIDE) -> np.ndarray:
    """Return an RGB uint8 array (H, W, 3), upright as the camera meant it, at most `max_side` px a side.

    Memory stays near the output's size where the format allows: a JPEG is decoded already scaled down
    (draft mode), a 16-bit image is scaled down before it becomes 8-bit (no float copy of the original).
    """
    data = source if isinstance(source, bytes) else _read(Path(source))
    img = probe_image(data)
    if img.format == "JPEG" and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img.draft(None, (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise CorruptImageError(f"the {img.format} file is corrupt or truncated ({e})") from None
    # Scale down first, then convert and turn upright: every copy after the decoded one is of the small image.
    if max(img.size) > max_side:
        if img.mode in WIDE_MODES:  # Pillow's reducing step does not take them
            scale = max_side / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.Resampling.BILINEAR)
        else:
            if img.mode not in ("RGB", "RGBA", "L", "LA"):
                img = _to_rgb(img)
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    img = _to_rgb(img)
    ImageOps.exif_transpose(img, in_place=True)
    return np.asarray(img, dtype=np.uint8).copy()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageNotFoundError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise ImageNotFoundError(f"{path} is a directory; give the photo's file") from None
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror}") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode in WIDE_MODES:  # already at most max_side a side: a float32 copy is small
        arr = np.asarray(img, dtype=np.float32)
        low = float(arr.min())
        span = float(arr.max()) - low or 1.0
        img = Image.fromarray(((arr - low) * (255.0 / span)).astype(np.uint8))
    return img if img.mode == "RGB" else img.convert("RGB")


def encode_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def save_image(rgb: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover width x height, keeping the aspect ratio, then centre-crop."""
    return np.asarray(ImageOps.fit(Image.fromarray(rgb), (width, height), Image.Resampling.LANCZOS))

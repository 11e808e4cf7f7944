"""Decoding untrusted image files into RGB arrays, and writing derived JPEGs.

Every failure becomes `BadImage` with a sentence a user can act on.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The pixel limit the app decodes by default (settings.FACEWEB_MAX_IMAGE_PIXELS). decode_image
# checks its own `max_pixels` before decoding; Pillow's process-wide guard (Image.MAX_IMAGE_PIXELS)
# is set from the same setting when the app starts (recognition/apps.py): a second line.
DEFAULT_MAX_PIXELS = 60_000_000
# File name suffixes of the image formats the app reads (stored originals keep one of these).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})

EXIF_DATETIME_ORIGINAL = 0x9003

# Photo formats a file may be in, checked on the format Pillow detects (never on the file name).
# Only these plugins are tried: an EPS or PDF is never handed to Ghostscript, nor an exotic format
# to a rarely used decoder. JPEG covers MPO (phone cameras); HEIF when a plugin registered it.
PHOTO_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
PHOTO_FORMATS_TEXT = "JPEG, PNG, WebP, GIF, TIFF or BMP"
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "HEIF": "image/heif",
}
SUFFIXES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/tiff": ".tif",
    "image/bmp": ".bmp",
    "image/heif": ".heic",
}


def photo_formats() -> tuple[str, ...]:
    Image.init()
    return PHOTO_FORMATS + (("HEIF",) if "HEIF" in Image.OPEN else ())


def not_a_photo_message() -> str:
    extra = " or HEIC" if "HEIF" in photo_formats() else ""
    return f"this is not a photo in a format we take ({PHOTO_FORMATS_TEXT}{extra})"


EXIF_IFD = 0x8769


class BadImage(ValueError):
    """The file cannot be used as a photo; the message says why, for the user."""


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # HxWx3 uint8, orientation applied
    width: int
    height: int
    format: str
    taken_at: datetime | None


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}:
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        lo = 0.0 if mode.startswith("I;16") else min(float(arr.min()), 0.0)
        scaled = np.clip((arr - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if mode in {"RGBA", "LA", "PA"} or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _taken_at(img: Image.Image) -> datetime | None:
    try:
        raw = img.getexif().get_ifd(EXIF_IFD).get(EXIF_DATETIME_ORIGINAL)
        if not raw:
            return None
        return datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    except (ValueError, TypeError, KeyError, OSError):
        return None


def bomb_message(exc: Image.DecompressionBombError, max_pixels: int) -> str:
    """The reason for an image Pillow refused to open as a decompression bomb."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)) / 1e6:.1f} megapixels, " if found else ""
    return (
        f"the image is {size}over the limit of {max_pixels / 1e6:.0f} megapixels "
        "(too large to decode safely)"
    )


def decode_image(source: bytes | Path, *, max_pixels: int) -> DecodedImage:
    """Decode an untrusted image; apply EXIF orientation; convert any mode Pillow reads to RGB."""
    if isinstance(source, Path):
        if not source.exists():
            raise BadImage("the stored file is missing")
        size = source.stat().st_size
        opener: IO[bytes] | Path = source
    else:
        size = len(source)
        opener = io.BytesIO(source)
    if size == 0:
        raise BadImage("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Between Pillow's limit and twice it Pillow only warns; our own check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(opener, formats=photo_formats())
            width, height = img.size
            if width * height > max_pixels:
                raise BadImage(
                    f"the image is {width}x{height} = {width * height / 1e6:.1f} megapixels, "
                    f"over the limit of {max_pixels / 1e6:.0f} megapixels"
                )
            if width == 0 or height == 0:
                raise BadImage("the image has no pixels")
            fmt = img.format or "unknown"
            taken_at = _taken_at(img)
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb = np.ascontiguousarray(np.asarray(_to_rgb(upright), dtype=np.uint8))
    except BadImage:
        raise
    except UnidentifiedImageError as exc:
        raise BadImage(not_a_photo_message()) from exc
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (twice the app's limit) fired before our check could.
        raise BadImage(bomb_message(exc, max_pixels)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"the image data is truncated or corrupt ({exc})") from exc
    except MemoryError as exc:
        raise BadImage("the image is too large to decode in memory") from exc
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadImage("the image could not be converted to RGB")
    return DecodedImage(
        rgb=rgb, width=rgb.shape[1], height=rgb.shape[0], format=fmt, taken_at=taken_at
    )


def jpeg_bytes(rgb: np.ndarray, *, max_side: int | None = None, quality: int = 85) -> bytes:
    img = Image.fromarray(rgb)
    if max_side is not None and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def crop_with_margin(
    rgb: np.ndarray, left: int, top: int, width: int, height: int, margin: float = 0.3
) -> np.ndarray:
    """The face box grown by `margin` on every side, clipped to the image (for display)."""
    h, w = rgb.shape[:2]
    dx, dy = int(width * margin), int(height * margin)
    x0, y0 = max(0, left - dx), max(0, top - dy)
    x1, y1 = min(w, left + width + dx), min(h, top + height + dy)
    return rgb[y0:y1, x0:x1]

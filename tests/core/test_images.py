"""Decoding untrusted files: every bad input becomes BadImage with a readable reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recognition.core.images import BadImage, decode_image, jpeg_bytes
from tests.conftest import FACES_DIR

LIMIT = 60_000_000
OBAMA = FACES_DIR / "photos" / "obama" / "obama.jpg"


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_it_decodes_a_real_jpeg_to_rgb() -> None:
    decoded = decode_image(OBAMA, max_pixels=LIMIT)
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (decoded.height, decoded.width, 3)
    assert decoded.format == "JPEG"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"this is a text file pretending to be a jpeg\n" * 20, "not a photo in a format we take"),
        (OBAMA.read_bytes()[: len(OBAMA.read_bytes()) // 2], "truncated or corrupt"),
    ],
    ids=["zero-bytes", "text-with-image-extension", "truncated-jpeg"],
)
def test_it_rejects_bad_files_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadImage, match=reason):
        decode_image(data, max_pixels=LIMIT)


def test_it_refuses_a_decompression_bomb_before_decoding() -> None:
    # 20000 x 20000 pixels of one colour compress to a few hundred kB of PNG.
    bomb = _encode(Image.new("L", (20000, 20000)), "PNG", optimize=True)
    assert len(bomb) < 2_000_000
    with pytest.raises(BadImage, match="megapixels, over the limit"):
        decode_image(bomb, max_pixels=LIMIT)


def test_it_reports_a_missing_stored_file(tmp_path: Path) -> None:
    with pytest.raises(BadImage, match="missing"):
        decode_image(tmp_path / "gone.jpg", max_pixels=LIMIT)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("I;16", "PNG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("LA", "PNG"), ("L", "GIF")],
)
def test_it_converts_every_mode_to_rgb(mode: str, fmt: str) -> None:
    base = Image.open(OBAMA).convert("RGB").resize((120, 90))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    elif mode == "P":
        img = base.quantize(64)
    else:
        img = base.convert(mode)
    decoded = decode_image(_encode(img, fmt), max_pixels=LIMIT)
    assert decoded.rgb.shape == (90, 120, 3)
    # The conversion keeps the picture: mean brightness near the original's.
    assert abs(decoded.rgb.mean() - np.asarray(base).mean()) < 25


def test_it_applies_exif_orientation() -> None:
    img = Image.open(OBAMA).convert("RGB").resize((200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    decoded = decode_image(_encode(img, "JPEG", exif=exif), max_pixels=LIMIT)
    assert (decoded.width, decoded.height) == (100, 200)


def test_it_writes_bounded_jpegs() -> None:
    rgb = decode_image(OBAMA, max_pixels=LIMIT).rgb
    thumb = Image.open(io.BytesIO(jpeg_bytes(rgb, max_side=64)))
    assert max(thumb.size) == 64 and thumb.format == "JPEG"


def test_it_answers_pillows_own_bomb_guard_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow refuses images over twice its limit before our check runs; the user still reads how
    large the image is."""
    small = FACES_DIR / "photos" / "obama" / "obama_small.jpg"
    with Image.open(small) as img:
        pixels = img.width * img.height
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels // 3)
    with pytest.raises(BadImage, match=f"the image is {pixels / 1e6:.1f} megapixels, over the"):
        decode_image(small, max_pixels=LIMIT)

"""Hostile and odd uploads, through the real upload view and API and then the real photo task.

Every case must end in a state the user can see, with a reason in words: rejected at upload (the
reason is in the response) or a photo marked failed (the error is on its page). An accepted
original is kept, and no photo is left `processing`.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from PIL import Image

from gallery.models import Gallery, Photo
from tests.conftest import FACES_DIR, photo_path

SMALL_FACE = "obama/obama_small.jpg"  # 320x240, one face: fast through the real pipeline


def _small_face_image() -> Image.Image:
    return Image.open(photo_path(SMALL_FACE)).convert("RGB")


def _encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A 50-byte PNG whose header claims width x height pixels: a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def gray16_png() -> bytes:
    gray = np.asarray(_small_face_image().convert("L"), dtype=np.uint16) * 257
    img = Image.fromarray(gray)
    assert img.mode == "I;16"
    return _encode(img, "PNG")


def cmyk_jpeg() -> bytes:
    return _encode(_small_face_image().convert("CMYK"), "JPEG")


def palette_png() -> bytes:
    img = _small_face_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    return _encode(img, "PNG")


def _animated_gif() -> bytes:
    frames = [Image.new("P", (60, 40), i) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    data = photo_path("biden/biden.jpg").read_bytes()
    return data[: len(data) // 2]


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    content: Callable[[], bytes]
    rejected: str = ""  # part of the reason given at upload
    failed: str = ""  # part of the photo's error after processing
    faces: int | None = None  # faces found when processing succeeds


CASES = [
    Case("text file named .jpg", "holiday.jpg", lambda: b"not a photo at all\n" * 50,
         rejected="not a photo in a format we take"),
    Case("zero bytes", "empty.jpg", lambda: b"", rejected="empty (0 bytes)"),
    Case("decompression bomb header", "bomb.png", lambda: png_header_only(30000, 30000),
         rejected="900.0 megapixels, over the limit"),
    Case("truncated jpeg", "half.jpg", truncated_jpeg, failed="truncated or corrupt"),
    Case("16-bit grayscale png", "gray16.png", gray16_png, faces=1),
    Case("cmyk jpeg", "cmyk.jpg", cmyk_jpeg, faces=1),
    Case("palette png", "palette.png", palette_png, faces=1),
    Case("32-bit rgba png", "obama_32bit_rgba.png",
         lambda: photo_path("obama/obama_32bit_rgba.png").read_bytes(), faces=1),
    Case("one pixel", "dot.png", lambda: _encode(Image.new("RGB", (1, 1)), "PNG"), faces=0),
    Case("a 20000x2 strip", "strip.png", lambda: _encode(Image.new("L", (20000, 2)), "PNG"),
         faces=0),
    Case("animated gif", "anim.gif", lambda: _animated_gif(), faces=0),
    Case("photo without a face", "horse.png",
         lambda: (FACES_DIR / "nonface" / "horse.png").read_bytes(), faces=0),
]  # fmt: skip


def _upload_html(
    client: Client, gallery: Gallery, files: list[SimpleUploadedFile], capture: object
) -> str:
    url = reverse("gallery:photo-upload", args=[gallery.pk])
    with capture(execute=True):  # type: ignore[operator]
        response = client.post(url, {"files": files}, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def _assert_finished_and_visible(client: Client, photo: Photo, case: Case) -> None:
    photo.refresh_from_db()
    assert photo.status in {Photo.Status.DONE, Photo.Status.FAILED}, photo.status
    assert Path(photo.original.path).exists(), "the stored original must be kept"
    page = client.get(reverse("gallery:photo-detail", args=[photo.pk])).content.decode()
    if case.failed:
        assert photo.status == Photo.Status.FAILED
        assert case.failed in photo.error
        assert escape(photo.error) in page
    else:
        assert photo.status == Photo.Status.DONE, photo.error
        assert photo.faces.count() == case.faces
        assert photo.thumbnail and photo.preview
        if case.faces == 0:
            assert "No faces were found in this photo." in page


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_it_ends_every_bad_upload_in_a_visible_state(
    case: Case,
    alice_client: Client,
    gallery: Gallery,
    django_capture_on_commit_callbacks: object,
) -> None:
    upload = SimpleUploadedFile(case.filename, case.content(), "application/octet-stream")
    panel = _upload_html(alice_client, gallery, [upload], django_capture_on_commit_callbacks)

    photos = list(gallery.photos.all())
    if case.rejected:
        assert photos == []
        assert case.filename in panel and escape(case.rejected) in panel
        assert "Not accepted" in panel
        return
    assert len(photos) == 1
    _assert_finished_and_visible(alice_client, photos[0], case)
    # The progress panel now reports the outcome and has stopped polling.
    batch_url = reverse("gallery:batch-progress", args=[gallery.pk, photos[0].batch_id])
    final = alice_client.get(batch_url).content.decode()
    assert "hx-trigger" not in final
    if case.failed:
        assert escape(photos[0].error) in final


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.rejected], ids=[c.name for c in CASES if c.rejected]
)
def test_it_gives_the_reason_for_a_rejected_file_through_the_api(
    case: Case, alice_client: Client, gallery: Gallery
) -> None:
    upload = SimpleUploadedFile(case.filename, case.content(), "application/octet-stream")
    response = alice_client.post(
        reverse("api:gallery-photos", args=[gallery.pk]), {"files": [upload]}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == []
    assert body["rejected"][0]["name"] == case.filename
    assert case.rejected in body["rejected"][0]["error"]


def test_it_rejects_the_same_photo_twice_in_one_gallery(
    alice_client: Client, gallery: Gallery, django_capture_on_commit_callbacks: object
) -> None:
    data = photo_path(SMALL_FACE).read_bytes()
    files = [SimpleUploadedFile("first.jpg", data), SimpleUploadedFile("again.jpg", data)]
    panel = _upload_html(alice_client, gallery, files, django_capture_on_commit_callbacks)
    assert "again.jpg" in panel and escape("already in this gallery (as 'first.jpg')") in panel

    # And again in a later upload, now through the API.
    later = alice_client.post(
        reverse("api:gallery-photos", args=[gallery.pk]),
        {"files": [SimpleUploadedFile("third.jpg", data)]},
    )
    assert later.status_code == 400
    assert "already in this gallery" in later.json()["rejected"][0]["error"]
    photo = gallery.photos.get()
    assert photo.original_name == "first.jpg" and photo.status == Photo.Status.DONE


def test_it_rejects_a_file_over_the_upload_size_limit(
    alice_client: Client, gallery: Gallery, settings: object
) -> None:
    settings.FACEWEB_MAX_UPLOAD_BYTES = 10_000  # type: ignore[attr-defined]
    big = SimpleUploadedFile("big.jpg", photo_path(SMALL_FACE).read_bytes())
    small = SimpleUploadedFile("small.jpg", _encode(Image.new("RGB", (8, 8)), "JPEG"))
    response = alice_client.post(
        reverse("api:gallery-photos", args=[gallery.pk]), {"files": [big, small]}
    )
    assert response.status_code == 201
    body = response.json()
    assert [p["original_name"] for p in body["accepted"]] == ["small.jpg"]
    assert body["rejected"][0]["name"] == "big.jpg"
    assert "over the 9.8 KB upload limit" in body["rejected"][0]["error"]


def test_it_rejects_an_image_over_the_pixel_limit(
    alice_client: Client, gallery: Gallery, settings: object
) -> None:
    settings.FACEWEB_MAX_IMAGE_PIXELS = 50_000  # type: ignore[attr-defined]
    upload = SimpleUploadedFile("wide.jpg", photo_path(SMALL_FACE).read_bytes())  # 76,800 px
    response = alice_client.post(
        reverse("gallery:photo-upload", args=[gallery.pk]), {"files": [upload]}, follow=True
    )
    page = response.content.decode()
    assert "wide.jpg" in page and "320x240 = 0.1 megapixels, over the limit" in page
    assert not gallery.photos.exists()


def _raw_multipart(files: list[tuple[str, bytes]], boundary: str = "XyZBoundary") -> bytes:
    """A multipart body written by hand: the test client would strip the paths from names."""
    parts = []
    for name, data in files:
        header = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(header.encode("utf-8") + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def test_it_never_lets_a_hostile_file_name_reach_the_file_system(
    alice: User,
    alice_client: Client,
    gallery: Gallery,
    django_capture_on_commit_callbacks: object,
) -> None:
    names = ["../../etc/passwd.jpg", "bell\x07\x1b[31mred\ttab.jpg", "a" * 400 + ".jpg"]
    files = [
        (name, _encode(Image.new("RGB", (40, 30), (i * 60, 10, 10)), "JPEG"))
        for i, name in enumerate(names)
    ]
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = alice_client.post(
            reverse("api:gallery-photos", args=[gallery.pk]),
            data=_raw_multipart(files),
            content_type="multipart/form-data; boundary=XyZBoundary",
        )
    assert response.status_code == 201, response.content
    assert response.json()["rejected"] == []
    photos = list(gallery.photos.order_by("id"))
    assert len(photos) == 3
    for photo in photos:
        photo.refresh_from_db()
        assert photo.status == Photo.Status.DONE, photo.error
        assert "/" not in photo.original_name and ".." not in photo.original_name
        assert all(ch.isprintable() for ch in photo.original_name)
        assert len(photo.original_name) <= 255
        stored = Path(photo.original.path).resolve()
        assert stored.is_relative_to(Path(photo.original.storage.location).resolve())
        assert stored.name.split(".")[0].isalnum() and stored.suffix == ".jpg"
    assert photos[0].original_name == "passwd.jpg"
    assert photos[1].original_name.startswith("bell") and "red" in photos[1].original_name
    page = alice_client.get(reverse("gallery:gallery-detail", args=[gallery.pk]))
    assert page.status_code == 200


def test_it_keeps_pillows_bomb_guard_on_at_the_apps_pixel_limit(settings: object) -> None:
    from PIL import Image as PILImage

    assert PILImage.MAX_IMAGE_PIXELS == settings.FACEWEB_MAX_IMAGE_PIXELS  # type: ignore[attr-defined]

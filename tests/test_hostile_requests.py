"""Requests an attacker (or a broken client) sends: each used to be a server error or a bare
"Bad Request (400)", and is now answered plainly."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from gallery.models import GalleryMember, Photo
from tests.conftest import client_for
from tests.factories import jpeg, make_world

UNICODE_DIGIT = "²"  # str.isdigit() says yes, int() says no


def _image(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def staff_client(staff: User) -> Client:
    return client_for(staff)


def test_it_refuses_unicode_digits_in_ids_without_a_server_error(
    alice: User, bob: User, staff_client: Client
) -> None:
    world = make_world(alice, bob, GalleryMember.Role.EDITOR)
    client = client_for(alice)
    d = UNICODE_DIGIT
    responses = {
        "suggestions ?person": client.get(reverse("gallery:suggestion-list") + f"?person={d}"),
        "gallery ?batch": client.get(
            reverse("gallery:gallery-detail", args=[world.gallery.pk]) + f"?batch={d}"
        ),
        "suggestions bulk": client.post(
            reverse("gallery:suggestion-bulk"), {"face": [d], "action": "confirm"}
        ),
        "unknown name": client.post(reverse("gallery:unknown-name"), {"face": [d], "name": "Zed"}),
        "person merge": client.post(
            reverse("gallery:person-merge", args=[world.person.pk]), {"into": d}
        ),
        "review queue ?gallery": staff_client.get(reverse("review:review-queue") + f"?gallery={d}"),
        "review bulk": staff_client.post(
            reverse("review:review-bulk"), {"face": [d], "decision": "approve"}
        ),
        "huge id": client.get(reverse("gallery:suggestion-list") + "?person=" + "9" * 40),
        # int() refuses more than 4300 digits: the upload poll's count was a server error.
        "poll ?seen huge": client.get(
            reverse("gallery:batch-progress", args=[world.gallery.pk, world.batch.pk])
            + "?seen="
            + "9" * 5000
        ),
        "poll ?seen": client.get(
            reverse("gallery:batch-progress", args=[world.gallery.pk, world.batch.pk])
            + f"?seen={d}"
        ),
        "grid ?person": client.get(
            reverse("gallery:gallery-detail", args=[world.gallery.pk]) + f"?person={d}"
        ),
        "photo ?person": client.get(
            reverse("gallery:photo-detail", args=[world.photo.pk]) + f"?person={d}"
        ),
        "bulk photos": client.post(
            reverse("gallery:photos-bulk", args=[world.gallery.pk]),
            {"action": "delete", "photo": [d, "9" * 5000]},
        ),
        "bulk move target": client.post(
            reverse("gallery:photos-bulk", args=[world.gallery.pk]),
            {"action": "move", "photo": [world.photo.pk], "target": d},
        ),
        "cover face": client.post(
            reverse("gallery:person-cover", args=[world.person.pk]), {"face": "9" * 5000}
        ),
    }
    for name, response in responses.items():
        assert response.status_code < 500, name
    assert responses["review queue ?gallery"].status_code == 200


def test_it_signs_out_a_nul_session_cookie_instead_of_failing(alice: User) -> None:
    client = Client(HTTP_COOKIE=f"{settings.SESSION_COOKIE_NAME}=abcdefgh\x00ijklmnop")
    assert client.get(reverse("login")).status_code == 200
    page = client.get(reverse("gallery:gallery-list"))
    assert page.status_code == 302 and page["Location"].startswith(reverse("login"))
    api = client.get(reverse("api:gallery-list"))
    assert api.status_code == 401


def test_it_refuses_nul_in_credentials_and_the_address(alice: User) -> None:
    client = Client()
    nul_key = client.get(reverse("api:gallery-list"), headers={"Authorization": "Bearer fw_\x00"})
    assert nul_key.status_code == 401
    assert (
        client.post(reverse("login"), {"username": "ali\x00ce", "password": "x"}).status_code == 200
    )
    signed_in = client_for(alice)
    assert signed_in.get(reverse("gallery:person-list") + "?q=%00").status_code == 400
    api = signed_in.get(reverse("api:person-list") + "?q=%00")
    assert api.status_code == 400 and "NUL" in api.json()["detail"]


def test_it_answers_options_on_api_detail_routes(alice: User) -> None:
    world = make_world(alice)
    client = client_for(alice)
    for url in (
        reverse("api:gallery-detail", args=[world.gallery.pk]),
        reverse("api:photo-detail", args=[world.photo.pk]),
        reverse("api:person-detail", args=[world.person.pk]),
        reverse("api:face-detail", args=[world.face.pk]),
        reverse("api:gallery-photos", args=[world.gallery.pk]),
    ):
        response = client.options(url)
        assert response.status_code == 200, (url, response.content[:300])
        assert "Allow" in response


def test_it_takes_only_photo_formats_and_serves_the_detected_type(
    alice: User, django_capture_on_commit_callbacks: object
) -> None:
    world = make_world(alice)
    client = client_for(alice)
    eps = SimpleUploadedFile("drawing.eps", _image("EPS"), "application/postscript")
    png_named_jpg = SimpleUploadedFile("holiday.jpg", _image("PNG"), "image/jpeg")
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = client.post(
            reverse("api:gallery-photos", args=[world.gallery.pk]),
            {"files": [eps, png_named_jpg]},
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["rejected"] == [
        {
            "name": "drawing.eps",
            "error": "this is not a photo in a format we take (JPEG, PNG, WebP, GIF, TIFF or BMP)",
        }
    ]
    photo = Photo.objects.get(pk=body["accepted"][0]["id"])
    assert photo.content_type == "image/png" and str(photo.original.name).endswith(".png")
    assert photo.original_name == "holiday.jpg"
    served = client.get(reverse("gallery:media", kwargs={"path": photo.original.name}))
    assert served["Content-Type"] == "image/png"


def test_it_bounds_the_tags_of_a_gallery(alice: User) -> None:
    client = client_for(alice)
    many = client.post(
        reverse("api:gallery-list"),
        {"name": "Tagged", "tags": [f"t{i}" for i in range(51)]},
        content_type="application/json",
    )
    assert many.status_code == 400 and "tags" in many.json()
    enough = client.post(
        reverse("api:gallery-list"),
        {"name": "Tagged", "tags": [f"t{i}" for i in range(50)]},
        content_type="application/json",
    )
    assert enough.status_code == 201


def test_it_explains_an_upload_with_too_many_files(alice: User, settings: object) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3  # type: ignore[attr-defined]
    settings.FACEWEB_MAX_FILES_PER_UPLOAD = 3  # type: ignore[attr-defined]
    world = make_world(alice)
    client = client_for(alice)

    def files() -> list[SimpleUploadedFile]:
        return [SimpleUploadedFile(f"{i}.jpg", jpeg(8, 8, (i, 0, 0))) for i in range(4)]

    api = client.post(reverse("api:gallery-photos", args=[world.gallery.pk]), {"files": files()})
    assert api.status_code == 400
    assert "more than 3 files" in api.json()["detail"]
    page = client.post(reverse("gallery:photo-upload", args=[world.gallery.pk]), {"files": files()})
    assert page.status_code == 400
    assert "more than 3 files; the limit is 3 per upload" in page.content.decode()
    assert Photo.objects.filter(gallery=world.gallery).count() == 1


def test_it_follows_next_only_to_pages_of_this_site(
    alice: User, bob: User, staff_client: Client
) -> None:
    """Every form with a `next` field (one check, gallery/views/_common.safe_next)."""
    world = make_world(alice, bob, GalleryMember.Role.EDITOR)
    client = client_for(alice)
    forms = [
        (client, reverse("gallery:photos-bulk", args=[world.gallery.pk]), {"action": "x"}),
        (client, reverse("gallery:suggestion-bulk"), {"action": "x"}),
        (client, reverse("gallery:unknown-ignore"), {}),
        (client, reverse("gallery:unknown-name"), {}),
        (client, reverse("gallery:person-hide", args=[world.person.pk]), {"hidden": "0"}),
        (staff_client, reverse("review:review-bulk"), {"decision": "approve"}),
    ]
    for who, url, data in forms:
        for bad in ("https://evil.test/", "//evil.test/", "/\\evil.test/", "javascript:alert(1)"):
            location = who.post(url, {**data, "next": bad})["Location"]
            assert "evil" not in location and "javascript" not in location, (url, bad)
        assert who.post(url, {**data, "next": "/timeline/"})["Location"] == "/timeline/", url
        # Over https, a plain-http address of the same site is not followed either.
        same = "http://testserver/timeline/"
        assert who.post(url, {**data, "next": same}, secure=True)["Location"] != same, url


def test_it_answers_too_many_fields_with_the_branded_page(alice: User) -> None:
    """Over DATA_UPLOAD_MAX_NUMBER_FIELDS: the 400 page looks like the other error pages."""
    world = make_world(alice)
    fields = {f"photo{i}": "1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    page = client_for(alice).post(reverse("gallery:photos-bulk", args=[world.gallery.pk]), fields)
    html = page.content.decode()
    assert page.status_code == 400
    assert 'class="topbar"' in html and 'class="error-page card"' in html
    assert "The request is too large for the server; please send less at once." in html


def test_it_sends_security_headers_and_a_content_security_policy(alice: User) -> None:
    response = client_for(alice).get(reverse("gallery:gallery-list"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    # No inline script or handler on the pages the policy would block.
    body = response.content.decode()
    assert "<script>" not in body and " onclick=" not in body and " onsubmit=" not in body

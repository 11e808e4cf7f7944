"""Search by face: the page and the API, on real photos with the real models.

The library is built from real embeddings (tests/factories.py); the probes go through the whole
probe path (decode, detect, align, embed, out-of-distribution filter, staged search).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image, ImageFilter

from gallery.actions.people import do_create_person
from gallery.models import Gallery, Photo
from recognition.actions.identity import do_tag_face
from tests.conftest import PHOTOS, upload_file
from tests.factories import face_in_new_photo

SEARCH = "/search/"
API = "/api/search/"


@pytest.fixture
def library(gallery: Gallery, alice: User) -> dict[str, object]:
    obama = do_create_person(alice, "Obama", by=alice)
    biden = do_create_person(alice, "Biden", by=alice)
    for relative in ("obama/obama.jpg", "obama/obama1.jpg"):
        do_tag_face(face_in_new_photo(gallery, relative), obama, by=alice)
    do_tag_face(face_in_new_photo(gallery, "biden/biden.jpg"), biden, by=alice)
    return {"obama": obama, "biden": biden}


def _tmp_files(media_root: Path) -> list[Path]:
    return sorted((media_root / "tmp").glob("*")) if (media_root / "tmp").exists() else []


def test_it_finds_the_person_on_the_page(
    library: dict[str, object], alice_client: Client, _media_root: Path
) -> None:
    response = alice_client.post(SEARCH, {"image": upload_file("obama/obama_small.jpg")})
    assert response.status_code == 200
    outcome = response.context["outcome"]
    assert outcome.hits[0].person == library["obama"]
    assert outcome.answer == "same" and outcome.hits[0].distance <= outcome.same
    assert {f.photo.original_name for f in outcome.hits[0].photos} == {"obama.jpg", "obama1.jpg"}
    body = response.content.decode()
    assert 'data-answer="same"' in body and "This is <strong>Obama</strong>" in body
    # The probe is not kept anywhere: no photo row, nothing left under MEDIA_ROOT/tmp.
    assert Photo.objects.count() == 3 and _tmp_files(_media_root) == []


def test_it_answers_through_the_api(library: dict[str, object], alice_client: Client) -> None:
    response = alice_client.post(API, {"image": upload_file("obama/obama_small.jpg")})
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == "matched" and data["answer"] == "same"
    best = data["candidates"][0]
    assert best["person"]["name"] == "Obama" and best["verdict"] == "same"
    assert len(best["photos"]) == 2 and best["photo_count"] == 2
    assert data["faces"][0]["ood"]["rejected"] is False
    assert data["thresholds"]["same"] < data["thresholds"]["possible"]
    others = [c for c in data["candidates"][1:] if c["person"]["name"] == "Biden"]
    assert all(c["verdict"] == "unknown" for c in others)


def test_it_only_searches_galleries_the_user_can_see(
    library: dict[str, object], charlie: User, charlie_client: Client, bob_client: Client
) -> None:
    data = charlie_client.post(API, {"image": upload_file("obama/obama_small.jpg")}).json()
    assert data["status"] == "unknown" and data["candidates"] == []
    # bob is a member of alice's gallery: he finds Obama there.
    data = bob_client.post(API, {"image": upload_file("obama/obama_small.jpg")}).json()
    assert data["candidates"][0]["person"]["name"] == "Obama"


def test_it_says_unknown_for_a_stranger(library: dict[str, object], alice_client: Client) -> None:
    response = alice_client.post(SEARCH, {"image": upload_file("kit_harington/john1.jpeg")})
    assert response.context["outcome"].answer == "unknown"
    assert "nobody in your galleries looks like this face" in response.content.decode()


def _blurred(relative: str, radius: float) -> SimpleUploadedFile:
    with Image.open(PHOTOS / relative) as img:
        out = io.BytesIO()
        img.convert("RGB").filter(ImageFilter.GaussianBlur(radius)).save(out, format="JPEG")
    return SimpleUploadedFile("blurred.jpg", out.getvalue(), content_type="image/jpeg")


def test_it_refuses_an_out_of_distribution_probe(
    library: dict[str, object], alice_client: Client
) -> None:
    response = alice_client.post(SEARCH, {"image": _blurred("obama/obama1.jpg", 14)})
    assert response.status_code == 200
    outcome = response.context["outcome"]
    assert outcome.rejected and outcome.hits == []
    body = response.content.decode()
    assert "This face cannot be searched for: it is not clear enough" in body
    assert "Too blurry to recognise reliably" in body and "Laplacian" not in body
    assert any("blur" in reason for reason in outcome.face.reasons)
    data = alice_client.post(API, {"image": _blurred("obama/obama1.jpg", 14)}).json()
    assert data["status"] == "out_of_distribution" and data["candidates"] == []
    assert data["faces"][0]["ood"]["reasons"]


def test_it_asks_which_face_and_forgets_the_probe_after_use(
    library: dict[str, object], alice_client: Client, bob_client: Client, _media_root: Path
) -> None:
    response = alice_client.post(SEARCH, {"image": upload_file("_multi_face/obama_and_biden.jpg")})
    pick = response.context["pick"]
    assert len(pick["faces"]) >= 2
    largest = max(pick["faces"], key=lambda f: f["face"].area)["face"].index
    assert pick["selected"] == largest
    assert 'class="facebox pick-box' in response.content.decode()
    assert len(_tmp_files(_media_root)) == 1
    # Someone else cannot use the token.
    assert bob_client.post(SEARCH, {"token": pick["token"], "face": 0}).status_code == 410
    faces = {f["face"].index: f["face"] for f in pick["faces"]}
    response = alice_client.post(SEARCH, {"token": pick["token"], "face": largest})
    assert response.status_code == 200
    assert response.context["outcome"].face.left == faces[largest].left
    assert _tmp_files(_media_root) == []
    assert alice_client.post(SEARCH, {"token": pick["token"], "face": 0}).status_code == 410


def test_it_picks_a_face_by_index_through_the_api(
    library: dict[str, object], alice_client: Client
) -> None:
    data = alice_client.post(
        API, {"image": upload_file("_multi_face/obama_and_biden.jpg"), "face": 99}
    ).json()
    assert "face" in data
    data = alice_client.post(API, {"image": upload_file("_multi_face/obama_and_biden.jpg")}).json()
    sizes = [f["box"]["width"] * f["box"]["height"] for f in data["faces"]]
    assert data["selected_face"] == sizes.index(max(sizes))


def test_it_adds_the_photo_to_a_gallery_only_when_asked(
    library: dict[str, object], gallery: Gallery, alice_client: Client
) -> None:
    before = Photo.objects.count()
    alice_client.post(SEARCH, {"image": upload_file("obama/obama2.jpg"), "gallery": gallery.pk})
    added = Photo.objects.order_by("-id").first()
    assert Photo.objects.count() == before + 1 and added.original_name == "obama2.jpg"
    assert added.gallery == gallery and added.status == Photo.Status.QUEUED


def test_it_explains_files_without_a_face(alice_client: Client, faces_dir: Path) -> None:
    response = alice_client.post(
        SEARCH, {"image": upload_file(faces_dir / "nonface" / "coffee.png")}
    )
    assert response.status_code == 422
    assert "No face was found" in response.content.decode()
    bad = SimpleUploadedFile("x.jpg", b"not an image")
    assert alice_client.post(SEARCH, {"image": bad}).status_code == 400
    bad = SimpleUploadedFile("x.jpg", b"not an image")
    assert alice_client.post(API, {"image": bad}).status_code == 400


def test_it_refuses_anonymous_users(client: Client) -> None:
    assert client.get(SEARCH).status_code == 302
    assert client.post(API).status_code == 401  # a Bearer challenge (faceweb/settings.py)
    assert reverse("gallery:search") == SEARCH


def test_it_still_finds_a_small_face_in_a_large_probe(
    library: dict[str, object], alice_client: Client
) -> None:
    # A 70 px face on an 800x600 canvas: under HOG's window without upsampling, so the probe's
    # fast first pass misses it and the upsampled pass must find it.
    with Image.open(PHOTOS / "obama" / "obama_small.jpg") as img:
        small = img.convert("RGB").resize((160, 120))
    canvas = Image.new("RGB", (800, 600), (200, 200, 200))
    canvas.paste(small, (300, 200))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=95)
    probe = SimpleUploadedFile("small.jpg", out.getvalue(), content_type="image/jpeg")
    data = alice_client.post(API, {"image": probe}).json()
    assert len(data["faces"]) == 1 and data["faces"][0]["box"]["width"] < 80
    assert data["candidates"][0]["person"]["name"] == "Obama"

"""Faces people fix by hand, on real photos with the real models: a face drawn where the detector
found none is aligned, embedded, filtered and matched like a detected one (and survives a
reprocess); "not a face" removes a false detection, is recorded as a training label, and can be
taken back."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from gallery.actions.people import do_create_person, do_set_cover_face
from gallery.actions.photos import do_move_photos, do_requeue_photo, do_upload_photos
from gallery.models import Face, FaceEvent, Gallery, Person, Photo
from gallery.presentation import plain_reason
from recognition.actions import processing
from recognition.actions.identity import do_ignore_faces, do_tag_face
from recognition.actions.manual import do_mark_not_face, do_unmark_not_face
from recognition.actions.processing import _missing_det_score, do_add_face
from recognition.models import ReviewDecision, Template
from recognition.tasks import process_photo
from tests.conftest import photo_path, upload_file

HTMX = {"HX-Request": "true"}


def _upload(gallery: Gallery, user: User, relative: str, capture: object) -> Photo:
    with capture(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file(relative)], by=user)
    photo = result.accepted[0]
    photo.refresh_from_db()
    assert photo.status == Photo.Status.DONE, photo.error
    return photo


@pytest.fixture
def obama(gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object) -> Person:
    """Obama named on two photos, so a new face of his is recognised."""
    person = do_create_person(alice, "Obama", by=alice)
    for relative in ("obama/obama.jpg", "obama/obama1.jpg"):
        photo = _upload(gallery, alice, relative, django_capture_on_commit_callbacks)
        do_tag_face(photo.faces.get(), person, by=alice)
    return person


def test_it_matches_a_face_drawn_where_the_detector_found_none(
    gallery: Gallery,
    alice: User,
    obama: Person,
    alice_client: Client,
    django_capture_on_commit_callbacks: object,
) -> None:
    photo = _upload(gallery, alice, "obama/obama2.jpg", django_capture_on_commit_callbacks)
    missed = photo.faces.get()
    box = {"left": missed.left - 15, "top": missed.top - 20, "width": missed.width + 30}
    box["height"] = missed.height + 30
    missed.delete()  # as if the detector had not seen it

    response = alice_client.post(reverse("gallery:face-add", args=[photo.pk]), box, headers=HTMX)

    assert response.status_code == 200
    face = photo.faces.get()
    assert face.manual and face.embedding is not None and len(face.landmarks) == 5
    assert face.ood_status == Face.Quality.ACCEPTED
    assert face.person == obama and face.assignment == Face.Assignment.SUGGESTED
    html = response.content.decode()
    assert f'id="face-{face.pk}"' in html and ">Tagged automatically</span>" in html
    assert 'hx-swap-oob="beforeend:#photo-stage"' in html and f'id="box-{face.pk}"' in html
    assert "Face added and recognised as Obama" in html  # the flash message, out of band
    assert FaceEvent.objects.filter(face=face, action="face_drawn", user=alice).exists()

    # Drawing the same face twice is refused with a reason for the page's status line.
    again = alice_client.post(reverse("gallery:face-add", args=[photo.pk]), box, headers=HTMX)
    assert again.status_code == 422 and again["HX-Retarget"] == "#draw-status"
    assert "already marked" in again.content.decode()

    # Reprocessing keeps the hand-drawn face (and its tag); the detector's copy is dropped.
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_requeue_photo(photo)
    assert process_photo.delay(photo.pk).get() in {"done", "skipped"}
    assert list(photo.faces.values_list("pk", "manual")) == [(face.pk, True)]


def test_it_stores_a_drawn_face_where_its_photo_is_now(
    gallery: Gallery,
    alice: User,
    django_capture_on_commit_callbacks: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The models run before the transaction: a photo moved meanwhile got its new face's crop
    under the old gallery's path (a crop nobody could fetch). The row is read again under its
    lock. (The move runs from inside the model step, as another request would.)"""
    photo = _upload(gallery, alice, "obama/obama2.jpg", django_capture_on_commit_callbacks)
    missed = photo.faces.get()
    box = (missed.left, missed.top, missed.width, missed.height)
    missed.delete()
    target = Gallery.objects.create(owner=alice, name="Moved here")
    real_analyse_box = processing.analyse_box

    def move_meanwhile(*args: Any) -> Any:
        analysed = real_analyse_box(*args)
        assert do_move_photos([Photo.objects.get(pk=photo.pk)], target, by=alice).moved
        return analysed

    monkeypatch.setattr(processing, "analyse_box", move_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        face = do_add_face(photo, box, by=alice)  # `photo` still says the old gallery
    crop = face.crop.name or ""
    assert crop.split("/")[1] == str(target.pk) and default_storage.exists(crop)


def test_it_refuses_a_box_no_face_fits(
    gallery: Gallery, alice: User, alice_client: Client, django_capture_on_commit_callbacks: object
) -> None:
    photo = _upload(gallery, alice, "biden/biden.jpg", django_capture_on_commit_callbacks)
    url = reverse("gallery:face-add", args=[photo.pk])
    response = alice_client.post(url, {"left": 5, "top": 5, "width": 4, "height": 30}, headers=HTMX)
    assert response.status_code == 422
    assert "Draw a larger box" in response.content.decode()
    # Boxes no face fits: larger than the photo (it became a whole-photo face), a sliver.
    for box, words in [
        ({"left": 0, "top": 0, "width": 10**9, "height": 10**9}, "larger than the photo"),
        ({"left": 5, "top": 5, "width": 200, "height": 12}, "about as tall as it is wide"),
        ({"left": 5, "top": 5, "width": 20, "height": 90}, "about as tall as it is wide"),
    ]:
        response = alice_client.post(url, box, headers=HTMX)
        assert response.status_code == 422 and words in response.content.decode(), box
    response = alice_client.post(url, {"left": 5}, headers=HTMX)
    assert response.status_code == 422 and photo.faces.count() == 1


def test_it_removes_a_false_detection_and_takes_it_back(
    gallery: Gallery,
    alice: User,
    obama: Person,
    alice_client: Client,
    bob_client: Client,
    charlie_client: Client,
) -> None:
    face = obama.faces.get(photo__original_name="obama1.jpg")
    assert Template.objects.filter(face=face).exists()
    do_set_cover_face(obama, face, by=alice)
    url = reverse("gallery:face-not-face", args=[face.pk])
    assert charlie_client.post(url, headers=HTMX).status_code == 404

    # bob edits this gallery, but "not a face" teaches the filter: the owner decides.
    assert bob_client.post(url, headers=HTMX).status_code == 403
    response = alice_client.post(url, headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert ">Not a face</span>" in html and "It is a face after all" in html
    assert f'<span id="box-{face.pk}" hidden hx-swap-oob="true">' in html  # the box goes
    face.refresh_from_db()
    assert face.review_status == Face.Review.NOT_FACE and face.person is None
    assert not face.is_trusted and not Template.objects.filter(face=face).exists()
    obama.refresh_from_db()
    assert obama.cover_face is None  # no longer a face of his, so not his cover
    label = ReviewDecision.objects.get(face=face)
    assert label.decision == ReviewDecision.Decision.NOT_FACE
    assert label.reviewer is not None and label.reviewer.username == "alice"
    page = alice_client.get(reverse("gallery:photo-detail", args=[face.photo_id])).content.decode()
    assert f'id="box-{face.pk}"' not in page and "1 box marked as not a face" in page

    response = alice_client.post(reverse("gallery:face-use", args=[face.pk]), headers=HTMX)

    assert response.status_code == 200 and "The box is back as a face" in response.content.decode()
    face.refresh_from_db()
    assert face.review_status == Face.Review.NONE and face.is_trusted
    # Back as it was: Obama confirmed (a person's word, not the matcher's guess), his template
    # and his cover.
    assert face.person == obama and face.assignment == Face.Assignment.CONFIRMED
    assert Template.objects.filter(face=face, person=obama).exists()
    obama.refresh_from_db()
    assert obama.cover_face == face
    assert not ReviewDecision.objects.filter(face=face).exists()


def test_it_gives_an_ignored_face_back_ignored_and_a_guess_back_to_the_matcher(
    gallery: Gallery, alice: User, obama: Person, django_capture_on_commit_callbacks: object
) -> None:
    stranger = _upload(gallery, alice, "biden/biden.jpg", django_capture_on_commit_callbacks)
    ignored = stranger.faces.get()
    do_ignore_faces([ignored], by=alice)
    do_unmark_not_face(do_mark_not_face(ignored, by=alice), by=alice)
    ignored.refresh_from_db()
    assert ignored.assignment == Face.Assignment.IGNORED and ignored.person is None

    photo = _upload(gallery, alice, "obama/obama2.jpg", django_capture_on_commit_callbacks)
    guessed = photo.faces.get()
    assert guessed.person == obama and guessed.assignment == Face.Assignment.SUGGESTED
    do_unmark_not_face(do_mark_not_face(guessed, by=alice), by=alice)
    guessed.refresh_from_db()
    assert guessed.person == obama and guessed.assignment == Face.Assignment.SUGGESTED


def test_it_leaves_a_tag_it_cannot_give_back_to_the_matcher(
    gallery: Gallery, alice: User, obama: Person
) -> None:
    """Obama confirmed on another face of the photo meanwhile: two faces of one photo are never
    the same person, so the undone box is matched like any face instead."""
    face = obama.faces.get(photo__original_name="obama1.jpg")
    do_mark_not_face(face, by=alice)
    other = Face.objects.create(
        photo=face.photo, left=1, top=1, width=40, height=40, landmarks=[[1.0, 1.0]] * 5
    )
    do_tag_face(other, obama, by=alice)
    face = do_unmark_not_face(face, by=alice)
    face.refresh_from_db()
    assert face.person_id != obama.pk and face.review_status == Face.Review.NONE


def test_it_processes_a_face_the_detector_cannot_see(
    gallery: Gallery,
    alice: User,
    alice_client: Client,
    django_capture_on_commit_callbacks: object,
    settings: object,
) -> None:
    """obama.jpg turned 60 degrees: HOG finds no face, even in the drawn box. The drawn face is
    still aligned (the chip is turned upright) and judged by the filter, which is told the
    detection score it has no way to know is missing (not 0, which alone rejects clear faces).
    (CenterFace, the default detector, finds this face; HOG stands for any detector's miss.)"""
    settings.FACEWEB_DETECTOR = "hog"  # type: ignore[attr-defined]
    with Image.open(photo_path("obama/obama.jpg")) as img:
        upright = img.convert("RGB")
    turned = upright.rotate(60, expand=True, fillcolor=(128, 128, 128))
    out = io.BytesIO()
    turned.save(out, format="JPEG", quality=92)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(
            gallery, [SimpleUploadedFile("turned.jpg", out.getvalue())], by=alice
        )
    photo = Photo.objects.get(pk=result.accepted[0].pk)
    assert photo.status == Photo.Status.DONE and photo.faces.count() == 0
    # Where the face went: its centre turned about the image centre.
    angle = np.deg2rad(60)
    cx, cy = 0.5 * upright.width, 0.3 * upright.height  # obama.jpg: a portrait, face up high
    dx, dy = cx - upright.width / 2, cy - upright.height / 2
    nx = dx * np.cos(angle) + dy * np.sin(angle) + turned.width / 2
    ny = -dx * np.sin(angle) + dy * np.cos(angle) + turned.height / 2
    side = int(0.45 * upright.width)
    box = {"left": int(nx - side / 2), "top": int(ny - side / 2), "width": side, "height": side}

    response = alice_client.post(reverse("gallery:face-add", args=[photo.pk]), box)

    assert response.status_code == 302
    face = photo.faces.get()
    event = FaceEvent.objects.get(face=face, action="face_drawn")
    assert event.data["detector_agreed"] is False
    assert face.det_score == pytest.approx(_missing_det_score()) and face.det_score > 0.5
    assert face.quality["roll"] != 0 and face.embedding is not None
    # The filter keeps a face turned this far out of matching, and says why in words.
    assert face.ood_status == Face.Quality.REJECTED
    reasons = [plain_reason(r) for r in face.ood_reasons]
    assert reasons and all(r.code != "other" for r in reasons), face.ood_reasons

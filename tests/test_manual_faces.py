"""Faces people fix by hand, on real photos with the real models: a face drawn where the detector
found none is aligned, embedded, filtered and matched like a detected one (and survives a
reprocess); "not a face" removes a false detection, is recorded as a training label, and can be
taken back."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.actions.people import do_create_person
from gallery.actions.photos import do_requeue_photo, do_upload_photos
from gallery.models import Face, FaceEvent, Gallery, Person, Photo
from recognition.actions.identity import do_tag_face
from recognition.models import ReviewDecision, Template
from recognition.tasks import process_photo
from tests.conftest import upload_file

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


def test_it_refuses_a_box_too_small_to_be_a_face(
    gallery: Gallery, alice: User, alice_client: Client, django_capture_on_commit_callbacks: object
) -> None:
    photo = _upload(gallery, alice, "biden/biden.jpg", django_capture_on_commit_callbacks)
    url = reverse("gallery:face-add", args=[photo.pk])
    response = alice_client.post(url, {"left": 5, "top": 5, "width": 4, "height": 30}, headers=HTMX)
    assert response.status_code == 422
    assert "Draw a larger box" in response.content.decode()
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
    url = reverse("gallery:face-not-face", args=[face.pk])
    assert charlie_client.post(url, headers=HTMX).status_code == 404

    response = bob_client.post(url, headers=HTMX)  # bob edits this gallery

    assert response.status_code == 200
    html = response.content.decode()
    assert ">Not a face</span>" in html and "It is a face after all" in html
    assert f'<span id="box-{face.pk}" hidden hx-swap-oob="true">' in html  # the box goes
    face.refresh_from_db()
    assert face.review_status == Face.Review.NOT_FACE and face.person is None
    assert not face.is_trusted and not Template.objects.filter(face=face).exists()
    label = ReviewDecision.objects.get(face=face)
    assert label.decision == ReviewDecision.Decision.NOT_FACE and label.reviewer.username == "bob"
    page = alice_client.get(reverse("gallery:photo-detail", args=[face.photo_id])).content.decode()
    assert f'id="box-{face.pk}"' not in page and "1 box marked as not a face" in page

    response = alice_client.post(reverse("gallery:face-is-face", args=[face.pk]), headers=HTMX)

    assert response.status_code == 200 and "The box is back as a face" in response.content.decode()
    face.refresh_from_db()
    assert face.review_status == Face.Review.NONE and face.is_trusted
    # Matched again: Obama, automatically this time (the confirmed tag was a person's word).
    assert face.person == obama and face.assignment == Face.Assignment.SUGGESTED
    assert not ReviewDecision.objects.filter(face=face).exists()

"""The photo task: real models on real photos, idempotency, failures and reprocessing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from gallery.actions.people import do_create_person
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery, Photo
from recognition.actions.identity import do_tag_face
from recognition.tasks import process_photo
from tests.conftest import photo_path, upload_file


def _upload(gallery: Gallery, user: User, relative: str, capture: object) -> Photo:
    with capture(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file(relative)], by=user)
    assert not result.rejected, result.rejected
    photo = result.accepted[0]
    photo.refresh_from_db()
    return photo


def test_it_stores_faces_with_boxes_landmarks_and_embeddings(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object
) -> None:
    photo = _upload(
        gallery, alice, "_multi_face/obama_and_biden.jpg", django_capture_on_commit_callbacks
    )
    assert photo.status == Photo.Status.DONE, photo.error
    with Image.open(photo_path("_multi_face/obama_and_biden.jpg")) as original:
        assert (photo.width, photo.height) == original.size
    faces = list(photo.faces.all())
    assert len(faces) == 3
    for face in faces:
        assert 0 <= face.left < photo.width and 0 <= face.top < photo.height
        assert face.width > 20 and face.height > 20
        assert len(face.landmarks) == 5
        assert len(face.embedding) == 128 and face.embedder_version
        assert face.crop.name and Path(face.crop.path).exists()
    assert Path(photo.thumbnail.path).exists() and Path(photo.preview.path).exists()


def test_it_does_nothing_when_run_twice(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object
) -> None:
    photo = _upload(gallery, alice, "biden/biden.jpg", django_capture_on_commit_callbacks)
    face_ids = set(photo.faces.values_list("pk", flat=True))
    assert process_photo.delay(photo.pk).get() == "skipped"
    assert set(photo.faces.values_list("pk", flat=True)) == face_ids


def test_it_records_a_photo_without_faces_as_done(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object, faces_dir: Path
) -> None:
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(
            gallery, [upload_file(faces_dir / "nonface" / "coffee.png")], by=alice
        )
    photo = Photo.objects.get(pk=result.accepted[0].pk)
    assert photo.status == Photo.Status.DONE and photo.faces.count() == 0


def test_it_fails_with_a_reason_when_the_original_is_missing(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object
) -> None:
    photo = _upload(gallery, alice, "biden/biden.jpg", django_capture_on_commit_callbacks)
    Path(photo.original.path).unlink()
    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.QUEUED)
    process_photo.delay(photo.pk)
    photo.refresh_from_db()
    assert photo.status == Photo.Status.FAILED
    assert "missing" in photo.error


def test_it_never_leaves_a_photo_processing_after_an_internal_error(
    gallery: Gallery,
    alice: User,
    django_capture_on_commit_callbacks: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash in the detector")

    monkeypatch.setattr("recognition.actions.processing.analyse_image", explode)
    photo = _upload(gallery, alice, "biden/biden.jpg", django_capture_on_commit_callbacks)
    assert photo.status == Photo.Status.FAILED
    assert "simulated crash" in photo.error
    assert Path(photo.original.path).exists()


def test_it_requeues_failed_and_stale_photos_and_keeps_names(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object
) -> None:
    photo = _upload(
        gallery, alice, "_multi_face/obama_and_biden.jpg", django_capture_on_commit_callbacks
    )
    face = photo.faces.order_by("left").first()
    assert face is not None
    person = do_create_person(alice, "Left person", by=alice)
    do_tag_face(face, person, by=alice)
    Photo.objects.filter(pk=photo.pk).update(
        status=Photo.Status.PROCESSING,
        processing_started_at=timezone.now() - timedelta(hours=2),
    )
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        call_command("reprocess")
    photo.refresh_from_db()
    assert photo.status == Photo.Status.DONE
    assert photo.faces.count() == 3
    tagged = Face.objects.get(photo=photo, person=person)
    assert tagged.assignment == Face.Assignment.CONFIRMED
    assert abs(tagged.left - face.left) <= 2


def test_it_leaves_recent_processing_photos_alone(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object
) -> None:
    photo = _upload(gallery, alice, "biden/biden.jpg", django_capture_on_commit_callbacks)
    Photo.objects.filter(pk=photo.pk).update(
        status=Photo.Status.PROCESSING, processing_started_at=timezone.now()
    )
    call_command("reprocess")
    photo.refresh_from_db()
    assert photo.status == Photo.Status.PROCESSING

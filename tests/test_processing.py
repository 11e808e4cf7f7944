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

    monkeypatch.setattr("recognition.actions.processing.detect_and_align", explode)
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


def _queue(gallery: Gallery, user: User, relatives: list[str], capture: object) -> list[Photo]:
    """Upload photos without running their tasks: they stay QUEUED."""
    with capture(execute=False):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file(r) for r in relatives], by=user)
    assert not result.rejected, result.rejected
    return result.accepted


def test_one_task_processes_a_batch_of_queued_photos(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object, settings: object
) -> None:
    settings.FACEWEB_WORKER_BATCH = 3  # type: ignore[attr-defined]
    first, second, third, fourth = _queue(
        gallery,
        alice,
        [
            "_multi_face/two_people.jpg",
            "_multi_face/kit_with_rose.jpg",
            "obama/obama-480p.jpg",
            "biden/biden.jpg",
        ],
        django_capture_on_commit_callbacks,
    )
    assert process_photo.delay(first.pk).get() == "done"
    statuses = dict(Photo.objects.values_list("pk", "status"))
    assert [statuses[p.pk] for p in (first, second, third)] == [Photo.Status.DONE] * 3
    assert statuses[fourth.pk] == Photo.Status.QUEUED  # the batch holds three
    # Faces of every photo of the batch, each stored with its own photo.
    assert [Face.objects.filter(photo=p).count() for p in (first, second, third)] == [2, 2, 1]
    # The batch-mates' own messages find nothing left to do.
    assert process_photo.delay(second.pk).get() == "skipped"
    assert process_photo.delay(fourth.pk).get() == "done"


def test_a_bad_or_crashing_photo_fails_alone_and_the_batch_goes_on(
    gallery: Gallery,
    alice: User,
    django_capture_on_commit_callbacks: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing, crashing, good = _queue(
        gallery,
        alice,
        ["obama/obama-240p.jpg", "obama/obama-720p.jpg", "biden/biden.jpg"],
        django_capture_on_commit_callbacks,
    )
    Path(missing.original.path).unlink()
    from recognition.actions import processing

    real = processing.detect_and_align

    def crash_on_720p(rgb: object, config: object) -> object:
        if getattr(rgb, "shape", (0,))[0] == 720:
            raise RuntimeError("simulated crash in the detector")
        return real(rgb, config)  # type: ignore[arg-type]

    monkeypatch.setattr("recognition.actions.processing.detect_and_align", crash_on_720p)
    assert process_photo.delay(missing.pk).get() == "done"
    missing.refresh_from_db()
    crashing.refresh_from_db()
    good.refresh_from_db()
    assert missing.status == Photo.Status.FAILED and "missing" in missing.error
    assert crashing.status == Photo.Status.FAILED and "simulated crash" in crashing.error
    assert good.status == Photo.Status.DONE and good.faces.count() == 1


def test_a_face_hog_missed_turned_from_the_camera_is_stored_and_nameable(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object
) -> None:
    # The cameraman looks into his camera, head turned and half hidden: dlib's HOG finds no
    # face here; CenterFace does. The filter decides whether it is trusted for matching.
    photo = _upload(
        gallery, alice, "_unlabeled/skimage_camera.png", django_capture_on_commit_callbacks
    )
    [face] = photo.faces.all()
    assert 190 < face.left + face.width / 2 < 260 and 110 < face.top + face.height / 2 < 200
    assert face.ood_status in (Face.Quality.ACCEPTED, Face.Quality.REJECTED)
    assert face.quality and "yaw" in face.quality
    person = do_create_person(alice, "Cameraman", by=alice)
    do_tag_face(face, person, by=alice)
    face.refresh_from_db()
    assert face.person == person and face.assignment == Face.Assignment.CONFIRMED

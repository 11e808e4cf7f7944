"""A photo's status has one writer (gallery/actions/photos.py): FAILED is final, attempts are
capped and counted with F(), stuck photos heal with a recorded reason, and a photo deleted while
it is processed ends cleanly with its files gone."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from celery.signals import worker_ready
from django.contrib.auth.models import User
from django.utils import timezone

from faceweb.db import parse_database_url
from gallery.actions.photos import (
    Requeue,
    do_claim_photo,
    do_delete_photo,
    do_heal_photos,
    do_move_photos,
    do_requeue_photo,
    do_upload_photos,
    processing_version,
)
from gallery.models import FaceEvent, Gallery, Photo
from recognition.actions.processing import do_process_photo
from tests.conftest import REPO, upload_file


def _stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def queued(alice: User) -> Photo:
    """A real photo, uploaded and still queued (its message is not run)."""
    gallery = Gallery.objects.create(owner=alice, name="Lifecycle")
    result = do_upload_photos(gallery, [upload_file("obama/obama_small.jpg")], by=alice)
    return result.accepted[0]


def test_it_keeps_failed_photos_failed_when_workers_start(
    queued: Photo, django_capture_on_commit_callbacks: object
) -> None:
    """Every worker start used to re-queue every FAILED photo (attempts reached 6 after 5
    starts) and clear its error."""
    Photo.objects.filter(pk=queued.pk).update(
        status=Photo.Status.FAILED,
        error="the image data is truncated or corrupt",
        attempts=1,
        processed_with=processing_version(),
    )
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
            worker_ready.send(sender=None)
    photo = Photo.objects.get(pk=queued.pk)
    assert photo.status == Photo.Status.FAILED and photo.attempts == 1
    assert photo.error == "the image data is truncated or corrupt"


def test_it_gives_a_failed_photo_one_more_try_after_a_processing_change(
    queued: Photo, django_capture_on_commit_callbacks: object
) -> None:
    Photo.objects.filter(pk=queued.pk).update(
        status=Photo.Status.FAILED, error="old failure", attempts=2, processed_with="0/old/old"
    )
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        worker_ready.send(sender=None)
    photo = Photo.objects.get(pk=queued.pk)
    assert photo.status == Photo.Status.DONE, photo.error
    assert photo.processed_with == processing_version() and photo.attempts == 1
    assert FaceEvent.objects.filter(action="photo_requeued", data__reason="new_version").exists()


def test_it_counts_attempts_and_fails_a_photo_that_never_finishes(queued: Photo) -> None:
    first = do_claim_photo(queued.pk, "task-1")
    assert first is not None and Photo.objects.get(pk=queued.pk).attempts == 1
    # Another message for the same photo finds nothing to claim; the same one (redelivered
    # after its worker died) takes it back.
    assert do_claim_photo(queued.pk, "task-2") is None
    assert do_claim_photo(queued.pk, "task-1") is not None
    assert do_claim_photo(queued.pk, "task-1") is not None
    assert Photo.objects.get(pk=queued.pk).attempts == 3
    # The cap (3 by default): the next start fails it, with the reason, for good.
    assert do_claim_photo(queued.pk, "task-1") is None
    photo = Photo.objects.get(pk=queued.pk)
    assert photo.status == Photo.Status.FAILED
    assert "started 3 times without finishing" in photo.error
    # A person's request starts over.
    assert do_requeue_photo(photo, reason=Requeue.ASKED)
    assert Photo.objects.get(pk=queued.pk).attempts == 0


def test_it_heals_a_photo_whose_worker_died_and_records_why(
    queued: Photo, django_capture_on_commit_callbacks: object, settings: object
) -> None:
    assert do_claim_photo(queued.pk, "dead-worker") is not None
    long_ago = timezone.now() - timedelta(seconds=settings.FACEWEB_STALE_PROCESSING_SECONDS + 5)  # type: ignore[attr-defined]
    Photo.objects.filter(pk=queued.pk).update(processing_started_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        counts = do_heal_photos()
    assert counts["worker_lost"] == 1
    photo = Photo.objects.get(pk=queued.pk)
    assert photo.status == Photo.Status.DONE, photo.error
    event = FaceEvent.objects.get(action="photo_requeued", data__photo=queued.pk)
    assert event.data["reason"] == "worker_lost" and event.user is None


def test_it_resends_a_photo_whose_message_was_lost_but_not_a_moving_queue(
    queued: Photo, django_capture_on_commit_callbacks: object, settings: object
) -> None:
    stale = timezone.now() - timedelta(seconds=settings.FACEWEB_STALE_QUEUED_SECONDS + 5)  # type: ignore[attr-defined]
    Photo.objects.filter(pk=queued.pk).update(queued_at=stale)
    other = Photo.objects.create(
        gallery=queued.gallery, original="originals/x/y.jpg", sha256="1" * 64
    )
    Photo.objects.filter(pk=other.pk).update(
        status=Photo.Status.PROCESSING, processing_started_at=timezone.now()
    )
    assert do_heal_photos()["message_lost"] == 0  # a worker is busy: the queue is moving
    Photo.objects.filter(pk=other.pk).delete()
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        assert do_heal_photos()["message_lost"] == 1
    assert Photo.objects.get(pk=queued.pk).status == Photo.Status.DONE


def test_it_ends_cleanly_when_the_photo_is_deleted_while_processing(
    queued: Photo, alice: User, _media_root: Path, django_capture_on_commit_callbacks: object
) -> None:
    """It used to leak its thumbnail, preview and crops and fail twice (saving a deleted row)."""
    photo = do_claim_photo(queued.pk, "task")
    assert photo is not None
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_delete_photo(Photo.objects.get(pk=queued.pk), by=alice)
    assert not Photo.objects.filter(pk=queued.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        faces = do_process_photo(photo)
    assert faces == []
    assert _stored_files(_media_root) == []


def test_it_refuses_to_move_a_photo_that_is_being_processed(
    queued: Photo, alice: User, _media_root: Path, django_capture_on_commit_callbacks: object
) -> None:
    """A move while the worker ran left the derived files under the old gallery's path (media
    404 after the move) and deleted the original under the worker. A queued or processing photo
    stays where it is, with the reason; once processed it moves with all its files."""
    source = queued.gallery
    target = Gallery.objects.create(owner=alice, name="Elsewhere")
    result = do_move_photos([queued], target, by=alice)
    assert result.moved == [] and [why for _p, why in result.skipped] == [
        "it is still being processed; move it once it is done"
    ]
    photo = do_claim_photo(queued.pk, "task")
    assert photo is not None
    # The caller's copy may be stale (loaded before the claim): the row decides.
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_move_photos([queued], target, by=alice)
    assert result.moved == [] and "still being processed" in result.skipped[0][1]
    assert Photo.objects.get(pk=queued.pk).gallery_id == source.pk

    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        faces = do_process_photo(photo)
    assert faces
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_move_photos([Photo.objects.get(pk=queued.pk)], target, by=alice)
    assert len(result.moved) == 1
    moved = Photo.objects.get(pk=queued.pk)
    files = [moved.original, moved.thumbnail, moved.preview, *(f.crop for f in moved.faces.all())]
    names = [f.name or "" for f in files]
    assert all(name.split("/")[1] == str(target.pk) for name in names), names
    stored = {p.relative_to(_media_root).as_posix() for p in _stored_files(_media_root)}
    assert stored == set(names)


def test_it_keeps_database_url_options() -> None:
    """dj-database-url: `sslmode` and other query options were dropped."""
    config = parse_database_url(
        "postgresql://app:s%40cret@db.example:5433/photos?sslmode=require&connect_timeout=5",
        conn_max_age=30,
    )
    assert config["OPTIONS"] == {"sslmode": "require", "connect_timeout": 5}
    assert (config["HOST"], config["PORT"], config["PASSWORD"]) == ("db.example", 5433, "s@cret")
    assert config["CONN_MAX_AGE"] == 30 and config["CONN_HEALTH_CHECKS"] is True
    socket = parse_database_url("postgresql://u@/faceweb?host=/run/pg")
    assert socket["HOST"] == "/run/pg" and socket["OPTIONS"] == {}


def test_it_starts_no_database_when_settings_are_imported(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(FACEWEB_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="faceweb.settings")
    code = "import django.conf as c; c.settings.DATABASES; import faceweb.settings"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120)
    assert not (tmp_path / "pgdata").exists()

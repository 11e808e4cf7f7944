"""Photos: the only writer of `Photo.status` (upload, claim, finish, fail, requeue, delete)
and of where a photo lives (move).

Processing itself (recognition/actions/processing.py) calls these to move a photo between states.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from faceweb.queue import PROCESS_PHOTO, enqueue_on_commit
from gallery.actions.common import ActionError, clean_file_name, file_size
from gallery.models import Face, FaceEvent, Gallery, Photo, UploadBatch
from recognition.core.images import (
    CONTENT_TYPES,
    SUFFIXES,
    bomb_message,
    not_a_photo_message,
    photo_formats,
)
from recognition.index.enrolment import sync_face_templates


@dataclass
class UploadResult:
    batch: UploadBatch
    accepted: list[Photo] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)


def _sha256(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def check_upload(upload: UploadedFile) -> str:
    """Cheap checks before a file is stored; returns its content type, from the format Pillow
    detects (never from the file name). Raises ActionError."""
    limit = settings.FACEWEB_MAX_UPLOAD_BYTES
    if upload.size == 0:
        raise ActionError("the file is empty (0 bytes)")
    if upload.size > limit:
        raise ActionError(
            f"the file is {file_size(upload.size or 0)}, over the {file_size(limit)} upload limit"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(upload, formats=photo_formats()) as img:
                width, height = img.size
                fmt = img.format or ""
    except UnidentifiedImageError as exc:
        raise ActionError(not_a_photo_message()) from exc
    except Image.DecompressionBombError as exc:
        # Not an OSError: without this clause a huge header escaped as a server error.
        raise ActionError(bomb_message(exc, settings.FACEWEB_MAX_IMAGE_PIXELS)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ActionError(f"the image header is corrupt ({exc})") from exc
    finally:
        upload.seek(0)
    if width * height > settings.FACEWEB_MAX_IMAGE_PIXELS:
        raise ActionError(
            f"the image is {width}x{height} = {width * height / 1e6:.1f} megapixels, "
            f"over the limit of {settings.FACEWEB_MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"
        )
    return CONTENT_TYPES[fmt]


@transaction.atomic
def do_upload_photos(gallery: Gallery, files: Iterable[UploadedFile], by: User) -> UploadResult:
    """Store each acceptable file as a queued photo and enqueue it after commit.

    Rejected files are listed with a reason; accepted originals are never altered.
    """
    files = list(files)
    if len(files) > settings.FACEWEB_MAX_FILES_PER_UPLOAD:
        raise ActionError(
            f"{len(files)} files in one upload; the limit is "
            f"{settings.FACEWEB_MAX_FILES_PER_UPLOAD}"
        )
    batch = UploadBatch.objects.create(gallery=gallery, created_by=by)
    result = UploadResult(batch=batch)
    for upload in files:
        name = clean_file_name(upload.name or "")
        try:
            content_type = check_upload(upload)
            sha = _sha256(upload)
            existing = Photo.objects.filter(gallery=gallery, sha256=sha).first()
            if existing is not None:
                raise ActionError(
                    f"the same photo is already in this gallery (as {existing.original_name!r})"
                )
            with transaction.atomic():
                photo = Photo(
                    gallery=gallery,
                    batch=batch,
                    uploaded_by=by,
                    original_name=name,
                    content_type=content_type,
                    size_bytes=upload.size or 0,
                    sha256=sha,
                    queued_at=timezone.now(),
                )
                # The stored name's suffix follows the detected format, not the user's file name.
                photo.original.save(f"photo{SUFFIXES[content_type]}", upload, save=False)
                photo.save()
                enqueue_on_commit(PROCESS_PHOTO, photo.pk)
        except ActionError as exc:
            result.rejected.append({"name": name, "error": str(exc)})
            continue
        except IntegrityError:
            result.rejected.append(
                {"name": name, "error": "the same photo is already in this gallery"}
            )
            continue
        result.accepted.append(photo)
    if result.rejected:
        batch.rejected = result.rejected
        batch.save(update_fields=["rejected"])
    return result


class Requeue(enum.StrEnum):
    """Why a photo goes (back) into the queue; recorded with each re-queue."""

    ASKED = "someone asked to process it again"
    WORKER_LOST = "the worker processing it stopped before finishing"
    MESSAGE_LOST = "it waited in the queue with no worker taking it"
    NEW_VERSION = "processing changed since it failed"


def processing_version() -> str:
    """What a FAILED photo failed under: a new version gives it one more automatic try.

    Bump PROCESSING_REVISION when a change to processing may fix photos that failed before.
    """
    return f"{PROCESSING_REVISION}/{settings.FACEWEB_DETECTOR}/{settings.FACEWEB_EMBEDDER}"


PROCESSING_REVISION = 1


def max_attempts() -> int:
    return settings.FACEWEB_MAX_PROCESSING_ATTEMPTS


@transaction.atomic
def do_requeue_photo(
    photo: Photo, *, reason: Requeue = Requeue.ASKED, by: User | None = None
) -> bool:
    """Put a photo (back) in the queue, and record why; False if it is gone, or (a person's
    click, `by` given) already waiting in the queue.

    A person's request (ASKED) starts the attempts over; the automatic re-queues (a lost worker,
    a lost message) keep counting, so a photo that kills its worker every time ends FAILED after
    FACEWEB_MAX_PROCESSING_ATTEMPTS. The task's conditional claim makes a duplicate message
    harmless.
    """
    photos = Photo.objects.filter(pk=photo.pk)
    if reason is Requeue.ASKED and by is not None:
        photos = photos.exclude(status=Photo.Status.QUEUED)
    changes: dict[str, object] = {
        "status": Photo.Status.QUEUED,
        "error": "",
        "processing_started_at": None,
        "claimed_by": "",
        "queued_at": timezone.now(),
    }
    if reason in {Requeue.ASKED, Requeue.NEW_VERSION}:
        changes["attempts"] = 0
    updated = photos.update(**changes)
    if updated:
        FaceEvent.objects.create(
            user=by,
            action=FaceEvent.Action.PHOTO_REQUEUED,
            data={"photo": photo.pk, "reason": reason.name.lower(), "why": str(reason)},
        )
        enqueue_on_commit(PROCESS_PHOTO, photo.pk)
    return bool(updated)


@transaction.atomic
def do_claim_photo(photo_id: int, token: str = "") -> Photo | None:
    """Claim a photo for processing; None when it is gone, finished, or another task holds it (a
    duplicate message then does nothing).

    `token` is the task's id: a message redelivered after its worker died carries the same id
    and takes its photo back. Each claim counts an attempt (F(): two workers never lose one);
    past FACEWEB_MAX_PROCESSING_ATTEMPTS the photo fails instead, with the reason.
    """
    mine = Q(status=Photo.Status.QUEUED)
    if token:
        mine |= Q(status=Photo.Status.PROCESSING, claimed_by=token)
    claimed = (
        Photo.objects.filter(mine, pk=photo_id)
        .filter(attempts__lt=max_attempts())
        .update(
            status=Photo.Status.PROCESSING,
            processing_started_at=timezone.now(),
            claimed_by=token,
            error="",
            attempts=F("attempts") + 1,
        )
    )
    if claimed == 0:
        spent = Photo.objects.filter(mine, pk=photo_id, attempts__gte=max_attempts()).first()
        if spent is not None:
            do_fail_photo(
                spent,
                f"processing was started {spent.attempts} times without finishing (the worker "
                "stopped each time), so it is not tried again automatically",
            )
        return None
    return Photo.objects.filter(pk=photo_id).select_related("gallery").first()


@transaction.atomic
def do_claim_queued_photos(limit: int, token: str = "", besides: int | None = None) -> list[Photo]:
    """Claim up to `limit` more photos for a worker's batch (`besides` the one it holds), oldest
    first: queued ones, and those this task (`token`) claimed before it lost the database.
    Their own messages later find nothing to claim; a photo another task claims first is
    skipped."""
    if limit <= 0:
        return []
    mine = Q(status=Photo.Status.QUEUED)
    if token:
        mine |= Q(status=Photo.Status.PROCESSING, claimed_by=token)
    queryset = Photo.objects.filter(mine)
    if besides is not None:
        queryset = queryset.exclude(pk=besides)
    candidates = queryset.order_by("pk").values_list("pk", flat=True)
    claimed = []
    for photo_id in candidates[: 2 * limit]:
        photo = do_claim_photo(photo_id, token)
        if photo is not None:
            claimed.append(photo)
            if len(claimed) == limit:
                break
    return claimed


@transaction.atomic
def do_release_photo(photo_id: int) -> None:
    """A transient failure (the database went away): back to the queue for the task's retry.
    Not the photo's fault, so the attempt is not counted."""
    Photo.objects.filter(pk=photo_id, status=Photo.Status.PROCESSING).update(
        status=Photo.Status.QUEUED,
        claimed_by="",
        queued_at=timezone.now(),
        attempts=Greatest(F("attempts") - 1, 0),
    )


@transaction.atomic
def do_finish_photo(photo: Photo, width: int, height: int, taken_at: datetime | None) -> bool:
    """Processing succeeded. Caller holds the transaction that stored the photo's faces.

    False when the photo was deleted meanwhile: the caller then removes what it stored."""
    now = timezone.now()
    updated = Photo.objects.filter(pk=photo.pk).update(
        width=width,
        height=height,
        taken_at=taken_at,
        thumbnail=photo.thumbnail.name,
        preview=photo.preview.name,
        status=Photo.Status.DONE,
        error="",
        processed_at=now,
        processed_with=processing_version(),
        claimed_by="",
    )
    photo.width, photo.height, photo.taken_at = width, height, taken_at
    photo.status, photo.error, photo.processed_at = Photo.Status.DONE, "", now
    return bool(updated)


@transaction.atomic
def do_fail_photo(photo: Photo, error: str) -> bool:
    """Processing failed for good; `error` is shown to the user. False if the photo is gone."""
    now = timezone.now()
    updated = Photo.objects.filter(pk=photo.pk).update(
        status=Photo.Status.FAILED,
        error=error,
        processed_at=now,
        processed_with=processing_version(),
        claimed_by="",
    )
    photo.status, photo.error, photo.processed_at = Photo.Status.FAILED, error, now
    return bool(updated)


def stale_processing(now: datetime | None = None) -> QuerySet[Photo]:
    """Photos in `processing` for longer than any run may take: their worker died."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.FACEWEB_STALE_PROCESSING_SECONDS)
    return Photo.objects.filter(status=Photo.Status.PROCESSING).filter(
        Q(processing_started_at__lt=cutoff) | Q(processing_started_at__isnull=True)
    )


def lost_in_queue(now: datetime | None = None) -> QuerySet[Photo]:
    """Queued photos whose message was probably lost: queued long ago while no worker has
    started anything since. A long but moving queue is left alone (re-sending would only add
    duplicates)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.FACEWEB_STALE_QUEUED_SECONDS)
    moving = Photo.objects.filter(processing_started_at__gte=cutoff).exists()
    if moving:
        return Photo.objects.none()
    return Photo.objects.filter(status=Photo.Status.QUEUED).filter(
        Q(queued_at__lt=cutoff) | Q(queued_at__isnull=True, created_at__lt=cutoff)
    )


@transaction.atomic
def do_heal_photos() -> dict[str, int]:
    """Re-queue photos stuck in `processing` (dead worker) or `queued` (lost message), each with
    its reason; a photo out of attempts fails instead. Run periodically by Celery beat."""
    counts = {"worker_lost": 0, "message_lost": 0, "failed": 0}
    for photo in stale_processing().only("pk", "attempts", "status"):
        if photo.attempts >= max_attempts():
            if do_fail_photo(
                photo,
                f"processing was started {photo.attempts} times without finishing (the worker "
                "stopped each time), so it is not tried again automatically",
            ):
                counts["failed"] += 1
        elif do_requeue_photo(photo, reason=Requeue.WORKER_LOST):
            counts["worker_lost"] += 1
    for photo in lost_in_queue().only("pk"):
        if do_requeue_photo(photo, reason=Requeue.MESSAGE_LOST):
            counts["message_lost"] += 1
    return counts


@transaction.atomic
def do_requeue_failed_after_upgrade() -> int:
    """FAILED is final, except that a new processing version gets one more try."""
    count = 0
    failed = Photo.objects.filter(status=Photo.Status.FAILED).exclude(
        processed_with=processing_version()
    )
    for photo in failed.only("pk"):
        count += do_requeue_photo(photo, reason=Requeue.NEW_VERSION)
    return count


@transaction.atomic
def do_delete_photo(photo: Photo, by: User) -> None:
    """Delete one photo (do_delete_photos)."""
    do_delete_photos([photo], by)


@transaction.atomic
def do_delete_photos(photos: Iterable[Photo], by: User) -> int:
    """Delete photos with their faces (and their templates), all or none; files go once the
    delete commits. Returns how many were still there to delete.

    The row locks wait for a worker that is storing a photo's results (it holds the same lock),
    so the files it stored are read here and removed too; a worker that comes later finds the
    photo gone and removes its own files (recognition/actions/processing.py).
    """
    ids = sorted({p.pk for p in photos})
    rows = list(Photo.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
    if not rows:
        return 0
    faces = list(Face.objects.filter(photo__in=rows).values_list("pk", "crop"))
    names = [n for row in rows for n in (row.original.name, row.thumbnail.name, row.preview.name)]
    names += [crop for _pk, crop in faces if crop]
    FaceEvent.objects.bulk_create(
        FaceEvent(
            user=by,
            action=FaceEvent.Action.PHOTO_DELETED,
            data={"photo": row.pk, "name": row.original_name},
        )
        for row in rows
    )
    Photo.objects.filter(pk__in=[row.pk for row in rows]).delete()
    sync_face_templates([pk for pk, _crop in faces])
    transaction.on_commit(functools.partial(delete_stored_files, names))
    return len(rows)


def delete_stored_files(names: Iterable[str]) -> None:
    """Remove stored files (originals, derived images, crops); a missing file is fine."""
    for name in names:
        if name:
            default_storage.delete(name)


@dataclass
class MoveResult:
    moved: list[Photo] = field(default_factory=list)
    skipped: list[tuple[Photo, str]] = field(default_factory=list)


def _moved_name(name: str, gallery_id: int) -> str:
    """The stored name of a file once its photo is in another gallery (the gallery id is the
    second path part, which gallery.views.media checks access by)."""
    kind, _old, base = name.split("/", 2)
    return f"{kind}/{gallery_id}/{base}"


def _copy_stored(name: str, new_name: str) -> bool:
    """The stored file under its new name too; False when there was nothing to carry."""
    if not default_storage.exists(name):
        return False  # a file lost earlier must not block the move
    try:
        source, target = default_storage.path(name), default_storage.path(new_name)
    except NotImplementedError:
        with default_storage.open(name, "rb") as fh:
            default_storage.save(new_name, fh)
        return True
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    os.link(source, target)  # same file system: no copy; the old name goes after commit
    return True


# Photos the worker may still write files for (under the gallery id it read when it claimed).
_IN_PROCESSING = (Photo.Status.QUEUED, Photo.Status.PROCESSING)


def do_move_photos(photos: Iterable[Photo], target: Gallery, by: User) -> MoveResult:
    """Move photos (with their faces and tags) into another gallery of the same owner, all in
    one transaction that the caller must not hold (the files linked under the new names are
    removed when it rolls back, which only this function can see).

    Caller checked write access to the photos' galleries and to `target`. People belong to the
    owner's library, so a move to another owner's gallery is refused. A photo already in the
    target gallery (same file), or one still queued or being processed, is skipped with the
    reason.

    Each photo's row is locked first and read again: the worker stores a photo's files under
    the gallery id it read when it claimed the photo, and its claim (an update of a queued row)
    waits for this lock, so a photo moved here is never one a worker is writing files for.
    """
    linked: list[str] = []
    try:
        return _move_photos(photos, target, by, linked)
    except BaseException:
        delete_stored_files(linked)
        raise


@transaction.atomic(durable=True)
def _move_photos(
    photos: Iterable[Photo], target: Gallery, by: User, linked: list[str]
) -> MoveResult:
    """do_move_photos' transaction; every file it links under a new name goes into `linked`."""
    result = MoveResult()
    for given in photos:
        with transaction.atomic():
            photo = (
                Photo.objects.select_for_update(of=("self",))
                .select_related("gallery")
                .filter(pk=given.pk)
                .first()
            )
            why = _why_not_moved(photo, target) if photo is not None else "it was deleted"
            if photo is None or why:
                result.skipped.append((photo or given, why))
                continue
            faces = list(photo.faces.select_for_update().only("pk", "crop"))
            files = [photo.original, photo.thumbnail, photo.preview, *(f.crop for f in faces)]
            old = [f.name for f in files if f.name]
            for name in old:
                if _copy_stored(name, _moved_name(name, target.pk)):
                    linked.append(_moved_name(name, target.pk))
            source_id = photo.gallery_id
            photo.gallery = target
            photo.batch = None
            for field_file in (photo.original, photo.thumbnail, photo.preview):
                if field_file.name:
                    field_file.name = _moved_name(field_file.name, target.pk)
            photo.save(update_fields=["gallery", "batch", "original", "thumbnail", "preview"])
            for face in faces:
                if face.crop.name:
                    face.crop.name = _moved_name(face.crop.name, target.pk)
            Face.objects.bulk_update(faces, ["crop"])
            sync_face_templates([f.pk for f in faces])
            FaceEvent.objects.create(
                user=by,
                action=FaceEvent.Action.PHOTO_MOVED,
                data={"photo": photo.pk, "from": source_id, "to": target.pk},
            )
            transaction.on_commit(functools.partial(delete_stored_files, old))
        result.moved.append(photo)
    return result


def _why_not_moved(photo: Photo, target: Gallery) -> str:
    """Why a (locked) photo may not move to `target`; empty when it may."""
    if photo.gallery_id == target.pk:
        return "it is already in that gallery"
    if photo.gallery.owner_id != target.owner_id:
        return "it belongs to another owner's library"
    if photo.status in _IN_PROCESSING:
        return "it is still being processed; move it once it is done"
    if Photo.objects.filter(gallery=target, sha256=photo.sha256).exists():
        return "the same photo is already in that gallery"
    return ""

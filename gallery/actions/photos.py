"""Photos: the only writer of `Photo.status` (upload, claim, finish, fail, requeue, delete)
and of where a photo lives (move).

Processing itself (recognition/actions/processing.py) calls these to move a photo between states.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from faceweb.queue import PROCESS_PHOTO, enqueue_on_commit
from gallery.actions.common import ActionError, clean_file_name
from gallery.models import Face, FaceEvent, Gallery, Photo, UploadBatch
from recognition.core.images import bomb_message
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


def _size(n: int) -> str:
    # Same units as the pages show (filesizeformat), without its non-breaking space.
    return filesizeformat(n).replace("\xa0", " ")


def check_upload(upload: UploadedFile) -> str:
    """Cheap checks before a file is stored; returns its content type. Raises ActionError."""
    limit = settings.FACEWEB_MAX_UPLOAD_BYTES
    if upload.size == 0:
        raise ActionError("the file is empty (0 bytes)")
    if upload.size > limit:
        raise ActionError(f"the file is {_size(upload.size)}, over the {_size(limit)} upload limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(upload) as img:
                width, height = img.size
                fmt = img.format or ""
    except UnidentifiedImageError as exc:
        raise ActionError("this is not an image file in a format we can read") from exc
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
    return Image.MIME.get(fmt, "application/octet-stream")


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
                )
                photo.original.save(name, upload, save=False)
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


@transaction.atomic
def do_requeue_photo(photo: Photo) -> bool:
    """Put a photo (back) in the queue; a queued photo whose message was lost is sent again.

    The task's conditional claim makes a duplicate message harmless. False if the photo is gone.
    """
    updated = Photo.objects.filter(pk=photo.pk).update(
        status=Photo.Status.QUEUED, error="", processing_started_at=None
    )
    if updated:
        enqueue_on_commit(PROCESS_PHOTO, photo.pk)
    return bool(updated)


@transaction.atomic
def do_claim_photo(photo_id: int) -> Photo | None:
    """Claim a queued photo for processing; None when it is gone or not queued (another worker
    claimed it, or it finished): a duplicate message then does nothing."""
    claimed = Photo.objects.filter(pk=photo_id, status=Photo.Status.QUEUED).update(
        status=Photo.Status.PROCESSING,
        processing_started_at=timezone.now(),
        error="",
        attempts=F("attempts") + 1,
    )
    if claimed == 0:
        return None
    return Photo.objects.filter(pk=photo_id).select_related("gallery").first()


@transaction.atomic
def do_release_photo(photo_id: int) -> None:
    """A transient failure (the database went away): back to the queue for the task's retry."""
    Photo.objects.filter(pk=photo_id, status=Photo.Status.PROCESSING).update(
        status=Photo.Status.QUEUED
    )


@transaction.atomic
def do_finish_photo(photo: Photo, width: int, height: int, taken_at: datetime | None) -> None:
    """Processing succeeded. Caller holds the transaction that stored the photo's faces."""
    photo.width, photo.height = width, height
    photo.taken_at = taken_at
    photo.status = Photo.Status.DONE
    photo.error = ""
    photo.processed_at = timezone.now()
    photo.save(
        update_fields=[
            "width",
            "height",
            "taken_at",
            "thumbnail",
            "preview",
            "status",
            "error",
            "processed_at",
        ]
    )


@transaction.atomic
def do_fail_photo(photo: Photo, error: str) -> None:
    """Processing failed for good; `error` is shown to the user."""
    photo.status = Photo.Status.FAILED
    photo.error = error
    photo.processed_at = timezone.now()
    photo.save(update_fields=["status", "error", "processed_at"])


@transaction.atomic
def do_delete_photo(photo: Photo, by: User) -> None:
    """Delete a photo with its faces (and their templates); files go once the delete commits."""
    face_ids = list(photo.faces.values_list("pk", flat=True))
    names = [photo.original.name, photo.thumbnail.name, photo.preview.name]
    names += [name for name in photo.faces.values_list("crop", flat=True) if name]
    FaceEvent.objects.create(
        user=by,
        action=FaceEvent.Action.PHOTO_DELETED,
        data={"photo": photo.pk, "name": photo.original_name},
    )
    photo.delete()
    sync_face_templates(face_ids)
    transaction.on_commit(lambda: delete_stored_files(names))


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


def _copy_stored(name: str, new_name: str) -> None:
    if not default_storage.exists(name):
        return  # nothing to carry (a file lost earlier must not block the move)
    try:
        source, target = default_storage.path(name), default_storage.path(new_name)
    except NotImplementedError:
        with default_storage.open(name, "rb") as fh:
            default_storage.save(new_name, fh)
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    os.link(source, target)  # same file system: no copy; the old name goes after commit


@transaction.atomic
def do_move_photos(photos: Iterable[Photo], target: Gallery, by: User) -> MoveResult:
    """Move photos (with their faces and tags) into another gallery of the same owner.

    Caller checked write access to the photos' galleries and to `target`. People belong to the
    owner's library, so a move to another owner's gallery is refused. A photo already in the
    target gallery (same file) is skipped with the reason.
    """
    result = MoveResult()
    for photo in photos:
        if photo.gallery_id == target.pk:
            result.skipped.append((photo, "it is already in that gallery"))
            continue
        if photo.gallery.owner_id != target.owner_id:
            result.skipped.append((photo, "it belongs to another owner's library"))
            continue
        if Photo.objects.filter(gallery=target, sha256=photo.sha256).exists():
            result.skipped.append((photo, "the same photo is already in that gallery"))
            continue
        faces = list(photo.faces.only("pk", "crop"))
        files = [photo.original, photo.thumbnail, photo.preview, *(f.crop for f in faces)]
        old = [f.name for f in files if f.name]
        for name in old:
            _copy_stored(name, _moved_name(name, target.pk))
        with transaction.atomic():
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

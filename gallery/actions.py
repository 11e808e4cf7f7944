"""Every write to galleries, photos, people and face tags goes through a `do_*` function here.

`check_*` functions validate and raise `ActionError` with a message for the user.
"""

from __future__ import annotations

import hashlib
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePath

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from gallery.models import (
    Face,
    FaceEvent,
    FaceNotPerson,
    Gallery,
    GalleryMember,
    Person,
    PersonMerge,
    Photo,
    UploadBatch,
)


class ActionError(ValueError):
    """A request that cannot be carried out; the message is shown to the user."""


def clean_display_name(name: str, *, limit: int = 255) -> str:
    """A file or person name safe to show: no path parts, no control characters, bounded."""
    base = PurePath(name.replace("\\", "/")).name if name else ""
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return (cleaned or "unnamed")[:limit]


# Galleries ---------------------------------------------------------------------------------


def _clean_tags(tags: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        value = clean_display_name(tag, limit=50).strip().lower()
        if value and value != "unnamed":
            seen.setdefault(value, None)
    return list(seen)


def do_create_gallery(
    owner: AbstractBaseUser, name: str, description: str = "", tags: Iterable[str] = ()
) -> Gallery:
    name = name.strip()
    if not name:
        raise ActionError("A gallery needs a name.")
    return Gallery.objects.create(
        owner=owner, name=name[:200], description=description, tags=_clean_tags(tags)
    )


def do_update_gallery(
    gallery: Gallery,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
) -> Gallery:
    fields = ["updated_at"]
    if name is not None:
        if not name.strip():
            raise ActionError("A gallery needs a name.")
        gallery.name = name.strip()[:200]
        fields.append("name")
    if description is not None:
        gallery.description = description
        fields.append("description")
    if tags is not None:
        gallery.tags = _clean_tags(tags)
        fields.append("tags")
    gallery.save(update_fields=fields)
    return gallery


def do_share_gallery(gallery: Gallery, user: AbstractBaseUser, role: str) -> GalleryMember:
    if role not in GalleryMember.Role.values:
        raise ActionError(f"Unknown role {role!r}; use viewer or editor.")
    if user.pk == gallery.owner_id:
        raise ActionError("The owner already has full access.")
    member, _ = GalleryMember.objects.update_or_create(
        gallery=gallery, user=user, defaults={"role": role}
    )
    return member


def do_unshare_gallery(gallery: Gallery, user: AbstractBaseUser) -> None:
    GalleryMember.objects.filter(gallery=gallery, user=user).delete()


def do_delete_gallery(gallery: Gallery, by: AbstractBaseUser) -> None:
    """Delete a gallery with its photos and faces; files go once the deletion is committed."""
    photos = Photo.objects.filter(gallery=gallery)
    names = [
        name
        for row in photos.values_list("original", "thumbnail", "preview")
        for name in row
        if name
    ]
    names += [
        name
        for name in Face.objects.filter(photo__gallery=gallery).values_list("crop", flat=True)
        if name
    ]
    FaceEvent.objects.create(
        user=by, action="gallery_deleted", data={"gallery": gallery.pk, "name": gallery.name}
    )
    gallery.delete()

    def _remove() -> None:
        from django.core.files.storage import default_storage

        for name in names:
            default_storage.delete(name)

    transaction.on_commit(_remove)


# Uploads -----------------------------------------------------------------------------------


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
        raise ActionError("the image is too large to decode safely (decompression bomb)") from exc
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


def do_upload_photos(
    gallery: Gallery, files: Iterable[UploadedFile], by: AbstractBaseUser
) -> UploadResult:
    """Store each acceptable file as a queued photo and enqueue it after commit.

    Rejected files are listed with a reason; accepted originals are never altered.
    """
    from recognition.tasks import process_photo

    files = list(files)
    if len(files) > settings.FACEWEB_MAX_FILES_PER_UPLOAD:
        raise ActionError(
            f"{len(files)} files in one upload; the limit is "
            f"{settings.FACEWEB_MAX_FILES_PER_UPLOAD}"
        )
    batch = UploadBatch.objects.create(gallery=gallery, created_by=by)
    result = UploadResult(batch=batch)
    for upload in files:
        name = clean_display_name(upload.name or "")
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
                transaction.on_commit(lambda pk=photo.pk: process_photo.delay(pk))
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


def do_requeue_photo(photo: Photo) -> bool:
    """Put a photo (back) in the queue; a queued photo whose message was lost is sent again.

    The task's conditional claim makes a duplicate message harmless. False if the photo is gone.
    """
    from recognition.tasks import process_photo

    updated = Photo.objects.filter(pk=photo.pk).update(
        status=Photo.Status.QUEUED, error="", processing_started_at=None
    )
    if updated:
        transaction.on_commit(lambda: process_photo.delay(photo.pk))
    return bool(updated)


def do_delete_photo(photo: Photo, by: AbstractBaseUser) -> None:
    from recognition.templates import sync_face_templates

    face_ids = list(photo.faces.values_list("pk", flat=True))
    names = [photo.original.name, photo.thumbnail.name, photo.preview.name]
    names += [name for name in photo.faces.values_list("crop", flat=True) if name]
    FaceEvent.objects.create(
        user=by, action="photo_deleted", data={"photo": photo.pk, "name": photo.original_name}
    )
    photo.delete()
    sync_face_templates(face_ids)

    def _remove() -> None:
        from django.core.files.storage import default_storage

        for name in names:
            if name:
                default_storage.delete(name)

    transaction.on_commit(_remove)


# People and tags ---------------------------------------------------------------------------


def do_create_person(owner: AbstractBaseUser, name: str, by: AbstractBaseUser) -> Person:
    name = clean_display_name(name, limit=200) if name.strip() else ""
    if not name:
        raise ActionError("A person needs a name.")
    person = Person.objects.create(owner=owner, name=name)
    FaceEvent.objects.create(user=by, person=person, action="person_created", data={"name": name})
    return person


def do_get_or_create_person(owner: AbstractBaseUser, name: str, by: AbstractBaseUser) -> Person:
    existing = (
        Person.objects.filter(owner=owner, name__iexact=name.strip(), merged_into__isnull=True)
        .order_by("id")
        .first()
    )
    return existing or do_create_person(owner, name, by)


def do_rename_person(person: Person, name: str, by: AbstractBaseUser) -> Person:
    cleaned = clean_display_name(name, limit=200) if name.strip() else ""
    if not cleaned:
        raise ActionError("A person needs a name.")
    previous = person.name
    person.name = cleaned
    person.save(update_fields=["name", "updated_at"])
    FaceEvent.objects.create(
        user=by, person=person, action="person_renamed", data={"from": previous, "to": cleaned}
    )
    return person


def check_person_for_face(face: Face, person: Person) -> None:
    if person.owner_id != face.photo.gallery.owner_id:
        raise ActionError("That person belongs to another library.")
    if person.merged_into_id is not None:
        raise ActionError("That person was merged into another one.")
    clash = Face.objects.filter(photo_id=face.photo_id, person=person).exclude(pk=face.pk).first()
    if clash is not None:
        raise ActionError(
            f"{person.name} is already tagged on another face in this photo; "
            "two faces in one photo are never the same person."
        )


def do_tag_face(face: Face, person: Person, by: AbstractBaseUser) -> Face:
    """Confirm `person` for `face` (caller checked write access to the face's gallery)."""
    tagged, errors = do_tag_faces([face], person, by)
    if errors:
        raise ActionError(errors[0][1])
    return tagged[0]


def do_untag_face(face: Face, by: AbstractBaseUser) -> Face:
    from recognition.templates import sync_face_templates

    previous = face.person
    face.person = None
    face.assignment = Face.Assignment.NONE
    face.match_distance = None
    face.assigned_by = by
    face.assigned_at = timezone.now()
    face.save(
        update_fields=["person", "assignment", "match_distance", "assigned_by", "assigned_at"]
    )
    FaceEvent.objects.create(
        user=by,
        face=face,
        person=previous,
        action="face_untagged",
        data={"previous_person": previous.pk if previous else None},
    )
    sync_face_templates([face.pk])
    return face


# Suggestions, "not this person", bulk naming, merges ---------------------------------------


def pending_person(face: Face) -> Person | None:
    """The person a face is waiting to have confirmed: an automatic tag or a suggestion."""
    if face.person_id is not None:
        return face.person if face.assignment == Face.Assignment.SUGGESTED else None
    return face.suggested_person if face.suggested_person_id is not None else None


def _rematch_after_commit(face_ids: Iterable[int]) -> None:
    """Newly confirmed faces are new templates: re-match the still-unknown faces near them."""
    from recognition.tasks import rematch_near_faces

    ids = sorted(set(face_ids))
    if ids:
        transaction.on_commit(lambda: rematch_near_faces.delay(ids))


def _lock_and_refresh(face: Face) -> None:
    """Re-read the tag columns under a row lock: the matcher may have moved them since the
    caller loaded the face."""
    Face.objects.select_for_update().filter(pk=face.pk).first()
    face.refresh_from_db(
        fields=["person", "assignment", "suggested_person", "match_distance", "assigned_at"]
    )


def _withdraw_guesses(face: Face, person: Person, by: AbstractBaseUser) -> None:
    """A person's tag outranks the matcher's guess: an automatic tag of the same person on
    another face of the photo is withdrawn (logged) rather than refusing the tag."""
    guessed = Face.objects.filter(
        photo_id=face.photo_id, person=person, assignment=Face.Assignment.SUGGESTED
    ).exclude(pk=face.pk)
    for other in guessed:
        other.person = None
        other.assignment = Face.Assignment.NONE
        other.match_distance = None
        other.save(update_fields=["person", "assignment", "match_distance"])
        FaceEvent.objects.create(
            user=by,
            face=other,
            person=person,
            action="match_cleared",
            data={"reason": f"{person.name} was confirmed on face {face.pk} of the same photo"},
        )


def _confirm(face: Face, person: Person, by: AbstractBaseUser, action: str) -> None:
    """Caller holds a transaction and has called _lock_and_refresh(face)."""
    _withdraw_guesses(face, person, by)
    check_person_for_face(face, person)
    previous = face.person_id
    face.person = person
    face.assignment = Face.Assignment.CONFIRMED
    face.suggested_person = None
    face.assigned_by = by
    face.assigned_at = timezone.now()
    face.save(
        update_fields=["person", "assignment", "suggested_person", "assigned_by", "assigned_at"]
    )
    FaceEvent.objects.create(
        user=by,
        face=face,
        person=person,
        action=action,
        data={"previous_person": previous, "distance": face.match_distance},
    )


def do_confirm_suggestion(face: Face, by: AbstractBaseUser) -> Face:
    """Confirm the automatic tag or the suggestion of `face` (caller checked write access)."""
    confirmed, errors = do_confirm_suggestions([face], by)
    if errors:
        raise ActionError(errors[0][1])
    return confirmed[0]


def _confirm_each(
    faces: Iterable[Face], by: AbstractBaseUser, action: str, choose: Callable[[Face], Person]
) -> tuple[list[Face], list[tuple[Face, str]]]:
    """Confirm `choose(face)` for each face in its own transaction; refusals come back with why.

    `choose` sees the face re-read under its row lock and raises ActionError to skip it.
    """
    from recognition.templates import sync_face_templates

    done: list[Face] = []
    errors: list[tuple[Face, str]] = []
    for face in faces:
        try:
            with transaction.atomic():
                _lock_and_refresh(face)
                _confirm(face, choose(face), by, action)
        except ActionError as exc:
            errors.append((face, str(exc)))
            continue
        done.append(face)
    ids = [f.pk for f in done]
    sync_face_templates(ids)
    _rematch_after_commit(ids)
    return done, errors


def do_confirm_suggestions(
    faces: Iterable[Face], by: AbstractBaseUser
) -> tuple[list[Face], list[tuple[Face, str]]]:
    """Confirm many suggestions; each face that cannot be confirmed is returned with why."""

    def suggested(face: Face) -> Person:
        person = pending_person(face)
        if person is None:
            raise ActionError("This face has no suggestion to confirm.")
        return person

    return _confirm_each(faces, by, "suggestion_confirmed", suggested)


def do_tag_faces(
    faces: Iterable[Face], person: Person, by: AbstractBaseUser
) -> tuple[list[Face], list[tuple[Face, str]]]:
    """Name many faces at once (a group on the "who is unknown" page).

    Faces that would give `person` twice in one photo are skipped with the reason; the others
    are confirmed.
    """
    return _confirm_each(faces, by, "face_tagged", lambda _face: person)


def do_reject_suggestion(face: Face, by: AbstractBaseUser) -> Face:
    """ "Not this person": remember it, drop the tag or suggestion, and match the face again.

    Works on an automatic tag, a suggestion or a confirmed tag. The template face that made the
    person look near is stored as `via_face`, so that pair of faces never matches again even if
    that template later belongs to someone else.
    """
    rejected, errors = do_reject_suggestions([face], by)
    if errors:
        raise ActionError(errors[0][1])
    return rejected[0]


def do_reject_suggestions(
    faces: Iterable[Face], by: AbstractBaseUser
) -> tuple[list[Face], list[tuple[Face, str]]]:
    from recognition.actions import do_match_faces, nearest_template_face
    from recognition.templates import sync_face_templates

    rejected: list[Face] = []
    errors: list[tuple[Face, str]] = []
    was_confirmed: list[int] = []
    for face in faces:
        with transaction.atomic():
            _lock_and_refresh(face)
            person = face.person if face.person_id is not None else face.suggested_person
            if person is None:
                errors.append((face, "This face has no person or suggestion to reject."))
                continue
            state = face.assignment if face.person_id is not None else "suggestion"
            via = nearest_template_face(face, person)
            FaceNotPerson.objects.get_or_create(
                face=face, person=person, defaults={"via_face_id": via, "created_by": by}
            )
            fields = ["suggested_person", "match_distance", "assigned_by", "assigned_at"]
            if face.person_id == person.pk:
                face.person = None
                face.assignment = Face.Assignment.NONE
                fields += ["person", "assignment"]
            face.suggested_person = None
            face.match_distance = None
            face.assigned_by = by
            face.assigned_at = timezone.now()
            face.save(update_fields=fields)
            FaceEvent.objects.create(
                user=by,
                face=face,
                person=person,
                action="suggestion_rejected",
                data={"was": state or "unknown", "via_face": via},
            )
        if state == Face.Assignment.CONFIRMED:
            was_confirmed.append(face.pk)
        rejected.append(face)
    sync_face_templates(was_confirmed)
    # The face may have another candidate now that this person is ruled out.
    do_match_faces(rejected)
    return rejected, errors


def do_hide_person(person: Person, by: AbstractBaseUser, *, hidden: bool = True) -> Person:
    """Hide a person (a stranger, a poster) from the people pages; their tags stay."""
    person.hidden = hidden
    person.save(update_fields=["hidden", "updated_at"])
    FaceEvent.objects.create(
        user=by, person=person, action="person_hidden" if hidden else "person_shown", data={}
    )
    return person


def check_merge(source: Person, target: Person) -> None:
    if source.pk == target.pk:
        raise ActionError("A person cannot be merged into themselves.")
    if source.owner_id != target.owner_id:
        raise ActionError("Only people of the same library can be merged.")
    if source.merged_into_id is not None or target.merged_into_id is not None:
        raise ActionError("One of these people was already merged into someone else.")
    together = (
        Face.objects.filter(person=source)
        .filter(photo__faces__person=target)
        .values_list("photo_id", flat=True)
        .distinct()
    )
    count = together.count()
    if count:
        raise ActionError(
            f"{source.name} and {target.name} appear together in {count} photo"
            f"{'s' if count != 1 else ''}; two faces in one photo are never the same person."
        )


def do_merge_people(source: Person, target: Person, by: AbstractBaseUser) -> PersonMerge:
    """Move every face of `source` to `target` and log it so `do_undo_merge` can reverse it.

    Suggestions of `source` become suggestions of `target`, and "not `source`" decisions become
    "not `target`" (recorded, so an undo removes exactly those).
    """
    from recognition.templates import sync_face_templates

    with transaction.atomic():
        source = Person.objects.select_for_update().get(pk=source.pk)
        target = Person.objects.select_for_update().get(pk=target.pk)
        check_merge(source, target)
        moved = list(Face.objects.filter(person=source).values_list("pk", flat=True))
        target_photos = Face.objects.filter(person=target).values("photo_id")
        suggested_qs = Face.objects.filter(suggested_person=source)
        # A suggestion in a photo where the target is already tagged could never be confirmed.
        dropped = list(suggested_qs.filter(photo_id__in=target_photos).values_list("pk", flat=True))
        suggested = list(suggested_qs.exclude(pk__in=dropped).values_list("pk", flat=True))
        Face.objects.filter(pk__in=moved).update(person=target)
        Face.objects.filter(pk__in=suggested).update(suggested_person=target)
        Face.objects.filter(pk__in=dropped).update(suggested_person=None)
        already = set(FaceNotPerson.objects.filter(person=target).values_list("face_id", flat=True))
        created = [
            FaceNotPerson.objects.create(
                face_id=row.face_id, person=target, via_face_id=row.via_face_id, created_by=by
            ).pk
            for row in FaceNotPerson.objects.filter(person=source).exclude(face_id__in=already)
        ]
        source.merged_into = target
        source.save(update_fields=["merged_into", "updated_at"])
        merge = PersonMerge.objects.create(
            source=source, target=target, face_ids=moved, created_by=by
        )
        FaceEvent.objects.create(
            user=by,
            person=target,
            action="people_merged",
            data={
                "merge": merge.pk,
                "source": source.pk,
                "source_name": source.name,
                "faces": moved,
                "suggested": suggested,
                "dropped_suggestions": dropped,
                "not_person_rows": created,
            },
        )
    sync_face_templates(moved)
    return merge


def do_undo_merge(merge: PersonMerge, by: AbstractBaseUser) -> Person:
    """Give the merged person back their faces, suggestions and "not this person" decisions.

    Faces re-tagged since the merge keep their new tag. A later merge of the target must be
    undone first.
    """
    from recognition.templates import sync_face_templates

    with transaction.atomic():
        merge = PersonMerge.objects.select_for_update().get(pk=merge.pk)
        if merge.undone_at is not None:
            raise ActionError("This merge was already undone.")
        source = Person.objects.select_for_update().get(pk=merge.source_id)
        target = Person.objects.select_for_update().get(pk=merge.target_id)
        if source.merged_into_id != target.pk:
            raise ActionError(f"{source.name} is no longer merged into {target.name}.")
        later = PersonMerge.objects.filter(
            source=target, undone_at__isnull=True, created_at__gte=merge.created_at
        ).first()
        if later is not None:
            raise ActionError(
                f"{target.name} was merged into someone else afterwards; undo that merge first."
            )
        event = (
            FaceEvent.objects.filter(action="people_merged", data__merge=merge.pk)
            .order_by("id")
            .first()
        )
        data = event.data if event is not None else {}
        back = list(
            Face.objects.filter(pk__in=merge.face_ids, person=target).values_list("pk", flat=True)
        )
        Face.objects.filter(pk__in=back).update(person=source)
        Face.objects.filter(pk__in=data.get("suggested", []), suggested_person=target).update(
            suggested_person=source
        )
        FaceNotPerson.objects.filter(pk__in=data.get("not_person_rows", [])).delete()
        source.merged_into = None
        source.save(update_fields=["merged_into", "updated_at"])
        merge.undone_by = by
        merge.undone_at = timezone.now()
        merge.save(update_fields=["undone_by", "undone_at"])
        FaceEvent.objects.create(
            user=by,
            person=source,
            action="merge_undone",
            data={"merge": merge.pk, "target": target.pk, "faces": back},
        )
    sync_face_templates(back)
    return source

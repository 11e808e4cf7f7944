"""Galleries and sharing: the only writer of Gallery and GalleryMember rows."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import transaction

from gallery.actions.common import ActionError, clean_text
from gallery.actions.photos import delete_stored_files
from gallery.models import MAX_TAGS, Face, FaceEvent, Gallery, GalleryMember, Photo


def _clean_tags(tags: Iterable[str]) -> list[str]:
    tags = list(tags)
    if len(tags) > MAX_TAGS:
        raise ActionError(f"A gallery can have at most {MAX_TAGS} tags; this has {len(tags)}.")
    seen: dict[str, None] = {}
    for tag in tags:
        value = clean_text(tag, limit=50).lower()
        if value:
            seen.setdefault(value, None)
    return list(seen)


@transaction.atomic
def do_create_gallery(
    owner: User, name: str, description: str = "", tags: Iterable[str] = ()
) -> Gallery:
    name = name.strip()
    if not name:
        raise ActionError("A gallery needs a name.")
    return Gallery.objects.create(
        owner=owner, name=name[:200], description=description, tags=_clean_tags(tags)
    )


@transaction.atomic
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


@transaction.atomic
def do_share_gallery(gallery: Gallery, user: User, role: str) -> GalleryMember:
    if role not in GalleryMember.Role.values:
        raise ActionError(f"Unknown role {role!r}; use viewer or editor.")
    if user.pk == gallery.owner_id:
        raise ActionError("The owner already has full access.")
    member, _ = GalleryMember.objects.update_or_create(
        gallery=gallery, user=user, defaults={"role": role}
    )
    return member


@transaction.atomic
def do_unshare_gallery(gallery: Gallery, user: User) -> None:
    GalleryMember.objects.filter(gallery=gallery, user=user).delete()


@transaction.atomic
def do_delete_gallery(gallery: Gallery, by: User) -> None:
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
        user=by,
        action=FaceEvent.Action.GALLERY_DELETED,
        data={"gallery": gallery.pk, "name": gallery.name},
    )
    gallery.delete()

    transaction.on_commit(lambda: delete_stored_files(names))

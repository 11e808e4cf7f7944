"""Access helpers: every object named in a URL is fetched through one of these.

Strangers get 404 (they must not learn that an object exists); members who may read but not
write get 403. Each returns the object and the user's Role, so a view never works the role out
again.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from gallery.models import (
    ApiKey,
    Face,
    Gallery,
    GalleryMember,
    Person,
    PersonMerge,
    Photo,
    UploadBatch,
)

# Whoever sends a request: the access helpers answer strangers and anonymous users alike.
AnyUser: TypeAlias = User | AnonymousUser


def visible_galleries(user: AnyUser) -> QuerySet[Gallery]:
    if not user.is_authenticated:
        return Gallery.objects.none()
    return Gallery.objects.filter(Q(owner=user) | Q(members__user=user)).distinct()


def writable_galleries(user: AnyUser) -> QuerySet[Gallery]:
    if not user.is_authenticated:
        return Gallery.objects.none()
    return Gallery.objects.filter(
        Q(owner=user) | Q(members__user=user, members__role=GalleryMember.Role.EDITOR)
    ).distinct()


def visible_gallery_ids(user: AnyUser) -> list[int]:
    return list(visible_galleries(user).values_list("pk", flat=True))


class Role(enum.StrEnum):
    """What a user may do with a gallery (and the faces and photos in it)."""

    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEWER


def gallery_role(user: AnyUser, gallery: Gallery) -> Role | None:
    """The user's role in a gallery; None for strangers."""
    if not user.is_authenticated:
        return None
    if gallery.owner_id == user.pk:
        return Role.OWNER
    member = GalleryMember.objects.filter(gallery=gallery, user=user).only("role").first()
    return Role(member.role) if member else None


def _check(user: AnyUser, gallery: Gallery, *, for_write: bool, owner_only: bool = False) -> Role:
    role = gallery_role(user, gallery)
    if role is None:
        raise Http404("No such gallery.")
    if owner_only and role is not Role.OWNER:
        raise PermissionDenied("Only the gallery's owner may do this.")
    if for_write and not role.can_write:
        raise PermissionDenied("You can view this gallery but not change it.")
    return role


def access_gallery(
    user: AnyUser, gallery_id: int, *, for_write: bool = False, owner_only: bool = False
) -> tuple[Gallery, Role]:
    gallery = Gallery.objects.filter(pk=gallery_id).select_related("owner").first()
    if gallery is None:
        raise Http404("No such gallery.")
    return gallery, _check(user, gallery, for_write=for_write, owner_only=owner_only)


def access_batch(user: AnyUser, gallery_id: int, batch_id: int) -> tuple[UploadBatch, Role]:
    """An upload batch of a gallery the user may see (its progress is all a batch shows)."""
    gallery, role = access_gallery(user, gallery_id)
    batch = UploadBatch.objects.filter(gallery=gallery, pk=batch_id).first()
    if batch is None:
        raise Http404("No such upload.")
    batch.gallery = gallery
    return batch, role


def access_member(
    user: AnyUser, gallery_id: int, member_user_id: int
) -> tuple[GalleryMember, Role]:
    """A membership of a gallery, for its owner (only the owner shares and unshares)."""
    gallery, role = access_gallery(user, gallery_id, owner_only=True)
    member = (
        GalleryMember.objects.filter(gallery=gallery, user_id=member_user_id)
        .select_related("user")
        .first()
    )
    if member is None:
        raise Http404("No such member.")
    member.gallery = gallery
    return member, role


def access_photo(user: AnyUser, photo_id: int, *, for_write: bool = False) -> tuple[Photo, Role]:
    photo = Photo.objects.filter(pk=photo_id).select_related("gallery", "gallery__owner").first()
    if photo is None:
        raise Http404("No such photo.")
    return photo, _check(user, photo.gallery, for_write=for_write)


def access_face(user: AnyUser, face_id: int, *, for_write: bool = False) -> tuple[Face, Role]:
    face = (
        Face.objects.filter(pk=face_id)
        .select_related("photo", "photo__gallery", "person", "suggested_person")
        .first()
    )
    if face is None:
        raise Http404("No such face.")
    return face, _check(user, face.photo.gallery, for_write=for_write)


def visible_people(user: AnyUser) -> QuerySet[Person]:
    """People the user may see: their own, and anyone else's only through a face in a photo the
    user may see. A name is personal data: sharing one gallery shares the names in it, not the
    owner's whole library."""
    if not user.is_authenticated:
        return Person.objects.none()
    seen = Face.objects.filter(
        person=OuterRef("pk"), photo__gallery__in=visible_galleries(user).values("pk")
    )
    return Person.objects.filter(merged_into__isnull=True).filter(Q(owner=user) | Exists(seen))


def access_person(user: AnyUser, person_id: int, *, for_write: bool = False) -> tuple[Person, Role]:
    """A person of the user's library (OWNER), or one the user sees through a face (EDITOR when
    one of those faces is in a gallery the user may change, else VIEWER); 404 otherwise.

    `for_write` (rename, hide, merge, cover, delete) is for the library's owner alone: a person
    spans every gallery of the library, so a member who may change one gallery must not rename
    or hide someone the owner also sees in galleries the member cannot. An editor changes faces
    (tags them with the people they see), never the people themselves.
    """
    person = Person.objects.filter(pk=person_id).select_related("owner").first()
    if person is None or not user.is_authenticated:
        raise Http404("No such person.")
    if person.owner_id == user.pk:
        return person, Role.OWNER
    faces = Face.objects.filter(person=person)
    if not faces.filter(photo__gallery__in=visible_galleries(user).values("pk")).exists():
        raise Http404("No such person.")
    if for_write:
        raise PermissionDenied(
            f"Only {person.owner.get_username()} can rename, hide, merge or delete the people of "
            "their library."
        )
    if faces.filter(photo__gallery__in=writable_galleries(user).values("pk")).exists():
        return person, Role.EDITOR
    return person, Role.VIEWER


def access_merge(
    user: AnyUser, merge_id: int, *, for_write: bool = False
) -> tuple[PersonMerge, Role]:
    """A merge of two people, through its target person: a stranger to the library gets 404
    whether or not the merge exists."""
    merge = PersonMerge.objects.filter(pk=merge_id).select_related("source", "target").first()
    if merge is None:
        raise Http404("No such merge.")
    try:
        _person, role = access_person(user, merge.target_id, for_write=for_write)
    except Http404:
        raise Http404("No such merge.") from None
    return merge, role


def access_api_key(user: AnyUser, key_id: int) -> tuple[ApiKey, Role]:
    """One of the user's own API keys; anyone else's is 404."""
    key = (
        ApiKey.objects.filter(pk=key_id, user_id=user.pk).first() if user.is_authenticated else None
    )
    if key is None:
        raise Http404("No such key.")
    return key, Role.OWNER


def access_user(user: AnyUser, user_id: int) -> tuple[User, Role]:
    """An account, for staff managing users; 404 for everyone else (the page does not exist)."""
    if not (user.is_authenticated and user.is_staff):
        raise Http404("No such page.")
    account = User.objects.filter(pk=user_id).first()
    if account is None:
        raise Http404("No such user.")
    return account, Role.OWNER

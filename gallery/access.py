"""Access helpers: every object named in a URL is fetched through one of these.

Strangers get 404 (they must not learn that an object exists); members who may read but not
write get 403.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from gallery.models import Face, Gallery, GalleryMember, Person, Photo

User = AbstractBaseUser | AnonymousUser


def visible_galleries(user: User) -> QuerySet[Gallery]:
    if not user.is_authenticated:
        return Gallery.objects.none()
    return Gallery.objects.filter(Q(owner=user) | Q(members__user=user)).distinct()


def writable_galleries(user: User) -> QuerySet[Gallery]:
    if not user.is_authenticated:
        return Gallery.objects.none()
    return Gallery.objects.filter(
        Q(owner=user) | Q(members__user=user, members__role=GalleryMember.Role.EDITOR)
    ).distinct()


def visible_gallery_ids(user: User) -> list[int]:
    return list(visible_galleries(user).values_list("pk", flat=True))


def gallery_role(user: User, gallery: Gallery) -> str | None:
    """'owner', 'editor', 'viewer' or None."""
    if not user.is_authenticated:
        return None
    if gallery.owner_id == user.pk:
        return "owner"
    member = GalleryMember.objects.filter(gallery=gallery, user=user).only("role").first()
    return member.role if member else None


def can_write_gallery(user: User, gallery: Gallery) -> bool:
    return gallery_role(user, gallery) in {"owner", GalleryMember.Role.EDITOR}


def _check(user: User, gallery: Gallery, *, for_write: bool, owner_only: bool = False) -> None:
    role = gallery_role(user, gallery)
    if role is None:
        raise Http404("No such gallery.")
    if owner_only and role != "owner":
        raise PermissionDenied("Only the gallery's owner may do this.")
    if for_write and role not in {"owner", GalleryMember.Role.EDITOR}:
        raise PermissionDenied("You can view this gallery but not change it.")


def access_gallery(
    user: User, gallery_id: int, *, for_write: bool = False, owner_only: bool = False
) -> Gallery:
    gallery = Gallery.objects.filter(pk=gallery_id).select_related("owner").first()
    if gallery is None:
        raise Http404("No such gallery.")
    _check(user, gallery, for_write=for_write, owner_only=owner_only)
    return gallery


def access_photo(user: User, photo_id: int, *, for_write: bool = False) -> Photo:
    photo = Photo.objects.filter(pk=photo_id).select_related("gallery", "gallery__owner").first()
    if photo is None:
        raise Http404("No such photo.")
    _check(user, photo.gallery, for_write=for_write)
    return photo


def access_face(user: User, face_id: int, *, for_write: bool = False) -> Face:
    face = (
        Face.objects.filter(pk=face_id)
        .select_related("photo", "photo__gallery", "person", "suggested_person")
        .first()
    )
    if face is None:
        raise Http404("No such face.")
    _check(user, face.photo.gallery, for_write=for_write)
    return face


def visible_people(user: User) -> QuerySet[Person]:
    """People of the user's own library and of the libraries of galleries shared with them."""
    if not user.is_authenticated:
        return Person.objects.none()
    owner_ids = set(visible_galleries(user).values_list("owner_id", flat=True))
    owner_ids.add(user.pk)
    return Person.objects.filter(owner_id__in=owner_ids, merged_into__isnull=True)


def access_person(user: User, person_id: int, *, for_write: bool = False) -> Person:
    person = Person.objects.filter(pk=person_id).select_related("owner").first()
    if person is None or not user.is_authenticated:
        raise Http404("No such person.")
    if person.owner_id == user.pk:
        return person
    shared = visible_galleries(user).filter(owner_id=person.owner_id)
    if not shared.exists():
        raise Http404("No such person.")
    if for_write and not writable_galleries(user).filter(owner_id=person.owner_id).exists():
        raise PermissionDenied("You can view this person but not change them.")
    return person

"""Read-side queries shared by the HTML views and the API, so both count and scope alike.

Every queryset here is scoped to what the user may see (gallery/access.py decides that).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, Count, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from gallery.access import AnyUser, visible_galleries, visible_people
from gallery.models import Face, Gallery, GalleryMember, Person, Photo, UploadBatch


def gallery_cards(user: AnyUser, *, tag: str = "") -> QuerySet[Gallery]:
    """Visible galleries with the user's `role`, photo counts and a `cover` thumbnail name."""
    role = GalleryMember.objects.filter(gallery=OuterRef("pk"), user_id=user.pk).values("role")
    cover = (
        Photo.objects.filter(gallery=OuterRef("pk"), status=Photo.Status.DONE)
        .exclude(thumbnail="")
        .order_by("-created_at", "-id")
        .values("thumbnail")
    )
    # `pk__in` rather than the visibility join itself: the join would multiply the counts.
    galleries = (
        Gallery.objects.filter(pk__in=visible_galleries(user).values("pk"))
        .select_related("owner")
        .annotate(
            role=Case(
                When(owner_id=user.pk, then=Value("owner")),
                default=Coalesce(Subquery(role[:1]), Value("")),
            ),
            photo_count=Count("photos"),
            failed_count=Count("photos", filter=Q(photos__status=Photo.Status.FAILED)),
            pending_count=Count(
                "photos",
                filter=Q(photos__status__in=[Photo.Status.QUEUED, Photo.Status.PROCESSING]),
            ),
            cover=Subquery(cover[:1]),
        )
        .order_by("-created_at", "-id")
    )
    if tag:
        galleries = galleries.filter(tags__contains=[tag.strip().lower()])
    return galleries


def visible_tags(user: AnyUser) -> list[str]:
    """Every tag used on a gallery the user can see, sorted."""
    tags: set[str] = set()
    for row in Gallery.objects.filter(pk__in=visible_galleries(user).values("pk")).values_list(
        "tags", flat=True
    ):
        tags.update(row)
    return sorted(tags)


def visible_faces(user: AnyUser) -> QuerySet[Face]:
    return Face.objects.filter(photo__gallery__in=visible_galleries(user).values("pk"))


def people_cards(user: AnyUser, *, name: str = "") -> QuerySet[Person]:
    """Visible people with `face_count` (faces the user can see) and a `cover` crop name."""
    galleries = visible_galleries(user).values("pk")
    cover = (
        Face.objects.filter(person=OuterRef("pk"), photo__gallery__in=galleries)
        .exclude(crop="")
        .order_by(
            Case(When(assignment=Face.Assignment.CONFIRMED, then=Value(0)), default=Value(1)),
            "-id",
        )
        .values("crop")
    )
    people = (
        visible_people(user)
        .filter(hidden=False)
        .select_related("owner")
        .annotate(
            face_count=Count("faces", filter=Q(faces__photo__gallery__in=galleries)),
            cover=Subquery(cover[:1]),
        )
        .order_by("name", "id")
    )
    if name.strip():
        people = people.filter(name__icontains=name.strip())
    return people


def person_faces(user: AnyUser, person: Person) -> QuerySet[Face]:
    """The person's faces that lie in galleries the user can see, newest photos first."""
    return (
        visible_faces(user)
        .filter(person=person)
        .select_related("photo", "photo__gallery")
        .order_by("-photo__created_at", "-id")
    )


def library_people(owner_id: int) -> QuerySet[Person]:
    """The people a face in one of `owner_id`'s galleries can be tagged with."""
    return Person.objects.filter(owner_id=owner_id, merged_into__isnull=True, hidden=False).only(
        "id", "name"
    )


@dataclass(frozen=True)
class BatchProgress:
    total: int
    queued: int
    processing: int
    done: int
    failed: int

    @property
    def finished(self) -> bool:
        return self.queued + self.processing == 0

    @property
    def percent(self) -> int:
        return round(100 * (self.done + self.failed) / self.total) if self.total else 100


def batch_progress(batch: UploadBatch) -> BatchProgress:
    counts = Photo.objects.filter(batch=batch).aggregate(
        total=Count("id"),
        **{
            status: Count("id", filter=Q(status=status))
            for status in (
                Photo.Status.QUEUED,
                Photo.Status.PROCESSING,
                Photo.Status.DONE,
                Photo.Status.FAILED,
            )
        },
    )
    return BatchProgress(**counts)

"""Read-side queries shared by the HTML views and the API, so both count and scope alike.

Every queryset here is scoped to what the user may see (gallery/access.py decides that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import (
    Case,
    Count,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncMonth

from faceweb.http import parse_id
from gallery.access import AnyUser, visible_galleries, visible_people, writable_galleries
from gallery.models import Face, Gallery, GalleryMember, Person, Photo, UploadBatch, trusted_q


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


def people_cards(user: AnyUser, *, name: str = "", hidden: bool = False) -> QuerySet[Person]:
    """Visible people with `face_count` (faces the user can see), of which `confirmed_count`
    are confirmed and `suggested_count` tagged automatically in galleries the user may change
    (theirs to confirm), and a `cover` crop name (the chosen cover face when the user can see
    it). `hidden`: the hidden people instead."""
    galleries = visible_galleries(user).values("pk")
    chosen = Face.objects.filter(
        pk=OuterRef("cover_face_id"),
        person=OuterRef("pk"),
        assignment=Face.Assignment.CONFIRMED,
        photo__gallery__in=galleries,
    ).values("crop")
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
        .filter(hidden=hidden)
        .select_related("owner")
        .annotate(
            face_count=Count("faces", filter=Q(faces__photo__gallery__in=galleries)),
            confirmed_count=Count(
                "faces",
                filter=Q(
                    faces__photo__gallery__in=galleries,
                    faces__assignment=Face.Assignment.CONFIRMED,
                ),
            ),
            suggested_count=Count(
                "faces",
                filter=Q(
                    faces__photo__gallery__in=writable_galleries(user).values("pk"),
                    faces__assignment=Face.Assignment.SUGGESTED,
                ),
            ),
            cover=Coalesce(Subquery(chosen[:1]), Subquery(cover[:1])),
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


def library_people(user: AnyUser, owner_id: int) -> QuerySet[Person]:
    """The people a face in one of `owner_id`'s galleries can be tagged with, as far as `user`
    may see them (autocomplete lists, merge choices): the owner sees their whole library."""
    return (
        visible_people(user)
        .filter(owner_id=owner_id, hidden=False)
        .only("id", "name")
        .order_by("name", "id")
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


# Photos in a gallery and on the timeline --------------------------------------------------------


@dataclass(frozen=True)
class PhotoFilters:
    """How the gallery grid is sorted and filtered (from the page's query string)."""

    sort: str = "newest"
    person: int | None = None
    unknown: bool = False

    SORTS = {
        "newest": ("Newest upload first", ("-created_at", "-id")),
        "oldest": ("Oldest upload first", ("created_at", "id")),
        "taken": ("Date taken, newest first", ("-date", "-id")),
        "taken-oldest": ("Date taken, oldest first", ("date", "id")),
    }

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PhotoFilters:
        sort = query.get("sort", "newest")
        person = query.get("person", "")
        return cls(
            sort=sort if sort in cls.SORTS else "newest",
            person=parse_id(person),
            unknown=query.get("unknown", "") == "1",
        )

    @property
    def active(self) -> bool:
        return self != PhotoFilters()

    def query(self) -> str:
        """The query string that gives these filters back (empty for the defaults)."""
        parts = {"sort": self.sort if self.sort != "newest" else ""}
        parts["person"] = str(self.person) if self.person else ""
        parts["unknown"] = "1" if self.unknown else ""
        return urlencode({k: v for k, v in parts.items() if v})


def shown_faces_q(prefix: str = "") -> Q:
    """Faces shown on a photo: everything but boxes a person marked as not a face."""
    return ~Q(**{f"{prefix}review_status": Face.Review.NOT_FACE})


def unknown_face_q(prefix: str = "") -> Q:
    """Faces nobody has named, which are worth naming (trusted, not ignored, not a non-face)."""
    return (
        trusted_q(prefix)
        & Q(**{f"{prefix}person__isnull": True})
        & ~Q(**{f"{prefix}assignment": Face.Assignment.IGNORED})
    )


def _with_faces(photos: QuerySet[Photo]) -> QuerySet[Photo]:
    """`date` (taken, else uploaded), `face_count` and the box around the shown faces
    (`faces_left` .. `faces_bottom`) that centres the thumbnail on them."""
    shown = Q(faces__isnull=False) & shown_faces_q("faces__")
    return photos.annotate(
        date=Coalesce("taken_at", "created_at"),
        face_count=Count("faces", filter=shown),
        faces_left=Min("faces__left", filter=shown),
        faces_top=Min("faces__top", filter=shown),
        faces_right=Max(F("faces__left") + F("faces__width"), filter=shown),
        faces_bottom=Max(F("faces__top") + F("faces__height"), filter=shown),
    )


def gallery_photos(gallery: Gallery, filters: PhotoFilters = PhotoFilters()) -> QuerySet[Photo]:
    """The gallery's photos, sorted and filtered as the grid shows them."""
    photos = gallery.photos.only(
        "id",
        "original_name",
        "status",
        "error",
        "thumbnail",
        "gallery_id",
        "created_at",
        "taken_at",
        "width",
        "height",
    )
    return _with_faces(_filtered(photos, filters)).order_by(*PhotoFilters.SORTS[filters.sort][1])


def _filtered(photos: QuerySet[Photo], filters: PhotoFilters) -> QuerySet[Photo]:
    if filters.person:
        photos = photos.filter(pk__in=Face.objects.filter(person_id=filters.person).values("photo"))
    if filters.unknown:
        photos = photos.filter(pk__in=Face.objects.filter(unknown_face_q()).values("photo"))
    return photos


def gallery_people(gallery: Gallery) -> QuerySet[Person]:
    """People tagged in the gallery (for its "people in it" filter)."""
    return (
        Person.objects.filter(faces__photo__gallery=gallery, merged_into__isnull=True)
        .distinct()
        .only("id", "name")
        .order_by("name", "id")
    )


def photo_neighbours(photo: Photo, filters: PhotoFilters) -> tuple[int | None, int | None]:
    """Ids of the photos before and after `photo` in the gallery grid's order and filters (the
    whole gallery's when the photo is not in the filtered grid): one row each, found through
    the sort key, not by listing the gallery."""
    photos = Photo.objects.filter(gallery_id=photo.gallery_id)
    if filters.person or filters.unknown:
        filtered = _filtered(photos, filters)
        if filtered.filter(pk=photo.pk).exists():
            photos = filtered
    first = PhotoFilters.SORTS[filters.sort][1][0]  # e.g. "-created_at"; then the id
    key, descending = first.lstrip("-"), first.startswith("-")
    if key == "date":
        photos = photos.annotate(date=Coalesce("taken_at", "created_at"))
        value = photo.taken_at or photo.created_at
    else:
        value = photo.created_at
    later = Q(**{f"{key}__gt": value}) | Q(**{key: value, "pk__gt": photo.pk})
    earlier = Q(**{f"{key}__lt": value}) | Q(**{key: value, "pk__lt": photo.pk})
    up, down = (key, "pk"), (f"-{key}", "-pk")
    # In a descending grid the photo before is the nearest later one, and the reverse.
    before_q, before_order = (later, up) if descending else (earlier, down)
    after_q, after_order = (earlier, down) if descending else (later, up)
    before = photos.filter(before_q).order_by(*before_order).values_list("pk", flat=True)
    after = photos.filter(after_q).order_by(*after_order).values_list("pk", flat=True)
    return before.first(), after.first()


def timeline_photos(user: AnyUser, *, name: str = "") -> QuerySet[Photo]:
    """Processed photos of every visible gallery, newest date taken (else upload) first, with
    their `month`. `name`: only photos of a visible person whose name contains it."""
    photos = Photo.objects.filter(
        gallery__in=visible_galleries(user).values("pk"), status=Photo.Status.DONE
    ).only(
        "id",
        "original_name",
        "thumbnail",
        "gallery_id",
        "created_at",
        "taken_at",
        "width",
        "height",
        "status",
    )
    if name.strip():
        photos = photos.filter(pk__in=name_faces(user, name).values("photo"))
    month = TruncMonth(Coalesce("taken_at", "created_at"))
    return _with_faces(photos).annotate(month=month).order_by(month.desc(), "-id")


def timeline_months(photos: QuerySet[Photo]) -> list[dict]:
    """[{"month": datetime, "count": n}, ...] of a timeline queryset, newest first."""
    # `month` is timeline_photos' annotation, which the type stubs cannot see.
    months = photos.order_by().values("month")  # type: ignore[misc]
    months = months.annotate(count=Count("id", distinct=True))
    return list(months.order_by(F("month").desc()))


def name_faces(user: AnyUser, name: str) -> QuerySet[Face]:
    """Visible faces tagged with a visible person whose name contains `name`."""
    people = visible_people(user).filter(name__icontains=name.strip()).values("pk")
    return visible_faces(user).filter(person__in=people)


def pending_faces(user: AnyUser) -> QuerySet[Face]:
    """Faces waiting for a decision (automatic tags and suggestions) that the user may change,
    nearest match first."""
    return (
        Face.objects.filter(photo__gallery__in=writable_galleries(user).values("pk"))
        .filter(
            Q(person__isnull=False, assignment=Face.Assignment.SUGGESTED)
            | Q(person__isnull=True, suggested_person__in=visible_people(user).values("pk"))
        )
        .select_related("photo", "photo__gallery", "person", "suggested_person")
        .order_by("match_distance", "id")
    )

"""The review queue's read side: who may review, which faces wait, and the queue's filters.

Reviewing is a staff job across all galleries (the filter's mistakes are a property of the model,
not of one library). Writes go through `recognition.actions.review.do_review_faces`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import (
    BooleanField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    TextField,
)
from django.db.models.functions import Cast
from django.http import Http404
from django.utils import timezone

from faceweb.http import parse_id
from gallery.access import AnyUser
from gallery.models import Face
from recognition.models import Template

SORTS = {
    "score": (F("ood_score").desc(nulls_last=True), "-pk"),
    # Faces whose approval would enrol their person (see `rejected_faces`) first.
    "unenrolled": (F("sole_reference").desc(), F("ood_score").desc(nulls_last=True), "-pk"),
    "score-asc": (F("ood_score").asc(nulls_first=True), "pk"),
    "newest": ("-created_at", "-pk"),
    "oldest": ("created_at", "pk"),
}
SHOWS = ("pending", "reviewed")


def is_reviewer(user: AnyUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def access_review_face(user: AnyUser, face_id: int) -> Face:
    """A rejected face for a reviewer; 404 for anyone else and for faces the filter accepted."""
    if not is_reviewer(user):
        raise Http404("No such face.")
    face = _rejected().filter(pk=face_id).first()
    if face is None:
        raise Http404("No such face.")
    return face


@dataclass(frozen=True)
class QueueFilters:
    q: str = ""
    gallery: int | None = None
    since: date | None = None
    until: date | None = None
    sort: str = "score"
    show: str = "pending"

    @classmethod
    def from_query(cls, params: dict[str, str]) -> QueueFilters:
        """Bad values are ignored rather than refused: a filter form should never 400."""

        def day(value: str) -> date | None:
            try:
                return date.fromisoformat(value) if value else None
            except ValueError:
                return None

        gallery = params.get("gallery", "")
        return cls(
            q=params.get("q", "").strip()[:200],
            gallery=parse_id(gallery),
            since=day(params.get("since", "")),
            until=day(params.get("until", "")),
            sort=params.get("sort", "") if params.get("sort", "") in SORTS else "score",
            show=params.get("show", "") if params.get("show", "") in SHOWS else "pending",
        )


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _rejected() -> QuerySet[Face]:
    """Every rejected face, with what a queue row shows.

    Each face carries `sole_reference`: it is tagged with a person who has no template at all,
    so search cannot find that person until a reviewer approves one of their faces. On LFW
    this is where exclusion costs accuracy (BENCHMARKS.md, "failure to enrol"), so the queue
    can put those faces first (sort "unenrolled").
    """
    return (
        Face.objects.filter(ood_status=Face.Quality.REJECTED)
        .annotate(
            sole_reference=ExpressionWrapper(
                Q(person__isnull=False)
                & ~Exists(Template.objects.filter(person_id=OuterRef("person_id"))),
                output_field=BooleanField(),
            )
        )
        .select_related("photo", "photo__gallery", "person", "reviewed_by")
    )


def rejected_faces(filters: QueueFilters) -> QuerySet[Face]:
    """Faces the filter rejected: waiting for a decision, or (show=reviewed) already decided."""
    faces = _rejected()
    if filters.show == "pending":
        faces = faces.filter(review_status=Face.Review.NONE)
    else:
        faces = faces.exclude(review_status=Face.Review.NONE)
    if filters.q:
        faces = faces.annotate(reasons_text=Cast("ood_reasons", TextField())).filter(
            reasons_text__icontains=filters.q
        )
    if filters.gallery is not None:
        faces = faces.filter(photo__gallery_id=filters.gallery)
    if filters.since is not None:
        faces = faces.filter(created_at__gte=_start_of(filters.since))
    if filters.until is not None:
        faces = faces.filter(created_at__lt=_start_of(filters.until) + timedelta(days=1))
    if filters.show == "reviewed" and filters.sort == "score":
        order: tuple = (F("reviewed_at").desc(nulls_last=True), "-pk")
    else:
        order = SORTS[filters.sort]
    return faces.order_by(*order)

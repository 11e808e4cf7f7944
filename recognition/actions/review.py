"""Reviewers' decisions on faces the out-of-distribution filter rejected: staff in the review
queue, and a gallery's owner overruling the filter on a face of their own photos."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from faceweb.queue import REMATCH_NEAR_FACES, enqueue_on_commit
from gallery.models import Face, FaceEvent
from recognition.actions.identity import do_match_faces
from recognition.index.enrolment import sync_face_templates
from recognition.models import ReviewDecision


@transaction.atomic
def do_review_faces(faces: Iterable[Face], decision: str, by: User) -> list[Face]:
    """A reviewer (staff, or the gallery's owner: the caller checked which) approves rejected
    faces or confirms their rejection; returns the changed faces.

    `decision` is ReviewDecision.Decision ("approve" / "reject"). Only faces the filter rejected
    are reviewed; a face already carrying the same decision is left alone, so a double click
    records nothing twice. A box marked "not a face" is left alone too: it comes back only
    through manual.do_unmark_not_face, which withdraws that label and restores its tag.

    Each change is a ReviewDecision row (a label for `train_ood --include-reviews`),
    Face.reviewed_by/reviewed_at and a FaceEvent. Approved faces become
    trusted: they are matched and, when tagged, become templates; confirmed ones lose any
    template and automatic tag.
    """

    if decision not in ReviewDecision.Decision.values:
        raise ValueError(f"unknown review decision {decision!r}")
    approve = decision == ReviewDecision.Decision.APPROVE
    status = Face.Review.APPROVED if approve else Face.Review.CONFIRMED
    ids = sorted({f.pk for f in faces})
    now = timezone.now()
    changed = list(
        Face.objects.select_for_update()
        .filter(pk__in=ids, ood_status=Face.Quality.REJECTED)
        .exclude(review_status__in=[status, Face.Review.NOT_FACE])
        .order_by("pk")
    )
    previous = {face.pk: face.review_status for face in changed}
    for face in changed:
        face.review_status = status
        face.reviewed_by = by
        face.reviewed_at = now
        face.save(update_fields=["review_status", "reviewed_by", "reviewed_at"])
    ReviewDecision.objects.bulk_create(
        ReviewDecision(
            face=face,
            reviewer=by,
            decision=decision,
            ood_score=face.ood_score,
            reasons=face.ood_reasons,
        )
        for face in changed
    )
    FaceEvent.objects.bulk_create(
        FaceEvent(
            user=by,
            face=face,
            person=face.person,
            action=(
                FaceEvent.Action.FACE_REVIEW_APPROVED
                if approve
                else FaceEvent.Action.FACE_REVIEW_CONFIRMED
            ),
            data={
                "ood_score": face.ood_score,
                "reasons": face.ood_reasons,
                "previous_review": previous[face.pk],
            },
        )
        for face in changed
    )
    changed_ids = [f.pk for f in changed]
    sync_face_templates(changed_ids)
    confirmed = [f.pk for f in changed if approve and f.assignment == Face.Assignment.CONFIRMED]
    if confirmed:
        enqueue_on_commit(REMATCH_NEAR_FACES, confirmed)
    if changed:
        # Approved faces get their match; confirmed rejections drop an automatic tag.
        do_match_faces(changed)
    return changed


def review_rows(old_faces: Iterable[Face]) -> list[ReviewDecision]:
    """The review decisions on the faces a reprocess replaces (read before they are deleted)."""
    ids = [f.pk for f in old_faces]
    if not ids:
        return []
    return list(ReviewDecision.objects.filter(face_id__in=ids).order_by("created_at", "id"))


def carry_review_decisions(new_faces: Iterable[Face], rows: list[ReviewDecision]) -> None:
    """Reprocessing keeps the labels: each decision moves, with its time, to the new face that
    replaced its old face (identity.carry_over, which carries the face's review_status), so
    `train_ood --include-reviews` still learns it. A box not found again takes its labels with
    it, as it takes its review status. Caller holds the transaction that deleted the old rows."""
    carried = ((getattr(f, "_carried_from", None), f.pk) for f in new_faces)
    moved = {old: new for old, new in carried if old is not None}
    kept = [row for row in rows if row.face_id in moved]
    if not kept:
        return
    times = [row.created_at for row in kept]
    for row in kept:
        row.pk = None
        row.face_id = moved[row.face_id]
    for row, when in zip(ReviewDecision.objects.bulk_create(kept), times, strict=True):
        # auto_now_add stamped them now: the order of decisions (the latest wins) stays theirs.
        ReviewDecision.objects.filter(pk=row.pk).update(created_at=when)

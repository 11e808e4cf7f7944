""" "Not a face": a person removes a false detection, or takes that back.

The decision is a ReviewDecision (NOT_FACE), a label `train_ood --include-reviews` learns from
like a reviewer's confirmed rejection, and the face's `review_status`, so the box is never shown,
matched or made a template again, and a reprocess that finds the same box keeps the decision
(identity.carry_over). Drawing a face by hand is processing.do_add_face: it runs the pipeline.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from gallery.models import Face, FaceEvent
from recognition.actions.identity import clear_identity, do_match_faces, restore_identity
from recognition.index.enrolment import sync_face_templates
from recognition.models import ReviewDecision


@transaction.atomic
def do_mark_not_face(face: Face, by: User) -> Face:
    """The box holds no face: drop its tag or suggestion and keep it out of everything.

    Caller checked write access to the face's gallery. Marking twice records nothing twice.
    """
    locked = Face.objects.select_for_update().get(pk=face.pk)
    if locked.review_status == Face.Review.NOT_FACE:
        return locked
    previous = locked.review_status
    clear_identity(face, by, FaceEvent.Action.FACE_NOT_A_FACE, {"previous_review": previous})
    face.review_status = Face.Review.NOT_FACE
    face.reviewed_by = by
    face.reviewed_at = timezone.now()
    face.save(update_fields=["review_status", "reviewed_by", "reviewed_at"])
    ReviewDecision.objects.create(
        face=face,
        reviewer=by,
        decision=ReviewDecision.Decision.NOT_FACE,
        ood_score=locked.ood_score,
        reasons=locked.ood_reasons,
    )
    sync_face_templates([face.pk])
    # Another face of the photo may now take the person this box held.
    do_match_faces([face])
    return face


@transaction.atomic
def do_unmark_not_face(face: Face, by: User) -> Face:
    """It is a face after all: back to the review it had, with the tag a person gave it
    (identity.restore_identity), and matched again.

    The NOT_FACE labels of this face are withdrawn so training never learns the mistake.
    """
    face = Face.objects.select_for_update().get(pk=face.pk)
    if face.review_status != Face.Review.NOT_FACE:
        return face
    event = (
        FaceEvent.objects.filter(face=face, action=FaceEvent.Action.FACE_NOT_A_FACE)
        .order_by("-id")
        .first()
    )
    cleared = (event.data or {}) if event else {}
    previous = cleared.get("previous_review", "")
    face.review_status = previous or Face.Review.NONE
    face.reviewed_by = by
    face.reviewed_at = timezone.now()
    face.save(update_fields=["review_status", "reviewed_by", "reviewed_at"])
    ReviewDecision.objects.filter(face=face, decision=ReviewDecision.Decision.NOT_FACE).delete()
    FaceEvent.objects.create(
        user=by,
        face=face,
        action=FaceEvent.Action.FACE_IS_A_FACE,
        data={"review_status": previous},
    )
    restore_identity(face, by, cleared)
    sync_face_templates([face.pk])
    do_match_faces([face])
    return face

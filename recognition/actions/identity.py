"""Face identity: the only writer of `Face.person`, `assignment`, `suggested_person` and
`match_distance`, and of "not this person" decisions and merges.

People tag, untag, confirm, reject and merge here; the matcher stores its decisions here;
reprocessing carries names over to the new face rows here. Every change is logged as a FaceEvent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from pgvector.django import L2Distance

from faceweb.queue import REMATCH_NEAR_FACES, enqueue_on_commit
from gallery.actions.common import ActionError
from gallery.actions.people import do_set_cover_face, drop_cover_face
from gallery.models import (
    Face,
    FaceEvent,
    FaceNotPerson,
    Gallery,
    GalleryMember,
    Person,
    PersonMerge,
    trusted_q,
)
from recognition.core import calibration, matching
from recognition.core.geometry import Box, euclidean_distances, iou
from recognition.core.trust import match_thresholds
from recognition.index.enrolment import sync_face_templates
from recognition.index.search import library_limits, search_faces
from recognition.models import Template

logger = logging.getLogger(__name__)


# Tags set by people ---------------------------------------------------------------------------


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


@transaction.atomic
def do_tag_face(face: Face, person: Person, by: User) -> Face:
    """Confirm `person` for `face` (caller checked write access to the face's gallery)."""
    tagged, errors = do_tag_faces([face], person, by)
    if errors:
        raise ActionError(errors[0][1])
    return tagged[0]


@transaction.atomic
def do_untag_face(face: Face, by: User) -> Face:

    previous = face.person
    face.person = None
    face.assignment = Face.Assignment.NONE
    face.match_distance = None
    face.assigned_by = by
    face.assigned_at = timezone.now()
    face.save(
        update_fields=["person", "assignment", "match_distance", "assigned_by", "assigned_at"]
    )
    drop_cover_face(face)
    FaceEvent.objects.create(
        user=by,
        face=face,
        person=previous,
        action=FaceEvent.Action.FACE_UNTAGGED,
        data={"previous_person": previous.pk if previous else None},
    )
    sync_face_templates([face.pk])
    return face


def pending_person(face: Face) -> Person | None:
    """The person a face is waiting to have confirmed: an automatic tag or a suggestion."""
    if face.person_id is not None:
        return face.person if face.assignment == Face.Assignment.SUGGESTED else None
    return face.suggested_person if face.suggested_person_id is not None else None


def _rematch_after_commit(face_ids: Iterable[int]) -> None:
    """Newly confirmed faces are new templates: re-match the still-unknown faces near them."""

    ids = sorted(set(face_ids))
    if ids:
        enqueue_on_commit(REMATCH_NEAR_FACES, ids)


def _lock_and_refresh(face: Face) -> None:
    """Re-read the tag columns under a row lock: the matcher may have moved them since the
    caller loaded the face."""
    Face.objects.select_for_update().filter(pk=face.pk).first()
    face.refresh_from_db(
        fields=[
            "person",
            "assignment",
            "suggested_person",
            "match_distance",
            "assigned_by",
            "assigned_at",
        ]
    )


def _withdraw_guesses(face: Face, person: Person, by: User) -> None:
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
            action=FaceEvent.Action.MATCH_CLEARED,
            data={"reason": f"{person.name} was confirmed on face {face.pk} of the same photo"},
        )


def _confirm(face: Face, person: Person, by: User, action: FaceEvent.Action) -> None:
    """Caller holds a transaction and has called _lock_and_refresh(face)."""
    _withdraw_guesses(face, person, by)
    check_person_for_face(face, person)
    previous = face.person_id
    if previous is not None and previous != person.pk:
        drop_cover_face(face)
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


@transaction.atomic
def do_confirm_suggestion(face: Face, by: User) -> Face:
    """Confirm the automatic tag or the suggestion of `face` (caller checked write access)."""
    confirmed, errors = do_confirm_suggestions([face], by)
    if errors:
        raise ActionError(errors[0][1])
    return confirmed[0]


def _confirm_each(
    faces: Iterable[Face],
    by: User,
    action: FaceEvent.Action,
    choose: Callable[[Face], Person],
) -> tuple[list[Face], list[tuple[Face, str]]]:
    """Confirm `choose(face)` for each face in its own transaction; refusals come back with why.

    `choose` sees the face re-read under its row lock and raises ActionError to skip it.
    """

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


@transaction.atomic
def do_confirm_suggestions(
    faces: Iterable[Face], by: User
) -> tuple[list[Face], list[tuple[Face, str]]]:
    """Confirm many suggestions; each face that cannot be confirmed is returned with why."""

    def suggested(face: Face) -> Person:
        person = pending_person(face)
        if person is None:
            raise ActionError("This face has no suggestion to confirm.")
        return person

    return _confirm_each(faces, by, FaceEvent.Action.SUGGESTION_CONFIRMED, suggested)


@transaction.atomic
def do_tag_faces(
    faces: Iterable[Face], person: Person, by: User
) -> tuple[list[Face], list[tuple[Face, str]]]:
    """Name many faces at once (a group on the "who is unknown" page).

    Faces that would give `person` twice in one photo are skipped with the reason; the others
    are confirmed.
    """
    return _confirm_each(faces, by, FaceEvent.Action.FACE_TAGGED, lambda _face: person)


@transaction.atomic
def do_reject_suggestion(face: Face, by: User) -> Face:
    """ "Not this person": remember it, drop the tag or suggestion, and match the face again.

    Works on an automatic tag, a suggestion or a confirmed tag. The template face that made the
    person look near is stored as `via_face`, so that pair of faces never matches again even if
    that template later belongs to someone else.
    """
    rejected, errors = do_reject_suggestions([face], by)
    if errors:
        raise ActionError(errors[0][1])
    return rejected[0]


@transaction.atomic
def do_reject_suggestions(
    faces: Iterable[Face], by: User
) -> tuple[list[Face], list[tuple[Face, str]]]:

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
                drop_cover_face(face)
            face.suggested_person = None
            face.match_distance = None
            face.assigned_by = by
            face.assigned_at = timezone.now()
            face.save(update_fields=fields)
            FaceEvent.objects.create(
                user=by,
                face=face,
                person=person,
                action=FaceEvent.Action.SUGGESTION_REJECTED,
                data={"was": state or "unknown", "via_face": via},
            )
        if state == Face.Assignment.CONFIRMED:
            was_confirmed.append(face.pk)
        rejected.append(face)
    sync_face_templates(was_confirmed)
    # The face may have another candidate now that this person is ruled out.
    do_match_faces(rejected)
    return rejected, errors


# Strangers and false detections ---------------------------------------------------------------

_IDENTITY_FIELDS = [
    "person",
    "suggested_person",
    "match_distance",
    "assignment",
    "assigned_by",
    "assigned_at",
]


def _set_identity(
    face: Face, by: User, assignment: str, action: FaceEvent.Action, data: dict | None = None
) -> None:
    """Drop the face's tag and suggestion and give it `assignment` (caller holds the lock)."""
    previous = face.person_id or face.suggested_person_id
    face.person = None
    face.suggested_person = None
    face.match_distance = None
    face.assignment = assignment
    face.assigned_by = by
    face.assigned_at = timezone.now()
    face.save(update_fields=_IDENTITY_FIELDS)
    FaceEvent.objects.create(
        user=by,
        face=face,
        person_id=previous,
        action=action,
        data={"previous_person": previous, **(data or {})},
    )


@transaction.atomic
def do_ignore_faces(
    faces: Iterable[Face], by: User, *, ignored: bool = True
) -> tuple[list[Face], list[tuple[Face, str]]]:
    """Ignore faces of strangers (kept out of "Who is unknown?" and of matching), or stop
    ignoring them (they are matched again). A confirmed face is never ignored: untag it first.
    Caller checked write access to every face's gallery.
    """
    changed: list[Face] = []
    errors: list[tuple[Face, str]] = []
    for face in faces:
        with transaction.atomic():
            _lock_and_refresh(face)
            if ignored and face.assignment == Face.Assignment.CONFIRMED:
                errors.append((face, "A named face cannot be ignored; untag it first."))
                continue
            if ignored == (face.assignment == Face.Assignment.IGNORED):
                continue  # already as asked: a double click records nothing twice
            if ignored:
                _set_identity(face, by, Face.Assignment.IGNORED, FaceEvent.Action.FACE_IGNORED)
            else:
                _set_identity(face, by, Face.Assignment.NONE, FaceEvent.Action.FACE_UNIGNORED)
        changed.append(face)
    if changed and not ignored:
        do_match_faces(changed)
    return changed, errors


def clear_identity(
    face: Face, by: User, action: FaceEvent.Action, data: dict | None = None
) -> None:
    """Drop every tag and suggestion of a face that turned out to be no face at all (`action`
    names why in the audit log, with what restore_identity needs to take it back). Caller
    holds a transaction, then syncs templates and re-matches the photo."""
    _lock_and_refresh(face)
    before = {
        "previous_assignment": face.assignment,
        "previous_tag": face.person_id if face.assignment == Face.Assignment.CONFIRMED else None,
        "cover_of": drop_cover_face(face),
    }
    _set_identity(face, by, Face.Assignment.NONE, action, {**before, **(data or {})})


def restore_identity(face: Face, by: User, cleared: dict) -> None:
    """Take clear_identity back from what it recorded (`cleared`, its event's data): a confirmed
    tag comes back confirmed (and as the person's cover if it was), an ignored face is ignored
    again. An automatic tag or a suggestion was the matcher's guess: the caller's re-match
    makes it again. So does a tag that cannot come back (its person was merged or deleted, or
    another face of the photo is confirmed as them now). Caller holds a transaction, then syncs
    templates and re-matches the photo."""
    _lock_and_refresh(face)
    if face.person_id is not None or face.assignment != Face.Assignment.NONE:
        return  # changed since it was cleared: that later decision stands
    if cleared.get("previous_assignment") == Face.Assignment.IGNORED:
        _set_identity(
            face, by, Face.Assignment.IGNORED, FaceEvent.Action.FACE_IGNORED, {"restored": True}
        )
        return
    tagged = cleared.get("previous_tag")
    person = (
        Person.objects.filter(pk=tagged, merged_into__isnull=True).first()
        if isinstance(tagged, int)
        else None
    )
    if person is None:
        return
    try:
        with transaction.atomic():
            _confirm(face, person, by, FaceEvent.Action.FACE_TAGGED)
    except ActionError:
        face.refresh_from_db(fields=_IDENTITY_FIELDS)
        return
    if cleared.get("cover_of") == person.pk and person.cover_face_id is None:
        do_set_cover_face(person, face, by)


# Merges ----------------------------------------------------------------------------------------


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


@transaction.atomic
def do_merge_people(source: Person, target: Person, by: User) -> PersonMerge:
    """Move every face of `source` to `target` and log it so `do_undo_merge` can reverse it.

    Suggestions of `source` become suggestions of `target`, and "not `source`" decisions become
    "not `target`" (recorded, so an undo removes exactly those).
    """

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
        source=source,
        target=target,
        face_ids=moved,
        suggested_face_ids=suggested,
        dropped_suggestion_face_ids=dropped,
        not_person_ids=created,
        created_by=by,
    )
    FaceEvent.objects.create(
        user=by,
        person=target,
        action=FaceEvent.Action.PEOPLE_MERGED,
        data={"merge": merge.pk, "source": source.pk, "source_name": source.name},
    )
    sync_face_templates(moved)
    return merge


@transaction.atomic
def do_undo_merge(merge: PersonMerge, by: User) -> Person:
    """Give the merged person back their faces, suggestions and "not this person" decisions.

    Faces re-tagged since the merge keep their new tag. A later merge of the target must be
    undone first.
    """

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
    back = list(
        Face.objects.filter(pk__in=merge.face_ids, person=target).values_list("pk", flat=True)
    )
    Face.objects.filter(pk__in=back).update(person=source)
    Face.objects.filter(pk__in=merge.suggested_face_ids, suggested_person=target).update(
        suggested_person=source
    )
    FaceNotPerson.objects.filter(pk__in=merge.not_person_ids).delete()
    source.merged_into = None
    source.save(update_fields=["merged_into", "updated_at"])
    merge.undone_by = by
    merge.undone_at = timezone.now()
    merge.save(update_fields=["undone_by", "undone_at"])
    FaceEvent.objects.create(
        user=by,
        person=source,
        action=FaceEvent.Action.MERGE_UNDONE,
        data={"merge": merge.pk, "target": target.pk, "faces": back},
    )
    sync_face_templates(back)
    return source


# The matcher's decisions ---------------------------------------------------------------------


# Faces the matcher never decides again: named by a person, or ignored as strangers.
SETTLED = frozenset({Face.Assignment.CONFIRMED, Face.Assignment.IGNORED})

MATCH_TOP_N = matching.MATCH_TOP_N

# A confirmed face re-matches at most this many unknown faces near it (nearest first).
REMATCH_LIMIT = 500


def _embedding(face: Face) -> np.ndarray:
    return np.asarray(face.embedding, dtype=np.float32)


def matchable_gallery_ids(gallery_id: int) -> list[int]:
    """The galleries whose templates may name a face in `gallery_id`: those of the same owner
    that everyone who can see `gallery_id` can see too (its members are a subset of theirs).

    A name written onto a face is shown to everyone who sees that face, so a template from a
    gallery some of them cannot see would leak a name from a private gallery into a shared one.
    """
    owner_id = Gallery.objects.filter(pk=gallery_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return []
    members: dict[int, set[int]] = {
        pk: set() for pk in Gallery.objects.filter(owner_id=owner_id).values_list("pk", flat=True)
    }
    for gid, user_id in GalleryMember.objects.filter(gallery__owner_id=owner_id).values_list(
        "gallery_id", "user_id"
    ):
        members[gid].add(user_id)
    audience = members.get(gallery_id, set())
    return sorted(gid for gid, users in members.items() if audience <= users)


def nearest_template_face(face: Face, person: Person) -> int | None:
    """The template face of `person` nearest to `face`: what made the person look near."""

    if face.embedding is None:
        return None
    return (
        Template.objects.filter(person=person, embedder_version=face.embedder_version)
        .exclude(face_id=face.pk)
        .annotate(d=L2Distance("face__embedding", _embedding(face)))
        .order_by("d")
        .values_list("face_id", flat=True)
        .first()
    )


def _banned(face_ids: list[int]) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """Per face: people it is not, and faces it must never match through (both directions)."""

    people: dict[int, set[int]] = defaultdict(set)
    faces: dict[int, set[int]] = defaultdict(set)
    rows = FaceNotPerson.objects.filter(Q(face_id__in=face_ids) | Q(via_face_id__in=face_ids))
    for face_id, person_id, via in rows.values_list("face_id", "person_id", "via_face_id"):
        if face_id in face_ids:
            people[face_id].add(person_id)
            if via is not None:
                faces[face_id].add(via)
        if via is not None and via in face_ids:
            faces[via].add(face_id)
    return people, faces


def _refine(
    face: Face, person_id: int, banned_faces: set[int], gallery_ids: list[int]
) -> matching.Candidate | None:
    """The person's nearest template in `gallery_ids` other than the banned ones (the search
    returns one per person, which may be a banned one)."""

    row = (
        Template.objects.filter(
            person_id=person_id,
            embedder_version=face.embedder_version,
            gallery_id__in=gallery_ids,
        )
        .exclude(face_id__in=banned_faces)
        .annotate(d=L2Distance("face__embedding", _embedding(face)))
        .order_by("d")
        .values_list("face_id", "d")
        .first()
    )
    return matching.Candidate(person_id, float(row[1]), row[0]) if row else None


def person_caps(
    person_ids: Iterable[int], gallery_ids: list[int], embedder_version: str
) -> dict[int, float]:
    """Own auto-tag caps (`calibration.person_cap`) of the people with enough templates in
    `gallery_ids`."""
    vectors: dict[int, list[np.ndarray]] = defaultdict(list)
    rows = Template.objects.filter(
        person_id__in=list(person_ids),
        gallery_id__in=gallery_ids,
        embedder_version=embedder_version,
    ).values_list("person_id", "face__embedding")
    for person_id, embedding in rows:
        vectors[person_id].append(np.asarray(embedding, dtype=np.float32))
    out: dict[int, float] = {}
    for person_id, vecs in vectors.items():
        if len(vecs) < calibration.PERSON_MIN_FACES:
            continue
        d = euclidean_distances(np.stack(vecs), np.stack(vecs))
        np.fill_diagonal(d, np.inf)
        cap = calibration.person_cap(d.min(axis=1).tolist())
        if cap is not None:
            out[person_id] = cap
    return out


def _candidates(faces: list[Face]) -> dict[int, list[matching.Candidate]]:
    """Usable candidates per face from the staged search over its library's templates."""

    ids = [f.pk for f in faces]
    banned_people, banned_faces = _banned(ids)
    groups: dict[tuple[int, str], list[Face]] = defaultdict(list)
    for face in faces:
        groups[(face.photo.gallery_id, face.embedder_version)].append(face)
    scopes: dict[int, list[int]] = {}
    found: dict[int, list[matching.Candidate]] = {}
    for (gallery_id, version), members in groups.items():
        if gallery_id not in scopes:
            scopes[gallery_id] = matchable_gallery_ids(gallery_id)
        results = search_faces(
            np.stack([_embedding(f) for f in members]),
            gallery_ids=scopes[gallery_id],
            embedder_version=version,
            top_n=MATCH_TOP_N,
            exclude_person_ids=[banned_people.get(f.pk, set()) for f in members],
        )
        for face, result in zip(members, results, strict=True):
            cands: list[matching.Candidate] = []
            for c in result.candidates:
                if c.face_id in banned_faces.get(face.pk, ()):
                    refined = _refine(face, c.person_id, banned_faces[face.pk], scopes[gallery_id])
                    if refined is not None:
                        cands.append(refined)
                else:
                    cands.append(matching.Candidate(c.person_id, c.distance, c.face_id))
            found[face.pk] = matching.usable_candidates(
                cands,
                banned_people=banned_people.get(face.pk, ()),
                banned_faces=banned_faces.get(face.pk, ()),
            )
    live = set(
        Person.objects.filter(
            pk__in={c.person_id for cands in found.values() for c in cands},
            merged_into__isnull=True,
        ).values_list("pk", flat=True)
    )
    return {fid: [c for c in cands if c.person_id in live] for fid, cands in found.items()}


def _target_state(match: matching.FaceMatch) -> tuple[int | None, str, int | None, float | None]:
    """(person, assignment, suggested_person, match_distance) for a decision."""
    if match.decision is matching.Decision.AUTO:
        return match.person_id, Face.Assignment.SUGGESTED, None, match.distance
    if match.decision is matching.Decision.SUGGEST:
        return None, Face.Assignment.NONE, match.person_id, match.distance
    return None, Face.Assignment.NONE, None, None


@transaction.atomic
def do_match_faces(faces: Iterable[Face]) -> dict[int, matching.FaceMatch]:
    """Match trusted faces to their library's people and store the outcome.

    Every face of the photos involved that is not CONFIRMED is decided again, together, so one
    person never lands on two faces of a photo. Confident matches are tagged (assignment
    "suggested", person set), near ones become suggestions, the rest are unknown; untrusted
    faces lose any automatic tag. Confirmed tags and ignored faces are never touched. Changes
    are FaceEvents with no user (the matcher).
    """

    photo_ids = {f.photo_id for f in faces}
    if not photo_ids:
        return {}
    rows = list(Face.objects.filter(photo_id__in=photo_ids).select_related("photo__gallery"))
    open_faces = [
        f for f in rows if f.assignment not in SETTLED and f.is_trusted and f.embedding is not None
    ]
    candidates = _candidates(open_faces) if open_faces else {}
    by_photo: dict[int, list[Face]] = defaultdict(list)
    for face in open_faces:
        by_photo[face.photo_id].append(face)
    decided: dict[int, matching.FaceMatch] = {}
    scopes: dict[int, list[int]] = {}
    for photo_id, members in by_photo.items():
        taken = {
            f.person_id
            for f in rows
            if f.photo_id == photo_id
            and f.person_id is not None
            and f.assignment == Face.Assignment.CONFIRMED
        }
        version = members[0].embedder_version
        if match_thresholds(version) is None:
            continue  # an uncalibrated version names nobody (a learning phase): all unknown
        gallery_id = members[0].photo.gallery_id
        if gallery_id not in scopes:
            scopes[gallery_id] = matchable_gallery_ids(gallery_id)
        scope = scopes[gallery_id]
        limits = library_limits(scope, version)
        near = {c.person_id for f in members for c in candidates.get(f.pk, [])}
        found = {f.pk: candidates.get(f.pk, []) for f in members}
        decided.update(
            matching.assign_photo(
                found,
                same=limits.ceiling.same,
                possible=limits.ceiling.possible,
                taken_people=taken,
                face_limits={
                    fid: limits.for_face([c.distance for c in cands])
                    for fid, cands in found.items()
                },
                person_caps=person_caps(near, scope, version),
            )
        )
    for face in rows:
        if face.assignment not in SETTLED and face.pk not in decided:
            decided[face.pk] = matching.FaceMatch(face.pk, matching.Decision.UNKNOWN)
    _store_matches(photo_ids, decided)
    return decided


def _store_matches(photo_ids: set[int], decided: dict[int, matching.FaceMatch]) -> None:

    now = timezone.now()
    with transaction.atomic():
        locked = list(
            Face.objects.select_for_update().filter(photo_id__in=photo_ids).order_by("pk")
        )
        # A person confirmed meanwhile (a user was quicker), or held by a face this run does not
        # decide, wins over the matcher.
        held = {
            (f.photo_id, f.person_id)
            for f in locked
            if f.person_id is not None
            and (f.assignment == Face.Assignment.CONFIRMED or f.pk not in decided)
        }
        changes: list[tuple[Face, tuple[int | None, str, int | None, float | None]]] = []
        for face in locked:
            match = decided.get(face.pk)
            if match is None or face.assignment in SETTLED:
                continue
            state = _target_state(match)
            if (face.photo_id, state[0]) in held or (face.photo_id, state[2]) in held:
                state = (None, Face.Assignment.NONE, None, None)
            current = (face.person_id, face.assignment, face.suggested_person_id)
            if current == state[:3] and face.match_distance == state[3]:
                continue
            changes.append((face, state))
        if not changes:
            return
        # Two steps so that people moving between faces of a photo never meet the
        # one-person-per-photo constraint half way.
        moving = [
            f.pk for f, state in changes if f.person_id is not None and f.person_id != state[0]
        ]
        Face.objects.filter(pk__in=moving).update(person=None)
        events = []
        for face, (person, assignment, suggested, distance) in changes:
            before = (face.person_id, face.suggested_person_id)
            face.person_id = person
            face.assignment = assignment
            face.suggested_person_id = suggested
            face.match_distance = distance
            face.assigned_by = None
            face.assigned_at = now
            face.save(
                update_fields=[
                    "person",
                    "assignment",
                    "suggested_person",
                    "match_distance",
                    "assigned_by",
                    "assigned_at",
                ]
            )
            match = decided[face.pk]
            if person is not None:
                action = FaceEvent.Action.FACE_AUTO_TAGGED
            elif suggested is not None:
                action = FaceEvent.Action.FACE_SUGGESTED
            else:
                action = FaceEvent.Action.MATCH_CLEARED
            events.append(
                FaceEvent(
                    user=None,
                    face=face,
                    person_id=person or suggested or before[0] or before[1],
                    action=action,
                    data={
                        "distance": distance,
                        "via_face": match.via_face_id,
                        "previous_person": before[0],
                        "previous_suggestion": before[1],
                    },
                )
            )
        FaceEvent.objects.bulk_create(events)


@transaction.atomic
def do_rematch_near_faces(face_ids: Iterable[int]) -> int:
    """Re-match the unconfirmed trusted faces of the same library near newly confirmed faces.

    Cheap: one nearest-neighbour query per confirmed face, limited to faces within the
    `possible` distance. Returns how many faces were matched again.
    """

    sources = list(
        Face.objects.filter(
            pk__in=list(face_ids),
            assignment=Face.Assignment.CONFIRMED,
            embedding__isnull=False,
        ).select_related("photo__gallery")
    )
    near: set[int] = set()
    for face in sources:
        if not face.is_trusted:
            continue
        limits = match_thresholds(face.embedder_version)
        if limits is None:
            continue
        limit = limits.possible
        near.update(
            Face.objects.filter(
                trusted_q(),
                photo__gallery__owner_id=face.photo.gallery.owner_id,
                embedder_version=face.embedder_version,
                embedding__isnull=False,
            )
            .exclude(assignment__in=SETTLED)
            .annotate(d=L2Distance("embedding", _embedding(face)))
            .filter(d__lt=limit)
            .order_by("d")
            .values_list("pk", flat=True)[:REMATCH_LIMIT]
        )
    if not near:
        return 0
    do_match_faces(list(Face.objects.filter(pk__in=near)))
    return len(near)


# Reprocessing keeps names -------------------------------------------------------------------


def _box(face: Face) -> Box:
    return (face.left, face.top, face.left + face.width, face.top + face.height)


def carry_over(old: list[Face], new: list[Face]) -> None:
    """Reprocessing keeps names: a new face inherits the decisions of the old face it overlaps."""
    old = list(old)
    for face in new:
        box = _box(face)
        best = max(old, key=lambda o: iou(box, _box(o)), default=None)
        if best is None or iou(box, _box(best)) < 0.5:
            continue
        old.remove(best)
        face._carried_from = best.pk  # type: ignore[attr-defined]
        face.person_id = best.person_id
        face.assignment = best.assignment
        face.assigned_by_id = best.assigned_by_id
        face.assigned_at = best.assigned_at
        face.review_status = best.review_status
        face.reviewed_by_id = best.reviewed_by_id
        face.reviewed_at = best.reviewed_at


def not_person_rows(old_faces: list[Face]) -> list[tuple[int, int, int | None, int | None]]:
    """The "not this person" decisions about, or through, the faces a reprocess replaces."""

    ids = [f.pk for f in old_faces]
    if not ids:
        return []
    return list(
        FaceNotPerson.objects.filter(Q(face_id__in=ids) | Q(via_face_id__in=ids)).values_list(
            "face_id", "person_id", "via_face_id", "created_by_id"
        )
    )


def carry_not_persons(
    new_faces: list[Face], rows: list[tuple[int, int, int | None, int | None]]
) -> None:
    """Reprocessing keeps "not this person": each decision moves to the new face that replaced
    its old face (by overlap, see `carry_over`), so it is never suggested again."""

    moved = {f._carried_from: f.pk for f in new_faces if getattr(f, "_carried_from", None)}
    for face_id, person_id, via, created_by in rows:
        new_face = moved.get(face_id, face_id)
        new_via = moved.get(via, via) if via is not None else None
        if new_face == face_id and new_via == via:
            continue  # neither side was replaced: the row survived the delete
        if face_id in moved or Face.objects.filter(pk=new_face).exists():
            FaceNotPerson.objects.update_or_create(
                face_id=new_face,
                person_id=person_id,
                defaults={"via_face_id": new_via, "created_by_id": created_by},
            )


# Deleting a person ---------------------------------------------------------------------------


@transaction.atomic
def do_delete_person(person: Person, by: User) -> None:
    """Delete a person and the biometric data that made them findable.

    Their templates leave the search index; the faces that carried their name (confirmed or
    automatic) lose it and their stored embeddings, so nothing can match or cluster those faces
    back to them (processing the photo again would compute new ones). Suggestions of them,
    "not this person" decisions and merges about them go too.
    """
    with transaction.atomic():
        person = Person.objects.select_for_update().get(pk=person.pk)
        faces = Face.objects.filter(person=person)
        face_ids = list(faces.values_list("pk", flat=True))
        faces.update(
            person=None,
            assignment=Face.Assignment.NONE,
            match_distance=None,
            embedding=None,
            assigned_by=by,
            assigned_at=timezone.now(),
        )
        Face.objects.filter(suggested_person=person).update(
            suggested_person=None, match_distance=None
        )
        Template.objects.filter(person=person).delete()
        # Merged-in people were this person under another name.
        for merged in Person.objects.filter(merged_into=person):
            do_delete_person(merged, by)
        FaceEvent.objects.filter(person=person).delete()
        FaceEvent.objects.create(
            user=by,
            action=FaceEvent.Action.PERSON_DELETED,
            data={"person": person.pk, "faces": face_ids},
        )
        person.delete()
    sync_face_templates(face_ids)

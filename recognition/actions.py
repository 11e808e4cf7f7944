"""The one place that joins the pure recognition steps to the database."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from gallery.models import Face, Person, Photo
from recognition import matching
from recognition.detection import DetectorConfig
from recognition.embedding import get_embedder
from recognition.imageio import BadImage, crop_with_margin, decode_image, jpeg_bytes
from recognition.pipeline import AnalysedFace, analyse_image

logger = logging.getLogger(__name__)


def detector_config() -> DetectorConfig:
    return DetectorConfig(
        model=settings.FACEWEB_DETECTOR,
        upsample=settings.FACEWEB_DETECT_UPSAMPLE,
        max_side=settings.FACEWEB_DETECT_MAX_SIDE,
        min_face_px=settings.FACEWEB_MIN_FACE_PX,
    )


def do_fail_photo(photo: Photo, error: str) -> None:
    photo.status = Photo.Status.FAILED
    photo.error = error
    photo.processed_at = timezone.now()
    photo.save(update_fields=["status", "error", "processed_at"])


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


def _carry_over(old: list[Face], new: list[Face]) -> None:
    """Reprocessing keeps names: a new face inherits the decisions of the old face it overlaps."""
    old = list(old)
    for face in new:
        box = (face.left, face.top, face.width, face.height)
        best = max(old, key=lambda o: _iou(box, (o.left, o.top, o.width, o.height)), default=None)
        if best is None or _iou(box, (best.left, best.top, best.width, best.height)) < 0.5:
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


def _face_row(photo: Photo, analysed: AnalysedFace, embedder_version: str) -> Face:
    det = analysed.detection
    return Face(
        photo=photo,
        left=det.left,
        top=det.top,
        width=det.right - det.left,
        height=det.bottom - det.top,
        landmarks=[[float(x), float(y)] for x, y in det.landmarks],
        det_score=float(det.score),
        too_small=det.too_small,
        embedding=analysed.embedding.astype("float32").tolist(),
        embedder_version=embedder_version,
    )


def do_process_photo(photo: Photo) -> list[Face]:
    """Decode, make thumbnails, detect, align, embed, store faces; then assess and match them.

    Caller has claimed the photo (status PROCESSING). Bad input ends in status FAILED with a
    readable error; the stored original is never touched.
    """
    try:
        decoded = decode_image(
            Path(photo.original.path), max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS
        )
    except BadImage as exc:
        do_fail_photo(photo, str(exc))
        return []

    embedder = get_embedder(
        settings.FACEWEB_EMBEDDER,
        settings.FACEWEB_DEVICE or None,
        threads=settings.FACEWEB_TORCH_THREADS or None,
    )
    analysed, _times = analyse_image(decoded.rgb, detector_config(), embedder)

    thumb = jpeg_bytes(decoded.rgb, max_side=settings.FACEWEB_THUMBNAIL_SIDE)
    preview = jpeg_bytes(decoded.rgb, max_side=settings.FACEWEB_PREVIEW_SIDE)
    old_files = [photo.thumbnail.name, photo.preview.name]
    photo.thumbnail.save("thumb.jpg", ContentFile(thumb), save=False)
    photo.preview.save("preview.jpg", ContentFile(preview), save=False)

    with transaction.atomic():
        old_faces = list(Face.objects.select_for_update().filter(photo=photo))
        new_faces = [_face_row(photo, a, embedder.version) for a in analysed]
        _carry_over(old_faces, new_faces)
        for face in new_faces:
            crop = crop_with_margin(decoded.rgb, face.left, face.top, face.width, face.height)
            face.crop.save("face.jpg", ContentFile(jpeg_bytes(crop, max_side=256)), save=False)
        old_crops = [f.crop.name for f in old_faces]
        not_persons = _not_person_rows(old_faces)
        Face.objects.filter(pk__in=[f.pk for f in old_faces]).delete()
        Face.objects.bulk_create(new_faces)
        _carry_not_persons(new_faces, not_persons)
        photo.width, photo.height = decoded.width, decoded.height
        photo.taken_at = decoded.taken_at
        photo.status = Photo.Status.DONE
        photo.error = ""
        photo.processed_at = timezone.now()
        photo.save(
            update_fields=[
                "width",
                "height",
                "taken_at",
                "thumbnail",
                "preview",
                "status",
                "error",
                "processed_at",
            ]
        )
        transaction.on_commit(lambda: _delete_files(old_files + old_crops))

    from recognition.assess import do_assess_and_match

    do_assess_and_match(new_faces, [a.chip for a in analysed])
    return new_faces


def _delete_files(names: list[str]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        if name:
            default_storage.delete(name)


# Matching faces to people ------------------------------------------------------------------

# Enough neighbours for the look-alike margin after "not this person" exclusions.
MATCH_TOP_N = 4
# A confirmed face re-matches at most this many unknown faces near it (nearest first).
REMATCH_LIMIT = 500


def _embedding(face: Face) -> np.ndarray:
    return np.asarray(face.embedding, dtype=np.float32)


def _owner_gallery_ids(owner_id: int) -> list[int]:
    from gallery.models import Gallery

    return list(Gallery.objects.filter(owner_id=owner_id).values_list("pk", flat=True))


def nearest_template_face(face: Face, person: Person) -> int | None:
    """The template face of `person` nearest to `face`: what made the person look near."""
    from pgvector.django import L2Distance

    from recognition.models import Template

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
    from gallery.models import FaceNotPerson

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


def _refine(face: Face, person_id: int, banned_faces: set[int]) -> matching.Candidate | None:
    """The person's nearest template other than the banned ones (the search returns one per
    person, which may be a banned one)."""
    from pgvector.django import L2Distance

    from recognition.models import Template

    row = (
        Template.objects.filter(person_id=person_id, embedder_version=face.embedder_version)
        .exclude(face_id__in=banned_faces)
        .annotate(d=L2Distance("face__embedding", _embedding(face)))
        .order_by("d")
        .values_list("face_id", "d")
        .first()
    )
    return matching.Candidate(person_id, float(row[1]), row[0]) if row else None


def _candidates(faces: list[Face]) -> dict[int, list[matching.Candidate]]:
    """Usable candidates per face from the staged search over its library's templates."""
    from recognition.search import match_faces

    ids = [f.pk for f in faces]
    banned_people, banned_faces = _banned(ids)
    groups: dict[tuple[int, str], list[Face]] = defaultdict(list)
    for face in faces:
        groups[(face.photo.gallery.owner_id, face.embedder_version)].append(face)
    found: dict[int, list[matching.Candidate]] = {}
    for (owner_id, version), members in groups.items():
        results = match_faces(
            np.stack([_embedding(f) for f in members]),
            gallery_ids=_owner_gallery_ids(owner_id),
            embedder_version=version,
            top_n=MATCH_TOP_N,
            exclude_person_ids=[banned_people.get(f.pk, set()) for f in members],
        )
        for face, result in zip(members, results, strict=True):
            cands: list[matching.Candidate] = []
            for c in result.candidates:
                if c.face_id in banned_faces.get(face.pk, ()):
                    refined = _refine(face, c.person_id, banned_faces[face.pk])
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


def do_match_faces(faces: Iterable[Face]) -> dict[int, matching.FaceMatch]:
    """Match trusted faces to their library's people and store the outcome.

    Every face of the photos involved that is not CONFIRMED is decided again, together, so one
    person never lands on two faces of a photo. Confident matches are tagged (assignment
    "suggested", person set), near ones become suggestions, the rest are unknown; untrusted
    faces lose any automatic tag. Confirmed tags are never touched. Changes are FaceEvents with
    no user (the matcher).
    """
    from recognition.calibration import thresholds

    photo_ids = {f.photo_id for f in faces}
    if not photo_ids:
        return {}
    rows = list(Face.objects.filter(photo_id__in=photo_ids).select_related("photo__gallery"))
    open_faces = [
        f
        for f in rows
        if f.assignment != Face.Assignment.CONFIRMED and f.is_trusted and f.embedding is not None
    ]
    candidates = _candidates(open_faces) if open_faces else {}
    by_photo: dict[int, list[Face]] = defaultdict(list)
    for face in open_faces:
        by_photo[face.photo_id].append(face)
    decided: dict[int, matching.FaceMatch] = {}
    for photo_id, members in by_photo.items():
        taken = {
            f.person_id
            for f in rows
            if f.photo_id == photo_id
            and f.person_id is not None
            and f.assignment == Face.Assignment.CONFIRMED
        }
        limits = thresholds(members[0].embedder_version)
        decided.update(
            matching.assign_photo(
                {f.pk: candidates.get(f.pk, []) for f in members},
                same=limits.same,
                possible=limits.possible,
                taken_people=taken,
            )
        )
    for face in rows:
        if face.assignment != Face.Assignment.CONFIRMED and face.pk not in decided:
            decided[face.pk] = matching.FaceMatch(face.pk, matching.Decision.UNKNOWN)
    _store_matches(photo_ids, decided)
    return decided


def _store_matches(photo_ids: set[int], decided: dict[int, matching.FaceMatch]) -> None:
    from gallery.models import FaceEvent

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
            if match is None or face.assignment == Face.Assignment.CONFIRMED:
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
                action = "face_auto_tagged"
            elif suggested is not None:
                action = "face_suggested"
            else:
                action = "match_cleared"
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


def do_rematch_near_faces(face_ids: Iterable[int]) -> int:
    """Re-match the unconfirmed trusted faces of the same library near newly confirmed faces.

    Cheap: one nearest-neighbour query per confirmed face, limited to faces within the
    `possible` distance. Returns how many faces were matched again.
    """
    from pgvector.django import L2Distance

    from recognition.calibration import thresholds
    from recognition.templates import trusted_q

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
        limit = thresholds(face.embedder_version).possible
        near.update(
            Face.objects.filter(
                trusted_q(),
                photo__gallery__owner_id=face.photo.gallery.owner_id,
                embedder_version=face.embedder_version,
                embedding__isnull=False,
            )
            .exclude(assignment=Face.Assignment.CONFIRMED)
            .annotate(d=L2Distance("embedding", _embedding(face)))
            .filter(d__lt=limit)
            .order_by("d")
            .values_list("pk", flat=True)[:REMATCH_LIMIT]
        )
    if not near:
        return 0
    do_match_faces(list(Face.objects.filter(pk__in=near)))
    return len(near)


def _not_person_rows(old_faces: list[Face]) -> list[tuple[int, int, int | None, int | None]]:
    """The "not this person" decisions about, or through, the faces a reprocess replaces."""
    from gallery.models import FaceNotPerson

    ids = [f.pk for f in old_faces]
    if not ids:
        return []
    return list(
        FaceNotPerson.objects.filter(Q(face_id__in=ids) | Q(via_face_id__in=ids)).values_list(
            "face_id", "person_id", "via_face_id", "created_by_id"
        )
    )


def _carry_not_persons(
    new_faces: list[Face], rows: list[tuple[int, int, int | None, int | None]]
) -> None:
    """Reprocessing keeps "not this person": each decision moves to the new face that replaced
    its old face (by overlap, see `_carry_over`), so it is never suggested again."""
    from gallery.models import FaceNotPerson

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


# Reviewing faces the out-of-distribution filter rejected ----------------------------------------


def do_review_faces(faces: Iterable[Face], decision: str, by: AbstractBaseUser) -> list[Face]:
    """A reviewer approves rejected faces or confirms their rejection; returns the changed faces.

    `decision` is ReviewDecision.Decision ("approve" / "reject"). Only faces the filter rejected
    are reviewed; a face already carrying the same decision is left alone, so a double click
    records nothing twice. Each change is a ReviewDecision row (a label for `train_ood
    --include-reviews`), Face.reviewed_by/reviewed_at and a FaceEvent. Approved faces become
    trusted: they are matched and, when tagged, become templates; confirmed ones lose any
    template and automatic tag.
    """
    from gallery.models import FaceEvent
    from recognition.models import ReviewDecision
    from recognition.tasks import rematch_near_faces
    from recognition.templates import sync_face_templates

    if decision not in ReviewDecision.Decision.values:
        raise ValueError(f"unknown review decision {decision!r}")
    approve = decision == ReviewDecision.Decision.APPROVE
    status = Face.Review.APPROVED if approve else Face.Review.CONFIRMED
    ids = sorted({f.pk for f in faces})
    now = timezone.now()
    with transaction.atomic():
        changed = list(
            Face.objects.select_for_update()
            .filter(pk__in=ids, ood_status=Face.Quality.REJECTED)
            .exclude(review_status=status)
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
                action="face_review_approved" if approve else "face_review_confirmed",
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
            transaction.on_commit(lambda: rematch_near_faces.delay(confirmed))
    if changed:
        # Approved faces get their match; confirmed rejections drop an automatic tag.
        do_match_faces(changed)
    return changed

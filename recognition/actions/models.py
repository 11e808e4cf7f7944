"""Model versions: registering them, moving the library from one to another (the re-embed job)
and dropping what an old version left behind. The one writer of ModelVersion, ReembedJob and
StagedPhoto.

A switch never mixes versions and never loses a decision:

1. `do_start_reembed` records a job; the task `recognition.tasks.reembed` stages photo after
   photo (`do_reembed_batch`): each DONE photo's faces get boxes, a filter verdict and a vector
   of the target version, stored beside the photo (StagedPhoto), while the active version keeps
   serving searches and new photos. A crash anywhere loses at most the photo in hand: staged
   photos are skipped when the job resumes, and a photo is staged once per job (a constraint).
2. `do_finish_reembed` stages again any photo whose faces changed meanwhile, then, in one
   transaction holding the active-model lock exclusively, writes the new boxes and vectors onto
   the SAME face rows (so names, confirmations, "not this person" decisions, reviews, merges,
   covers and the audit trail all stay attached), adds faces only the new detector found,
   rebuilds the templates in the target version's own PCA basis, re-matches the library and
   makes the target the active version. The previous vectors stay in the job's staged rows
   until `do_drop_version` removes them.

When the detector is the same (dlib's ResNet and its flip-averaged variant both sit behind the
configured detector), every face keeps its box and landmarks and only its vector changes. With
another detector (an InsightFace pack) each face is paired with the new detection it overlaps
(IoU >= 0.5, as reprocessing pairs them); a face the new detector misses is embedded from its
own box, so no named face is ever dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from faceweb.queue import REEMBED, enqueue_on_commit
from gallery.actions.common import ActionError
from gallery.actions.photos import Requeue, delete_stored_files, do_requeue_photo
from gallery.models import Face, Photo
from recognition.actions.identity import do_match_faces
from recognition.actions.processing import _assess
from recognition.core.backends import Backend
from recognition.core.detection import DetectedFace
from recognition.core.geometry import iou
from recognition.core.images import BadImage, crop_with_margin, decode_image, jpeg_bytes
from recognition.core.pipeline import AnalysedFace
from recognition.core.versions import BUILTIN, spec
from recognition.index.bases import active_basis
from recognition.index.enrolment import sync_face_templates
from recognition.models import ModelVersion, ProjectionBasis, ReembedJob, StagedPhoto, Template
from recognition.runtime import active_version, backend, detector_id, lock_active_model

logger = logging.getLogger(__name__)

# Called with the number of photos staged so far by this call, after each one is stored: the
# tests raise from it to crash a job in the middle.
STAGE_HOOK: Callable[[int], None] | None = None

FACE_FIELDS = [
    "left",
    "top",
    "width",
    "height",
    "landmarks",
    "det_score",
    "too_small",
    "embedding",
    "embedder_version",
    "quality",
    "ood_status",
    "ood_score",
    "ood_reasons",
    "ood_model_version",
]


# Versions -----------------------------------------------------------------------------------


def ensure_version_row(name: str) -> ModelVersion:
    """The row of a built-in version (created on first use); a pack must be installed."""
    row = ModelVersion.objects.filter(name=name).first()
    if row is not None:
        return row
    if name not in BUILTIN:
        raise ActionError(f"Model {name} is not installed: run manage.py install_model first.")
    version = spec(name)
    row, _ = ModelVersion.objects.get_or_create(
        name=name,
        defaults={
            "kind": ModelVersion.Kind.BUILTIN,
            "dim": version.dim,
            "metric": version.metric,
            "licence": version.licence,
        },
    )
    return row


@transaction.atomic
def do_register_pack(
    name: str, folder: str, files: Mapping[str, object], licence: str, by: User | None
) -> ModelVersion:
    """Record an installed pack (its files already copied under FACEWEB_MODELS_DIR/folder) and
    who accepted its licence terms. Installing it again updates the row."""
    version = spec(name)
    row, _ = ModelVersion.objects.update_or_create(
        name=name,
        defaults={
            "kind": ModelVersion.Kind.PACK,
            "dim": version.dim,
            "metric": version.metric,
            "path": folder,
            "files": dict(files),
            "licence": licence,
            "licence_accepted_by": by,
            "licence_accepted_at": timezone.now(),
        },
    )
    return row


def running_job() -> ReembedJob | None:
    return ReembedJob.objects.filter(state=ReembedJob.State.RUNNING).first()


def check_switch(target: str) -> str:
    """The version the library would move from; ActionError when the switch cannot start."""
    ensure_version_row(target)
    source = active_version()
    if target == source:
        raise ActionError(f"{target} is already the active model.")
    job = running_job()
    if job is not None:
        raise ActionError(f"A re-embed to {job.target_version} is running; wait or cancel it.")
    return source


@transaction.atomic
def do_start_reembed(target: str, by: User | None = None, *, enqueue: bool = True) -> ReembedJob:
    """Start moving the library to `target`; the job runs in the background (task `reembed`),
    or, with enqueue=False, wherever the caller runs it (`switch_model --here`)."""
    source = check_switch(target)
    ensure_version_row(source)
    job = ReembedJob.objects.create(
        source_version=source,
        target_version=target,
        total=Photo.objects.filter(status=Photo.Status.DONE).count(),
        started_by=by,
    )
    if enqueue:
        enqueue_on_commit(REEMBED, job.pk)
    return job


@transaction.atomic
def do_resume_reembed(job: ReembedJob, *, enqueue: bool = True) -> ReembedJob:
    """Run a failed job again from where it stopped (staged photos are kept)."""
    if job.state not in {ReembedJob.State.FAILED, ReembedJob.State.RUNNING}:
        raise ActionError("Only a stopped or running re-embed can be resumed.")
    other = running_job()
    if other is not None and other.pk != job.pk:
        raise ActionError("Another re-embed is running.")
    ReembedJob.objects.filter(pk=job.pk).update(
        state=ReembedJob.State.RUNNING, error="", updated_at=timezone.now()
    )
    if enqueue:
        enqueue_on_commit(REEMBED, job.pk)
    job.refresh_from_db()
    return job


@transaction.atomic
def do_fail_reembed(job: ReembedJob, error: str) -> None:
    ReembedJob.objects.filter(pk=job.pk, state=ReembedJob.State.RUNNING).update(
        state=ReembedJob.State.FAILED, error=error[:2000], updated_at=timezone.now()
    )


@transaction.atomic
def do_cancel_reembed(job: ReembedJob) -> None:
    """Stop a job that has not switched; its staged vectors and crops are removed."""
    if job.state == ReembedJob.State.SWITCHED:
        raise ActionError("The re-embed has switched already; switch back instead.")
    crops = _staged_crops(job.staged.all())
    StagedPhoto.objects.filter(job=job).delete()
    ReembedJob.objects.filter(pk=job.pk).update(
        state=ReembedJob.State.CANCELLED, finished_at=timezone.now()
    )
    transaction.on_commit(lambda: delete_stored_files(crops))


def _staged_crops(rows: QuerySet[StagedPhoto]) -> list[str]:
    return [
        str(face["crop"])
        for faces in rows.values_list("faces", flat=True)
        for face in faces
        if face.get("face") is None and face.get("crop")
    ]


# Staging ------------------------------------------------------------------------------------


def photos_to_stage(job: ReembedJob) -> QuerySet[Photo]:
    """DONE photos the job has not staged yet, oldest first."""
    return (
        Photo.objects.filter(status=Photo.Status.DONE)
        .exclude(pk__in=StagedPhoto.objects.filter(job=job).values("photo_id"))
        .order_by("pk")
    )


def _detected(face: Face) -> DetectedFace:
    return DetectedFace(
        left=face.left,
        top=face.top,
        right=face.left + face.width,
        bottom=face.top + face.height,
        score=face.det_score,
        landmarks=tuple((float(x), float(y)) for x, y in face.landmarks),
        too_small=face.too_small,
    )


def _ltrb(d: DetectedFace) -> tuple[int, int, int, int]:
    return d.left, d.top, d.right, d.bottom


def _pair(old: Sequence[Face], found: Sequence[DetectedFace]) -> dict[int, int]:
    """New detection index -> old face id, greedily by overlap (IoU >= 0.5)."""
    pairs = sorted(
        (
            (iou(_ltrb(_detected(o)), _ltrb(d)), i, o.pk)
            for o in old
            for i, d in enumerate(found)
            if not o.manual
        ),
        reverse=True,
    )
    used_old: set[int] = set()
    paired: dict[int, int] = {}
    for overlap, i, pk in pairs:
        if overlap < 0.5 or i in paired or pk in used_old:
            continue
        paired[i] = pk
        used_old.add(pk)
    return paired


def stage_photo(job: ReembedJob, photo: Photo, model: Backend, same_detector: bool) -> StagedPhoto:
    """Compute one photo's faces under the job's target version and store them beside it."""
    old = list(Face.objects.filter(photo=photo).order_by("pk"))
    face_ids = [f.pk for f in old]
    try:
        decoded = decode_image(
            Path(photo.original.path), max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS
        )
    except (BadImage, OSError) as exc:
        row, _ = StagedPhoto.objects.update_or_create(
            job=job, photo=photo, defaults={"face_ids": face_ids, "faces": [], "error": str(exc)}
        )
        return row
    rgb = decoded.rgb
    targets: list[tuple[int | None, DetectedFace]] = []
    if same_detector:
        targets = [(f.pk, _detected(f)) for f in old]
    else:
        found = model.detect_and_align(rgb).faces
        paired = _pair(old, found)
        targets = [(paired.get(i), d) for i, d in enumerate(found)]
        for f in old:
            if f.pk not in paired.values():
                # Missed by the new detector (or drawn by hand): embedded from its own box.
                box = (f.left, f.top, f.width, f.height)
                targets.append((f.pk, model.face_in_box(rgb, box)))
    chips = model.align(rgb, [d for _, d in targets])
    vectors = model.embed(chips) if len(targets) else np.zeros((0, model.dimension))
    analysed = [
        AnalysedFace(detection=d, chip=chips[i], embedding=vectors[i])
        for i, (_, d) in enumerate(targets)
    ]
    verdicts = _assess(analysed, model.version)
    faces = []
    for (face_id, d), a, v in zip(targets, analysed, verdicts, strict=True):
        entry: dict[str, object] = {
            "face": face_id,
            "left": d.left,
            "top": d.top,
            "width": d.width,
            "height": d.height,
            "landmarks": [[float(x), float(y)] for x, y in d.landmarks],
            "det_score": float(d.score),
            "too_small": d.too_small,
            "embedding": [float(x) for x in np.asarray(a.embedding, dtype=np.float32)],
            "embedder_version": model.version,
            "quality": v.quality,
            "ood_status": Face.Quality.REJECTED if v.rejected else Face.Quality.ACCEPTED,
            "ood_score": v.score,
            "ood_reasons": v.reasons,
            "ood_model_version": v.model_version,
        }
        if face_id is None:
            holder = Face(photo=photo)
            crop = crop_with_margin(rgb, d.left, d.top, d.width, d.height)
            holder.crop.save("face.jpg", ContentFile(jpeg_bytes(crop, max_side=256)), save=False)
            entry["crop"] = holder.crop.name
        faces.append(entry)
    row, _ = StagedPhoto.objects.update_or_create(
        job=job, photo=photo, defaults={"face_ids": face_ids, "faces": faces, "error": ""}
    )
    return row


def _same_detector(job: ReembedJob) -> bool:
    return detector_id(job.source_version) == detector_id(job.target_version)


def do_reembed_batch(job: ReembedJob, limit: int) -> int:
    """Stage up to `limit` photos the job has not staged; the number staged (0: all done).

    Not one transaction: the models run per photo and each photo's row is written on its own,
    so a crash keeps every photo staged before it (the job resumes after them)."""
    model = backend(job.target_version)
    same = _same_detector(job)
    staged = 0
    for photo in photos_to_stage(job)[:limit]:
        stage_photo(job, photo, model, same)
        staged += 1
        if STAGE_HOOK is not None:
            STAGE_HOOK(staged)
    ReembedJob.objects.filter(pk=job.pk).update(updated_at=timezone.now())
    return staged


def stale_photo_ids(job: ReembedJob) -> list[int]:
    """DONE photos not staged, or whose faces changed since they were staged."""
    current: dict[int, list[int]] = {}
    for photo_id, face_id in (
        Face.objects.filter(photo__status=Photo.Status.DONE)
        .order_by("pk")
        .values_list("photo_id", "pk")
    ):
        current.setdefault(photo_id, []).append(face_id)
    done = Photo.objects.filter(status=Photo.Status.DONE).values_list("pk", flat=True)
    staged = dict(StagedPhoto.objects.filter(job=job).values_list("photo_id", "face_ids"))
    return sorted(
        pk for pk in done if pk not in staged or sorted(staged[pk]) != current.get(pk, [])
    )


def progress(job: ReembedJob) -> tuple[int, int]:
    """(photos staged, photos to do) of a running job."""
    staged = StagedPhoto.objects.filter(job=job).count()
    if job.state == ReembedJob.State.SWITCHED:
        return job.total, job.total
    return staged, max(job.total, staged)


# The switch ---------------------------------------------------------------------------------


def do_finish_reembed(job: ReembedJob, restage_rounds: int = 3) -> bool:
    """Stage what changed meanwhile, then switch atomically; False if the job is not running.

    The staging runs the models outside any transaction; `_switch` is the one transaction."""
    model = backend(job.target_version)
    same = _same_detector(job)
    for _ in range(restage_rounds):
        stale = stale_photo_ids(job)
        if not stale:
            break
        for photo in Photo.objects.filter(pk__in=stale).order_by("pk"):
            stage_photo(job, photo, model, same)
    return _switch(job)


@transaction.atomic
def _switch(job: ReembedJob) -> bool:
    lock_active_model(exclusive=True)
    job = ReembedJob.objects.select_for_update().get(pk=job.pk)
    if job.state != ReembedJob.State.RUNNING:
        return False
    target = job.target_version
    stale = set(stale_photo_ids(job))
    rows = list(
        StagedPhoto.objects.select_for_update()
        .filter(job=job, photo__status=Photo.Status.DONE)
        .exclude(photo_id__in=stale)
        .order_by("photo_id")
    )
    old_faces = Face.objects.select_for_update().in_bulk(
        [pk for row in rows for pk in row.face_ids]
    )
    updated: list[Face] = []
    created: list[Face] = []
    for row in rows:
        previous = []
        for entry in row.faces:
            values = {k: entry[k] for k in FACE_FIELDS}
            if entry["face"] is None:
                created.append(Face(photo_id=row.photo_id, crop=entry.get("crop", ""), **values))
                continue
            found = old_faces.get(int(entry["face"]))
            if found is None:
                continue  # deleted by a person after the last staging: stays deleted
            face = found
            previous.append({"face": face.pk, **{k: _plain(getattr(face, k)) for k in FACE_FIELDS}})
            for k, v in values.items():
                setattr(face, k, v)
            updated.append(face)
        staged_ids = {int(e["face"]) for e in row.faces if e["face"] is not None}
        for pk in row.face_ids:
            if pk not in staged_ids and pk in old_faces:
                # The image could not be read again: the face keeps its name, loses its vector.
                face = old_faces[pk]
                previous.append({"face": pk, **{k: _plain(getattr(face, k)) for k in FACE_FIELDS}})
                face.embedding, face.embedder_version = None, ""
                updated.append(face)
        # What the switch replaced stays beside the photo until `do_drop_version`.
        row.faces = previous
    Face.objects.bulk_update(updated, FACE_FIELDS, batch_size=500)
    Face.objects.bulk_create(created, batch_size=500)
    StagedPhoto.objects.bulk_update(rows, ["faces"], batch_size=500)
    # Photos that changed after the last staging go through the new model from scratch.
    for photo in Photo.objects.filter(pk__in=stale):
        do_requeue_photo(photo, reason=Requeue.NEW_VERSION)
    ModelVersion.objects.filter(is_active=True).update(is_active=False)
    ensure_version_row(job.source_version)
    ensure_version_row(target)
    ModelVersion.objects.filter(name=target).update(is_active=True, activated_at=timezone.now())
    # The target's own basis (fitted now on its vectors if it has none), then every template.
    active_basis(target)
    face_ids = [f.pk for f in updated] + [f.pk for f in created]
    sync_face_templates(face_ids)
    photo_ids = sorted({row.photo_id for row in rows})
    for start in range(0, len(photo_ids), 200):
        chunk = photo_ids[start : start + 200]
        do_match_faces(list(Face.objects.filter(photo_id__in=chunk)))
    ReembedJob.objects.filter(pk=job.pk).update(
        state=ReembedJob.State.SWITCHED, total=len(rows), finished_at=timezone.now()
    )
    logger.info(
        "switched to %s: %d faces re-embedded, %d new, %d photos re-queued",
        target,
        len(updated),
        len(created),
        len(stale),
    )
    return True


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return [float(x) for x in value]
    return value


# Dropping an old version --------------------------------------------------------------------


@transaction.atomic
def do_drop_version(name: str) -> dict[str, int]:
    """Remove what an inactive version left: its previous vectors kept by switched jobs, its
    PCA bases and any template of it. The active version, or one a running job uses, stays."""
    if name == active_version():
        raise ActionError(f"{name} is the active model; switch to another one first.")
    job = running_job()
    if job is not None and name in {job.source_version, job.target_version}:
        raise ActionError("A re-embed using this model is running.")
    kept = StagedPhoto.objects.filter(
        job__state=ReembedJob.State.SWITCHED, job__source_version=name
    )
    counts = {"kept_photos": kept.count()}
    kept.delete()
    templates = Template.objects.filter(embedder_version=name)
    counts["templates"] = templates.count()
    templates.delete()
    counts["bases"] = ProjectionBasis.objects.filter(embedder_version=name).delete()[0]
    counts["faces"] = Face.objects.filter(embedder_version=name).update(
        embedding=None, embedder_version=""
    )
    return counts

"""Processing a claimed photo: decode, detect, align, embed, store its faces, then the
out-of-distribution filter and matching. The one place that joins the pure recognition steps
(recognition/core) to the database.

The filter is pure (recognition/core/ood.py); its verdicts are stored here and only trusted faces
reach the matcher. A rejected face is never matched and never a template (Face.is_trusted); a
reviewer can approve it from the review queue.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.db import OperationalError, transaction

from gallery.actions.common import ActionError
from gallery.actions.photos import (
    Requeue,
    delete_stored_files,
    do_fail_photo,
    do_finish_photo,
    do_requeue_photo,
)
from gallery.models import Face, FaceEvent, Photo
from recognition.actions.identity import (
    carry_not_persons,
    carry_over,
    do_match_faces,
    not_person_rows,
)
from recognition.actions.review import carry_review_decisions, review_rows
from recognition.core import ood
from recognition.core.backends import Backend
from recognition.core.backends.dlib import DlibBackend
from recognition.core.geometry import iou
from recognition.core.images import (
    BadImage,
    DecodedImage,
    crop_with_margin,
    decode_image,
    jpeg_bytes,
)
from recognition.core.pipeline import (
    AnalysedFace,
    Detected,
    analyse_box,
    batched,
    detect_and_align,
    embed_detected,
    prefetched,
)
from recognition.index.enrolment import sync_face_templates
from recognition.runtime import active_version, assess_faces, lock_active_model
from recognition.runtime import backend as active_backend

logger = logging.getLogger(__name__)


def _face_row(
    photo: Photo, analysed: AnalysedFace, verdict: ood.OodVerdict, embedder_version: str
) -> Face:
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
        quality=verdict.quality,
        ood_status=Face.Quality.REJECTED if verdict.rejected else Face.Quality.ACCEPTED,
        ood_score=verdict.score,
        ood_reasons=verdict.reasons,
        ood_model_version=verdict.model_version,
    )


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """A claimed photo decoded, detected and aligned, with its thumbnails (no database yet)."""

    decoded: DecodedImage | None = None
    detected: Detected | None = None
    thumb: bytes = b""
    preview: bytes = b""
    bad_image: str = ""  # the decoder's reason: bad input, final
    crash: Exception | None = None  # anything else, handed back with its photo


def _detect_and_align(model: Backend, rgb: np.ndarray) -> Detected:
    if isinstance(model, DlibBackend):
        return detect_and_align(rgb, model.detector)
    return model.detect_and_align(rgb)


def _analyse_box(model: Backend, rgb: np.ndarray, box: tuple[int, int, int, int]) -> AnalysedFace:
    if isinstance(model, DlibBackend):
        return analyse_box(rgb, box, model.detector, model.embedder)
    found = model.face_in_box(rgb, box)
    chip = model.align(rgb, [found])
    return AnalysedFace(found, chip[0], model.embed(chip)[0])


def _prepare(path: Path, model: Backend) -> _Prepared:
    """Runs in the prefetch thread: files and pure steps only, never the database."""
    try:
        decoded = decode_image(path, max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS)
    except BadImage as exc:
        return _Prepared(bad_image=str(exc))
    try:
        return _Prepared(
            decoded=decoded,
            detected=_detect_and_align(model, decoded.rgb),
            thumb=jpeg_bytes(decoded.rgb, max_side=settings.FACEWEB_THUMBNAIL_SIDE),
            preview=jpeg_bytes(decoded.rgb, max_side=settings.FACEWEB_PREVIEW_SIDE),
        )
    except Exception as exc:  # handed to the caller with its photo, like any other failure
        return _Prepared(crash=exc)


def do_process_photos(photos: Sequence[Photo]) -> Iterator[tuple[Photo, Exception | None]]:
    """Process claimed photos (status PROCESSING) in batches of FACEWEB_WORKER_BATCH: the next
    photos are decoded, detected and aligned in a background thread while the current batch is
    embedded (one forward pass); then each photo's faces are assessed, stored and matched in
    one transaction (`_store`). The models run before any transaction opens, so no row lock
    waits on them.

    Yields each photo once it is done, with None, or with the exception that stopped it (its
    faces are not stored; the caller decides what the photo's status becomes). Bad input ends
    in status FAILED with a readable error and yields None; the stored original is never
    touched. A database error is raised: the photos not yet yielded are still PROCESSING.
    """
    model = active_backend()
    paths = [Path(photo.original.path) for photo in photos]
    batch_size = settings.FACEWEB_WORKER_BATCH
    stream = prefetched(paths, lambda path: _prepare(path, model), ahead=batch_size)
    for chunk in batched(zip(photos, stream, strict=True), batch_size):
        detected = [(photo, p.detected) for photo, p in chunk if p.detected is not None]
        by_photo: dict[int, list[AnalysedFace]] = {}
        embed_error: Exception | None = None
        try:
            analysed, _ = embed_detected([d for _, d in detected], model)
            pairs = zip(detected, analysed, strict=True)
            by_photo = {photo.pk: faces for (photo, _), faces in pairs}
        except Exception as exc:
            embed_error = exc
        for photo, prepared in chunk:
            if prepared.bad_image:
                do_fail_photo(photo, prepared.bad_image)
                yield photo, None
                continue
            crash = prepared.crash or embed_error
            if crash is not None:
                yield photo, crash
                continue
            try:
                _store(photo, prepared, by_photo[photo.pk], model.version)
            except OperationalError:
                raise
            except Exception as exc:
                yield photo, exc
                continue
            yield photo, None


def do_process_photo(photo: Photo) -> list[Face]:
    """Process one claimed photo (see do_process_photos); any failure but bad input is raised."""
    for _, error in do_process_photos([photo]):
        if error is not None:
            raise error
    return list(Face.objects.filter(photo=photo))


def _store(photo: Photo, prepared: _Prepared, analysed: list[AnalysedFace], version: str) -> None:
    """Assess a photo's faces, then store them with its thumbnails, finish it and match the
    faces, in one transaction."""
    decoded = prepared.decoded
    if decoded is None:
        raise ValueError("a photo without a decoded image cannot be stored")
    verdicts = _assess(analysed, version)
    old_files = [photo.thumbnail.name, photo.preview.name]
    photo.thumbnail.save("thumb.jpg", ContentFile(prepared.thumb), save=False)
    photo.preview.save("preview.jpg", ContentFile(prepared.preview), save=False)

    with transaction.atomic():
        # The photo's row lock orders this against do_delete_photo: a photo deleted while it
        # was being processed ends here, with the files made for it removed.
        if not Photo.objects.select_for_update().filter(pk=photo.pk).exists():
            delete_stored_files([photo.thumbnail.name or "", photo.preview.name or ""])
            logger.info("photo %s was deleted while it was processed", photo.pk)
            return
        # The library moved to another model while this photo was in the models: its faces
        # would be the only ones of the old version, so it goes through the new one instead.
        lock_active_model(exclusive=False)
        if active_version() != version:
            delete_stored_files([photo.thumbnail.name or "", photo.preview.name or ""])
            do_requeue_photo(photo, reason=Requeue.NEW_VERSION)
            return
        old_faces = list(Face.objects.select_for_update().filter(photo=photo))
        # Faces drawn by hand stay; a detection on top of one is the same face, found again.
        drawn = [f for f in old_faces if f.manual]
        old_faces = [f for f in old_faces if not f.manual]
        new_faces = [
            _face_row(photo, a, v, version)
            for a, v in zip(analysed, verdicts, strict=True)
            if not _covers(a, drawn)
        ]
        carry_over(old_faces, new_faces)
        for face in new_faces:
            crop = crop_with_margin(decoded.rgb, face.left, face.top, face.width, face.height)
            face.crop.save("face.jpg", ContentFile(jpeg_bytes(crop, max_side=256)), save=False)
        old_crops = [f.crop.name for f in old_faces]
        not_persons = not_person_rows(old_faces)
        reviews = review_rows(old_faces)
        Face.objects.filter(pk__in=[f.pk for f in old_faces]).delete()
        Face.objects.bulk_create(new_faces)
        carry_not_persons(new_faces, not_persons)
        carry_review_decisions(new_faces, reviews)
        do_finish_photo(photo, decoded.width, decoded.height, decoded.taken_at)  # row is locked
        # Tags carried over on reprocessing need their templates back (or gone, if now
        # rejected); matching decides every face of the photo again: trusted faces get their
        # match, and an automatic tag carried onto a face no longer trusted is withdrawn (a
        # reviewer's earlier decision, carried over too, outranks the new verdict).
        sync_face_templates([f.pk for f in new_faces])
        if new_faces:
            do_match_faces(new_faces)
        transaction.on_commit(lambda: delete_stored_files(old_files + old_crops))


def _assess(analysed: Sequence[AnalysedFace], embedder_version: str) -> list[ood.OodVerdict]:
    """The out-of-distribution filter's verdict (with its reasons) on each face; a version the
    filter was not trained for gets the quality rules only (ood.assess)."""
    return assess_faces(analysed, embedder_version)


def _ltrb(face: Face) -> tuple[int, int, int, int]:
    return face.left, face.top, face.left + face.width, face.top + face.height


def _covers(analysed: AnalysedFace, drawn: Sequence[Face]) -> bool:
    det = analysed.detection
    box = (det.left, det.top, det.right, det.bottom)
    return any(iou(box, _ltrb(f)) >= 0.5 for f in drawn)


def _clamp(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) cut to the image."""
    left, top = max(0, box[0]), max(0, box[1])
    right, bottom = min(width, box[0] + box[2]), min(height, box[1] + box[3])
    return left, top, max(0, right - left), max(0, bottom - top)


def _missing_det_score() -> float:
    """The detection score given to a drawn face the detector did not find itself.

    It has none, and the filter reads a 0 as "barely a face": a clear face drawn by hand was
    rejected for that alone. The filter gets the average score of its training faces instead,
    so it judges the face on everything else.
    """
    model = ood.get_model()
    if model is None or "det_score" not in model.spec.features:
        return 0.0
    return float(model.spec.mean[model.spec.features.index("det_score")])


def _filter_detector() -> str:
    """The detector whose faces the shipped filter was trained on."""
    model = ood.get_model()
    if model is None:
        return ""
    return str(model.meta.get("sample_pass", {}).get("detector", {}).get("model", ""))


# A box smaller than this (in original pixels) is a slip of the mouse, not a face.
MIN_DRAWN_PX = 12
# A face box is about square (the detector's are 1:1 to 1:1.3); one three times longer than it
# is wide holds no face the models can align.
MAX_DRAWN_ASPECT = 3.0


def check_drawn_box(
    box: tuple[int, int, int, int], width: int, height: int
) -> tuple[int, int, int, int]:
    """A box drawn on a `width` x `height` image, cut to the image; ActionError for one no face
    fits (the page rounds, so a box may stick out of the image a little)."""
    if box[2] > width or box[3] > height or box[0] >= width or box[1] >= height:
        raise ActionError("The box is larger than the photo: draw it around the face.")
    box = _clamp(box, width, height)
    short, long = sorted(box[2:])
    if short < MIN_DRAWN_PX:
        raise ActionError("Draw a larger box around the face.")
    if long > MAX_DRAWN_ASPECT * short:
        raise ActionError(
            "A face is about as tall as it is wide: draw the box around the face only."
        )
    return box


def do_add_face(photo: Photo, box: tuple[int, int, int, int], by: User) -> Face:
    """A face the detector missed, drawn by hand: aligned, embedded, filtered and matched like
    a detected one, in one transaction. `box` is (left, top, width, height) in pixels of the
    orientation-corrected original. Caller checked write access to the photo's gallery.

    Like do_process_photo, the models run before the transaction opens.
    """
    if photo.status != Photo.Status.DONE:
        raise ActionError("Wait until the photo is processed before adding a face.")
    try:
        decoded = decode_image(
            Path(photo.original.path), max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS
        )
    except BadImage as exc:
        raise ActionError(str(exc)) from exc
    box = check_drawn_box(box, decoded.width, decoded.height)
    model = active_backend()
    analysed = _analyse_box(model, decoded.rgb, box)
    det = analysed.detection
    agreed = det.score > 0
    if not agreed:
        analysed = dataclasses.replace(
            analysed, detection=dataclasses.replace(det, score=_missing_det_score())
        )
    judged = analysed
    if agreed and _filter_detector() != "hog":
        # The box is checked with HOG, whose scores are on another scale than the detector the
        # filter learnt from: it gets that detector's typical score, like a missing one.
        judged = dataclasses.replace(
            analysed, detection=dataclasses.replace(det, score=_missing_det_score())
        )
    verdict = _assess([judged], model.version)[0]
    found = (det.left, det.top, det.right, det.bottom)
    with transaction.atomic():
        # The photo may have moved to another gallery while the models ran: the crop is stored
        # under the gallery the row names now (its lock orders this against do_move_photos).
        gallery_id = (
            Photo.objects.select_for_update()
            .filter(pk=photo.pk)
            .values_list("gallery_id", flat=True)
            .first()
        )
        if gallery_id is None:
            raise ActionError("The photo was deleted meanwhile.")
        lock_active_model(exclusive=False)
        if active_version() != model.version:
            raise ActionError("The face model changed meanwhile: draw the box again.")
        photo.gallery_id = gallery_id
        others = Face.objects.select_for_update().filter(photo=photo)
        for other in others.exclude(review_status=Face.Review.NOT_FACE):
            if iou(found, _ltrb(other)) >= 0.5:
                raise ActionError("That face is already marked on this photo.")
        face = _face_row(photo, analysed, verdict, model.version)
        face.manual = True
        crop = crop_with_margin(decoded.rgb, face.left, face.top, face.width, face.height)
        face.crop.save("face.jpg", ContentFile(jpeg_bytes(crop, max_side=256)), save=False)
        face.save()
        FaceEvent.objects.create(
            user=by,
            face=face,
            action=FaceEvent.Action.FACE_DRAWN,
            data={
                "drawn": list(box),
                "box": [det.left, det.top, det.width, det.height],
                "detector_agreed": agreed,
            },
        )
        do_match_faces([face])
    face.refresh_from_db()
    return face

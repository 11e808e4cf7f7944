"""Processing a claimed photo: decode, detect, align, embed, store its faces, then the
out-of-distribution filter and matching. The one place that joins the pure recognition steps
(recognition/core) to the database.

The filter is pure (recognition/core/ood.py); its verdicts are stored here and only trusted faces
reach the matcher. A rejected face is never matched and never a template (Face.is_trusted); a
reviewer can approve it from the review queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from gallery.actions.photos import delete_stored_files, do_fail_photo, do_finish_photo
from gallery.models import Face, Photo
from recognition.actions.identity import (
    carry_not_persons,
    carry_over,
    do_match_faces,
    not_person_rows,
)
from recognition.core import ood
from recognition.core.images import BadImage, crop_with_margin, decode_image, jpeg_bytes
from recognition.core.pipeline import AnalysedFace, analyse_image
from recognition.index.enrolment import sync_face_templates
from recognition.runtime import detector_config, embedder
from recognition.runtime import rules as ood_rules

logger = logging.getLogger(__name__)


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

    model = embedder()
    analysed, _times = analyse_image(decoded.rgb, detector_config(), model)

    thumb = jpeg_bytes(decoded.rgb, max_side=settings.FACEWEB_THUMBNAIL_SIDE)
    preview = jpeg_bytes(decoded.rgb, max_side=settings.FACEWEB_PREVIEW_SIDE)
    old_files = [photo.thumbnail.name, photo.preview.name]
    photo.thumbnail.save("thumb.jpg", ContentFile(thumb), save=False)
    photo.preview.save("preview.jpg", ContentFile(preview), save=False)

    with transaction.atomic():
        old_faces = list(Face.objects.select_for_update().filter(photo=photo))
        new_faces = [_face_row(photo, a, model.version) for a in analysed]
        carry_over(old_faces, new_faces)
        for face in new_faces:
            crop = crop_with_margin(decoded.rgb, face.left, face.top, face.width, face.height)
            face.crop.save("face.jpg", ContentFile(jpeg_bytes(crop, max_side=256)), save=False)
        old_crops = [f.crop.name for f in old_faces]
        not_persons = not_person_rows(old_faces)
        Face.objects.filter(pk__in=[f.pk for f in old_faces]).delete()
        Face.objects.bulk_create(new_faces)
        carry_not_persons(new_faces, not_persons)
        do_finish_photo(photo, decoded.width, decoded.height, decoded.taken_at)
        transaction.on_commit(lambda: delete_stored_files(old_files + old_crops))

    _assess_and_match(new_faces, [a.chip for a in analysed])
    return new_faces


def _assess_and_match(faces: Sequence[Face], chips: Sequence[np.ndarray]) -> None:
    """Score every new face, store the verdict and its reasons, then match them.

    Matching decides every face of the photo again: trusted faces get their match, and an
    automatic tag carried over onto a face that is no longer trusted is withdrawn. A reviewer's
    earlier decision (carried over on reprocessing) outranks the new verdict (Face.is_trusted).
    """
    if not faces:
        return
    verdicts = ood.assess(
        np.stack(list(chips)),
        [min(f.width, f.height) for f in faces],
        [f.landmarks for f in faces],
        [f.det_score for f in faces],
        np.stack([np.asarray(f.embedding, dtype=np.float32) for f in faces]),
        ood.get_model(),
        ood_rules(),
        faces[0].embedder_version,
    )
    for face, verdict in zip(faces, verdicts, strict=True):
        face.quality = verdict.quality
        face.ood_status = Face.Quality.REJECTED if verdict.rejected else Face.Quality.ACCEPTED
        face.ood_score = verdict.score
        face.ood_reasons = verdict.reasons
        face.ood_model_version = verdict.model_version
    Face.objects.bulk_update(
        faces, ["quality", "ood_status", "ood_score", "ood_reasons", "ood_model_version"]
    )
    # Tags carried over on reprocessing need their templates back (or gone, if now rejected).
    sync_face_templates([f.pk for f in faces])
    do_match_faces(list(faces))

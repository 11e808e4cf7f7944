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


def do_process_photo(photo: Photo) -> list[Face]:
    """Decode, make thumbnails, detect, align, embed and assess a photo's faces, then store them
    and match them in one transaction.

    Caller has claimed the photo (status PROCESSING). The models run before the transaction
    opens, so no row lock waits on them. Bad input ends in status FAILED with a readable error;
    the stored original is never touched.
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
    verdicts = _assess(analysed, model.version)

    thumb = jpeg_bytes(decoded.rgb, max_side=settings.FACEWEB_THUMBNAIL_SIDE)
    preview = jpeg_bytes(decoded.rgb, max_side=settings.FACEWEB_PREVIEW_SIDE)
    old_files = [photo.thumbnail.name, photo.preview.name]
    photo.thumbnail.save("thumb.jpg", ContentFile(thumb), save=False)
    photo.preview.save("preview.jpg", ContentFile(preview), save=False)

    with transaction.atomic():
        old_faces = list(Face.objects.select_for_update().filter(photo=photo))
        new_faces = [
            _face_row(photo, a, v, model.version) for a, v in zip(analysed, verdicts, strict=True)
        ]
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
        # Tags carried over on reprocessing need their templates back (or gone, if now
        # rejected); matching decides every face of the photo again: trusted faces get their
        # match, and an automatic tag carried onto a face no longer trusted is withdrawn (a
        # reviewer's earlier decision, carried over too, outranks the new verdict).
        sync_face_templates([f.pk for f in new_faces])
        if new_faces:
            do_match_faces(new_faces)
        transaction.on_commit(lambda: delete_stored_files(old_files + old_crops))
    return new_faces


def _assess(analysed: Sequence[AnalysedFace], embedder_version: str) -> list[ood.OodVerdict]:
    """The out-of-distribution filter's verdict (with its reasons) on each face."""
    if not analysed:
        return []
    return ood.assess(
        np.stack([a.chip for a in analysed]),
        [min(a.detection.width, a.detection.height) for a in analysed],
        [a.detection.landmarks for a in analysed],
        [a.detection.score for a in analysed],
        np.stack([np.asarray(a.embedding, dtype=np.float32) for a in analysed]),
        ood.get_model(),
        ood_rules(),
        embedder_version,
    )

"""The one place that joins the pure recognition steps to the database."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from gallery.models import Face, Photo
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

    embedder = get_embedder(settings.FACEWEB_EMBEDDER, settings.FACEWEB_DEVICE or None)
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
        Face.objects.filter(pk__in=[f.pk for f in old_faces]).delete()
        Face.objects.bulk_create(new_faces)
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

"""After a photo's faces are stored: the out-of-distribution filter, then matching.

The filter itself is pure (recognition/ood.py); this module feeds it the stored faces, writes the
verdicts and hands only trusted faces to the matcher. A rejected face is never matched and never a
template (Face.is_trusted); a reviewer can approve it from the review queue.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings

from gallery.models import Face
from recognition import ood
from recognition.detection import DetectedFace
from recognition.ood import OodVerdict

__all__ = ["OodVerdict", "assess_probe", "do_assess_and_match", "rules"]


def rules() -> ood.Rules:
    return ood.Rules(min_face_px=settings.FACEWEB_MIN_FACE_PX)


def assess_probe(
    chip: np.ndarray, detection: DetectedFace, embedding: np.ndarray, embedder_version: str = ""
) -> OodVerdict:
    """The filter's verdict on a search probe; a rejected probe is answered with its reasons."""
    return ood.assess(
        np.asarray(chip)[None],
        [min(detection.width, detection.height)],
        [detection.landmarks],
        [detection.score],
        np.asarray(embedding, dtype=np.float32)[None],
        ood.get_model(),
        rules(),
        embedder_version,
    )[0]


def do_assess_and_match(faces: Sequence[Face], chips: Sequence[np.ndarray]) -> None:
    """Score every new face, store the verdict and its reasons, then match the trusted ones."""
    if not faces:
        return
    verdicts = ood.assess(
        np.stack(list(chips)),
        [min(f.width, f.height) for f in faces],
        [f.landmarks for f in faces],
        [f.det_score for f in faces],
        np.stack([np.asarray(f.embedding, dtype=np.float32) for f in faces]),
        ood.get_model(),
        rules(),
        faces[0].embedder_version,
    )
    fields = ["quality", "ood_status", "ood_score", "ood_reasons", "ood_model_version"]
    for face, verdict in zip(faces, verdicts, strict=True):
        face.quality = verdict.quality
        face.ood_status = Face.Quality.REJECTED if verdict.rejected else Face.Quality.ACCEPTED
        face.ood_score = verdict.score
        face.ood_reasons = verdict.reasons
        face.ood_model_version = verdict.model_version
        if not face.is_trusted and face.assignment == Face.Assignment.SUGGESTED:
            # An automatic tag carried over from before reprocessing: untrusted faces have none.
            face.person = None
            face.assignment = Face.Assignment.NONE
            face.match_distance = None
            face.save(update_fields=[*fields, "person", "assignment", "match_distance"])
        else:
            face.save(update_fields=fields)
    # Tags carried over on reprocessing need their templates back (or gone, if now rejected).
    from recognition.templates import sync_face_templates

    sync_face_templates([f.pk for f in faces])
    # A reviewer's earlier decision (carried over on reprocessing) outranks the new verdict.
    _match_faces([f for f in faces if f.is_trusted])


def _match_faces(accepted_faces: Sequence[Face]) -> None:
    """Hand trusted faces to the matcher (recognition/actions.py: do_match_faces)."""
    if not accepted_faces:
        return
    from recognition.actions import do_match_faces

    do_match_faces(list(accepted_faces))

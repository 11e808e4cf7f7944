"""The recognition runtime of a process: the core's configuration built from settings, and
the models it loads (once per process). Pure steps in recognition/core take these as arguments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings

from recognition.core import ood
from recognition.core.detection import DetectedFace, DetectorConfig
from recognition.core.embedding import Embedder, get_embedder
from recognition.core.ood import OodVerdict
from recognition.core.pipeline import AnalysedFace


def embedder() -> Embedder:
    """The process's embedding network (loaded once; device and threads from settings)."""
    return get_embedder(
        settings.FACEWEB_EMBEDDER,
        settings.FACEWEB_DEVICE or None,
        threads=settings.FACEWEB_TORCH_THREADS or None,
    )


def detector_config() -> DetectorConfig:
    """The detector of this process; its onnxruntime session (CenterFace) loads once per
    process with the threads and device of the settings."""
    return DetectorConfig(
        model=settings.FACEWEB_DETECTOR,
        upsample=settings.FACEWEB_DETECT_UPSAMPLE,
        max_side=settings.FACEWEB_DETECT_MAX_SIDE,
        min_face_px=settings.FACEWEB_MIN_FACE_PX,
        threads=settings.FACEWEB_TORCH_THREADS,
        device=settings.FACEWEB_DEVICE,
    )


def rules() -> ood.Rules:
    return ood.Rules(min_face_px=settings.FACEWEB_MIN_FACE_PX)


def assess_faces(analysed: Sequence[AnalysedFace], embedder_version: str) -> list[OodVerdict]:
    """The filter's verdict (with its reasons) on each face of a photo: what processing stores
    and what `manage.py assess` reports."""
    if not analysed:
        return []
    return ood.assess(
        np.stack([a.chip for a in analysed]),
        [min(a.detection.width, a.detection.height) for a in analysed],
        [a.detection.landmarks for a in analysed],
        [a.detection.score for a in analysed],
        np.stack([np.asarray(a.embedding, dtype=np.float32) for a in analysed]),
        ood.get_model(),
        rules(),
        embedder_version,
    )


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

"""The recognition runtime of a process: the core's configuration built from settings, and
the models it loads (once per process). Pure steps in recognition/core take these as arguments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings

from recognition.core import ood
from recognition.core.backends import Backend
from recognition.core.backends.dlib import DlibBackend
from recognition.core.backends.insightface_pack import load_pack
from recognition.core.detection import DetectedFace, DetectorConfig
from recognition.core.embedding import get_embedder
from recognition.core.ood import OodVerdict
from recognition.core.pipeline import AnalysedFace
from recognition.core.versions import BUILTIN
from recognition.models import ModelVersion


def active_version() -> str:
    """The embedder version new photos are processed with and searches use (one query): the
    active ModelVersion row, else the setting FACEWEB_EMBEDDER."""
    name = ModelVersion.objects.filter(is_active=True).values_list("name", flat=True).first()
    return name or settings.FACEWEB_EMBEDDER


def lock_active_model(*, exclusive: bool) -> None:
    """Transaction-scoped advisory lock on the active model: storing faces holds it shared (and
    checks that its version is still the active one), the switch holds it exclusive, so no
    face of the old version is stored after a switch commits."""
    from django.db import connection

    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {fn}(hashtext(%s))", ["faceweb-active-model"])


def backend(version: str | None = None) -> Backend:
    """The detector + embedder of a version (default: the active one), loaded once per process
    with the device and threads of the settings. An InsightFace pack must be installed."""
    version = version or active_version()
    if version in BUILTIN or version == "dlib-reference":
        model = get_embedder(
            version, settings.FACEWEB_DEVICE or None, threads=settings.FACEWEB_TORCH_THREADS or None
        )
        return DlibBackend(detector_config(), model)
    row = ModelVersion.objects.filter(name=version, kind=ModelVersion.Kind.PACK).first()
    if row is None:
        raise LookupError(f"model version {version!r} is not installed (manage.py install_model)")
    return load_pack(
        version,
        str(settings.FACEWEB_MODELS_DIR / row.path),
        str(row.files["detector"]),
        str(row.files["recognizer"]),
        settings.FACEWEB_TORCH_THREADS,
        settings.FACEWEB_DEVICE,
        settings.FACEWEB_MIN_FACE_PX,
    )


def embedder() -> Backend:
    """The active version's backend (kept for callers that only embed)."""
    return backend()


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
        ood.model_for(embedder_version) if embedder_version else ood.get_model(),
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
        ood.model_for(embedder_version) if embedder_version else ood.get_model(),
        rules(),
        embedder_version,
    )[0]


def detector_id(version: str) -> str:
    """Which detector and alignment a version's faces come from, without loading it: two
    versions with the same id find the same boxes (a re-embed then keeps every face)."""
    if version in BUILTIN:
        return f"dlib-align/{settings.FACEWEB_DETECTOR}"
    row = ModelVersion.objects.filter(name=version).first()
    if row is None or row.kind != ModelVersion.Kind.PACK:
        return f"unknown/{version}"
    return f"scrfd/{row.files.get('detector', '')}"

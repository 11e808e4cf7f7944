"""The out-of-distribution filter on real faces: quality features, the shipped classifier, the
verdicts and reasons stored when a photo is processed, and the probe check for search."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image, ImageFilter

from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery
from recognition.core import ood
from recognition.core.detection import DetectedFace, align_faces, detect_faces
from recognition.core.embedding import get_embedder
from recognition.core.images import decode_image
from recognition.runtime import assess_probe, detector_config
from tests.conftest import photo_path, upload_file


@dataclass(frozen=True)
class RealFace:
    rgb: np.ndarray
    face: DetectedFace
    chip: np.ndarray
    embedding: np.ndarray


def _analyse(rgb: np.ndarray, face: DetectedFace | None = None) -> RealFace:
    face = face or max(detect_faces(rgb, detector_config()), key=lambda f: f.width)
    chip = align_faces(rgb, [face])[0]
    return RealFace(rgb, face, chip, get_embedder().embed(chip[None])[0])


def _blurred(rgb: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


@pytest.fixture(scope="module")
def biden() -> RealFace:
    rgb = decode_image(photo_path("biden/biden2.jpg"), max_pixels=10**8).rgb
    return _analyse(rgb)


@pytest.fixture(scope="module")
def biden_blurred(biden: RealFace) -> RealFace:
    # Heavily blurred (radius 8% of the face): the clean detection's geometry, as a detector
    # that still found the face would give it.
    return _analyse(_blurred(biden.rgb, 0.08 * biden.face.width), biden.face)


def test_it_measures_lower_laplacian_variance_on_a_blurred_copy(
    biden: RealFace, biden_blurred: RealFace
) -> None:
    sharp, soft = ood.chip_stats(biden.chip), ood.chip_stats(biden_blurred.chip)
    assert soft.blur < sharp.blur / 5
    # Blur leaves the exposure alone.
    assert abs(soft.brightness - sharp.brightness) < 10


def test_it_gives_the_size_reason_to_a_tiny_face(biden: RealFace) -> None:
    scale = 32 / biden.face.width
    h, w = biden.rgb.shape[:2]
    small = np.asarray(
        Image.fromarray(biden.rgb).resize(
            (round(w * scale), round(h * scale)), Image.Resampling.LANCZOS
        )
    )
    tiny = _analyse(small)
    assert tiny.face.width < settings.FACEWEB_MIN_FACE_PX
    verdict = assess_probe(tiny.chip, tiny.face, tiny.embedding)
    assert verdict.rejected
    side = min(tiny.face.width, tiny.face.height)
    assert f"face {side} px, below {settings.FACEWEB_MIN_FACE_PX} px minimum" in verdict.reasons


def test_it_estimates_head_pose_from_five_landmarks() -> None:
    frontal = [(60, 40), (45, 40), (0, 40), (15, 40), (30, 62)]
    pose = ood.head_pose(frontal)
    assert abs(pose.yaw) < 1 and abs(pose.roll) < 1 and 0.3 < pose.pitch < 0.6
    turned = [(60, 40), (45, 40), (0, 40), (15, 40), (48, 62)]
    assert ood.head_pose(turned).yaw > 30
    angle = np.radians(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    tilted = (np.array(frontal, float) @ rot.T).tolist()
    assert ood.head_pose(tilted).roll == pytest.approx(30, abs=0.5)


def test_it_ships_weights_that_load_once_for_this_embedder() -> None:
    model = ood.get_model()
    assert model is not None and model is ood.get_model()
    assert model.embedder_version == get_embedder().version
    assert 0 < model.threshold < 1
    metrics = model.meta["metrics"]["test"]
    assert metrics["degraded_rejected"] >= 0.9 and metrics["clean_rejected"] <= 0.05


def test_it_rejects_a_heavily_blurred_real_face_and_accepts_a_clean_one(
    biden: RealFace, biden_blurred: RealFace
) -> None:
    clean = assess_probe(biden.chip, biden.face, biden.embedding, "dlib-resnet-v1")
    assert not clean.rejected and clean.reasons == []
    assert clean.model_version == ood.get_model().version
    blurred = assess_probe(
        biden_blurred.chip, biden_blurred.face, biden_blurred.embedding, "dlib-resnet-v1"
    )
    assert blurred.rejected
    assert blurred.score is not None and blurred.score > clean.score
    assert any("blurred" in reason for reason in blurred.reasons)
    assert blurred.quality["blur"] < clean.quality["blur"]


def test_it_uses_only_the_rules_for_another_embedders_vectors(biden: RealFace) -> None:
    verdict = assess_probe(biden.chip, biden.face, biden.embedding, "some-other-model")
    assert verdict.score is None and verdict.model_version == "rules-only"
    assert not verdict.rejected


@pytest.mark.django_db
def test_it_stores_verdicts_and_never_matches_rejected_faces(
    gallery: Gallery, alice: object, tmp_path: Path, django_capture_on_commit_callbacks: object
) -> None:
    rgb = decode_image(photo_path("biden/biden2.jpg"), max_pixels=10**8).rgb
    # Blurred enough to be out of distribution, not so much that HOG loses the face.
    blurred = tmp_path / "biden_blurred.jpg"
    Image.fromarray(_blurred(rgb, 14)).save(blurred, quality=92)
    with django_capture_on_commit_callbacks(execute=True):
        result = do_upload_photos(
            gallery, [upload_file("biden/biden.jpg"), upload_file(blurred)], by=alice
        )
    clean_photo, blurred_photo = result.accepted
    clean_face = Face.objects.get(photo=clean_photo)
    assert clean_face.ood_status == Face.Quality.ACCEPTED and clean_face.is_trusted
    assert clean_face.ood_model_version == ood.get_model().version
    assert set(clean_face.quality) >= {"size_px", "blur", "noise", "brightness", "yaw", "mean_dist"}
    face = Face.objects.get(photo=blurred_photo)
    assert face.ood_status == Face.Quality.REJECTED and not face.is_trusted
    assert face.ood_score is not None and face.ood_reasons
    assert any("blurred" in r for r in face.ood_reasons), face.ood_reasons
    assert face.person_id is None and face.suggested_person_id is None
    assert not hasattr(face, "template") or face.template is None

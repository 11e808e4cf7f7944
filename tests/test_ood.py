"""The out-of-distribution filter on real faces: quality features, the shipped classifier, the
verdicts and reasons stored when a photo is processed, and the probe check for search."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image, ImageFilter

from evaluation import degrade as deg
from evaluation import ood_training as T
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery
from gallery.presentation import plain_reason
from recognition.core import ood
from recognition.core.detection import DetectedFace, align_faces, detect_faces
from recognition.core.embedding import get_embedder
from recognition.core.images import decode_image
from recognition.runtime import assess_probe, detector_config
from tests.conftest import FACES_DIR, photo_path, upload_file


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
    minimum = settings.FACEWEB_MIN_FACE_PX
    assert f"face is small ({side} px, below the {minimum} px minimum)" in verdict.reasons


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


def test_it_loads_the_filter_trained_on_the_apps_own_pipeline_once() -> None:
    model = ood.get_model()
    assert model is not None and model is ood.get_model()
    assert model.version == ood.latest_version()
    assert model.embedder_version == get_embedder().version
    # ood-v1 learnt HOG's faces; the app detects with its own detector.
    assert model.meta["sample_pass"]["detector"]["model"] == settings.FACEWEB_DETECTOR


def _shifted(rgb: np.ndarray, face: DetectedFace, kind: str) -> RealFace:
    box = deg.Box(face.left, face.top, face.right, face.bottom)
    return _analyse(deg.shift(rgb, box, kind, np.random.default_rng(0)).rgb)


def _verdict(face: RealFace) -> ood.OodVerdict:
    return assess_probe(face.chip, face.face, face.embedding, get_embedder().version)


@pytest.mark.parametrize("photo", ["biden/biden2.jpg", "obama/obama.jpg"])
def test_it_accepts_grayscale_and_tight_crop_versions_of_a_real_face(photo: str) -> None:
    rgb = decode_image(photo_path(photo), max_pixels=10**8).rgb
    clean = _analyse(rgb)
    for kind in ("grayscale", "tight_crop"):
        shifted = _shifted(rgb, clean.face, kind)
        verdict = _verdict(shifted)
        assert not verdict.rejected, (kind, verdict.score, verdict.reasons)
    tight = _shifted(rgb, clean.face, "tight_crop")
    assert tight.rgb.shape[0] <= 160  # a phone-style face crop, not the whole photo


def _central(rgb: np.ndarray) -> DetectedFace:
    h, w = rgb.shape[:2]
    return min(
        detect_faces(rgb, detector_config()),
        key=lambda f: abs((f.left + f.right) / 2 - w / 2) + abs((f.top + f.bottom) / 2 - h / 2),
    )


def test_it_accepts_benign_shifts_and_rejects_blur_on_faces_it_never_trained_on() -> None:
    """Eight LFW identities from the filter's own test split (never trained or calibrated on):
    grayscale and tight crops are accepted like the clean photo, blur is rejected with a
    readable reason."""
    model = ood.get_model()
    assert model is not None
    root = FACES_DIR / "lfw"
    multi = [p.name for p in root.iterdir() if len(list(p.iterdir())) >= 2]
    splits = T.identity_splits(multi, int(model.meta["sample_pass"]["seed"]))
    accepted = {"clean": 0, "grayscale": 0, "tight_crop": 0}
    for identity in sorted(k for k, v in splits.items() if v == "test")[:8]:
        rgb = decode_image(sorted((root / identity).iterdir())[0], max_pixels=10**8).rgb
        face = _central(rgb)
        accepted["clean"] += not _verdict(_analyse(rgb, face)).rejected
        for kind in ("grayscale", "tight_crop"):
            accepted[kind] += not _verdict(_shifted(rgb, face, kind)).rejected
        box = deg.Box(face.left, face.top, face.right, face.bottom)
        blurred = _analyse(deg.blur(rgb, box, np.random.default_rng(0)).rgb)
        verdict = _verdict(blurred)
        assert verdict.rejected, identity
        codes = {plain_reason(r).code for r in verdict.reasons}
        assert "blur" in codes and not codes & {"filter", "other"}, verdict.reasons
    # ood-v2 on its test split: 1.2% of grayscale faces and 0.8% of tight crops rejected.
    assert accepted["clean"] == 8
    assert accepted["grayscale"] >= 7 and accepted["tight_crop"] >= 7, accepted


def test_it_explains_a_classifier_rejection_with_the_inputs_that_drove_it(
    biden: RealFace,
) -> None:
    box = deg.Box(biden.face.left, biden.face.top, biden.face.right, biden.face.bottom)
    dark = deg.underexpose(biden.rgb, box, np.random.default_rng(1)).rgb
    found = detect_faces(dark, detector_config())
    face = _analyse(dark, found[0] if found else biden.face)
    verdict = _verdict(face)
    assert verdict.rejected and verdict.score is not None
    assert verdict.reasons and verdict.reasons[0].startswith("very dark")
    # Every reason is a sentence first; numbers only in brackets and the weight, for staff.
    assert all(plain_reason(r).code not in {"filter", "other"} for r in verdict.reasons)
    assert verdict.contributions["light"] == max(verdict.contributions.values())


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
    assert blurred.score is not None and clean.score is not None
    assert blurred.score > clean.score
    assert any("blur" in reason for reason in blurred.reasons)
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
    assert any("blur" in r for r in face.ood_reasons), face.ood_reasons
    assert face.person_id is None and face.suggested_person_id is None
    assert not hasattr(face, "template") or face.template is None


def test_it_never_says_a_blur_is_below_the_limit_it_equals() -> None:
    """Staff read "sharpness 5, below 5" for 4.6 under a limit of 5: the figure must show why."""
    rules = ood.Rules(min_face_px=40)
    q = ood.Quality(
        size_px=120,
        blur=rules.min_blur - 0.4,
        noise=0.0,
        brightness=120.0,
        contrast=40.0,
        dark_frac=0.0,
        bright_frac=0.0,
        det_score=0.9,
        yaw=0.0,
        roll=0.0,
        pitch=0.0,
        emb_norm=1.0,
        mean_dist=0.3,
        knn_dist=0.3,
    )
    (reason,) = ood._hard_reasons(q, rules)
    shown, limit = re.search(r"sharpness ([\d.]+), below ([\d.]+)", reason).groups()  # type: ignore[union-attr]
    assert float(shown) < float(limit), reason


def test_a_filter_trained_for_another_model_version_never_replaces_this_ones(
    tmp_path: Path,
) -> None:
    """`train_ood` for the flip version writes a newer ood-vN; the default version keeps its own
    filter, and a version nobody trained a filter for gets none (quality rules only)."""
    import shutil

    for suffix in (".json", ".pt"):
        shutil.copy(ood.WEIGHTS_DIR / f"ood-v2{suffix}", tmp_path / f"ood-v2{suffix}")
    meta = json.loads((tmp_path / "ood-v2.json").read_text())
    (tmp_path / "ood-v3.json").write_text(
        json.dumps({**meta, "embedder_version": "dlib-resnet-flip-v1"})
    )
    shutil.copy(tmp_path / "ood-v2.pt", tmp_path / "ood-v3.pt")
    assert ood.latest_version(tmp_path) == "ood-v3"
    assert ood.latest_version(tmp_path, embedder_version="dlib-resnet-v1") == "ood-v2"
    assert ood.latest_version(tmp_path, embedder_version="dlib-resnet-flip-v1") == "ood-v3"
    assert ood.latest_version(tmp_path, embedder_version="insightface-buffalo_l") is None
    # The shipped weights: the default version has its filter, an untrained version none.
    shipped = ood.model_for("dlib-resnet-v1")
    assert shipped is not None and shipped.embedder_version == "dlib-resnet-v1"
    assert ood.model_for("insightface-buffalo_l") is None

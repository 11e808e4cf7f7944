"""`manage.py train_ood` end to end on a tiny labelled folder of real LFW faces, and the pure
pieces of training it relies on (k-NN error labels, identity splits, calibration)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command

from evaluation import ood_training as T
from gallery.models import Face, Gallery
from recognition.core import ood
from recognition.models import ReviewDecision
from tests.conftest import FACES_DIR
from tests.factories import face_in_new_photo

# Six identities, 5-7 images each; the pass takes two of each (12 clean faces, their benign shifts
# and degraded copies) and the split drawn from the labels puts four in train, one in calibration
# and one in test.
IDENTITIES = [
    "Ai_Sugiyama",
    "Al_Sharpton",
    "Alan_Greenspan",
    "Ahmed_Chalabi",
    "Angela_Bassett",
    "Cameron_Diaz",
]


@pytest.fixture
def tiny_lfw(tmp_path: Path) -> Path:
    root = tmp_path / "lfw_tiny"
    for name in IDENTITIES:
        shutil.copytree(FACES_DIR / "lfw" / name, root / name)
    return root


def test_it_trains_end_to_end_on_a_tiny_folder_and_learns_from_reviews(
    tiny_lfw: Path, tmp_path: Path, gallery: Gallery, staff: object
) -> None:
    face = face_in_new_photo(gallery, "obama/obama1.jpg", trusted=False)
    Face.objects.filter(pk=face.pk).update(
        quality={"size_px": 300, "blur": 8.0, "brightness": 120.0, "contrast": 40.0}
    )
    ReviewDecision.objects.create(face=face, reviewer=staff, decision="approve")
    out = tmp_path / "weights" / "ood-v9"
    call_command(
        "train_ood",
        str(tiny_lfw),
        "--out",
        str(out),
        "--workers",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--epochs",
        "5",
        "--include-reviews",
    )
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["version"] == "ood-v9"
    assert meta["embedder_version"] == "dlib-resnet-v1"
    assert meta["dataset"] == str(tiny_lfw.resolve())
    assert meta["sample_pass"]["detector"]["model"] == settings.FACEWEB_DETECTOR
    assert 0.0 < meta["threshold"] <= 1.0
    assert meta["reviews"] == 1 and meta["rows"]["review"] == {"review": 1}
    assert meta["features"] == list(T.TrainConfig.features)
    assert len(meta["feature_mean"]) == len(T.TrainConfig.features)
    clean_rows = sum(split.get("clean", 0) for split in meta["rows"].values())
    assert 10 <= clean_rows <= 12  # the detector may miss a face or two
    # The test identity's images carry every benign shift; the per-shift table is measured there.
    test = meta["metrics"]["test"]
    assert set(T.BENIGN) <= set(test["per_kind_rejected"]) and test["per_kind_n"]["clean"] == 2
    assert set(meta["rows"]["train"]) - {"clean"} and set(meta["rows"]["train"]) <= {
        "clean",
        *T.BENIGN,
        *T.DEGRADED,
    }
    for split in ("train", "calibration", "test"):
        confusion = meta["metrics"][split]["confusion"]
        assert set(confusion) == {"n", "accuracy", "TPR", "TNR", "FPR", "FNR"}
    assert out.with_suffix(".pt").stat().st_size < 1_000_000
    model = ood.load_model(out)
    assert model.version == "ood-v9" and model.reference is not None
    assert model.meta["typical"]["blur"] > 0


def test_it_labels_benign_shifts_by_1nn_and_never_against_their_own_source_image() -> None:
    gallery = np.array([[0, 0], [0.2, 0], [5, 5], [5.2, 5], [9, 9]], np.float32)
    g_ids = np.array(["a", "a", "b", "b", "c"])
    g_path = np.array(["a/1", "a/2", "b/1", "b/2", "c/1"])
    probes = np.array([[0.01, 0], [4.9, 5], [0.1, 0.1], [9, 9]], np.float32)
    p_ids = np.array(["a", "b", "b", "c"])
    p_path = np.array(["a/1", "b/1", "b/2", "c/1"])
    errors, is_probe = T.nn_errors(probes, p_ids, p_path, gallery, g_ids, g_path)
    # a/1's shift finds a/2 (its own clean row does not count); b/2's shift landed next to a:
    # wrong; c has no other image, so it is not a probe at all.
    assert errors.tolist() == [False, False, True, False]
    assert is_probe.tolist() == [True, True, True, False]


def test_it_labels_leave_one_out_knn_mistakes() -> None:
    emb = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5], [0.05, 0.02], [9, 9]], np.float32)
    ids = np.array(["a", "a", "b", "b", "c", "d"])
    # "a"s are each other's nearest except that c sits between them; b's pair is clean; c and
    # d have one image and are never probes.
    errors = T.knn_errors(emb, ids)
    assert errors.tolist() == [True, True, False, False, False, False]


def test_it_splits_identities_from_the_labels_the_same_way_every_time() -> None:
    names = [f"person_{i}" for i in range(2000)]
    splits = T.identity_splits(names, seed=0)
    assert splits == T.identity_splits(list(reversed(names)), seed=0)
    share = {s: list(splits.values()).count(s) / len(names) for s in ("train", "cal", "test")}
    assert share == {"train": 0.7, "cal": 0.15, "test": 0.15}
    assert T.identity_splits(names, seed=1) != splits


def test_it_calibrates_the_lowest_threshold_within_every_groups_budget() -> None:
    clean = np.array([True] * 10 + [False] * 15)
    gray = np.array([False] * 10 + [True] * 10 + [False] * 5)
    scores = np.array([0.01 * i for i in range(10)] + [0.02 * i for i in range(10)] + [0.9] * 5)
    hard = np.zeros(25, bool)
    # 10% of clean faces may be rejected: the top clean score (0.09) would do...
    assert T.calibrate(scores, hard, [clean], 0.1) == pytest.approx(0.09)
    # ...but grayscale faces score higher and hold the threshold at their own top score.
    assert T.calibrate(scores, hard, [clean, gray], 0.1) == pytest.approx(0.18)
    hard[0] = True  # a rule spends the clean budget: the classifier may add nothing there
    assert T.calibrate(scores, hard, [clean, gray], 0.1) == pytest.approx(0.18)
    hard[1] = True  # the rules alone go over it
    assert T.calibrate(scores, hard, [clean, gray], 0.1) == 1.0

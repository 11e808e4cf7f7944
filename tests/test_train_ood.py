"""`manage.py train_ood` end to end on a tiny labelled folder of real LFW faces, and the pure
pieces of training it relies on (k-NN error labels, identity splits, calibration)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from evaluation import ood_training as T
from gallery.models import Face, Gallery
from recognition.core import ood
from recognition.models import ReviewDecision
from tests.conftest import FACES_DIR
from tests.factories import face_in_new_photo

# Six identities, 5-7 images each (34 clean faces plus their degraded copies), chosen so the
# seeded identity split (seed 0) puts three in train, two in calibration and one in test.
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
        "--no-eval-cache",
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
    assert 0.0 < meta["threshold"] <= 1.0
    assert meta["reviews"] == 1 and meta["rows"]["review"] == {"review": 1}
    assert meta["features"] == list(T.TrainConfig.features)
    assert len(meta["feature_mean"]) == len(T.TrainConfig.features)
    clean_rows = sum(split.get("clean", 0) for split in meta["rows"].values())
    assert 30 <= clean_rows <= 34  # the detector may miss a face or two
    for split in ("train", "calibration", "test"):
        confusion = meta["metrics"][split]["confusion"]
        assert set(confusion) == {"n", "accuracy", "TPR", "TNR", "FPR", "FNR"}
    assert out.with_suffix(".pt").stat().st_size < 1_000_000
    model = ood.load_model(out)
    assert model.version == "ood-v9" and model.reference is not None
    scores = model.scores(np.zeros((2, 128), np.float32), np.zeros((2, len(ood.FEATURES))))
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


def test_it_labels_leave_one_out_knn_mistakes() -> None:
    emb = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5], [0.05, 0.02], [9, 9]], np.float32)
    ids = np.array(["a", "a", "b", "b", "c", "d"])
    # "a"s are each other's nearest except that c sits between them; b's pair is clean; c and
    # d have one image and are never probes.
    errors = T.knn_errors(emb, ids)
    assert errors.tolist() == [True, True, False, False, False, False]


def test_it_splits_by_identity_deterministically() -> None:
    names = [f"person_{i}" for i in range(2000)]
    splits = [T.split_of(n, seed=0) for n in names]
    assert splits == [T.split_of(n, seed=0) for n in names]
    share = {s: splits.count(s) / len(splits) for s in ("train", "cal", "test")}
    assert abs(share["train"] - 0.7) < 0.04 and abs(share["cal"] - 0.15) < 0.03
    assert [T.split_of(n, seed=1) for n in names] != splits


def test_it_calibrates_the_lowest_threshold_within_the_clean_budget() -> None:
    clean = np.array([True] * 10 + [False] * 5)
    scores = np.array([0.01 * i for i in range(10)] + [0.9] * 5)
    hard = np.zeros(15, bool)
    # 10% of clean faces may be rejected: the top clean score (0.09) is the threshold.
    assert T.calibrate(scores, hard, clean, 0.1) == pytest.approx(0.09)
    hard[0] = True  # a rule already spends the budget
    assert T.calibrate(scores, hard, clean, 0.1) == 1.0

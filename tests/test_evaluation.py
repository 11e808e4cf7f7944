"""Evaluation metrics on hand-built cases with known answers, and the folder embedding on real
images."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from evaluation.folder import NO_FACE, LabeledEmbeddings, StageTimes, embed_labeled_folder
from evaluation.metrics import (
    OpenSetSearches,
    best_threshold,
    closed_set_split,
    cmc_curve,
    det_curve,
    identity_ranks,
    knn_top_k,
    open_set_fnir_at_fpir,
    open_set_split,
    pair_distances,
    read_pairs,
    verification_10fold,
)
from evaluation.report import Variant, evaluate, write_report
from recognition.core.detection import DetectorConfig

REPO = pathlib.Path(__file__).resolve().parent.parent
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))


def test_it_reads_lfw_pairs_with_their_folds(tmp_path: pathlib.Path) -> None:
    lines = []
    for k in range(10):
        lines += [
            f"Al_Gore\t{k + 1}\t{k + 2}",
            f"Ashanti\t1\t{k + 3}",
            f"Al_Gore\t1\tAshanti\t{k + 1}",
        ]
    path = tmp_path / "pairs.txt"
    path.write_text("10\t2\n" + "\n".join(lines) + "\n")
    pairs = read_pairs(path)
    assert len(pairs.same) == 30
    assert pairs.first[0] == "Al_Gore/Al_Gore_0001.jpg"
    assert pairs.second[0] == "Al_Gore/Al_Gore_0002.jpg"
    assert pairs.second[2] == "Ashanti/Ashanti_0001.jpg"
    assert pairs.same.tolist()[:3] == [True, True, False]
    assert np.bincount(pairs.fold).tolist() == [3] * 10


def test_it_finds_the_ten_folds_of_the_dev_pairs_file() -> None:
    pairs = read_pairs(FACES / "lfw_pairs_dev.txt")
    assert len(pairs.same) == 2218
    assert int(pairs.same.sum()) == 1487
    assert sorted(set(pairs.fold.tolist())) == list(range(10))
    for k in range(10):
        in_fold = pairs.same[pairs.fold == k]
        # Each fold is a block of same pairs followed by a block of different pairs.
        assert in_fold[0] and not in_fold[-1]
        assert np.all(np.diff(in_fold.astype(int)) <= 0)


def test_it_scores_separable_distances_100_percent() -> None:
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 300)
    distances = np.where(same, rng.uniform(0.1, 0.5, 600), rng.uniform(0.7, 1.2, 600))
    folds = np.arange(600) % 10
    result = verification_10fold(distances, same, folds)
    assert result.accuracy == 1.0
    assert result.accuracy_std == 0.0
    assert all(0.5 < t < 0.7 for t in result.thresholds)
    assert result.accuracy_at_fixed == 1.0


def test_it_chooses_each_threshold_without_the_tested_fold() -> None:
    # Fold 0's same pairs sit at 0.65, beyond the 0.6 the other folds agree on. Tuning on the
    # tested fold would score it 100%; the protocol scores it 50%.
    folds = np.repeat(np.arange(10), 8)
    same = np.tile(np.repeat([True, False], 4), 10)
    distances = np.where(same, 0.3, 0.9)
    distances[(folds == 0) & same] = 0.65
    result = verification_10fold(distances, same, folds)
    assert result.thresholds[0] == pytest.approx(0.6)
    assert result.fold_accuracies[0] == 0.5
    assert result.fold_accuracies[1:] == (1.0,) * 9
    assert result.accuracy == pytest.approx(0.95)
    assert result.accuracy_at_fixed == pytest.approx(76 / 80)


def test_it_counts_a_pair_with_a_missed_face_as_different() -> None:
    distances = np.array([0.2, 0.3, np.inf, 0.9, np.inf])
    same = np.array([True, True, True, False, False])
    assert best_threshold(distances, same) == pytest.approx(0.6)
    result = verification_10fold(distances, same, np.arange(5) % 5)
    assert result.accuracy_at_fixed == pytest.approx(4 / 5)


def test_it_ranks_identities_by_their_nearest_gallery_image() -> None:
    # Three identities; the third probe (identity 2) lies nearest identity 1: Top-1 = 2/3.
    gallery = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    gallery_labels = np.array([0, 1, 2, 2])
    probes = np.array([[0.1, 0.0], [0.9, 0.0], [0.9, 0.2]])
    probe_labels = np.array([0, 1, 2])
    ranks = identity_ranks(gallery, gallery_labels, probes, probe_labels)
    assert ranks.tolist() == [1, 1, 3]
    cmc = cmc_curve(ranks, max_rank=5)
    assert cmc[0] == pytest.approx(2 / 3)
    assert cmc[1] == pytest.approx(2 / 3)
    assert cmc[2:].tolist() == [1.0, 1.0, 1.0]
    top = knn_top_k(gallery, gallery_labels, probes, k=5)
    assert top.labels[2].tolist() == [1, 0, 2, -1, -1]
    assert top.distances[2, 0] == pytest.approx(np.hypot(0.1, 0.2))
    assert top.distances[2, 2] == pytest.approx(np.hypot(0.9, 0.8))  # (0, 1), not (5, 5)
    assert np.isinf(top.distances[2, 3:]).all()


def test_it_reports_an_absent_identity_as_rank_zero() -> None:
    gallery = np.array([[0.0, 0.0]])
    ranks = identity_ranks(gallery, np.array([0]), np.array([[0.0, 0.1]]), np.array([7]))
    assert ranks.tolist() == [0]
    assert cmc_curve(ranks, 3).tolist() == [0.0, 0.0, 0.0]


def test_it_splits_every_second_image_of_an_identity_into_probes() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])
    found = np.ones(10, dtype=bool)
    split = closed_set_split(labels, found)
    assert split.probes.tolist() == [1, 5, 7, 9]
    assert split.gallery.tolist() == [0, 2, 3, 4, 6, 8]
    assert split.nonmated.size == 0
    # An image without a face takes no part; identity 0 keeps 2 usable images.
    found[2] = False
    assert closed_set_split(labels, found).probes.tolist() == [1, 5, 7, 9]
    found[1] = False
    assert closed_set_split(labels, found).gallery.tolist()[:2] == [0, 3]
    # Unenrolled identities become non-mated searches.
    open_ = closed_set_split(labels, np.ones(10, dtype=bool), unenrolled=[3])
    assert open_.nonmated.tolist() == [6, 7, 8, 9]
    assert open_.probes.tolist() == [1, 5]


def test_it_shuffles_probes_reproducibly_with_a_seed() -> None:
    labels = np.repeat(np.arange(20), 4)
    found = np.ones(len(labels), dtype=bool)
    a = closed_set_split(labels, found, seed=3)
    b = closed_set_split(labels, found, seed=3)
    assert a.probes.tolist() == b.probes.tolist()
    assert a.probes.tolist() != closed_set_split(labels, found).probes.tolist()
    assert np.bincount(labels[a.probes]).tolist() == [2] * 20


def test_it_holds_out_a_fifth_of_the_multi_image_identities() -> None:
    labels = np.concatenate([np.repeat(np.arange(50), 3), np.arange(50, 80)])
    found = np.ones(len(labels), dtype=bool)
    split, unenrolled = open_set_split(labels, found, seed=1)
    assert len(unenrolled) == 10
    assert set(unenrolled.tolist()) <= set(range(50))
    assert set(labels[split.nonmated].tolist()) == set(unenrolled.tolist())
    assert not set(labels[split.gallery].tolist()) & set(unenrolled.tolist())
    assert len(split.probes) == 40
    _, same_out = open_set_split(labels, found, seed=1)
    assert same_out.tolist() == unenrolled.tolist()


def test_it_finds_fnir_at_fpir_with_known_answers() -> None:
    nonmated = 0.5 + 0.01 * np.arange(100)
    mated = np.array([0.1, 0.2, 0.3, 0.4, 0.45, 0.52, 0.53, 0.56, 0.58, 0.3])
    correct = np.array([True] * 9 + [False])
    searches = OpenSetSearches(mated, correct, nonmated)
    points = open_set_fnir_at_fpir(searches, (0.01, 0.05, 0.10))
    assert [p.threshold for p in points] == pytest.approx([0.51, 0.55, 0.60])
    assert [p.fpir for p in points] == pytest.approx([0.01, 0.05, 0.10])
    # The wrong rank-1 answer is a miss at every threshold.
    assert [p.fnir for p in points] == pytest.approx([0.5, 0.3, 0.1])
    thresholds, fpir, fnir = det_curve(searches)
    assert np.all(np.diff(thresholds) > 0)
    assert np.all(np.diff(fpir) >= 0) and np.all(np.diff(fnir) <= 0)
    assert fpir[-1] == 1.0 and fnir[-1] == pytest.approx(0.1)


def _synthetic(identities: int = 40, per: int = 3, dim: int = 16) -> LabeledEmbeddings:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(identities, dim))
    labels = np.repeat(np.arange(identities), per)
    embeddings = (centres[labels] + 0.05 * rng.normal(size=(len(labels), dim))).astype(np.float32)
    names = [f"p{label:02d}/p{label:02d}_{i % per + 1:04d}.jpg" for i, label in enumerate(labels)]
    found = np.ones(len(labels), dtype=bool)
    found[4] = False
    return LabeledEmbeddings(
        root="/nowhere/synthetic",
        names=names,
        labels=labels,
        label_names=[f"p{i:02d}" for i in range(identities)],
        embeddings=embeddings,
        flipped=embeddings,
        found=found,
        misses={names[4]: NO_FACE},
        embedder_version="test",
        times=StageTimes(1.0, 2.0, 0.5, 0.25, 0.25, images=len(labels)),
    )


def test_it_writes_json_markdown_and_plots(tmp_path: pathlib.Path) -> None:
    data = _synthetic()
    pairs_path = tmp_path / "pairs.txt"
    lines = []
    for k in range(10):
        lines += [f"p{k:02d}\t1\t2", f"p{k + 10:02d}\t2\t3", f"p{k:02d}\t1\tp{k + 20:02d}\t1"]
    pairs_path.write_text("\n".join(lines) + "\n")
    pairs = read_pairs(pairs_path)
    distances = pair_distances(data, pairs)
    assert distances.missing_face == 1  # p01_0002.jpg has no face
    variants = [Variant("plain", data), Variant("flip TTA", data, flip_tta=True)]
    report = evaluate(variants, pairs, seed=0, spread_seeds=range(3), pairs_file="pairs.txt")
    plain = report.variants[0]
    assert plain.verification is not None
    assert plain.verification.accuracy == pytest.approx(1 - 1 / 30)  # the missed same pair
    assert plain.closed_set.top1 == 1.0
    assert plain.open_set.unenrolled_identities == 8
    assert len(plain.fnir_over_seeds["0.01"]) == 3
    # Probes of enrolled identities only, against the open-set gallery.
    assert plain.closed_set_enrolled.probes == plain.open_set.mated_searches
    assert plain.ms_per_image["embed"] < report.variants[1].ms_per_image["embed"]
    written = write_report(report, tmp_path / "out")
    assert [p.name for p in written] == [
        "results.json",
        "results.md",
        "cmc.png",
        "det.png",
        "distances.png",
    ]
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["variants"][0]["closed_set"]["top1"] == 1.0
    assert result["variants"][0]["misses"] == {data.names[4]: NO_FACE}
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| k-NN (1-NN), all gallery images, plain | 100.00 | 100.00 |" in markdown
    assert "| k-NN (1-NN), all gallery images, flip TTA | 100.00 | 100.00 |" in markdown
    for png in written[2:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_it_embeds_a_labeled_folder_and_records_misses(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "people"
    for person, source in [
        ("Al_Gore", "lfw/Al_Gore/Al_Gore_0001.jpg"),
        ("Al_Gore", "lfw/Al_Gore/Al_Gore_0002.jpg"),
        ("Ashanti", "lfw/Ashanti/Ashanti_0001.jpg"),
        ("Billy_Andrade", "lfw/Billy_Andrade/Billy_Andrade_0001.jpg"),  # HOG misses at upsample 1
        ("Cat", "nonface/chelsea.png"),
    ]:
        (root / person).mkdir(parents=True, exist_ok=True)
        (root / person / pathlib.Path(source).name).symlink_to(FACES / source)
    (root / "Cat" / "broken.jpg").write_bytes(b"not an image")
    cache = tmp_path / "cache"
    hog = DetectorConfig(model="hog")

    data = embed_labeled_folder(root, cache, detector=hog, progress=False)
    assert data.names == [
        "Al_Gore/Al_Gore_0001.jpg",
        "Al_Gore/Al_Gore_0002.jpg",
        "Ashanti/Ashanti_0001.jpg",
        "Billy_Andrade/Billy_Andrade_0001.jpg",
        "Cat/broken.jpg",
        "Cat/chelsea.png",
    ]
    assert data.label_names == ["Al_Gore", "Ashanti", "Billy_Andrade", "Cat"]
    assert data.labels.tolist() == [0, 0, 1, 2, 3, 3]
    assert data.found.tolist() == [True, True, True, False, False, False]
    assert data.misses["Billy_Andrade/Billy_Andrade_0001.jpg"] == NO_FACE
    assert data.misses["Cat/chelsea.png"] == NO_FACE
    assert data.misses["Cat/broken.jpg"].startswith("unreadable image")
    assert data.embeddings.shape == (6, 128) and data.embeddings.dtype == np.float32
    assert not data.embeddings[~data.found].any()
    gore = np.linalg.norm(data.embeddings[0] - data.embeddings[1])
    other = np.linalg.norm(data.embeddings[0] - data.embeddings[2])
    assert gore < 0.6 < other
    # A mirrored face is still the same person.
    assert np.linalg.norm(data.flipped[0] - data.embeddings[0]) < 0.4
    assert data.times.images == 6 and data.times.detect > 0

    [cached] = list(cache.glob("people-dlib-resnet-v1-*.npz"))
    again = embed_labeled_folder(root, cache, detector=hog, progress=False)
    assert np.array_equal(again.embeddings, data.embeddings)
    assert again.misses == data.misses
    assert again.names == data.names

    # The misses are retried with another detector; the first pass comes from the cache.
    retried = embed_labeled_folder(
        root, cache, detector=hog, fallback=DetectorConfig(model="hog", upsample=2), progress=False
    )
    assert retried.found.tolist() == [True, True, True, True, False, False]
    assert set(retried.misses) == {"Cat/broken.jpg", "Cat/chelsea.png"}
    assert np.array_equal(retried.embeddings[:3], data.embeddings[:3])
    assert retried.times.detect > data.times.detect
    assert len(list(cache.glob("*.npz"))) == 2

    # Any change to the folder makes a new cache entry instead of reusing a stale one.
    (root / "Ashanti" / "Ashanti_0001.jpg").unlink()
    smaller = embed_labeled_folder(root, cache, detector=hog, progress=False)
    assert len(smaller.names) == 5
    assert len(list(cache.glob("*.npz"))) == 3
    assert cached.exists()

    # The default detector, CenterFace, finds the face HOG missed, and still no cat.
    default = embed_labeled_folder(root, None, progress=False)
    assert default.found.tolist() == [True, True, True, False, False]

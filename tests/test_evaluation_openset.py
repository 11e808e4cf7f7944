"""The open-set evaluation tells the truth: one split for every variant, drawn from the labels;
the app's own decisions by library size; the app's pipeline reported first."""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib

import numpy as np
import pytest
from django.core.management import call_command

from evaluation.folder import LabeledEmbeddings, StageTimes
from evaluation.openset import fit_model, label_split, library_rows
from evaluation.report import Variant, evaluate
from recognition.core.calibration import StrangerModel, Thresholds
from tests.conftest import FACES_DIR


def _world(identities: int = 120, per: int = 4, seed: int = 3) -> LabeledEmbeddings:
    """Well separated synthetic people (genuine distances ~0.25, impostors ~1.1, a few
    closer), in the range of dlib's distances so the app's ceilings apply."""
    rng = np.random.default_rng(seed)
    centres = 0.2 * rng.normal(size=(identities, 16))
    labels = np.repeat(np.arange(identities), per)
    # Single-image identities (distractors), as in LFW.
    labels = np.concatenate([labels, np.arange(identities, identities + 40)])
    centres = np.concatenate([centres, 0.2 * rng.normal(size=(40, 16))])
    emb = (centres[labels] + 0.045 * rng.normal(size=(len(labels), 16))).astype(np.float32)
    names = [f"p{label:03d}/p{label:03d}_{i:04d}.jpg" for i, label in enumerate(labels)]
    return LabeledEmbeddings(
        root="/nowhere/world",
        names=names,
        labels=labels,
        label_names=[f"p{i:03d}" for i in range(identities + 40)],
        embeddings=emb,
        flipped=emb,
        found=np.ones(len(labels), dtype=bool),
        misses={},
        embedder_version="test",
        times=StageTimes(images=len(labels)),
    )


def test_it_compares_variants_on_one_split_drawn_from_the_labels() -> None:
    data = _world()
    # A pipeline that misses every image but one of 30 identities: they look single-image to
    # it, and a split drawn from its own detections would hold out other identities.
    found = data.found.copy()
    for label in range(30):
        found[np.flatnonzero(data.labels == label)[1:]] = False
    blind = dataclasses.replace(
        data, found=found, misses={data.names[i]: "no face found" for i in np.flatnonzero(~found)}
    )
    report = evaluate([Variant("sees all", data), Variant("misses", blind)], None, seed=1)
    a, b = (v.open_set for v in report.variants)
    assert a.unenrolled_identities == b.unenrolled_identities == 24  # 20% of 120
    assert a.nonmated_searches == b.nonmated_searches
    assert a.mated_searches == b.mated_searches
    # The missed mated probes are misses, not dropped: the blind pipeline is worse.
    assert b.points[0].fnir > a.points[0].fnir
    split, out = label_split(data.labels, seed=1)
    assert len(split.nonmated) == a.nonmated_searches == 4 * len(out)


def test_it_reports_the_apps_decisions_by_library_size() -> None:
    data = _world()
    split, _ = label_split(data.labels, seed=1)
    model = fit_model(
        data.embeddings,
        data.labels,
        data.found,
        np.concatenate([split.gallery, split.probes]),
        embedder_version="test",
        ceiling=Thresholds(0.5, 0.6),
        searches_per_size=20_000,
    )
    rows = library_rows(
        data.embeddings, data.labels, data.found, split, model, sizes=(10, 50, None)
    )
    assert [r.size for r in rows] == [10, 50, 136]  # 96 enrolled multi + 40 single
    assert rows[0].libraries > 1 and rows[-1].libraries == 1
    for r in rows:
        assert r.stranger_searches == r.libraries * len(split.nonmated)
        assert r.stranger_auto <= 0.02
        assert r.auto_precision >= 0.98
        assert r.mated_found >= r.mated_auto_correct > 0.5


def test_it_puts_the_apps_pipeline_first(tmp_path: pathlib.Path, settings: object) -> None:
    """`--detector hog centerface`: the app's CenterFace comes first, named as the app's."""
    folder = tmp_path / "faces"
    people = sorted(p for p in (FACES_DIR / "lfw").iterdir() if len(list(p.iterdir())) >= 4)[:4]
    for person in people:
        (folder / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:4]:
            (folder / person.name / image.name).symlink_to(image)
    out = tmp_path / "out"
    call_command(
        "evaluate",
        str(folder),
        "--detector",
        "hog",
        "centerface",
        "--retry",
        "none",
        "--no-cache",
        "--out",
        str(out),
    )
    names = [v["name"] for v in json.loads((out / "results.json").read_text())["variants"]]
    assert names[0] == "CenterFace (app)"
    assert names[1:] == ["CenterFace (app) + flip TTA", "HOG", "HOG + flip TTA"]


def test_it_fits_and_stores_a_stranger_model(tmp_path: pathlib.Path, db: None) -> None:
    """`manage.py calibrate` on a small real folder writes a model the matcher can load (for the
    active version: the database says which)."""
    folder = tmp_path / "faces"
    people = sorted(p for p in (FACES_DIR / "lfw").iterdir() if len(list(p.iterdir())) >= 3)[:6]
    for person in people:
        (folder / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:3]:
            (folder / person.name / image.name).symlink_to(image)
    out = tmp_path / "calibration.json"
    call_command("calibrate", str(folder), "--no-cache", "--out", str(out), "--searches", "2000")
    model = StrangerModel.from_json(json.loads(out.read_text()))
    assert model.embedder_version == "dlib-resnet-v1"
    assert model.sizes == (1, 3, 5)  # up to every identity but the stranger's own
    assert model.fitted_on["images"] == 18 and model.fitted_on["identities"] == 6
    assert (model.score.cohort, model.score.beta) == (3, 0.75) and 0.5 < model.score.fill < 1.2
    for row in model.rates:
        assert all(a <= b for a, b in itertools.pairwise(row)) and row[-1] == 1.0
    face = model.limits(5).for_face([0.3, 0.8, 0.85, 0.9])
    assert 0 < face.same <= face.possible <= 0.6


def test_it_calibrates_the_flip_version_from_the_plain_pass(
    tmp_path: pathlib.Path, db: None
) -> None:
    """`calibrate --model dlib-resnet-flip-v1` fits that version's own stranger model, with its
    own ceilings, from the plain pass's stored mirror-image vectors; those are the flip
    embedder's vectors (checked here on the same real faces), so nothing is embedded twice."""
    from django.core.management.base import CommandError

    from evaluation.folder import embed_labeled_folder
    from recognition.core.embedding import get_embedder
    from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION

    folder = tmp_path / "faces"
    people = sorted(p for p in (FACES_DIR / "lfw").iterdir() if len(list(p.iterdir())) >= 3)[:4]
    for person in people:
        (folder / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:3]:
            (folder / person.name / image.name).symlink_to(image)
    plain = embed_labeled_folder(
        folder, None, embedder=get_embedder(DLIB_RESNET_VERSION), progress=False
    )
    flip = embed_labeled_folder(
        folder, None, embedder=get_embedder(DLIB_RESNET_FLIP_VERSION), progress=False
    )
    assert plain.found.all() and flip.found.all()
    np.testing.assert_allclose(plain.with_flip_tta().embeddings, flip.embeddings, atol=1e-5)
    assert np.abs(plain.embeddings - flip.embeddings).max() > 1e-3  # a different version

    out = tmp_path / "calibration.json"
    call_command(
        "calibrate",
        str(folder),
        "--model",
        DLIB_RESNET_FLIP_VERSION,
        "--no-cache",
        "--out",
        str(out),
        "--searches",
        "2000",
    )
    model = StrangerModel.from_json(json.loads(out.read_text()))
    assert model.embedder_version == DLIB_RESNET_FLIP_VERSION
    assert model.ceiling == Thresholds(same=0.49, possible=0.58)
    assert "--model dlib-resnet-flip-v1" in model.fitted_on["command"]
    assert model.fitted_on["images"] == 12
    with pytest.raises(CommandError, match="unknown model version"):
        call_command("calibrate", str(folder), "--model", "no-such-model", "--no-cache")

"""`manage.py evaluate --ood`: the exclusion rows on hand-made galleries, and the command on a
small real folder (held-out identities, options, timing, BENCHMARKS.md left alone)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command

from evaluation import ood_training as T
from evaluation.ood import (
    _rows,
    error_sources,
    filter_ms_per_face,
    held_out_identities,
    still_enrolled,
)
from recognition.core import ood
from recognition.core.embedding import get_embedder
from recognition.core.staged import SearchParams
from recognition.index.search import search_params
from recognition.runtime import detector_config
from recognition.runtime import rules as app_rules
from tests.conftest import FACES_DIR


def test_still_enrolled_flags_probes_whose_identity_loses_every_gallery_image() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    gallery = np.array([0, 2, 3, 5])
    probes = np.array([1, 4, 6])
    accepted = np.array([True, True, False, False, True, True, True])
    # identity 1 keeps no accepted gallery image (2 and 3 are rejected); 0 and 2 keep theirs.
    assert still_enrolled(labels, gallery, probes, accepted).tolist() == [True, False, True]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 128))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _toy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a, b, c = _unit(rng, 3)
    emb = np.stack(
        [
            a,  # 0: identity 0, gallery
            a + 0.30 * b,  # 1: identity 0, probe
            b,  # 2: identity 1, gallery
            a + 0.32 * b + 0.05 * c,  # 3: identity 1, gallery, a bad photo next to identity 0
            b + 0.1 * c,  # 4: identity 1, probe
        ]
    ).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 1])
    gallery, probes = np.array([0, 2, 3]), np.array([1, 4])
    accepted = np.array([True, True, True, False, True])
    return emb, labels, gallery, probes, accepted


def test_excluding_a_rejected_attractor_fixes_the_probe_it_stole() -> None:
    emb, labels, gallery, probes, accepted = _toy()
    rows = {
        r.name: r
        for r in _rows("toy", emb, labels, gallery, probes, accepted, 0.5, SearchParams(), timing=2)
    }
    # With the bad photo in the gallery, identity 0's probe is nearer to it than to its own.
    assert rows["k-NN + all"].top1_all == 0.5
    assert rows["k-NN + exclusion, gallery only"].top1_all == 1.0
    assert rows["k-NN + exclusion, gallery only"].gallery_images == 2
    assert rows["staged k-NN + all"].top1_all == 0.5
    assert rows["staged k-NN + exclusion"].top1_all == 1.0
    assert rows["k-NN + exclusion"].ms_filter == 0.5 and rows["k-NN + all"].ms_filter == 0.0


def test_error_sources_finds_the_thief_and_what_removing_it_fixes() -> None:
    emb, labels, gallery, probes, accepted = _toy()
    assert error_sources(emb, labels, gallery, probes, accepted) == {
        "errors": 1,
        "thieves": 1,
        "stolen_by_rejected": 1,
        "fixed_by_oracle": 1,
        "broken_by_oracle": 0,
    }
    # The same thief, accepted by the filter: exclusion could not have fixed that mistake.
    everyone = np.ones_like(accepted)
    assert error_sources(emb, labels, gallery, probes, everyone)["stolen_by_rejected"] == 0


# `manage.py evaluate --ood` on a folder the filter never saw ------------------------------------

PEOPLE = ["Al_Sharpton", "Alan_Greenspan", "Angela_Bassett"]


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """Three LFW identities (three images each) and, sorted first, an identity whose only image
    holds no face."""
    root = tmp_path / "folder"
    for name in PEOPLE:
        (root / name).mkdir(parents=True)
        for image in sorted((FACES_DIR / "lfw" / name).iterdir())[:3]:
            shutil.copy(image, root / name / image.name)
    (root / "Aaa_Nobody").mkdir()
    shutil.copy(FACES_DIR / "nonface" / "brick.png", root / "Aaa_Nobody" / "Aaa_Nobody_0001.png")
    return root


def test_it_holds_out_every_identity_of_a_folder_the_filter_never_trained_on(
    tiny_folder: Path,
) -> None:
    model = ood.get_model()
    assert model is not None
    names = np.array(PEOPLE)
    assert held_out_identities(names, model, tiny_folder).tolist() == [True, True, True]
    # On its own training folder: the identities its split (drawn from the labels) kept out.
    lfw = Path(model.meta["dataset"])
    multi = sorted(p.name for p in lfw.iterdir() if len(list(p.iterdir())) >= 2)
    splits = T.identity_splits(multi, int(model.meta["sample_pass"]["seed"]))
    held = held_out_identities(np.array(multi), model, lfw)
    assert held.tolist() == [splits[n] != "train" for n in multi]
    assert 0.25 < held.mean() < 0.35


def test_it_times_the_filter_on_the_first_image_that_has_a_face() -> None:
    model = ood.get_model()
    assert model is not None
    names = ["nonface/brick.png", "photos/biden/biden2.jpg"]
    ms = filter_ms_per_face(
        FACES_DIR, names, model, app_rules(), detector_config(), get_embedder(), repeats=3
    )
    assert 0 < ms < 1000
    assert np.isnan(
        filter_ms_per_face(
            FACES_DIR, names[:1], model, app_rules(), detector_config(), get_embedder()
        )
    )


@pytest.mark.django_db
def test_it_honours_the_options_and_never_touches_benchmarks_md(
    tiny_folder: Path, tmp_path: Path
) -> None:
    benchmarks = Path(settings.BASE_DIR) / "BENCHMARKS.md"
    before = benchmarks.read_bytes()
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("Al_Sharpton 1 2\nAl_Sharpton 1 Alan_Greenspan 1\n")
    out = tmp_path / "out"
    stdout = io.StringIO()
    call_command(
        "evaluate",
        str(tiny_folder),
        "--ood",
        "--out",
        str(out),
        "--seed",
        "3",
        "--limit",
        "7",
        "--pairs",
        str(pairs),
        "--no-cache",
        stdout=stdout,
    )
    assert benchmarks.read_bytes() == before
    report = (out / "ood.md").read_text()
    assert report.strip() in stdout.getvalue()
    assert "--seed 3 --limit 7 --pairs" in report
    # 7 images, the first without a face: 6 faces measured, all identities held out.
    assert "of the 6 clean faces" in report
    assert "every identity is held out" in report
    assert "Pairs (pairs.txt): 2 of 2 with both faces found" in report
    # Measured now, not the stored training tables.
    assert "| rows | n | accuracy" not in report
    assert f"levels {list(search_params().levels)}" in report

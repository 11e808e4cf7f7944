"""The exclusion rows of `manage.py evaluate --ood` on hand-made galleries."""

from __future__ import annotations

import numpy as np

from evaluation.ood import _rows, error_sources, still_enrolled
from recognition.core.staged import SearchParams


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

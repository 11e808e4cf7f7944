"""The pure match decisions: thresholds, one person per photo, "not this person", clustering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recognition.core.matching import (
    Candidate,
    Decision,
    Verdict,
    assign_photo,
    cluster_faces,
    usable_candidates,
    verdict,
)

SAME, POSSIBLE = 0.5, 0.6


def test_it_decides_by_calibrated_thresholds() -> None:
    out = assign_photo(
        {
            1: [Candidate(10, 0.30, 100)],
            2: [Candidate(11, 0.55, 101)],
            3: [Candidate(12, 0.70, 102)],
        },
        same=SAME,
        possible=POSSIBLE,
    )
    assert out[1].decision is Decision.AUTO and out[1].person_id == 10
    assert out[1].via_face_id == 100 and out[1].distance == 0.30
    assert out[2].decision is Decision.SUGGEST and out[2].person_id == 11
    assert out[3].decision is Decision.UNKNOWN and out[3].person_id is None


def test_it_never_gives_one_person_to_two_faces_of_a_photo() -> None:
    out = assign_photo(
        {1: [Candidate(10, 0.30)], 2: [Candidate(10, 0.35)]}, same=SAME, possible=POSSIBLE
    )
    assert out[1].person_id == 10
    assert out[2].decision is Decision.UNKNOWN


def test_it_shares_people_so_both_faces_get_one() -> None:
    # Greedy would give face 1 person 10 (0.30) and leave face 2 unknown; the assignment gives
    # face 1 its second choice so face 2 can have person 10.
    out = assign_photo(
        {
            1: [Candidate(10, 0.30), Candidate(11, 0.35)],
            2: [Candidate(10, 0.32), Candidate(11, 0.90)],
        },
        same=SAME,
        possible=POSSIBLE,
    )
    assert (out[1].person_id, out[2].person_id) == (11, 10)


def test_it_skips_people_already_tagged_in_the_photo() -> None:
    out = assign_photo(
        {1: [Candidate(10, 0.2), Candidate(11, 0.55)]},
        same=SAME,
        possible=POSSIBLE,
        taken_people={10},
    )
    assert out[1].person_id == 11 and out[1].decision is Decision.SUGGEST


def test_it_only_suggests_when_a_look_alike_is_nearly_as_near() -> None:
    out = assign_photo(
        {1: [Candidate(10, 0.40), Candidate(11, 0.42)]}, same=SAME, possible=POSSIBLE
    )
    assert out[1].person_id == 10 and out[1].decision is Decision.SUGGEST


def test_it_drops_rejected_people_and_template_faces() -> None:
    cands = [
        Candidate(10, 0.30, 100),
        Candidate(10, 0.45, 103),
        Candidate(11, 0.40, 101),
        Candidate(12, 0.50, 102),
    ]
    assert usable_candidates(cands, banned_people={11}) == [cands[0], cands[3]]
    # The template face 100 caused a wrong suggestion once: person 10 only counts via face 103.
    assert usable_candidates(cands, banned_faces={100}) == [cands[2], cands[1], cands[3]]


def test_it_gives_verdicts() -> None:
    assert verdict(0.3, SAME, POSSIBLE) is Verdict.SAME
    assert verdict(0.55, SAME, POSSIBLE) is Verdict.POSSIBLE
    assert verdict(0.6, SAME, POSSIBLE) is Verdict.POSSIBLE
    assert verdict(0.61, SAME, POSSIBLE) is Verdict.UNKNOWN
    assert Verdict.POSSIBLE.label == "Possibly"


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=4).flatmap(
        lambda n: st.integers(min_value=1, max_value=5).flatmap(
            lambda m: st.lists(
                st.lists(st.floats(0.0, 0.6, allow_nan=False), min_size=m, max_size=m),
                min_size=n,
                max_size=n,
            )
        )
    )
)
def test_it_shares_a_photos_people_for_the_least_total_distance(rows: list[list[float]]) -> None:
    """Every face may take any person within `possible`, or stay unknown (costing just over
    `possible`); no person twice. The chosen total equals the brute-force optimum."""
    possible = 0.6
    n, m = len(rows), len(rows[0])
    faces = {
        fid: [
            Candidate(person_id=pid, distance=rows[fid][pid], via_face_id=None) for pid in range(m)
        ]
        for fid in range(n)
    }
    decided = assign_photo(faces, same=0.0, possible=possible)
    unknown = possible + 1e-6
    chosen = [decided[f].person_id for f in range(n)]
    assert len({p for p in chosen if p is not None}) == sum(p is not None for p in chosen)
    total = sum(unknown if p is None else rows[f][p] for f, p in enumerate(chosen))
    options = [*range(m)] + [None] * n
    brute = min(
        sum(unknown if p is None else rows[f][p] for f, p in enumerate(pick))
        for pick in itertools.permutations(options, n)
    )
    assert total == pytest.approx(brute, abs=1e-9)


def test_it_clusters_people_and_keeps_faces_of_one_photo_apart() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = [centres[k] + rng.normal(scale=0.01, size=128) for k in (0, 0, 1, 2, 1, 0)]
    groups = cluster_faces(np.stack(rows), 0.5)
    assert groups == [[0, 1, 5], [2, 4], [3]]
    # Rows 0 and 1 are in one photo: they can never be one group.
    split = cluster_faces(np.stack(rows), 0.5, photo_ids=[7, 7, 8, 9, 10, 11])
    assert all(not {0, 1} <= set(g) for g in split)
    assert sorted(len(g) for g in split) == [1, 1, 2, 2]
    assert cluster_faces(np.zeros((0, 128)), 0.5) == []

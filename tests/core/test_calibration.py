"""The stranger model: limits that grow stricter with the library, per-person limits, the file."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from recognition.core.calibration import (
    COHORT,
    Score,
    StrangerModel,
    Thresholds,
    fit_stranger_model,
    library_limits,
    person_cap,
    stranger_model,
    thresholds,
)
from recognition.core.matching import Candidate, Decision, assign_photo
from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION

CEILING = Thresholds(same=0.5, possible=0.6)


def _model(rng: np.random.Generator) -> StrangerModel:
    """Nearest-of-N distances of a toy per-comparison distribution (normal 0.8 +- 0.1), drawn
    for two library sizes the way `manage.py calibrate` measures them."""
    sizes = (10, 100)
    nearest = [rng.normal(0.8, 0.1, size=(20_000, n)).min(axis=1) for n in sizes]
    return fit_stranger_model(nearest, sizes, embedder_version="toy", ceiling=CEILING)


def test_it_keeps_the_expected_share_of_strangers_at_the_target() -> None:
    rng = np.random.default_rng(0)
    model = _model(rng)
    for n in (10, 100, 300, 1000):
        limit = model.limit(n, 0.01)
        fresh = rng.normal(0.8, 0.1, size=(20_000, n)).min(axis=1)
        measured = float((fresh <= limit).mean())
        # Sizes between and beyond the measured ones are extrapolated as independent draws,
        # which errs strict: never over the target, and not far under it.
        assert measured <= 0.013, (n, limit, measured)
        assert measured >= 0.003, (n, limit, measured)


def test_its_limits_grow_stricter_with_the_library() -> None:
    model = _model(np.random.default_rng(1))
    limits = [model.limits(n, 0.005, 0.05) for n in (1, 10, 100, 1000, 10_000)]
    assert all(a.same >= b.same for a, b in itertools.pairwise(limits))
    assert all(a.possible >= b.possible for a, b in itertools.pairwise(limits))
    assert all(lim.same <= lim.possible for lim in limits)
    assert limits[-1].same < limits[1].same
    # The fixed limits stay the ceiling on the plain distance.
    for lim in limits:
        face = lim.for_face([0.1])
        assert face.same <= CEILING.same and face.possible <= CEILING.possible


def test_it_round_trips_through_json() -> None:
    model = _model(np.random.default_rng(2))
    again = StrangerModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again.limits(500) == model.limits(500)
    with pytest.raises(ValueError, match="format"):
        StrangerModel.from_json({**model.to_json(), "format": 99})


def test_it_scores_distance_minus_a_share_of_the_next_people() -> None:
    score = Score(cohort=3, beta=0.75, fill=0.8)
    assert score.offset([0.4, 0.6, 0.7, 0.8, 0.1]) == pytest.approx(0.75 * 0.7)
    # Fewer people than the cohort: the missing ones count as `fill`.
    assert score.offset([0.4]) == pytest.approx(0.75 * 0.8)
    rows = np.array([[0.4, 0.6, 0.7, 0.8], [0.4, np.inf, np.inf, np.inf]])
    assert score.offsets(rows) == pytest.approx([0.75 * 0.7, 0.75 * 0.8])
    assert Score().offset([0.4, 0.5]) == 0.0


def test_it_ships_a_model_fitted_for_the_apps_embedder() -> None:
    model = stranger_model(DLIB_RESNET_VERSION)
    assert model is not None, "run manage.py calibrate ../shared/faces/lfw"
    assert (model.score.cohort, model.score.beta) == (COHORT.cohort, COHORT.beta)
    assert model.fitted_on["identities"] > 2000
    # A face whose next people are near (a crowded region, as a stranger's face tends to be)
    # must be nearer its best person to be tagged than one standing clear of everyone else.
    limits = library_limits(DLIB_RESNET_VERSION, 3000)
    crowded = limits.for_face([0.45, 0.5, 0.52, 0.53])
    clear = limits.for_face([0.45, 0.7, 0.72, 0.75])
    assert crowded.same < 0.45 < clear.same <= 0.5
    # Within the fixed ceiling at every library size.
    for n in (1, 10, 100, 1000, 100_000):
        face = library_limits(DLIB_RESNET_VERSION, n).for_face([0.3, 0.9, 0.9, 0.9])
        assert face.same <= 0.5 and face.possible <= 0.6
    with pytest.raises(LookupError):
        library_limits("some-other-model", 10)


def test_it_ships_a_model_for_the_flip_version_within_its_own_ceilings() -> None:
    model = stranger_model(DLIB_RESNET_FLIP_VERSION)
    assert model is not None, (
        "run manage.py calibrate ../shared/faces/lfw --model dlib-resnet-flip-v1"
    )
    assert model.embedder_version == DLIB_RESNET_FLIP_VERSION
    assert model.ceiling == thresholds(DLIB_RESNET_FLIP_VERSION) == Thresholds(0.49, 0.58)
    assert (model.score.cohort, model.score.beta) == (COHORT.cohort, COHORT.beta)
    assert model.fitted_on["identities"] > 2000
    for n in (1, 10, 100, 1000, 100_000):
        face = library_limits(DLIB_RESNET_FLIP_VERSION, n).for_face([0.3, 0.9, 0.9, 0.9])
        assert face.same <= 0.49 and face.possible <= 0.58
    # Stricter with a larger library, as for the default version.
    crowded = [0.45, 0.5, 0.52, 0.53]
    small = library_limits(DLIB_RESNET_FLIP_VERSION, 100).for_face(crowded)
    large = library_limits(DLIB_RESNET_FLIP_VERSION, 100_000).for_face(crowded)
    assert large.same < small.same


def test_it_caps_a_tight_person_at_their_own_spread() -> None:
    assert person_cap([0.2, 0.22]) is None  # too few faces: the library's limit
    tight = person_cap([0.2, 0.22, 0.25, 0.21, 0.24])
    assert tight is not None and tight == pytest.approx(0.25 + 0.25 * 0.22)
    out = assign_photo(
        {1: [Candidate(10, 0.36)], 2: [Candidate(11, 0.36)]},
        same=0.45,
        possible=0.55,
        person_caps={10: tight},
    )
    assert out[1].decision is Decision.SUGGEST and out[1].person_id == 10
    assert out[2].decision is Decision.AUTO


def test_it_decides_each_face_of_a_photo_at_its_own_limits() -> None:
    out = assign_photo(
        {1: [Candidate(10, 0.42)], 2: [Candidate(11, 0.42)]},
        same=0.5,
        possible=0.6,
        face_limits={1: Thresholds(0.40, 0.45), 2: Thresholds(0.45, 0.5)},
    )
    assert out[1].decision is Decision.SUGGEST
    assert out[2].decision is Decision.AUTO
    out = assign_photo(
        {1: [Candidate(10, 0.47)]}, same=0.5, possible=0.6, face_limits={1: Thresholds(0.4, 0.45)}
    )
    assert out[1].decision is Decision.UNKNOWN

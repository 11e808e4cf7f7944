"""The stranger model: limits that grow stricter with the library, per-person limits, the file."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from recognition.core import calibration
from recognition.core.calibration import (
    StrangerModel,
    Thresholds,
    fit_stranger_model,
    library_thresholds,
    person_same,
    stranger_model,
)
from recognition.core.matching import Candidate, Decision, assign_photo
from recognition.core.versions import DLIB_RESNET_VERSION

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
    # The fixed limits stay the ceiling.
    assert all(lim.same <= CEILING.same and lim.possible <= CEILING.possible for lim in limits)


def test_it_round_trips_through_json() -> None:
    model = _model(np.random.default_rng(2))
    again = StrangerModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again.limits(500) == pytest.approx(model.limits(500), abs=1e-6)
    with pytest.raises(ValueError, match="format"):
        StrangerModel.from_json({**model.to_json(), "format": 99})


def test_the_shipped_model_is_sized_to_the_library() -> None:
    model = stranger_model(DLIB_RESNET_VERSION)
    assert model is not None, "run manage.py calibrate ../shared/faces/lfw"
    small = library_thresholds(DLIB_RESNET_VERSION, 10)
    large = library_thresholds(DLIB_RESNET_VERSION, 3000)
    assert large.same < small.same <= calibration.THRESHOLDS[DLIB_RESNET_VERSION].same
    assert large.possible < small.possible
    with pytest.raises(LookupError):
        library_thresholds("some-other-model", 10)


def test_a_tight_person_gets_a_stricter_limit_of_their_own() -> None:
    assert person_same(0.45, [0.2, 0.22]) == 0.45  # too few faces: the library's limit
    tight = person_same(0.45, [0.2, 0.22, 0.25, 0.21, 0.24])
    assert tight < 0.45
    assert person_same(0.45, [0.4, 0.42, 0.39, 0.44, 0.41]) == 0.45  # never above the library's
    out = assign_photo(
        {1: [Candidate(10, 0.36)], 2: [Candidate(11, 0.36)]},
        same=0.45,
        possible=0.55,
        person_same={10: tight},
    )
    assert out[1].decision is Decision.SUGGEST and out[1].person_id == 10
    assert out[2].decision is Decision.AUTO

"""Open-set decision limits per embedder version, sized to the searcher's library.

`search_people` returns the full Euclidean distance of each candidate's nearest template; the
matcher tags the best candidate automatically when it is within `same` (and clearly nearer than
the runner-up), offers it as a suggestion within `possible`, and calls the face unknown beyond.

Why the limits depend on the library. A stranger's face (someone not enrolled) is compared with
every person the searcher can see; the more people, the likelier one of them is near by chance.
With fixed limits (0.5 / 0.6, dlib's verification level) measured on the LFW half in
/work/shared/faces, FPIR / FNIR were 1.5% / 11.9% at 0.5 with 50 people, 4.9% / 13.2% with 200
and 18% / 6.7% with all 2,683; at 0.6 nearly every stranger got a suggestion.

So the limits come from a *stranger model* fitted by `manage.py calibrate` on labelled faces and
shipped per embedder version as recognition/weights/calibration-<version>.json: for a few
library sizes N_i, the measured share G_i(t) of strangers whose score is within t (every
labelled face takes the stranger's part against libraries of N_i other identities drawn at
random, many draws). For a library of N people the share is read from the largest measured size
N_i <= N and grown as if the extra people were independent draws,
    P(N, t) = 1 - (1 - G_i(t)) ** (N / N_i),
which over-states the growth (nearest distances to more people are positively dependent), so
the limit errs strict. `same` is the largest t with P(N, t) <= the auto-tag target (setting
FACEWEB_AUTO_TAG_STRANGER_RATE, default 0.5%), `possible` the largest with P(N, t) <= the
suggestion target (FACEWEB_SUGGEST_STRANGER_RATE).

The score is cohort-normalised (`Score`): the distance to a person minus a share of the mean
distance to the next few people the search found for the face. A stranger's face tends to be
about as far from its nearest person as from the next ones; a mated face is much nearer to its
own person than to anyone else. On the LFW dev split this halves the misses at 1% of strangers
let through (BENCHMARKS.md, "trust-fnir"). The fixed limits below stay as ceilings on the plain
distance.

Per person: when a person has at least `PERSON_MIN_FACES` confirmed faces, their own spread
(how far each confirmed face is from the person's other faces) caps the distance at which a face
is tagged as them automatically (see `person_cap`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
FORMAT = 1

# Targets when settings give none: the share of strangers' faces that may be tagged
# automatically, and the share that may get a suggestion.
DEFAULT_AUTO_RATE = 0.005
DEFAULT_SUGGEST_RATE = 0.05

# A person with this many confirmed faces gets a limit of their own (see `person_same`).
PERSON_MIN_FACES = 5


@dataclass(frozen=True)
class Thresholds:
    same: float  # auto-tag at or below this distance
    possible: float  # suggest at or below this distance; unknown beyond

    def __post_init__(self) -> None:
        if not (0 < self.same <= self.possible):
            raise ValueError(f"need 0 < same <= possible, got {self.same}, {self.possible}")


# The fixed limits: dlib's verification level for suggestions and a stricter auto-tag level.
# They are the ceilings of the library-sized limits, and the limits of a version that has a
# fixed entry but no stranger model.
#
# The flip-averaged version's distances are a little shorter (averaging the mirror images
# removes some noise: on LFW the median impostor distance is 0.814 against 0.825, the median
# genuine one 0.387 against 0.406), so its ceilings are the distances at which it lets through
# the same share of impostor pairs as the plain version does at 0.5 / 0.6: on every LFW image in
# ../shared/faces (6,360 faces, 398,736 random impostor pairs, 60,272 genuine pairs) that is
# 0.493 / 0.588 (FAR 0.026% / 0.58%), rounded down; genuine pairs beyond them: 6.8% / 0.51%,
# against 9.6% / 0.66% for the plain version at 0.5 / 0.6.
THRESHOLDS: dict[str, Thresholds] = {
    DLIB_RESNET_VERSION: Thresholds(same=0.5, possible=0.6),
    DLIB_RESNET_FLIP_VERSION: Thresholds(same=0.49, possible=0.58),
}


def thresholds(embedder_version: str) -> Thresholds:
    """The fixed (ceiling) limits of a version. An uncalibrated version raises: its distances
    mean nothing until measured, and guessing would auto-tag strangers."""
    try:
        return THRESHOLDS[embedder_version]
    except KeyError:
        raise LookupError(
            f"no calibrated thresholds for embedder {embedder_version!r}; "
            "measure them and add them to recognition/core/calibration.py"
        ) from None


@dataclass(frozen=True)
class Limits:
    """The limits of one search: `same` and `possible` on the score (see `Score`), and the
    fixed ceiling on the plain distance. `thresholds_of` a face's candidates gives the plain
    distance limits the face is decided at."""

    same: float
    possible: float
    ceiling: Thresholds
    score: Score

    def for_face(self, distances: Sequence[float]) -> Thresholds:
        """Plain-distance limits for one face, from its candidates' distances (nearest first):
        score <= limit  <=>  distance <= limit + offset, within the ceiling."""
        offset = self.score.offset(distances)
        same = min(self.same + offset, self.ceiling.same)
        possible = min(self.possible + offset, self.ceiling.possible)
        same = max(same, 1e-6)
        return Thresholds(same=same, possible=max(possible, same))


def fixed_limits(embedder_version: str) -> Limits:
    """The fixed limits as `Limits` (plain distance, no cohort)."""
    ceiling = thresholds(embedder_version)
    return Limits(same=ceiling.same, possible=ceiling.possible, ceiling=ceiling, score=PLAIN)


@dataclass(frozen=True)
class Score:
    """What the limits compare: `distance - beta * mean(cohort)`, where the cohort is the
    distances of the `cohort` people ranked after the best one for the face (missing ones, in a
    library of fewer people, count as `fill`). `cohort=0` is the plain distance."""

    cohort: int = 0
    beta: float = 0.0
    fill: float = 0.0

    def offset(self, distances: Sequence[float]) -> float:
        """The face's offset, from its candidates' distances (nearest first, one per person)."""
        if self.cohort == 0 or self.beta == 0.0:
            return 0.0
        rest = [float(d) for d in distances[1 : self.cohort + 1]]
        rest += [self.fill] * (self.cohort - len(rest))
        return self.beta * sum(rest) / self.cohort

    def offsets(self, sorted_distances: np.ndarray) -> np.ndarray:
        """`offset` of every row of an (R, >= 1) array of distances sorted along rows (inf
        where a library has fewer people)."""
        if self.cohort == 0 or self.beta == 0.0:
            return np.zeros(len(sorted_distances))
        rest = np.asarray(sorted_distances, dtype=np.float64)[:, 1 : self.cohort + 1]
        pad = self.cohort - rest.shape[1]
        if pad > 0:
            rest = np.concatenate([rest, np.full((len(rest), pad), np.inf)], axis=1)
        rest = np.where(np.isfinite(rest), rest, self.fill)
        out: np.ndarray = self.beta * rest.mean(axis=1)
        return out


PLAIN = Score()
# Chosen on the LFW dev split (BENCHMARKS.md, "trust-fnir"): the 3 people after the best one
# are what the matcher's search returns anyway (`matching.MATCH_TOP_N` = 4).
COHORT = Score(cohort=3, beta=0.75)


@dataclass(frozen=True)
class StrangerModel:
    """The measured share of strangers whose best score is within a limit, by library size:
    `rates[i][k]` = P(best score among `sizes[i]` people <= `distances[k]`). `auto_rates`, when
    measured, counts only the searches the matcher could tag automatically (the runner-up at
    least `matching.DEFAULT_MARGIN` further than the best), and sizes the auto-tag limit."""

    embedder_version: str
    distances: tuple[float, ...]  # ascending grid of scores
    sizes: tuple[int, ...]  # ascending library sizes
    rates: tuple[tuple[float, ...], ...]  # one row per size, non-decreasing along the grid
    ceiling: Thresholds  # on the plain distance, whatever the score
    score: Score = PLAIN
    fitted_on: Mapping[str, Any] = field(default_factory=dict)
    auto_rates: tuple[tuple[float, ...], ...] | None = None  # like `rates`

    def __post_init__(self) -> None:
        if len(self.sizes) == 0 or len(self.rates) != len(self.sizes):
            raise ValueError("need one row of rates per library size")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)) or (
            self.sizes[0] < 1
        ):
            raise ValueError("library sizes must be positive and ascending")
        if any(len(row) != len(self.distances) for row in self.rates):
            raise ValueError("every row of rates needs one rate per distance")
        if self.auto_rates is not None and (
            len(self.auto_rates) != len(self.sizes)
            or any(len(row) != len(self.distances) for row in self.auto_rates)
        ):
            raise ValueError("auto_rates needs the shape of rates")

    def stranger_rate(self, distance: float, library_size: int) -> float:
        """Expected share of strangers whose nearest of `library_size` people is within
        `distance` (see the module docstring)."""
        if library_size <= 0:
            return 0.0
        i = max(int(np.searchsorted(self.sizes, library_size, side="right")) - 1, 0)
        g = float(np.interp(distance, self.distances, self.rates[i], left=0.0, right=1.0))
        return _grow(g, library_size / self.sizes[i])

    def limit(self, library_size: int, rate: float, *, auto: bool = False) -> float:
        """The largest score whose expected stranger share is at most `rate` (the grid's
        lowest when even that is over it); `auto` reads `auto_rates` when measured."""
        if library_size <= 0:
            return math.inf
        i = max(int(np.searchsorted(self.sizes, library_size, side="right")) - 1, 0)
        # Invert the growth: P(N, t) <= rate  <=>  G_i(t) <= 1 - (1 - rate) ** (N_i / N).
        per_row = 1.0 - (1.0 - rate) ** (self.sizes[i] / library_size)
        table = self.auto_rates if auto and self.auto_rates is not None else self.rates
        row = np.asarray(table[i], dtype=np.float64)
        grid = np.asarray(self.distances, dtype=np.float64)
        ok = np.flatnonzero(row <= per_row)
        if ok.size == 0:
            return float(grid[0])
        k = int(ok[-1])
        if k + 1 >= len(grid) or row[k + 1] <= row[k]:
            return float(grid[k])
        # Linear between the last grid point within the rate and the first over it.
        frac = (per_row - row[k]) / (row[k + 1] - row[k])
        return float(grid[k] + frac * (grid[k + 1] - grid[k]))

    def limits(
        self,
        library_size: int,
        auto_rate: float = DEFAULT_AUTO_RATE,
        suggest_rate: float = DEFAULT_SUGGEST_RATE,
    ) -> Limits:
        """The limits on the score for a library of `library_size` people."""
        same = self.limit(library_size, auto_rate, auto=True)
        possible = max(self.limit(library_size, suggest_rate), same)
        return Limits(same=same, possible=possible, ceiling=self.ceiling, score=self.score)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "embedder_version": self.embedder_version,
            "ceiling": {"same": self.ceiling.same, "possible": self.ceiling.possible},
            "score": dataclasses.asdict(self.score),
            "distances": [round(d, 6) for d in self.distances],
            "sizes": list(self.sizes),
            "rates": [[round(r, 7) for r in row] for row in self.rates],
            "auto_rates": None
            if self.auto_rates is None
            else [[round(r, 7) for r in row] for row in self.auto_rates],
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StrangerModel:
        if data.get("format") != FORMAT:
            raise ValueError(f"calibration format {data.get('format')!r}, expected {FORMAT}")
        return cls(
            embedder_version=str(data["embedder_version"]),
            distances=tuple(float(d) for d in data["distances"]),
            sizes=tuple(int(n) for n in data["sizes"]),
            rates=tuple(tuple(float(r) for r in row) for row in data["rates"]),
            ceiling=Thresholds(**data["ceiling"]),
            score=Score(**data.get("score", {})),
            fitted_on=dict(data.get("fitted_on", {})),
            auto_rates=None
            if data.get("auto_rates") is None
            else tuple(tuple(float(r) for r in row) for row in data["auto_rates"]),
        )


def _grow(rate: float, factor: float) -> float:
    """1 - (1 - rate) ** factor, accurate for tiny rates."""
    if rate >= 1.0:
        return 1.0
    return float(-math.expm1(factor * math.log1p(-rate)))


def fit_stranger_model(
    nearest: Sequence[np.ndarray],
    sizes: Sequence[int],
    *,
    embedder_version: str,
    ceiling: Thresholds,
    score: Score = PLAIN,
    distances: Sequence[float] | None = None,
    fitted_on: Mapping[str, Any] | None = None,
    nearest_auto: Sequence[np.ndarray] | None = None,
) -> StrangerModel:
    """A stranger model from measured best scores.

    `nearest[j]` holds, for library size `sizes[j]`, the best score of each simulated stranger
    search (any shape; flattened); `nearest_auto[j]` the same with inf where the matcher could
    not tag automatically (no margin over the runner-up).
    """
    grid = np.asarray(
        distances if distances is not None else np.round(np.arange(-0.6, 0.8001, 0.0025), 4),
        dtype=np.float64,
    )

    def table(samples: Sequence[np.ndarray]) -> tuple[tuple[float, ...], ...]:
        rows = []
        for sample in samples:
            values = np.sort(np.asarray(sample, dtype=np.float64).ravel())
            shares = np.searchsorted(values, grid, "right") / len(values)
            rows.append(tuple(float(r) for r in shares))
        return tuple(rows)

    return StrangerModel(
        embedder_version=embedder_version,
        distances=tuple(float(d) for d in grid),
        sizes=tuple(int(n) for n in sizes),
        rates=table(nearest),
        ceiling=ceiling,
        score=score,
        fitted_on=dict(fitted_on or {}),
        auto_rates=None if nearest_auto is None else table(nearest_auto),
    )


def model_path(embedder_version: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    return weights_dir / f"calibration-{embedder_version}.json"


@functools.cache
def stranger_model(embedder_version: str) -> StrangerModel | None:
    """The shipped stranger model of a version (read once per process), or None."""
    path = model_path(embedder_version)
    if not path.is_file():
        return None
    model = StrangerModel.from_json(json.loads(path.read_text()))
    if model.embedder_version != embedder_version:
        raise ValueError(f"{path} is for {model.embedder_version!r}")
    return model


def library_limits(
    embedder_version: str,
    library_size: int,
    auto_rate: float = DEFAULT_AUTO_RATE,
    suggest_rate: float = DEFAULT_SUGGEST_RATE,
) -> Limits:
    """The limits for a search among `library_size` people: from the version's stranger model,
    or its fixed limits when it has none; an unknown version raises LookupError."""
    model = stranger_model(embedder_version)
    if model is None:
        return fixed_limits(embedder_version)
    return model.limits(library_size, auto_rate, suggest_rate)


def person_cap(own_spread: Sequence[float]) -> float | None:
    """A person's own cap on the distance of an automatic tag, or None (fewer than
    `PERSON_MIN_FACES` confirmed faces).

    `own_spread`: for each confirmed face, its distance to the person's nearest other confirmed
    face. A face further from the person than the furthest of their own faces, plus a quarter of
    the typical one, is suggested rather than tagged: a tight cluster (a person photographed
    alike) does not take in a stranger who happens to fall near it.
    """
    spread = np.asarray(own_spread, dtype=np.float64)
    if spread.size < PERSON_MIN_FACES:
        return None
    return float(spread.max() + 0.25 * np.median(spread))

"""Staged dimension-prefix search of person templates (the seeds' sequential classification).

Templates are stored rotated by a PCA basis (recognition/core/projection.py), so the distance over
the first d components is a lower bound of the full Euclidean distance and components are ordered by
variance. A search runs in levels d_1 < ... < D:

1. Level 1 (PostgreSQL): an HNSW expression index on `subvector(vector, 1, d_1)` returns a
   shortlist of the `shortlist` templates nearest over the first d_1 components (pgvector 0.8
   iterative scan, so a gallery filter cannot empty it). Very selective filters use an exact plan.
2. Levels 2..L (numpy, on the fetched shortlist): the squared distance accumulates over the new
   components, rho_l = rho_{l-1} + sum_{d in (d_{l-1}, d_l]} (q_d - x_d)^2. A class's distance
   is the one of its nearest template (k-NN over all templates of a person). With c* the nearest
   class at level l, the classes kept for level l+1 are those with
       sqrt(rho_c) <= delta * sqrt(rho_c*)
   i.e. `delta` is a ratio of (non-squared) Euclidean prefix distances; on squared distances the
   test is rho_c <= delta^2 rho_c*. The `top_n` nearest classes are always kept as well, so with
   top_n = 1 this is exactly the seeds' rule and a caller asking for 5 names gets 5.
3. Level L = D is the exact distance; candidates are ranked by it, and the distance returned is
   the full Euclidean distance in the original embedding space (the rotation preserves it).

Modes ("fixed" and "variable" number of components, as in the seeds):
- fixed: every surviving candidate is evaluated at every configured level;
- variable: after d_1 the prefix grows in steps of `step` components and the search stops
  descending as soon as no more than top_n classes remain, then completes only those classes to
  D (the open-set decision needs the full distance of the winner).

delta = inf and a shortlist at least the table size give exactly the brute-force answer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

MODES = ("fixed", "variable")


@dataclass(frozen=True)
class SearchParams:
    """How a staged search runs. The defaults are the app's (settings FACEWEB_SEARCH_* default to
    them), measured in BENCHMARKS.md, "search": level 1 on 48 components, a shortlist of 32 read
    with ef_search 100."""

    levels: tuple[int, ...] = (48, 64, 128)
    delta: float = 1.5
    shortlist: int = 32
    mode: str = "fixed"
    step: int = 16  # components per step in variable mode
    ef_search: int = 100  # 0: as large as the shortlist
    half: bool = False  # the level-1 index stores the prefix as halfvec
    exact_max_rows: int = 5000  # a filter matching at most this many rows uses the exact plan
    max_scan_tuples: int = 100_000
    levels_in: str = "numpy"  # "sql": PostgreSQL computes each level's distance on the shortlist

    def __post_init__(self) -> None:
        levels = tuple(int(d) for d in self.levels)
        if not levels or any(b <= a for a, b in itertools.pairwise(levels)):
            raise ValueError(f"levels must be strictly increasing, got {levels}")
        if levels[0] < 1:
            raise ValueError("the first level needs at least one component")
        if not (self.delta >= 1.0):
            raise ValueError(f"delta must be >= 1 (a ratio of distances), got {self.delta}")
        if self.shortlist < 1:
            raise ValueError("shortlist must be >= 1")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.levels_in not in ("numpy", "sql"):
            raise ValueError(f"levels_in must be numpy or sql, got {self.levels_in!r}")
        if self.step < 1:
            raise ValueError("step must be >= 1")
        object.__setattr__(self, "levels", levels)


@dataclass(frozen=True)
class Candidate:
    person_id: int
    distance: float  # full Euclidean distance to the person's nearest template, original space
    face_id: int  # the face of that template


@dataclass
class SearchStats:
    plan: str = ""  # "hnsw" (index shortlist + levels) or "exact" (every filtered row)
    shortlist_rows: int = 0  # rows fetched from PostgreSQL
    rows_per_level: list[int] = field(default_factory=list)  # templates evaluated per level
    classes_per_level: list[int] = field(default_factory=list)  # persons left after each level
    components_per_level: list[int] = field(default_factory=list)  # prefix length per level
    components_read: int = 0  # sum over levels of rows x new components (in-memory work)
    sql_ms: float = 0.0
    total_ms: float = 0.0
    bases: int = 0  # bases searched (2 while a refit is under way)


@dataclass
class SearchResult:
    candidates: list[Candidate]
    stats: SearchStats

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


# ---------------------------------------------------------------------------------------------
# The staged rule in memory


def _class_minima(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(minimum of `values` per distinct label, inverse index of each row into those labels)."""
    uniq, inverse = np.unique(labels, return_inverse=True)
    minima = np.full(uniq.shape[0], np.inf)
    np.minimum.at(minima, inverse, values)
    return minima, inverse


def _keep_classes(minima: np.ndarray, delta: float, top_n: int) -> np.ndarray:
    """The seeds' ratio rule on squared prefix distances, plus the top_n nearest classes."""
    if math.isinf(delta):
        return np.ones(minima.shape[0], dtype=bool)
    keep: np.ndarray = minima <= (delta * delta) * minima.min()
    if top_n > 1 and minima.shape[0] > top_n:
        keep[np.argpartition(minima, top_n - 1)[:top_n]] = True
    elif top_n > 1:
        keep[:] = True
    return keep


def _schedule(params: SearchParams, dim: int) -> list[int]:
    levels = [d for d in params.levels if d < dim] + [dim]
    if params.mode == "fixed":
        return levels
    steps = list(range(levels[0], dim, params.step))
    return [*steps, dim]


def staged_rank(
    queries: np.ndarray,
    vectors: np.ndarray,
    labels: np.ndarray,
    faces: np.ndarray,
    params: SearchParams,
    top_n: int,
    stats: SearchStats | None = None,
) -> list[Candidate]:
    """Rank classes by the staged rule over rotated `vectors` (N, D).

    `queries` is the rotated query, (D,), or one row per template (N, D) when the rows come from
    different bases (a refit in progress): distances are rotation invariant, so rows of different
    bases compare correctly once each is measured against the query rotated into its own basis.
    """
    n, dim = vectors.shape
    per_row = queries.ndim == 2

    def increment(alive: np.ndarray, prev: int, d: int) -> np.ndarray:
        q = queries[alive, prev:d] if per_row else queries[prev:d]
        diff = vectors[alive, prev:d].astype(np.float64) - q
        added: np.ndarray = np.einsum("ij,ij->i", diff, diff)
        return added

    return _run_levels(
        n, dim, _schedule(params, dim), labels, faces, params, top_n, stats, increment
    )


def staged_rank_precomputed(
    level_sq: np.ndarray,
    levels: Sequence[int],
    labels: np.ndarray,
    faces: np.ndarray,
    params: SearchParams,
    top_n: int,
    stats: SearchStats | None = None,
) -> list[Candidate]:
    """The same rule on squared prefix distances computed elsewhere (in SQL): column i of
    `level_sq` (N, L) is the squared distance over the first levels[i] components."""
    column = {d: i for i, d in enumerate(levels)}

    def increment(alive: np.ndarray, prev: int, d: int) -> np.ndarray:
        now: np.ndarray = level_sq[alive, column[d]]
        return now - level_sq[alive, column[prev]] if prev else now

    return _run_levels(
        level_sq.shape[0], levels[-1], list(levels), labels, faces, params, top_n, stats, increment
    )


def _run_levels(
    n: int,
    dim: int,
    schedule: list[int],
    labels: np.ndarray,
    faces: np.ndarray,
    params: SearchParams,
    top_n: int,
    stats: SearchStats | None,
    increment: Callable[[np.ndarray, int, int], np.ndarray],
) -> list[Candidate]:
    stats = stats if stats is not None else SearchStats()
    if n == 0:
        return []
    acc = np.zeros(n, dtype=np.float64)
    alive = np.arange(n)
    prev = 0
    i = 0
    while True:
        d = schedule[i]
        acc[alive] += increment(alive, prev, d)
        stats.rows_per_level.append(int(alive.shape[0]))
        stats.components_per_level.append(d)
        stats.components_read += int(alive.shape[0]) * (d - prev)
        prev = d
        minima, inverse = _class_minima(labels[alive], acc[alive])
        if d == dim:
            stats.classes_per_level.append(int(minima.shape[0]))
            break
        keep = _keep_classes(minima, params.delta, top_n)
        stats.classes_per_level.append(int(keep.sum()))
        alive = alive[keep[inverse]]
        if params.mode == "variable" and keep.sum() <= top_n:
            schedule = [*schedule[: i + 1], dim]
        i += 1
    best_rows: dict[int, int] = {}
    for row in alive[np.argsort(acc[alive], kind="stable")]:
        label = int(labels[row])
        if label not in best_rows:
            best_rows[label] = int(row)
            if len(best_rows) == top_n:
                break
    return [
        Candidate(
            person_id=label, distance=float(math.sqrt(max(acc[row], 0.0))), face_id=int(faces[row])
        )
        for label, row in best_rows.items()
    ]


def exact_rank(
    queries: np.ndarray, vectors: np.ndarray, labels: np.ndarray, faces: np.ndarray, top_n: int
) -> list[Candidate]:
    """Brute force over all rows (the reference the staged rule is tested against)."""
    params = SearchParams(levels=(vectors.shape[1],), delta=math.inf)
    return staged_rank(queries, vectors, labels, faces, params, top_n)

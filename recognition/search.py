"""Staged dimension-prefix search of person templates (the seeds' sequential classification).

Templates are stored rotated by a PCA basis (recognition/projection.py), so the distance over the
first d components is a lower bound of the full Euclidean distance and components are ordered by
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
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import pq

from recognition.projection import Basis

MODES = ("fixed", "variable")
# Build parameters of the level-1 HNSW index (migration 0004, refit_basis --ensure-index). At 1M
# rows m 32 / ef_construction 200 agrees with exact search on 98.5% of real probes at
# ef_search 100 where m 24 / 128 agrees on 95.9% (BENCHMARKS.md, "search").
LEVEL1_M = 32
LEVEL1_EF_CONSTRUCTION = 200
EMBEDDING_DIM_DEFAULT = 128


@dataclass(frozen=True)
class SearchParams:
    levels: tuple[int, ...] = (32, 64, 128)
    delta: float = 1.3
    shortlist: int = 200
    mode: str = "fixed"
    step: int = 16  # components per step in variable mode
    ef_search: int = 0  # 0: as large as the shortlist
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
    keep = minima <= (delta * delta) * minima.min()
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
        return np.einsum("ij,ij->i", diff, diff)

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
        now = level_sq[alive, column[d]]
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


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass(frozen=True)
class TemplateTable:
    """Where templates live: the app's table, or a benchmark copy with the same columns."""

    name: str = "recognition_template"

    def prefix_expr(self, d1: int, half: bool) -> str:
        kind = "halfvec" if half else "vector"
        return f"(subvector(vector, 1, {d1})::{kind}({d1}))"

    def index_name(self, d1: int, half: bool) -> str:
        short = self.name.rsplit(".", 1)[-1]
        return f"{short}_prefix{d1}{'_half' if half else ''}_hnsw"

    def create_index_sql(
        self,
        d1: int,
        half: bool,
        m: int = LEVEL1_M,
        ef_construction: int = LEVEL1_EF_CONSTRUCTION,
        concurrently: bool = False,
    ) -> str:
        ops = "halfvec_l2_ops" if half else "vector_l2_ops"
        how = "CONCURRENTLY " if concurrently else ""
        return (
            f"CREATE INDEX {how}IF NOT EXISTS {self.index_name(d1, half)} ON {self.name} "
            f"USING hnsw ({self.prefix_expr(d1, half)} {ops}) "
            f"WITH (m = {m}, ef_construction = {ef_construction})"
        )


def vector_literal(values: np.ndarray) -> str:
    return "[" + ",".join(f"{float(v):.7g}" for v in values) + "]"


def _decode_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """`vector_send` output (int16 dim, int16 unused, big-endian float32s) -> (N, dim) float32."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    raw = np.frombuffer(b"".join(bytes(b) for b in blobs), dtype=np.uint8)
    rows = raw.reshape(len(blobs), 4 + 4 * dim)[:, 4:]
    return rows.copy().view(">f4").astype(np.float32)


def _filter_sql(gallery_ids: Sequence[int] | None) -> tuple[str, list[Any]]:
    if gallery_ids is None:
        return "", []
    # `+ 0` keeps the planner off the gallery b-tree: the plan was chosen already (see
    # `staged_search`), and its row estimates for `= ANY(array)` over galleries of very
    # different sizes are poor.
    return " AND gallery_id + 0 = ANY(%s)", [list(gallery_ids)]


def count_filtered(cursor: Any, table: TemplateTable, gallery_ids: Sequence[int], cap: int) -> int:
    """Rows visible through the filter, counted up to cap + 1 (cheap on the gallery index)."""
    cursor.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {table.name} WHERE gallery_id = ANY(%s) LIMIT %s) s",
        [list(gallery_ids), cap + 1],
    )
    return int(cursor.fetchone()[0])


def _transaction_open(cursor: Any) -> bool:
    raw = getattr(cursor, "cursor", cursor)  # Django's CursorWrapper, or a psycopg cursor
    return raw.connection.info.transaction_status != pq.TransactionStatus.IDLE


def _with_index_settings(
    cursor: Any, params: SearchParams, sql: str, args: Sequence[Any]
) -> list[tuple]:
    """Run `sql` with the HNSW scan settings, in one round trip, leaving no setting behind.

    The settings are SET LOCAL (`set_config(..., true)`) and sent with the query as one
    multi-statement message: outside a transaction that message is its own implicit
    transaction, so they end with it; inside the caller's transaction a savepoint rolled back
    after the query restores them. enable_seqscan is off so that plan "hnsw" really scans the
    index even on small tables (the exact plan is chosen before, by counting).
    """
    ef = max(params.ef_search or 0, params.shortlist)
    settings_sql = (
        "SELECT set_config('hnsw.ef_search', %s, true), "
        "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
        "set_config('hnsw.max_scan_tuples', %s, true), "
        "set_config('enable_seqscan', 'off', true)"
    )
    values = [str(min(ef, 1000)), str(params.max_scan_tuples), *args]
    if _transaction_open(cursor):
        cursor.execute(
            f"SAVEPOINT faceweb_search; {settings_sql}; {sql}; "
            "ROLLBACK TO SAVEPOINT faceweb_search; RELEASE SAVEPOINT faceweb_search",
            values,
        )
        cursor.nextset()
    else:
        cursor.execute(f"{settings_sql}; {sql}", values)
    cursor.nextset()
    return cursor.fetchall()


def fetch_shortlist(
    cursor: Any,
    table: TemplateTable,
    basis_id: int,
    query: np.ndarray,
    params: SearchParams,
    gallery_ids: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level 1: the `shortlist` rows nearest over the first d_1 components, via the HNSW index.

    relaxed_order lets the iterative scan keep going past ef_search until enough rows pass the
    filter; the rows come back only approximately ordered, which is fine because the levels
    re-rank them in numpy.
    """
    d1 = params.levels[0]
    expr = table.prefix_expr(d1, params.half)
    kind = "halfvec" if params.half else "vector"
    where, args = _filter_sql(gallery_ids)
    rows = _with_index_settings(
        cursor,
        params,
        f"WITH s AS MATERIALIZED (SELECT person_id, face_id, vector FROM {table.name} "
        f"WHERE basis_id + 0 = %s{where} ORDER BY {expr} <-> %s::{kind}({d1}) LIMIT %s) "
        f"SELECT person_id, face_id, vector_send(vector) FROM s",
        [basis_id, *args, vector_literal(query[:d1]), params.shortlist],
    )
    persons = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    faces = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    return persons, faces, _decode_vectors([r[2] for r in rows], query.shape[0])


def fetch_shortlist_levels(
    cursor: Any,
    table: TemplateTable,
    basis_id: int,
    query: np.ndarray,
    params: SearchParams,
    gallery_ids: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Like `fetch_shortlist`, but PostgreSQL returns each level's prefix distance instead of
    the vectors: (persons, faces, squared distances (N, L), levels)."""
    d1 = params.levels[0]
    dim = query.shape[0]
    levels = [d for d in params.levels if d < dim] + [dim]
    expr = table.prefix_expr(d1, params.half)
    kind = "halfvec" if params.half else "vector"
    where, args = _filter_sql(gallery_ids)
    columns = ", ".join(
        f"subvector(vector, 1, {d})::vector({d}) <-> %s::vector({d})"
        if d < dim
        else "vector <-> %s::vector"
        for d in levels
    )
    rows = _with_index_settings(
        cursor,
        params,
        f"WITH s AS MATERIALIZED (SELECT person_id, face_id, vector FROM {table.name} "
        f"WHERE basis_id + 0 = %s{where} ORDER BY {expr} <-> %s::{kind}({d1}) LIMIT %s) "
        f"SELECT person_id, face_id, {columns} FROM s",
        [
            basis_id,
            *args,
            vector_literal(query[:d1]),
            params.shortlist,
            *[vector_literal(query[:d]) for d in levels],
        ],
    )
    persons = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    faces = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    dist = np.asarray([r[2:] for r in rows], dtype=np.float64).reshape(len(rows), len(levels))
    return persons, faces, dist * dist, levels


def fetch_exact(
    cursor: Any,
    table: TemplateTable,
    basis_id: int,
    query: np.ndarray,
    gallery_ids: Sequence[int],
    top_n: int,
    exclude_person_ids: Collection[int],
) -> list[Candidate]:
    """The exact plan: every row the filter lets through, nearest template per person, in SQL."""
    cursor.execute(
        f"SELECT person_id, face_id, d FROM (SELECT DISTINCT ON (person_id) person_id, face_id, "
        f"vector <-> %s::vector AS d FROM {table.name} WHERE basis_id = %s "
        f"AND gallery_id = ANY(%s) AND person_id <> ALL(%s) ORDER BY person_id, d) s "
        f"ORDER BY d LIMIT %s",
        [vector_literal(query), basis_id, list(gallery_ids), list(exclude_person_ids), top_n],
    )
    return [Candidate(person_id=p, distance=float(d), face_id=f) for p, f, d in cursor.fetchall()]


def merge_candidates(lists: Sequence[list[Candidate]], top_n: int) -> list[Candidate]:
    """Nearest template per person over several lists (one per basis), best first."""
    best: dict[int, Candidate] = {}
    for candidates in lists:
        for c in candidates:
            if c.person_id not in best or c.distance < best[c.person_id].distance:
                best[c.person_id] = c
    return sorted(best.values(), key=lambda c: (c.distance, c.person_id))[:top_n]


def staged_search(
    cursor: Any,
    table: TemplateTable,
    bases: Sequence[tuple[int, Basis]],
    embedding: np.ndarray,
    params: SearchParams,
    *,
    gallery_ids: Sequence[int] | None,
    top_n: int = 5,
    plan: str = "auto",
    exclude_person_ids: Collection[int] = (),
) -> SearchResult:
    """Search the templates of every basis in `bases` and merge (see the module docstring).

    `gallery_ids=None` searches every row (benchmarks); an empty list finds nothing. plan is
    "auto" (exact when the filter lets through at most `params.exact_max_rows` rows), "hnsw" or
    "exact". Works inside or outside a transaction.
    """
    started = time.perf_counter()
    stats = SearchStats(bases=len(bases))
    embedding = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if not bases or (gallery_ids is not None and len(gallery_ids) == 0):
        stats.total_ms = (time.perf_counter() - started) * 1e3
        return SearchResult([], stats)
    if plan == "auto":
        plan = "hnsw"
        if gallery_ids is not None:
            n = count_filtered(cursor, table, gallery_ids, params.exact_max_rows)
            plan = "exact" if n <= params.exact_max_rows else "hnsw"
    stats.plan = plan
    dim = bases[0][1].dim
    queries = [basis.rotate(embedding) for _, basis in bases]
    if plan == "exact":
        if gallery_ids is None:
            raise ValueError("the exact plan needs a gallery filter")
        lists = [
            fetch_exact(cursor, table, basis_id, q, gallery_ids, top_n, exclude_person_ids)
            for (basis_id, _), q in zip(bases, queries, strict=True)
        ]
        stats.sql_ms = (time.perf_counter() - started) * 1e3
        candidates = merge_candidates(lists, top_n)
        stats.components_per_level = [dim]
    else:
        if params.levels_in == "sql" and len(bases) == 1 and not exclude_person_ids:
            persons, faces, level_sq, levels = fetch_shortlist_levels(
                cursor, table, bases[0][0], queries[0], params, gallery_ids
            )
            stats.sql_ms = (time.perf_counter() - started) * 1e3
            stats.shortlist_rows = int(persons.shape[0])
            candidates = staged_rank_precomputed(
                level_sq, levels, persons, faces, params, top_n, stats
            )
            stats.total_ms = (time.perf_counter() - started) * 1e3
            return SearchResult(candidates, stats)
        parts = [
            fetch_shortlist(cursor, table, basis_id, q, params, gallery_ids)
            for (basis_id, _), q in zip(bases, queries, strict=True)
        ]
        stats.sql_ms = (time.perf_counter() - started) * 1e3
        persons = np.concatenate([p[0] for p in parts])
        faces = np.concatenate([p[1] for p in parts])
        vectors = np.concatenate([p[2] for p in parts])
        if len(bases) == 1:
            query_rows = queries[0]
        else:
            query_rows = np.concatenate(
                [np.broadcast_to(q, p[2].shape) for q, p in zip(queries, parts, strict=True)]
            )
        stats.shortlist_rows = int(persons.shape[0])
        if exclude_person_ids:
            keep = ~np.isin(persons, np.fromiter(exclude_person_ids, dtype=np.int64))
            persons, faces, vectors = persons[keep], faces[keep], vectors[keep]
            if query_rows.ndim == 2:
                query_rows = query_rows[keep]
        candidates = staged_rank(query_rows, vectors, persons, faces, params, top_n, stats)
    stats.total_ms = (time.perf_counter() - started) * 1e3
    return SearchResult(candidates, stats)


# ---------------------------------------------------------------------------------------------
# The API for the app


def search_params(
    levels: Sequence[int] | None = None,
    delta: float | None = None,
    shortlist: int | None = None,
    mode: str | None = None,
) -> SearchParams:
    """Settings (FACEWEB_SEARCH_*) with per-call overrides."""
    from django.conf import settings

    return SearchParams(
        levels=tuple(levels if levels is not None else settings.FACEWEB_SEARCH_LEVELS),
        delta=float(delta if delta is not None else settings.FACEWEB_SEARCH_DELTA),
        shortlist=int(shortlist if shortlist is not None else settings.FACEWEB_SEARCH_SHORTLIST),
        mode=mode or getattr(settings, "FACEWEB_SEARCH_MODE", "fixed"),
        ef_search=int(getattr(settings, "FACEWEB_SEARCH_EF_SEARCH", 0)),
        half=bool(getattr(settings, "FACEWEB_SEARCH_HALFVEC", False)),
        exact_max_rows=int(getattr(settings, "FACEWEB_SEARCH_EXACT_MAX_ROWS", 5000)),
    )


def match_faces(
    embeddings: np.ndarray,
    *,
    gallery_ids: Sequence[int],
    embedder_version: str,
    top_n: int = 1,
    levels: Sequence[int] | None = None,
    delta: float | None = None,
    shortlist: int | None = None,
    mode: str | None = None,
    plan: str = "auto",
    exclude_person_ids: Sequence[Collection[int]] | None = None,
) -> list[SearchResult]:
    """Search many faces at once (a photo's faces in the post-processing step), one result each.

    One transaction and one read of the bases for the lot. `exclude_person_ids[i]` lists the
    people face i must not be matched to ("not this person" decisions).
    """
    from django.db import connection

    from recognition.templates import basis_rows, search_bases

    embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM_DEFAULT)
    params = search_params(levels, delta, shortlist, mode)
    excludes = list(exclude_person_ids) if exclude_person_ids is not None else []
    excludes += [()] * (embeddings.shape[0] - len(excludes))
    # No transaction: each query sees the latest committed rows, and the bases are read again
    # after the searches to notice a refit that started or finished meanwhile.
    with connection.cursor() as cursor:
        for _attempt in range(3):
            rows = basis_rows(embedder_version)
            bases = search_bases(embedder_version, rows)
            results = [
                staged_search(
                    cursor,
                    TemplateTable(),
                    bases,
                    embedding,
                    params,
                    gallery_ids=list(gallery_ids),
                    top_n=top_n,
                    plan=plan,
                    exclude_person_ids=exclude,
                )
                for embedding, exclude in zip(embeddings, excludes, strict=True)
            ]
            # A refit that started (or finished) while we searched: search again, so no row
            # moved between bases is missed.
            if basis_rows(embedder_version) == rows:
                break
    return results


def search_people(
    embedding: np.ndarray,
    *,
    gallery_ids: Sequence[int],
    embedder_version: str,
    top_n: int = 5,
    levels: Sequence[int] | None = None,
    delta: float | None = None,
    shortlist: int | None = None,
    mode: str | None = None,
    plan: str = "auto",
    exclude_person_ids: Collection[int] = (),
) -> SearchResult:
    """The people nearest to one face among the templates of `gallery_ids`, best first.

    Each candidate carries the full Euclidean distance (original embedding space) to the
    person's nearest template and that template's face; compare the best distance with
    `recognition.calibration.thresholds(embedder_version)` for the accept/unknown decision.
    """
    return match_faces(
        np.asarray(embedding, dtype=np.float32).reshape(1, -1),
        gallery_ids=gallery_ids,
        embedder_version=embedder_version,
        top_n=top_n,
        levels=levels,
        delta=delta,
        shortlist=shortlist,
        mode=mode,
        plan=plan,
        exclude_person_ids=[exclude_person_ids],
    )[0]

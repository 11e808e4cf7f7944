"""The SQL side of the staged prefix search: level 1 in PostgreSQL, then the pure rule
(recognition/core/staged.py) on the fetched shortlist. See core/staged.py for the method."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from psycopg import pq

from recognition.core import calibration
from recognition.core.projection import Basis
from recognition.core.staged import (
    Candidate,
    SearchParams,
    SearchResult,
    SearchStats,
    staged_rank,
    staged_rank_precomputed,
)
from recognition.index.bases import basis_rows, search_bases
from recognition.models import Template

# Build parameters of the level-1 HNSW index (migration 0004, refit_basis --ensure-index). At 1M
# rows m 32 / ef_construction 200 agrees with exact search on 98.5% of real probes at
# ef_search 100 where m 24 / 128 agrees on 95.9% (BENCHMARKS.md, "search").
LEVEL1_M = 32
LEVEL1_EF_CONSTRUCTION = 200

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


# Build parameters of the level-1 HNSW index (migration 0004, refit_basis --ensure-index). At 1M
# rows m 32 / ef_construction 200 agrees with exact search on 98.5% of real probes at
# ef_search 100 where m 24 / 128 agrees on 95.9% (BENCHMARKS.md, "search").
LEVEL1_M = 32
LEVEL1_EF_CONSTRUCTION = 200


# ---------------------------------------------------------------------------------------------
# The API for the app


def search_params(
    levels: Sequence[int] | None = None,
    delta: float | None = None,
    shortlist: int | None = None,
    mode: str | None = None,
) -> SearchParams:
    """Settings (FACEWEB_SEARCH_*) with per-call overrides."""

    return SearchParams(
        levels=tuple(levels if levels is not None else settings.FACEWEB_SEARCH_LEVELS),
        delta=float(delta if delta is not None else settings.FACEWEB_SEARCH_DELTA),
        shortlist=int(shortlist if shortlist is not None else settings.FACEWEB_SEARCH_SHORTLIST),
        mode=mode or settings.FACEWEB_SEARCH_MODE,
        ef_search=settings.FACEWEB_SEARCH_EF_SEARCH,
        half=settings.FACEWEB_SEARCH_HALFVEC,
        exact_max_rows=settings.FACEWEB_SEARCH_EXACT_MAX_ROWS,
    )


def search_faces(
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

    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
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
    `recognition.core.calibration.thresholds(embedder_version)` for the accept/unknown decision.
    """
    return search_faces(
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


# ---------------------------------------------------------------------------------------------
# Decision limits sized to the library searched


def library_size(gallery_ids: list[int], embedder_version: str) -> int:
    """How many people the search for a face can return: people with a template in
    `gallery_ids` (the matcher's `matchable_gallery_ids`). The limits grow stricter with it."""
    return (
        Template.objects.filter(gallery_id__in=gallery_ids, embedder_version=embedder_version)
        .values("person_id")
        .distinct()
        .count()
    )


def library_limits(gallery_ids: list[int], embedder_version: str) -> calibration.Limits:
    """The auto-tag and suggestion limits for a search over `gallery_ids`, sized to its people
    so the expected share of strangers tagged (suggested) stays within the settings' targets;
    `.for_face(distances)` turns them into one face's limits."""
    return calibration.library_limits(
        embedder_version,
        library_size(gallery_ids, embedder_version),
        settings.FACEWEB_AUTO_TAG_STRANGER_RATE,
        settings.FACEWEB_SUGGEST_STRANGER_RATE,
    )

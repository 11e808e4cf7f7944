"""Benchmark the staged prefix search in PostgreSQL against exact search and plain HNSW.

Rows: the real LFW gallery embeddings (the evaluation cache, closed-set split: every second image
of each multi-image identity is a probe) plus synthetic identities drawn to match LFW's
statistics in PCA space (identity centres ~ N(0, between-identity variance per component),
images ~ centre + N(0, within-identity variance per component), 1 + Poisson(4) images per
identity), up to each size. Probes are the real LFW probes, whose identity is enrolled.

The rows go into a separate schema (binary COPY), never the app's Template table, and the schema
is dropped afterwards. The staged search runs the app's own code (`recognition.search`) against
that table. Results go to BENCHMARKS.md, section "search".
"""

from __future__ import annotations

import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from recognition.projection import Basis, fit_basis
from recognition.search import SearchParams, TemplateTable, staged_search, vector_literal

BASIS_ID = 1
GALLERY_ID = 1
SYNTHETIC_PERSON_BASE = 10_000_000


@dataclass
class Data:
    gallery: np.ndarray  # (G, D) original space, real
    gallery_labels: np.ndarray
    probes: np.ndarray  # (P, D) original space
    probe_labels: np.ndarray
    basis: Basis
    within: np.ndarray  # per-component variances in rotated space
    between: np.ndarray
    mean_images: float


@dataclass
class MethodResult:
    name: str
    latencies: list[float] = field(default_factory=list)
    top1: list[int] = field(default_factory=list)  # person id per probe (timed probes only)
    probe_index: list[int] = field(default_factory=list)
    shortlist_rows: list[int] = field(default_factory=list)
    rows_level2: list[int] = field(default_factory=list)
    components: list[int] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else math.nan


def load_lfw(root: pathlib.Path, cache: pathlib.Path) -> Data:
    from recognition.evaluation import closed_set_split, embed_labeled_folder

    d = embed_labeled_folder(root, cache, progress=False)
    split = closed_set_split(d.labels, d.found)
    gallery, gl = d.embeddings[split.gallery], d.labels[split.gallery]
    basis = fit_basis(gallery)
    rotated = basis.rotate(gallery).astype(np.float64)
    ids, inverse, counts = np.unique(gl, return_inverse=True, return_counts=True)
    sums = np.zeros((len(ids), rotated.shape[1]))
    np.add.at(sums, inverse, rotated)
    centres = sums / counts[:, None]
    multi = counts[inverse] >= 2
    dev = rotated[multi] - centres[inverse[multi]]
    dof = multi.sum() - np.count_nonzero(counts >= 2)
    within = (dev**2).sum(axis=0) / max(dof, 1)
    total = rotated.var(axis=0, ddof=1)
    between = np.clip(total - within, 0.0, None)
    return Data(
        gallery=gallery,
        gallery_labels=gl,
        probes=d.embeddings[split.probes],
        probe_labels=d.labels[split.probes],
        basis=basis,
        within=within,
        between=between,
        mean_images=float(counts.mean()),
    )


def synthesize(
    n: int, data: Data, rng: np.random.Generator, chunk: int = 200_000
) -> tuple[np.ndarray, np.ndarray]:
    """n rotated vectors of synthetic identities, and their person ids."""
    counts: list[int] = []
    total = 0
    while total < n:
        c = int(1 + rng.poisson(4))
        c = min(c, n - total)
        counts.append(c)
        total += c
    people = np.repeat(np.arange(len(counts)), counts)
    out = np.empty((n, data.within.shape[0]), dtype=np.float32)
    sd_between, sd_within = np.sqrt(data.between), np.sqrt(data.within)
    centres = (rng.standard_normal((len(counts), sd_between.shape[0])) * sd_between).astype(
        np.float32
    )
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        noise = rng.standard_normal((stop - start, sd_within.shape[0])) * sd_within
        out[start:stop] = centres[people[start:stop]] + noise.astype(np.float32)
    return out, people + SYNTHETIC_PERSON_BASE


def exact_top1(
    rows: np.ndarray, persons: np.ndarray, queries: np.ndarray, chunk: int = 250_000
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest row (person, distance) per query, brute force: float32 shortlist of 8 per chunk,
    float64 re-check, so float rounding cannot flip a near tie."""
    q32 = queries.astype(np.float32)
    q_norm = (q32.astype(np.float64) ** 2).sum(axis=1)
    best_d = np.full(len(queries), np.inf)
    best_p = np.zeros(len(queries), dtype=np.int64)
    for start in range(0, len(rows), chunk):
        block = rows[start : start + chunk]
        b_norm = (block.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
        for qs in range(0, len(queries), 256):
            qb = q32[qs : qs + 256]
            d2 = b_norm[None, :] - 2.0 * (qb @ block.T) + q_norm[qs : qs + 256, None]
            k = min(8, block.shape[0])
            cand = np.argpartition(d2, k - 1, axis=1)[:, :k]
            diff = block[cand].astype(np.float64) - queries[qs : qs + 256, None, :]
            exact = (diff**2).sum(axis=2)
            j = np.argmin(exact, axis=1)
            dist = exact[np.arange(len(j)), j]
            idx = cand[np.arange(len(j)), j] + start
            better = dist < best_d[qs : qs + 256]
            best_d[qs : qs + 256][better] = dist[better]
            best_p[qs : qs + 256][better] = persons[idx[better]]
    return best_p, np.sqrt(best_d)


def _raw_connection() -> Any:
    import psycopg
    from pgvector.psycopg import register_vector

    params = connection.get_connection_params()
    conn = psycopg.connect(
        dbname=params["dbname"],
        user=params.get("user"),
        host=params.get("host"),
        port=params.get("port"),
        password=params.get("password"),
        autocommit=True,
    )
    register_vector(conn)
    return conn


class Command(BaseCommand):
    help = "Benchmark exact, plain HNSW and staged prefix search at several table sizes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sizes", default="10000,100000,1000000")
        parser.add_argument("--lfw", default=None, help="LFW folder (default: shared faces)")
        parser.add_argument("--probes", type=int, default=0, help="probes timed (0: all)")
        parser.add_argument("--exact-probes", type=int, default=40)
        parser.add_argument("--levels", default="32,64,128")
        parser.add_argument("--delta", default="1.3", help="comma list (inf allowed)")
        parser.add_argument(
            "--shortlist", default="100:200", help="comma list of shortlist:ef_search pairs"
        )
        parser.add_argument("--modes", default="fixed,variable")
        parser.add_argument("--ef-full", default="40,100", help="plain HNSW ef_search values")
        parser.add_argument("--m", type=int, default=24, help="HNSW m of the level-1 index")
        parser.add_argument("--ef-construction", type=int, default=128)
        parser.add_argument("--full-m", type=int, default=16, help="HNSW m, full-vector index")
        parser.add_argument("--full-ef-construction", type=int, default=64)
        parser.add_argument("--half", action="store_true", help="level-1 index on halfvec")
        parser.add_argument("--step", type=int, default=16)
        parser.add_argument("--no-full-hnsw", action="store_true")
        parser.add_argument("--levels-in-sql", action="store_true", help="also time SQL levels")
        parser.add_argument("--schema", default="bench_search")
        parser.add_argument("--keep", action="store_true", help="keep the benchmark schema")
        parser.add_argument("--reuse", action="store_true", help="reuse a kept table and indexes")
        parser.add_argument("--no-write", action="store_true", help="print only")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--maintenance-work-mem", default="2GB")

    def handle(self, *args: Any, **o: Any) -> None:
        faces = pathlib.Path(
            o["lfw"]
            or os.environ.get("FACEWEB_FACES_DIR_LFW", "")
            or pathlib.Path(settings.BASE_DIR).parent / "shared" / "faces" / "lfw"
        )
        data = load_lfw(faces, pathlib.Path(settings.VAR_DIR) / "cache")
        self.stdout.write(
            f"LFW: {len(data.gallery)} gallery rows, {len(data.probes)} probes, "
            f"PCA 32/64 comps explain {data.basis.explained_variance(32):.1%}/"
            f"{data.basis.explained_variance(64):.1%}; within/between variance "
            f"{data.within.sum():.3f}/{data.between.sum():.3f}"
        )
        sizes = [int(s) for s in o["sizes"].split(",") if s]
        blocks = []
        for n in sizes:
            blocks.append(self.run_size(n, data, o))
        if not o["no_write"]:
            from bench._report import write_section

            write_section("search", self.markdown(blocks, data, o))
            self.stdout.write("wrote BENCHMARKS.md section 'search'")

    # -----------------------------------------------------------------------------------------

    def run_size(self, n: int, data: Data, o: dict) -> dict:
        schema = o["schema"]
        table = TemplateTable(f"{schema}.templates")
        rng = np.random.default_rng(o["seed"] + n)
        real = data.basis.rotate(data.gallery)
        real_persons = data.gallery_labels.astype(np.int64) + 1
        n_syn = max(0, n - len(real))
        syn, syn_persons = synthesize(n_syn, data, rng)
        rows = np.concatenate([real[: min(n, len(real))], syn])
        persons = np.concatenate([real_persons[: min(n, len(real))], syn_persons])
        self.stdout.write(f"\n== {n:,} rows ({len(real)} real, {n_syn:,} synthetic) ==")

        t = time.perf_counter()
        truth_p, _ = exact_top1(rows, persons, data.basis.rotate(data.probes))
        truth_ms = (time.perf_counter() - t) * 1e3
        probe_persons = data.probe_labels.astype(np.int64) + 1
        accuracy_exact = float(np.mean(truth_p == probe_persons))
        self.stdout.write(
            f"numpy exact: {truth_ms / len(data.probes):.1f} ms/probe, "
            f"Top-1 accuracy {accuracy_exact:.2%}"
        )
        load_s, builds = self.load(table, rows, persons, o)
        del syn, rows

        probes_idx = np.arange(len(data.probes))
        if o["probes"]:
            probes_idx = np.random.default_rng(1).choice(
                len(data.probes), size=min(o["probes"], len(data.probes)), replace=False
            )
        exact_idx = probes_idx[: o["exact_probes"]]
        results: list[MethodResult] = []
        results.append(self.run_exact(table, data, exact_idx))
        if not o["no_full_hnsw"]:
            for ef in [int(x) for x in o["ef_full"].split(",") if x]:
                results.append(self.run_full_hnsw(table, data, probes_idx, ef))
        levels = tuple(int(x) for x in o["levels"].split(","))
        deltas = [float(x) for x in o["delta"].split(",") if x]
        pairs = [
            tuple(int(v) for v in (s + ":0").split(":")[:2]) for s in o["shortlist"].split(",")
        ]
        for (shortlist, ef), delta in [(p, d) for p in pairs for d in deltas]:
            for mode in o["modes"].split(","):
                params = SearchParams(
                    levels=levels,
                    delta=delta,
                    shortlist=shortlist,
                    ef_search=ef,
                    mode=mode,
                    step=o["step"],
                    half=o["half"],
                )
                results.append(self.run_staged(table, data, probes_idx, params))
            if o["levels_in_sql"]:
                params = SearchParams(
                    levels=levels,
                    delta=delta,
                    shortlist=shortlist,
                    ef_search=ef,
                    half=o["half"],
                    levels_in="sql",
                )
                results.append(self.run_staged(table, data, probes_idx, params))
        rows_out = []
        for r in results:
            idx = np.asarray(r.probe_index)
            agree = float(np.mean(np.asarray(r.top1) == truth_p[idx]))
            acc = float(np.mean(np.asarray(r.top1) == probe_persons[idx]))
            row = {
                "method": r.name,
                "p50": r.p(50),
                "p95": r.p(95),
                "agree": agree,
                "accuracy": acc,
                "n": len(idx),
                "shortlist_rows": float(np.mean(r.shortlist_rows)) if r.shortlist_rows else None,
                "rows_level2": float(np.mean(r.rows_level2)) if r.rows_level2 else None,
                "components": float(np.mean(r.components)) if r.components else None,
                "sql_ms": float(np.median(r.sql_ms)) if r.sql_ms else None,
            }
            rows_out.append(row)
            extra = ""
            if row["shortlist_rows"] is not None:
                extra = (
                    f" shortlist {row['shortlist_rows']:.0f}, level-2 rows "
                    f"{row['rows_level2']:.1f}, components read {row['components']:.0f}, "
                    f"SQL p50 {row['sql_ms']:.2f} ms"
                )
            self.stdout.write(
                f"{r.name:<48} p50 {row['p50']:8.2f} ms  p95 {row['p95']:8.2f} ms  "
                f"agree {agree:7.2%}  acc {acc:7.2%}  (n={len(idx)}){extra}"
            )
        if not o["keep"]:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return {
            "n": n,
            "real": min(n, len(real)),
            "load_s": load_s,
            "builds": builds,
            "rows": rows_out,
            "accuracy_exact": accuracy_exact,
        }

    def load(
        self, table: TemplateTable, rows: np.ndarray, persons: np.ndarray, o: dict
    ) -> tuple[float, dict[str, tuple[float, int]]]:
        """Fill the table by binary COPY and build the indexes, recording build time and size in
        `{schema}.builds` so a `--reuse` run reports them without building again."""
        schema = table.name.split(".")[0]
        d1 = int(o["levels"].split(",")[0])
        with _raw_connection() as conn:
            reuse = False
            if o["reuse"]:
                exists = conn.execute("SELECT to_regclass(%s)", [table.name]).fetchone()[0]
                count = (
                    conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
                    if exists
                    else -1
                )
                reuse = count == len(rows)
            if reuse:
                self.stdout.write("reusing the kept table")
            else:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                conn.execute(f"CREATE SCHEMA {schema}")
                conn.execute(
                    f"CREATE TABLE {schema}.builds (name text PRIMARY KEY, label text, "
                    "seconds float8, bytes int8)"
                )
                conn.execute(
                    f"CREATE TABLE {table.name} (id bigint PRIMARY KEY, "
                    "person_id bigint NOT NULL, face_id bigint NOT NULL, "
                    "gallery_id bigint NOT NULL, basis_id bigint NOT NULL, "
                    "vector vector(128) NOT NULL)"
                )
                t = time.perf_counter()
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        f"COPY {table.name} (id, person_id, face_id, gallery_id, basis_id, "
                        "vector) FROM STDIN WITH (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.set_types(["int8", "int8", "int8", "int8", "int8", "vector"])
                    for i in range(len(rows)):
                        copy.write_row(
                            (i + 1, int(persons[i]), i + 1, GALLERY_ID, BASIS_ID, rows[i])
                        )
                load_s = time.perf_counter() - t
                conn.execute(f"VACUUM ANALYZE {table.name}")
                size = conn.execute(
                    "SELECT pg_relation_size(%s::regclass)", [table.name]
                ).fetchone()[0]
                conn.execute(
                    f"INSERT INTO {schema}.builds VALUES ('table', 'table (binary COPY)', %s, %s)",
                    [load_s, size],
                )
                self.stdout.write(f"binary COPY of {len(rows):,} rows: {load_s:.1f} s")
            conn.execute(f"SET maintenance_work_mem = '{o['maintenance_work_mem']}'")
            kind = "halfvec" if o["half"] else "vector"
            specs = [
                (
                    table.index_name(d1, o["half"]),
                    f"HNSW on subvector(1..{d1})::{kind}, m {o['m']}, "
                    f"ef_construction {o['ef_construction']}",
                    table.create_index_sql(d1, o["half"], o["m"], o["ef_construction"]),
                )
            ]
            if not o["no_full_hnsw"]:
                specs.append(
                    (
                        "templates_full_hnsw",
                        f"HNSW on the full 128-d vector, m {o['full_m']}, "
                        f"ef_construction {o['full_ef_construction']}",
                        f"CREATE INDEX IF NOT EXISTS templates_full_hnsw ON {table.name} "
                        f"USING hnsw (vector vector_l2_ops) WITH (m = {o['full_m']}, "
                        f"ef_construction = {o['full_ef_construction']})",
                    )
                )
            for name, label, sql in specs:
                known = conn.execute(
                    f"SELECT 1 FROM {schema}.builds WHERE name = %s", [name]
                ).fetchone()
                if (
                    known
                    and conn.execute("SELECT to_regclass(%s)", [f"{schema}.{name}"]).fetchone()[0]
                ):
                    continue
                t = time.perf_counter()
                conn.execute(sql)
                seconds = time.perf_counter() - t
                size = conn.execute(
                    "SELECT pg_relation_size(%s::regclass)", [f"{schema}.{name}"]
                ).fetchone()[0]
                conn.execute(
                    f"INSERT INTO {schema}.builds VALUES (%s, %s, %s, %s) ON CONFLICT (name) "
                    "DO UPDATE SET label = EXCLUDED.label, seconds = EXCLUDED.seconds, "
                    "bytes = EXCLUDED.bytes",
                    [name, label, seconds, size],
                )
                self.stdout.write(f"{label}: built in {seconds:.1f} s, {size / 2**20:.0f} MiB")
            names = ["table"] + [name for name, _, _ in specs]
            builds = {
                label: (seconds, int(size))
                for name, label, seconds, size in conn.execute(
                    f"SELECT name, label, seconds, bytes FROM {schema}.builds"
                ).fetchall()
                if name in names
            }
        load_s = next((v[0] for k, v in builds.items() if k.startswith("table")), math.nan)
        return load_s, builds

    def _timed(
        self,
        name: str,
        idx: Sequence[int],
        run: Callable[[int], tuple[int, Any]],
        warmup: int = 10,
    ) -> MethodResult:
        result = MethodResult(name)
        for i in list(idx[:warmup]):
            run(int(i))
        for i in idx:
            t = time.perf_counter()
            person, stats = run(int(i))
            result.latencies.append((time.perf_counter() - t) * 1e3)
            result.top1.append(person)
            result.probe_index.append(int(i))
            if stats is not None:
                result.shortlist_rows.append(stats.shortlist_rows)
                result.rows_level2.append(
                    stats.rows_per_level[1] if len(stats.rows_per_level) > 1 else 0
                )
                result.components.append(stats.components_read)
                result.sql_ms.append(stats.sql_ms)
        return result

    def run_exact(self, table: TemplateTable, data: Data, idx: np.ndarray) -> MethodResult:
        queries = data.basis.rotate(data.probes)

        def run(i: int) -> tuple[int, Any]:
            with connection.cursor() as cursor:
                # One message, one implicit transaction: the setting ends with it.
                cursor.execute(
                    "SELECT set_config('enable_indexscan', 'off', true); "
                    f"SELECT person_id FROM {table.name} ORDER BY vector <-> %s::vector LIMIT 1",
                    [vector_literal(queries[i])],
                )
                cursor.nextset()
                return int(cursor.fetchone()[0]), None

        return self._timed("exact (sequential scan)", idx, run, warmup=2)

    def run_full_hnsw(
        self, table: TemplateTable, data: Data, idx: np.ndarray, ef: int
    ) -> MethodResult:
        queries = data.basis.rotate(data.probes)

        def run(i: int) -> tuple[int, Any]:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true); "
                    f"SELECT person_id FROM {table.name} ORDER BY vector <-> %s::vector LIMIT 1",
                    [str(ef), vector_literal(queries[i])],
                )
                cursor.nextset()
                return int(cursor.fetchone()[0]), None

        return self._timed(f"plain HNSW, full 128-d, ef_search {ef}", idx, run)

    def run_staged(
        self, table: TemplateTable, data: Data, idx: np.ndarray, params: SearchParams
    ) -> MethodResult:
        bases = [(BASIS_ID, data.basis)]

        def run(i: int) -> tuple[int, Any]:
            with connection.cursor() as cursor:
                result = staged_search(
                    cursor,
                    table,
                    bases,
                    data.probes[i],
                    params,
                    gallery_ids=None,
                    top_n=1,
                    plan="hnsw",
                )
            return result.best.person_id, result.stats

        where = " (levels in SQL)" if params.levels_in == "sql" else ""
        name = (
            f"staged {params.mode}, levels {'/'.join(map(str, params.levels))}, "
            f"delta {params.delta}, shortlist {params.shortlist}, "
            f"ef_search {max(params.ef_search, params.shortlist)}{where}"
        )
        return self._timed(name, idx, run)

    # -----------------------------------------------------------------------------------------

    def markdown(self, blocks: list[dict], data: Data, o: dict) -> str:
        return "\n".join(str(b) for b in blocks)

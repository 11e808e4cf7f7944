"""Level 1 of the staged search at scale: which index finds the right shortlist, and at what cost.

Same rows as `manage.py benchmark_search` (the real LFW gallery plus synthetic identities, same
seed, so the same 1M rows), in a throw-away table `bench_level1_<size>.t` (id, person, vector),
and a sample of the real LFW probes. For each index on the d_1-component prefix it times
`ORDER BY prefix <-> q LIMIT k` plus the re-rank of those k rows by the full distance, and
reports how often the re-ranked best person agrees with brute force over all rows. Each knob
value runs every probe twice, the second pass timed (a warm server).

Before the indexes it reports, in numpy, where the exact answer ranks by exact prefix distance
(templates, and person centroids as a first stage), which tells whether the shortlist or the
index's recall is the limit.

Index specs: `hnsw:M:EF_CONSTRUCTION[:half][@D1]` (knob = hnsw.ef_search) and
`ivfflat:LISTS[:half][@D1]` (knob = ivfflat.probes); @D1 overrides --d1 for that index. The
table and its indexes are kept for the next run (`--drop` removes them); an index that exists
already is not built again (its build time is then not reported).

Run: .venv/bin/python -m bench.bench_level1_index [--size 1000000] [--d1 48]
    [--index hnsw:32:200] [--knobs 40,64,100,200,400] [--shortlist 20] [--shuffle]
Prints the numbers and writes the `level1` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IndexSpec:
    kind: str  # "hnsw" or "ivfflat"
    params: tuple[int, ...]
    half: bool

    d1: int | None = None  # prefix length; None: --d1

    @classmethod
    def parse(cls, text: str) -> IndexSpec:
        text, _, d1 = text.partition("@")
        parts = text.split(":")
        half = parts[-1] == "half"
        numbers = tuple(int(p) for p in parts[1 : len(parts) - half])
        if {"hnsw": 2, "ivfflat": 1}.get(parts[0]) == len(numbers):
            return cls(parts[0], numbers, half, int(d1) if d1 else None)
        raise ValueError(
            f"bad index spec {text!r}: "
            "hnsw:M:EF_CONSTRUCTION[:half][@D1] or ivfflat:LISTS[:half][@D1]"
        )

    def name(self, d1: int) -> str:
        return (
            f"ix_{self.kind}_{'_'.join(map(str, self.params))}_{d1}{'_half' if self.half else ''}"
        )

    def label(self, d1: int) -> str:
        kind = "halfvec" if self.half else "vector"
        if self.kind == "hnsw":
            return f"HNSW m {self.params[0]}, ef_construction {self.params[1]}, {d1}-d {kind}"
        return f"IVFFlat {self.params[0]} lists, {d1}-d {kind}"

    def create_sql(self, table: str, d1: int) -> str:
        kind = "halfvec" if self.half else "vector"
        expr = f"(subvector(vector, 1, {d1})::{kind}({d1}))"
        with_ = (
            f"m = {self.params[0]}, ef_construction = {self.params[1]}"
            if self.kind == "hnsw"
            else f"lists = {self.params[0]}"
        )
        return (
            f"CREATE INDEX IF NOT EXISTS {self.name(d1)} ON {table} USING {self.kind} "
            f"({expr} {kind}_l2_ops) WITH ({with_})"
        )


def prefix_ranks(
    rows: np.ndarray, persons: np.ndarray, queries: np.ndarray, truth: np.ndarray, d: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: how many templates, and how many person centroids, are nearer than the exact
    answer's (its nearest template, its centroid) over the first d components."""
    x = rows[:, :d]
    x_norm = (x.astype(np.float64) ** 2).sum(axis=1)
    ids, inverse = np.unique(persons, return_inverse=True)
    centres = np.zeros((len(ids), d))
    np.add.at(centres, inverse, x)
    centres /= np.bincount(inverse)[:, None]
    c_norm = (centres**2).sum(axis=1)
    by_template, by_centre = [], []
    for q, person in zip(queries[:, :d], truth, strict=True):
        dt = x_norm - 2 * (x @ q)
        by_template.append(int((dt < dt[persons == person].min()).sum()))
        dc = c_norm - 2 * (centres @ q)
        by_centre.append(int((dc < dc[np.searchsorted(ids, person)]).sum()))
    return np.asarray(by_template), np.asarray(by_centre)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=400)
    parser.add_argument("--d1", type=int, default=48)
    parser.add_argument("--index", action="append", help="index spec (repeatable)")
    parser.add_argument("--knobs", default="40,64,100,200,400")
    parser.add_argument("--shortlist", type=int, default=20)
    parser.add_argument("--shuffle", action="store_true", help="insert rows in random order")
    parser.add_argument("--no-ranks", action="store_true", help="skip the numpy rank report")
    parser.add_argument("--drop", action="store_true", help="drop the table afterwards")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    specs = [IndexSpec.parse(s) for s in (args.index or ["hnsw:32:200"])]

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from django.conf import settings

    from faceweb.db import ensure_embedded_server

    ensure_embedded_server()  # importing the settings no longer starts the embedded database

    from recognition.index.search import _decode_vectors, vector_literal
    from recognition.management.commands import benchmark_search as B

    faces = pathlib.Path(settings.BASE_DIR).parent / "shared" / "faces" / "lfw"
    data = B.load_lfw(
        pathlib.Path(os.environ.get("FACEWEB_FACES_DIR_LFW", faces)), settings.VAR_DIR / "cache"
    )
    real = data.basis.rotate(data.gallery)
    syn, syn_persons, _ = B.synthesize(
        args.size - len(real), data, np.random.default_rng(args.size)
    )
    rows = np.concatenate([real, syn])
    persons = np.concatenate([data.gallery_labels.astype(np.int64) + 1, syn_persons])
    if args.shuffle:
        order = np.random.default_rng(5).permutation(len(rows))
        rows, persons = rows[order], persons[order]
    probe_idx = np.random.default_rng(1).choice(len(data.probes), args.probes, replace=False)
    queries = data.basis.rotate(data.probes)[probe_idx]
    truth, _ = B.exact_top1(rows, persons, queries)
    lines = [
        "## Level-1 index at scale (`python -m bench.bench_level1_index`)",
        "",
        f"`python -m bench.bench_level1_index {' '.join(sys.argv[1:] if argv is None else argv)}`"
        f" ({time.strftime('%Y-%m-%d')}): {args.size:,} rows (the real LFW gallery first, then "
        f"synthetic identities{', inserted in random order' if args.shuffle else ''}; the rows of "
        f"`benchmark_search`), {len(queries)} real probes, shortlist {args.shortlist}. "
        "Agreement: the re-ranked shortlist's best person is brute force's.",
        "",
    ]
    if not args.no_ranks:
        lines += [
            (
                "| components | exact answer's template within the k nearest prefixes, "
                "k = 5 / 10 / 20 / 32 | its person's centroid within the k nearest centroids, "
                "k = 10 / 32 |"
            ),
            "|---|---|---|",
        ]
        for d in (32, 48, 64):
            by_t, by_c = prefix_ranks(rows, persons, queries, truth, d)
            lines.append(
                f"| {d} | "
                + " / ".join(f"{np.mean(by_t < k):.2%}" for k in (5, 10, 20, 32))
                + " | "
                + " / ".join(f"{np.mean(by_c < k):.2%}" for k in (10, 32))
                + " |"
            )
            print(lines[-1], flush=True)
        lines.append("")

    schema = f"bench_level1_{args.size}{'_shuffled' if args.shuffle else ''}"
    table = f"{schema}.t"
    lines += [
        "| index | build s | MiB | knob | p50 ms | p95 ms | agreement |",
        "|---|---|---|---|---|---|---|",
    ]
    with B._raw_connection() as conn:
        if not conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(
                f"CREATE TABLE {table} "
                "(id bigint PRIMARY KEY, person_id bigint, vector vector(128))"
            )
            with (
                conn.cursor() as cur,
                cur.copy(
                    f"COPY {table} (id, person_id, vector) FROM STDIN WITH (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["int8", "int8", "vector"])
                for i in range(len(rows)):
                    copy.write_row((i + 1, int(persons[i]), rows[i]))
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("SET maintenance_work_mem = '4GB'")
        shared = conn.execute("SELECT current_setting('shared_buffers')").fetchone()[0]
        lines[2] += f" shared_buffers {shared}."
        for spec in specs:
            d1 = spec.d1 or args.d1
            # One index at a time: the planner would otherwise pick among indexes on one expression.
            others = conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass "
                "AND NOT indisprimary",
                [table],
            ).fetchall()
            for (other,) in others:
                if other.split(".")[-1] != spec.name(d1):
                    conn.execute(f"DROP INDEX {other}")
            exists = conn.execute(
                "SELECT to_regclass(%s)", [f"{schema}.{spec.name(d1)}"]
            ).fetchone()[0]
            started = time.perf_counter()
            conn.execute(spec.create_sql(table, d1))
            build = "-" if exists else f"{time.perf_counter() - started:.0f}"
            size = conn.execute(
                "SELECT pg_relation_size(%s::regclass)", [f"{schema}.{spec.name(d1)}"]
            ).fetchone()[0]
            kind = "halfvec" if spec.half else "vector"
            prefix = f"(subvector(vector, 1, {d1})::{kind}({d1}))"
            sql = (
                f"SELECT person_id, vector_send(vector) FROM {table} "
                f"ORDER BY {prefix} <-> %s::{kind}({d1}) LIMIT %s"
            )
            for knob in (int(k) for k in args.knobs.split(",")):
                setting = "hnsw.ef_search" if spec.kind == "hnsw" else "ivfflat.probes"
                conn.execute(f"SET {setting} = {knob}")
                conn.execute("SET enable_seqscan = off")
                for _ in range(2):  # the first pass warms the buffers; the second is timed
                    latencies, agree = [], 0
                    for q, want in zip(queries, truth, strict=True):
                        started = time.perf_counter()
                        found = conn.execute(
                            sql, [vector_literal(q[:d1]), args.shortlist]
                        ).fetchall()
                        vectors = _decode_vectors([r[1] for r in found], rows.shape[1])
                        best = found[int(np.argmin(((vectors - q) ** 2).sum(axis=1)))][0]
                        latencies.append((time.perf_counter() - started) * 1e3)
                        agree += best == want
                lines.append(
                    f"| {spec.label(d1)} | {build} | {size / 2**20:.0f} | {setting} {knob} | "
                    f"{np.percentile(latencies, 50):.2f} | {np.percentile(latencies, 95):.2f} | "
                    f"{agree / len(queries):.2%} |"
                )
                print(lines[-1], flush=True)
                build = "-"
        if args.drop:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    if not args.no_write:
        from bench._report import write_section

        write_section("level1", "\n".join(lines))
        print("wrote BENCHMARKS.md section 'level1'")


if __name__ == "__main__":
    main()

"""The database the app runs on: PostgreSQL with pgvector, and the embedded server's tuning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connection


@pytest.mark.django_db
def test_it_runs_on_postgresql_with_pgvector_0_8() -> None:
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)


@pytest.mark.django_db
def test_pgvector_computes_128_d_distances_and_fills_the_prefix_index_on_this_cpu() -> None:
    # The embedded pgvector as shipped was compiled for AVX-512 and died (SIGILL) here on the
    # first distance of 16+ dimensions; faceweb/embedded_pgvector.py rebuilds it portably.
    a = [((i % 7) - 3) / 10 for i in range(128)]
    b = [x + (0.5 if i == 5 else 0.0) for i, x in enumerate(a)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::vector(128) <-> %s::vector(128)", [str(a), str(b)])
        assert cursor.fetchone()[0] == pytest.approx(0.5)
        cursor.execute("CREATE TEMP TABLE pgvector_probe (v vector(128))")
        cursor.execute(
            "CREATE INDEX ON pgvector_probe USING hnsw "
            "((subvector(v, 1, 48)::vector(48)) vector_l2_ops)"
        )
        cursor.execute(
            "INSERT INTO pgvector_probe SELECT %s::vector(128) FROM generate_series(1, 40)",
            [str(b)],
        )
        cursor.execute("SELECT count(*) FROM pgvector_probe ORDER BY 1 LIMIT 1")
        assert cursor.fetchone()[0] == 40


def test_it_finds_the_debian_archive_in_both_apt_formats(tmp_path: Path) -> None:
    from faceweb.embedded_pgvector import debian_mirrors

    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
    )
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://other.example/debian/\nSuites: bookworm\n"
    )
    assert debian_mirrors((tmp_path / "sources.list", tmp_path)) == [
        "http://mirror.example/debian",
        "http://other.example/debian",
    ]


@pytest.mark.django_db
@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="tunes only the embedded server")
def test_the_embedded_server_has_the_configured_shared_buffers() -> None:
    wanted = os.environ.get("FACEWEB_PG_SHARED_BUFFERS", "1GB")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setting::bigint * 8192 = pg_size_bytes(%s) FROM pg_settings "
            "WHERE name = 'shared_buffers'",
            [wanted],
        )
        assert cursor.fetchone()[0]


@pytest.mark.django_db
@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="tunes only the embedded server")
def test_a_busy_server_keeps_its_buffers_and_the_last_wish_wins_at_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.conf import settings

    from faceweb.db import start_embedded_server

    def setting() -> tuple[str, bool]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_size_pretty(setting::bigint * 8192), pending_restart "
                "FROM pg_settings WHERE name = 'shared_buffers'"
            )
            return cursor.fetchone()

    running, pending = setting()
    assert not pending
    pgdata = settings.VAR_DIR / "pgdata"
    # This test's own connection is open, so neither call may restart the server.
    monkeypatch.setenv("FACEWEB_PG_SHARED_BUFFERS", "2GB" if running != "2048 MB" else "1GB")
    start_embedded_server(pgdata)
    assert setting() == (running, True)
    monkeypatch.setenv("FACEWEB_PG_SHARED_BUFFERS", running.replace(" ", ""))
    start_embedded_server(pgdata)
    assert setting() == (running, False)

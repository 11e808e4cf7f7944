"""The database the app runs on: PostgreSQL with pgvector, and the embedded server's tuning."""

from __future__ import annotations

import os

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

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

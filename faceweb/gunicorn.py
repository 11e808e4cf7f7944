"""gunicorn settings for `./dev run` and the Docker image (`gunicorn -c python:faceweb.gunicorn`).

Sync workers: one request at a time per process, so each process holds at most one database
connection (CONN_MAX_AGE reuses it) and the connection count stays flat under any load.
"""

from __future__ import annotations

import multiprocessing
import os

bind = os.environ.get("FACEWEB_BIND", "127.0.0.1:8000")
# The usual 2 x cores + 1, capped: search by face loads the models in every process.
workers = int(os.environ.get("FACEWEB_WEB_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 9)))
worker_class = "sync"
# An upload of many large files is one long request.
timeout = int(os.environ.get("FACEWEB_WEB_TIMEOUT", 120))
graceful_timeout = 30
keepalive = 5
# A worker is replaced after this many requests (bounds slow memory growth).
max_requests = 2000
max_requests_jitter = 200
# Behind a proxy on another host, list its address so X-Forwarded-* is believed.
forwarded_allow_ips = os.environ.get("FACEWEB_FORWARDED_ALLOW_IPS", "127.0.0.1")
# "-": standard output; empty: no access log.
accesslog = os.environ.get("FACEWEB_ACCESS_LOG", "-") or None
errorlog = "-"
limit_request_line = 8190

"""Counting failed sign-ins and key checks per client, in the `throttle` cache (shared by every
web process: PostgreSQL by default, Redis when FACEWEB_CACHE_URL names one)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The client's address: the peer, or behind a proxy we trust (FACEWEB_PROXY_SSL_HEADER) the
    address that proxy added last to X-Forwarded-For (earlier entries are the client's word).
    Without that, every user behind the proxy would share one address and one limit."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded and forwarded[-1]:
            return forwarded[-1]
    return str(request.META.get("REMOTE_ADDR") or "unknown")


@dataclass(frozen=True)
class Throttle:
    name: str
    limit: int
    window_seconds: int

    def _key(self, subject: str) -> str:
        # Hashing keeps odd characters of a user name out of the cache key.
        return f"throttle:{self.name}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"

    def blocked(self, subject: str) -> bool:
        return int(caches["throttle"].get(self._key(subject), 0)) >= self.limit

    def fail(self, subject: str) -> None:
        cache = caches["throttle"]
        key = self._key(subject)
        # add() starts the count; each later failure within the cache's timeout adds to it.
        if not cache.add(key, 1, timeout=self.window_seconds):
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, timeout=self.window_seconds)

    def reset(self, subject: str) -> None:
        caches["throttle"].delete(self._key(subject))

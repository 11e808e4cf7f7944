"""The request type the views see (for the type checker), and the one strict reading of ids
that requests carry."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class AuthedRequest(HttpRequest):
    """A request that passed `login_required`: its user is an account, never anonymous; the
    django-htmx middleware adds `htmx`."""

    user: User
    htmx: HtmxDetails


# ASCII digits only: str.isdigit() accepts "²" and other Unicode digits that int() refuses, and
# 18 digits keep every id inside PostgreSQL's bigint.
_ID = re.compile(r"[0-9]{1,18}")


def parse_id(value: str | None) -> int | None:
    """An object id (or a count) from a query string or form field; None for anything else."""
    if value is None or not _ID.fullmatch(value):
        return None
    return int(value)


def parse_ids(values: Iterable[str]) -> list[int]:
    return [pk for pk in (parse_id(v) for v in values) if pk is not None]

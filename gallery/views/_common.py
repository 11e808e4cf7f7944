"""Small helpers shared by the HTML views."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from faceweb.http import AuthedRequest


def paginate(request: AuthedRequest, items: QuerySet, per_page: int) -> Page:
    """The requested page; a bad or out-of-range `page` gives the first or last page."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


# ASCII digits only: str.isdigit() accepts "²" and other Unicode digits that int() refuses, and
# 18 digits keep every id inside PostgreSQL's bigint.
_ID = re.compile(r"[0-9]{1,18}")


def parse_id(value: str | None) -> int | None:
    """An object id from a query string or form field; None for anything else."""
    if value is None or not _ID.fullmatch(value):
        return None
    return int(value)


def parse_ids(values: Iterable[str]) -> list[int]:
    return [pk for pk in (parse_id(v) for v in values) if pk is not None]

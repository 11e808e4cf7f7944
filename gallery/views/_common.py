"""Small helpers shared by the HTML views."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from faceweb.http import AuthedRequest


def paginate(request: AuthedRequest, items: QuerySet, per_page: int) -> Page:
    """The requested page; a bad or out-of-range `page` gives the first or last page."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))

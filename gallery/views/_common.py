"""Small helpers shared by the HTML views."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.utils.http import url_has_allowed_host_and_scheme

from faceweb.http import AuthedRequest


def paginate(request: AuthedRequest, items: QuerySet, per_page: int) -> Page:
    """The requested page; a bad or out-of-range `page` gives the first or last page."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def safe_next(request: AuthedRequest, default: str) -> str:
    """The form's `next` address when it stays on this site (a page of ours, over https when
    the request came over https), else `default`: a form must not redirect to another site."""
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return back
    return default

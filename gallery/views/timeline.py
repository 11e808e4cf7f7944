"""The timeline: photos of every gallery the user can see, by month taken; search by name."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from faceweb.http import AuthedRequest
from gallery import queries
from gallery.views._common import paginate

TIMELINE_PER_PAGE = 120


@require_GET
@login_required
def timeline(request: AuthedRequest) -> HttpResponse:
    """All visible photos grouped by month of the date taken (EXIF DateTimeOriginal, else the
    upload time). `?q=`: only photos of people whose name contains it."""
    q = request.GET.get("q", "").strip()
    photos = queries.timeline_photos(request.user, name=q)
    page = paginate(request, photos, TIMELINE_PER_PAGE)
    people = queries.people_cards(request.user, name=q)[:12] if q else []
    months = queries.timeline_months(photos)
    before = 0
    for month in months:
        # The page the month starts on, for the month index's links.
        month["page"] = before // TIMELINE_PER_PAGE + 1
        before += month["count"]
    context = {"page": page, "q": q, "months": months, "people": people}
    return render(request, "gallery/timeline.html", context)

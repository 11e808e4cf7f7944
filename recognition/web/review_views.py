"""The staff review queue for faces the out-of-distribution filter rejected.

Anonymous visitors are sent to the login page; signed-in users who are not staff get 404 (the
queue does not exist for them). Decisions go through `do_review_faces`, one face at a time (htmx
swaps the row, id "review-face-<pk>") or in bulk (checkboxes, a plain POST that redirects back).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest, parse_ids
from gallery.models import Face, Gallery
from gallery.views._common import paginate, safe_next
from gallery.views.media import _file_response
from recognition.actions.review import do_review_faces
from recognition.models import ReviewDecision
from recognition.web.review_queue import (
    QueueFilters,
    access_review_face,
    is_reviewer,
    rejected_faces,
)

PER_PAGE = 24
DECISIONS = {
    "approve": ReviewDecision.Decision.APPROVE,
    "reject": ReviewDecision.Decision.REJECT,
}


def staff_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: AuthedRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_reviewer(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapper


def _back(request: AuthedRequest) -> str:
    return safe_next(request, reverse("review:review-queue"))


@require_GET
@staff_only
def review_queue(request: AuthedRequest) -> HttpResponse:
    filters = QueueFilters.from_query(request.GET.dict())
    page = paginate(request, rejected_faces(filters), PER_PAGE)
    context = {
        "page": page,
        "filters": filters,
        "galleries": Gallery.objects.filter(photos__faces__ood_status=Face.Quality.REJECTED)
        .distinct()
        .order_by("name")
        .only("pk", "name"),
    }
    if request.htmx and request.htmx.target == "review-list":
        return render(request, "recognition/_review_list.html", context)
    return render(request, "recognition/review_queue.html", context)


@require_POST
@staff_only
def review_decide(request: AuthedRequest, face_id: int) -> HttpResponse:
    face = access_review_face(request.user, face_id)
    decision = DECISIONS.get(request.POST.get("decision", ""))
    error = ""
    if decision is None:
        error = "Choose approve or confirm rejection."
    else:
        do_review_faces([face], decision, by=request.user)
        face = access_review_face(request.user, face_id)
    if request.htmx:
        return render(
            request,
            "recognition/_review_row.html",
            {"face": face, "error": error, "decided": not error},
            status=422 if error else 200,
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, _summary(decision, 1))
    return redirect(_back(request))


@require_POST
@staff_only
def review_bulk(request: AuthedRequest) -> HttpResponse:
    decision = DECISIONS.get(request.POST.get("decision", ""))
    ids = parse_ids(request.POST.getlist("face"))
    faces = list(Face.objects.filter(pk__in=ids, ood_status=Face.Quality.REJECTED))
    if decision is None:
        messages.error(request, "Choose approve or confirm rejection.")
    elif not faces:
        messages.warning(request, "Select at least one face.")
    else:
        changed = do_review_faces(faces, decision, by=request.user)
        messages.success(request, _summary(decision, len(changed)))
    return redirect(_back(request))


@require_GET
@staff_only
def review_image(request: AuthedRequest, face_id: int, kind: str) -> HttpResponse:
    """The face crop or its whole photo, for reviewers who are not members of the gallery."""
    face = access_review_face(request.user, face_id)
    stored = face.crop if kind == "crop" else (face.photo.preview or face.photo.original)
    if not stored:
        raise Http404("No such file.")
    detected = face.photo.content_type if stored.name == face.photo.original.name else ""
    return _file_response(stored.name, "", detected)


def _summary(decision: str, count: int) -> str:
    noun = f"{count} face{'s' if count != 1 else ''}"
    if decision == ReviewDecision.Decision.APPROVE:
        return f"Approved {noun}: they are matched and can become templates."
    return f"Confirmed the rejection of {noun}."

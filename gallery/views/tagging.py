"""Reviewing what the matcher proposed: confirm / "not this person" (one at a time or in bulk),
the "who is unknown" page that names a whole group at once, merges with undo, hiding people.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError
from django.db.models import Q, QuerySet
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest
from gallery import queries
from gallery.access import AnyUser, access_face, access_merge, access_person, writable_galleries
from gallery.actions.common import ActionError
from gallery.actions.people import do_get_or_create_person, do_hide_person
from gallery.models import Face
from gallery.views._common import paginate
from gallery.views.faces import _face_response
from recognition.actions.identity import (
    do_confirm_suggestion,
    do_confirm_suggestions,
    do_merge_people,
    do_reject_suggestion,
    do_reject_suggestions,
    do_tag_faces,
    do_undo_merge,
)

SUGGESTIONS_PER_PAGE = 60
# The unknown page clusters at most this many faces (newest first): a few hundred faces
# cluster in well under a second, and nobody names more groups than that in one sitting.
UNKNOWN_LIMIT = 600
UNKNOWN_GROUPS_SHOWN = 60


def pending_faces(user: AnyUser) -> QuerySet[Face]:
    """Faces waiting for a decision (automatic tags and suggestions) that the user may change."""
    return (
        Face.objects.filter(photo__gallery__in=writable_galleries(user).values("pk"))
        .filter(
            Q(person__isnull=False, assignment=Face.Assignment.SUGGESTED)
            | Q(person__isnull=True, suggested_person__isnull=False)
        )
        .select_related("photo", "photo__gallery", "person", "suggested_person")
        .order_by("match_distance", "id")
    )


def _selected_faces(request: AuthedRequest) -> list[Face]:
    ids = [int(v) for v in request.POST.getlist("face") if v.isdigit()]
    return list(
        Face.objects.filter(
            pk__in=ids, photo__gallery__in=writable_galleries(request.user).values("pk")
        ).select_related("photo", "photo__gallery", "person", "suggested_person")
    )


def _single_response(request: AuthedRequest, face: Face, error: str = "") -> HttpResponse:
    """The photo page's face card, or the suggestion card when the suggestions list asked."""
    face, role = access_face(request.user, face.pk)
    if request.POST.get("view") == "suggestion" and request.htmx:
        return render(
            request,
            "gallery/_suggestion.html",
            {"face": face, "error": error, "done": True},
            status=422 if error else 200,
        )
    return _face_response(request, face, role, error=error)


@require_POST
@login_required
def face_confirm(request: AuthedRequest, face_id: int) -> HttpResponse:
    face, _ = access_face(request.user, face_id, for_write=True)
    try:
        do_confirm_suggestion(face, by=request.user)
    except ActionError as exc:
        return _single_response(request, face, str(exc))
    except IntegrityError:
        return _single_response(
            request, face, "Someone else tagged this photo at the same time; try again."
        )
    return _single_response(request, face)


@require_POST
@login_required
def face_reject(request: AuthedRequest, face_id: int) -> HttpResponse:
    face, _ = access_face(request.user, face_id, for_write=True)
    try:
        do_reject_suggestion(face, by=request.user)
    except ActionError as exc:
        return _single_response(request, face, str(exc))
    return _single_response(request, face)


@require_GET
@login_required
def suggestion_list(request: AuthedRequest) -> HttpResponse:
    faces = pending_faces(request.user)
    person = None
    if request.GET.get("person", "").isdigit():
        person, _ = access_person(request.user, int(request.GET["person"]))
        faces = faces.filter(Q(person=person) | Q(suggested_person=person))
    page = paginate(request, faces, SUGGESTIONS_PER_PAGE)
    return render(request, "gallery/suggestions.html", {"page": page, "person": person})


@require_POST
@login_required
def suggestion_bulk(request: AuthedRequest) -> HttpResponse:
    faces = _selected_faces(request)
    action = request.POST.get("action")
    if not faces:
        messages.warning(request, "Select at least one face.")
    elif action == "confirm":
        done, errors = do_confirm_suggestions(faces, by=request.user)
        messages.success(request, f"Confirmed {len(done)} face{'s' if len(done) != 1 else ''}.")
        for face, error in errors:
            messages.error(request, f"Face {face.pk}: {error}")
    elif action == "reject":
        done, errors = do_reject_suggestions(faces, by=request.user)
        messages.success(
            request,
            f"Rejected {len(done)} suggestion{'s' if len(done) != 1 else ''}; "
            "they will not be offered again.",
        )
        for face, error in errors:
            messages.error(request, f"Face {face.pk}: {error}")
    else:
        messages.error(request, "Choose confirm or reject.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("gallery:suggestion-list")
    return redirect(back)


@dataclass
class UnknownGroup:
    key: str
    faces: list[Face]
    suggested_name: str


def unknown_groups(user: AnyUser) -> tuple[list[UnknownGroup], int]:
    """Unknown trusted faces of the user's own library, grouped by likely identity.

    Returns the groups (largest first) and how many unknown faces there are in all.
    """
    from gallery.models import trusted_q
    from recognition.core.calibration import thresholds
    from recognition.core.matching import cluster_faces

    unknown = Face.objects.filter(
        trusted_q(),
        photo__gallery__owner=user,
        person__isnull=True,
        embedding__isnull=False,
    )
    total = unknown.count()
    faces = list(
        unknown.select_related("photo", "suggested_person").order_by("-id")[:UNKNOWN_LIMIT]
    )
    by_version: dict[str, list[Face]] = defaultdict(list)
    for face in faces:
        by_version[face.embedder_version].append(face)
    groups: list[UnknownGroup] = []
    for version, members in by_version.items():
        try:
            limit = thresholds(version).same
        except LookupError:
            continue
        rows = cluster_faces(
            np.stack([np.asarray(f.embedding, dtype=np.float32) for f in members]),
            limit,
            photo_ids=[f.photo_id for f in members],
        )
        for rows_ in rows:
            group = [members[i] for i in rows_]
            names = Counter(f.suggested_person.name for f in group if f.suggested_person)
            top = names.most_common(1)
            groups.append(
                UnknownGroup(
                    key=f"g{group[0].pk}",
                    faces=group,
                    suggested_name=top[0][0] if top and top[0][1] * 2 > len(group) else "",
                )
            )
    groups.sort(key=lambda g: (-len(g.faces), -g.faces[0].pk))
    return groups, total


@require_GET
@login_required
def unknown_list(request: AuthedRequest) -> HttpResponse:
    groups, total = unknown_groups(request.user)
    context = {
        "groups": groups[:UNKNOWN_GROUPS_SHOWN],
        "hidden_groups": max(0, len(groups) - UNKNOWN_GROUPS_SHOWN),
        "total": total,
        "limit": UNKNOWN_LIMIT,
        "people": queries.library_people(request.user.pk),
    }
    return render(request, "gallery/unknown.html", context)


@require_POST
@login_required
def unknown_name(request: AuthedRequest) -> HttpResponse:
    """Name the selected faces of a group (faces of the user's own library only)."""
    name = request.POST.get("name", "").strip()
    faces = [f for f in _selected_faces(request) if f.photo.gallery.owner_id == request.user.pk]
    if not faces or not name:
        messages.error(request, "Select faces and type a name.")
        return redirect("gallery:unknown-list")
    try:
        person = do_get_or_create_person(request.user, name, by=request.user)
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("gallery:unknown-list")
    tagged, errors = do_tag_faces(faces, person, by=request.user)
    messages.success(
        request, f"Named {len(tagged)} face{'s' if len(tagged) != 1 else ''} {person.name}."
    )
    for face, error in errors:
        messages.warning(request, f"Face {face.pk} was skipped: {error}")
    return redirect("gallery:unknown-list")


@require_POST
@login_required
def person_merge(request: AuthedRequest, person_id: int) -> HttpResponse:
    source, _ = access_person(request.user, person_id, for_write=True)
    into = request.POST.get("into", "")
    if not into.isdigit():
        messages.error(request, "Choose the person to merge into.")
        return redirect("gallery:person-detail", person_id=source.pk)
    target, _ = access_person(request.user, int(into), for_write=True)
    try:
        do_merge_people(source, target, by=request.user)
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("gallery:person-detail", person_id=source.pk)
    messages.success(request, f"{source.name} was merged into {target.name}.")
    return redirect("gallery:person-detail", person_id=target.pk)


@require_POST
@login_required
def merge_undo(request: AuthedRequest, merge_id: int) -> HttpResponse:
    merge, _ = access_merge(request.user, merge_id, for_write=True)
    target = merge.target
    try:
        source = do_undo_merge(merge, by=request.user)
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("gallery:person-detail", person_id=target.pk)
    messages.success(request, f"{source.name} is separate from {target.name} again.")
    return redirect("gallery:person-detail", person_id=source.pk)


@require_POST
@login_required
def person_hide(request: AuthedRequest, person_id: int) -> HttpResponse:
    person, _ = access_person(request.user, person_id, for_write=True)
    hidden = request.POST.get("hidden", "1") != "0"
    do_hide_person(person, by=request.user, hidden=hidden)
    if hidden:
        messages.success(request, f"{person.name} is hidden from the people page.")
    else:
        messages.success(request, f"{person.name} is shown on the people page again.")
    return redirect("gallery:person-detail", person_id=person.pk)

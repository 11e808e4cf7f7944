"""Reviewing what the matcher proposed: confirm / "not this person" (one at a time or in bulk),
the "who is unknown" page that names a whole group at once, merges with undo, hiding people.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import IntegrityError
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest, parse_id, parse_ids
from gallery import queries
from gallery.access import access_face, access_merge, access_person, writable_galleries
from gallery.actions.common import ActionError
from gallery.actions.people import do_get_or_create_person, do_hide_person
from gallery.models import Face
from gallery.views._common import paginate, safe_next
from gallery.views.faces import _face_response
from recognition.actions.identity import (
    do_confirm_suggestion,
    do_confirm_suggestions,
    do_ignore_faces,
    do_merge_people,
    do_reject_suggestion,
    do_reject_suggestions,
    do_tag_faces,
    do_undo_merge,
)
from recognition.index.unknown import UNKNOWN_LIMIT, ignored_faces, unknown_groups

SUGGESTIONS_PER_PAGE = 60
# "Who is unknown?" shows this many groups per page (a compact grid, biggest first).
GROUPS_PER_PAGE = 24
IGNORED_PER_PAGE = 96


def _selected_faces(request: AuthedRequest) -> list[Face]:
    ids = parse_ids(request.POST.getlist("face"))
    return list(
        Face.objects.filter(
            pk__in=ids, photo__gallery__in=writable_galleries(request.user).values("pk")
        ).select_related("photo", "photo__gallery", "person", "suggested_person")
    )


def _single_response(
    request: AuthedRequest, face: Face, error: str = "", message: str = ""
) -> HttpResponse:
    """The photo page's face card, or the suggestion card when the suggestions list asked."""
    face, role = access_face(request.user, face.pk)
    if request.POST.get("view") == "suggestion" and request.htmx:
        if message and not error:
            messages.success(request, message)
        return render(
            request,
            "gallery/_suggestion.html",
            {"face": face, "error": error, "done": True},
            status=422 if error else 200,
        )
    return _face_response(request, face, role, error=error, message=message)


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
    name = face.person.name if face.person else ""
    return _single_response(request, face, message=f"Confirmed: this is {name}.")


@require_POST
@login_required
def face_reject(request: AuthedRequest, face_id: int) -> HttpResponse:
    face, _ = access_face(request.user, face_id, for_write=True)
    offered = face.person or face.suggested_person
    try:
        do_reject_suggestion(face, by=request.user)
    except ActionError as exc:
        return _single_response(request, face, str(exc))
    name = offered.name if offered else "that person"
    return _single_response(
        request, face, message=f"Noted: not {name}. It will not be suggested again."
    )


@require_GET
@login_required
def suggestion_list(request: AuthedRequest) -> HttpResponse:
    faces = queries.pending_faces(request.user)
    person = None
    person_id = parse_id(request.GET.get("person"))
    if person_id is not None:
        person, _ = access_person(request.user, person_id)
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
    return redirect(safe_next(request, reverse("gallery:suggestion-list")))


@require_GET
@login_required
def unknown_list(request: AuthedRequest) -> HttpResponse:
    """Unnamed faces of the user's own library in groups of likely one person, biggest first;
    `?show=ignored` lists the faces ignored as strangers instead."""
    if request.GET.get("show") == "ignored":
        faces = ignored_faces(request.user).order_by("-id")
        ignored: dict[str, object] = {
            "ignored": paginate(request, faces, IGNORED_PER_PAGE),
            "show": "ignored",
        }
        return render(request, "gallery/unknown.html", ignored)
    groups, total = unknown_groups(request.user)
    page = Paginator(groups, GROUPS_PER_PAGE).get_page(request.GET.get("page"))
    pages = {g.key: n for n in range(1, page.paginator.num_pages + 1) for g in _page_of(groups, n)}
    context = {
        "page": page,
        "group_pages": pages,
        "total": total,
        "limit": UNKNOWN_LIMIT,
        "ignored_count": ignored_faces(request.user).count(),
        "people": queries.library_people(request.user, request.user.pk),
        "show": "groups",
    }
    return render(request, "gallery/unknown.html", context)


def _page_of(groups: list, number: int) -> list:
    return groups[(number - 1) * GROUPS_PER_PAGE : number * GROUPS_PER_PAGE]


@require_POST
@login_required
def unknown_ignore(request: AuthedRequest) -> HttpResponse:
    """Ignore the selected faces as strangers (`ignored=0`: stop ignoring them)."""
    ignored = request.POST.get("ignored", "1") != "0"
    faces = [f for f in _selected_faces(request) if f.photo.gallery.owner_id == request.user.pk]
    back = safe_next(request, reverse("gallery:unknown-list"))
    if not faces:
        messages.warning(request, "Select at least one face.")
        return redirect(back)
    done, errors = do_ignore_faces(faces, by=request.user, ignored=ignored)
    n = len(done)
    faces_word = f"{n} face{'s' if n != 1 else ''}"
    if ignored:
        messages.success(
            request,
            f"Ignored {faces_word}: they are not matched or asked about. "
            "Find them under “Ignored faces”.",
        )
    else:
        messages.success(request, f"Stopped ignoring {faces_word}; they are matched again.")
    for face, error in errors:
        messages.warning(request, f"A face in {face.photo.original_name} was skipped: {error}")
    return redirect(back)


@require_POST
@login_required
def unknown_name(request: AuthedRequest) -> HttpResponse:
    """Name the selected faces of a group (faces of the user's own library only)."""
    name = request.POST.get("name", "").strip()
    faces = [f for f in _selected_faces(request) if f.photo.gallery.owner_id == request.user.pk]
    back = safe_next(request, reverse("gallery:unknown-list"))
    if not faces or not name:
        messages.error(request, "Select faces and type a name.")
        return redirect(back)
    try:
        person = do_get_or_create_person(request.user, name, by=request.user)
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    tagged, errors = do_tag_faces(faces, person, by=request.user)
    messages.success(
        request, f"Named {len(tagged)} face{'s' if len(tagged) != 1 else ''} {person.name}."
    )
    for face, error in errors:
        messages.warning(request, f"A face in {face.photo.original_name} was skipped: {error}")
    return redirect(back)


@require_POST
@login_required
def person_merge(request: AuthedRequest, person_id: int) -> HttpResponse:
    source, _ = access_person(request.user, person_id, for_write=True)
    into = parse_id(request.POST.get("into"))
    if into is None:
        messages.error(request, "Choose the person to merge into.")
        return redirect("gallery:person-detail", person_id=source.pk)
    target, _ = access_person(request.user, into, for_write=True)
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
        messages.success(
            request,
            f"{person.name} is hidden from the people page. Find them again under “Hidden people”.",
        )
    else:
        messages.success(request, f"{person.name} is shown on the people page again.")
    return redirect(safe_next(request, reverse("gallery:person-detail", args=[person.pk])))

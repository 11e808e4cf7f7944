"""People: the list of everyone the user can see (and the hidden ones), one person's faces,
renaming (with a merge offered for a name that is taken) and choosing a cover face."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest, parse_id
from gallery import queries
from gallery.access import Role, access_face, access_person
from gallery.actions.common import ActionError
from gallery.actions.people import (
    SameNameError,
    do_rename_person,
    do_set_cover_face,
    same_name,
)
from gallery.forms import PersonNameForm
from gallery.models import Face, Person, PersonMerge
from gallery.views._common import paginate
from recognition.actions.identity import do_delete_person
from recognition.index.unknown import unknown_groups

PEOPLE_PER_PAGE = 60
FACES_PER_PAGE = 48
# The people page shows this many of the largest unnamed groups, so naming starts there.
GROUPS_ON_PEOPLE_PAGE = 6


@require_GET
@login_required
def person_list(request: AuthedRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    hidden = request.GET.get("show") == "hidden"
    people = queries.people_cards(request.user, name=q, hidden=hidden)
    page = paginate(request, people, PEOPLE_PER_PAGE)
    groups, unknown_total = ([], 0) if hidden or q else unknown_groups(request.user)
    context = {
        "page": page,
        "q": q,
        "hidden": hidden,
        "hidden_count": queries.people_cards(request.user, hidden=True).count(),
        "groups": groups[:GROUPS_ON_PEOPLE_PAGE],
        "more_groups": max(0, len(groups) - GROUPS_ON_PEOPLE_PAGE),
        "unknown_total": unknown_total,
        "pending_count": queries.pending_faces(request.user).count(),
    }
    return render(request, "gallery/person_list.html", context)


@require_GET
@login_required
def person_detail(request: AuthedRequest, person_id: int) -> HttpResponse:
    person, role = access_person(request.user, person_id)
    faces = queries.person_faces(request.user, person).select_related("person", "suggested_person")
    page = paginate(request, faces, FACES_PER_PAGE)
    pending = queries.pending_faces(request.user).filter(
        Q(person=person) | Q(suggested_person=person)
    )
    context = {
        "person": person,
        "page": page,
        # Renaming, hiding, merging and covers change the person across the whole library.
        "can_edit": role is Role.OWNER,
        "form": PersonNameForm(initial={"name": person.name}),
        "confirmed_count": faces.filter(assignment=Face.Assignment.CONFIRMED).count(),
        "auto_count": faces.filter(assignment=Face.Assignment.SUGGESTED).count(),
        "pending_count": pending.count(),
        "merge_choices": list(
            queries.library_people(request.user, person.owner_id).exclude(pk=person.pk)
        )
        if role is Role.OWNER
        else [],
        "merges": list(
            PersonMerge.objects.filter(target=person, undone_at__isnull=True)
            .select_related("source")
            .order_by("-created_at")
        )
        if role is Role.OWNER
        else [],
        "same_name": _same_name_offer(request, person) if role is Role.OWNER else None,
    }
    return render(request, "gallery/person_detail.html", context)


def _same_name_offer(request: AuthedRequest, person: Person) -> dict | None:
    """After a rename to a taken name: the person who has it, to offer a merge."""
    name = request.GET.get("rename", "").strip()
    existing = same_name(person, name) if name else None
    return {"name": name, "existing": existing} if existing is not None else None


@require_POST
@login_required
def person_delete(request: AuthedRequest, person_id: int) -> HttpResponse:
    """The owner deletes a person with their templates and face embeddings (the faces stay)."""
    person, _ = access_person(request.user, person_id, for_write=True)
    name = person.name
    do_delete_person(person, by=request.user)
    messages.success(request, f"{name} is deleted; their faces are unnamed again.")
    return redirect("gallery:person-list")


@require_POST
@login_required
def person_rename(request: AuthedRequest, person_id: int) -> HttpResponse:
    """Rename; a name another person already has is not taken silently: the page asks whether
    they are the same person (merge) or two people who share a name (rename anyway)."""
    person, _ = access_person(request.user, person_id, for_write=True)
    form = PersonNameForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A person needs a name.")
        return redirect("gallery:person-detail", person_id=person.pk)
    previous = person.name
    try:
        do_rename_person(
            person,
            form.cleaned_data["name"],
            by=request.user,
            allow_same_name=request.POST.get("same_name") == "keep",
        )
    except SameNameError as exc:
        messages.warning(
            request,
            f"There is already a person called {exc.existing.name}. Are they the same person?",
        )
        query = urlencode({"rename": form.cleaned_data["name"].strip()})
        return redirect(reverse("gallery:person-detail", args=[person.pk]) + f"?{query}")
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("gallery:person-detail", person_id=person.pk)
    messages.success(request, f"Renamed {previous} to {person.name}.")
    return redirect("gallery:person-detail", person_id=person.pk)


@require_POST
@login_required
def person_cover(request: AuthedRequest, person_id: int) -> HttpResponse:
    """Show the chosen face for the person on the people pages."""
    person, _ = access_person(request.user, person_id, for_write=True)
    face_id = parse_id(request.POST.get("face"))
    face = access_face(request.user, face_id)[0] if face_id is not None else None
    try:
        do_set_cover_face(person, face, by=request.user)
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Chose the photo shown for {person.name}."
            if face
            else f"{person.name} is shown with their newest photo again.",
        )
    return redirect("gallery:person-detail", person_id=person.pk)

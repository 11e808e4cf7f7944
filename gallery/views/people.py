"""People: the list of everyone the user can see, and one person's faces."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest
from gallery import queries
from gallery.access import access_person
from gallery.actions.common import ActionError
from gallery.actions.people import do_rename_person
from gallery.forms import PersonNameForm
from gallery.views._common import paginate

PEOPLE_PER_PAGE = 60
FACES_PER_PAGE = 48


@require_GET
@login_required
def person_list(request: AuthedRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    page = paginate(request, queries.people_cards(request.user, name=q), PEOPLE_PER_PAGE)
    return render(request, "gallery/person_list.html", {"page": page, "q": q})


@require_GET
@login_required
def person_detail(request: AuthedRequest, person_id: int) -> HttpResponse:
    person, role = access_person(request.user, person_id)
    page = paginate(request, queries.person_faces(request.user, person), FACES_PER_PAGE)
    context = {
        "person": person,
        "page": page,
        "can_edit": role.can_write,
        "form": PersonNameForm(initial={"name": person.name}),
    }
    return render(request, "gallery/person_detail.html", context)


@require_POST
@login_required
def person_rename(request: AuthedRequest, person_id: int) -> HttpResponse:
    person, _ = access_person(request.user, person_id, for_write=True)
    form = PersonNameForm(request.POST)
    if form.is_valid():
        try:
            do_rename_person(person, form.cleaned_data["name"], by=request.user)
        except ActionError as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "A person needs a name.")
    return redirect("gallery:person-detail", person_id=person.pk)

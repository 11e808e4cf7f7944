"""Tagging a face with a person: htmx posts that return the face's fragment."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest
from gallery import queries
from gallery.access import Role, access_face, access_person
from gallery.actions.common import ActionError
from gallery.actions.people import do_get_or_create_person
from gallery.forms import TagFaceForm
from gallery.models import Face
from recognition.actions.identity import do_tag_face, do_untag_face


def _face_response(
    request: AuthedRequest,
    face: Face,
    role: Role,
    *,
    error: str = "",
    people_changed: bool = False,
) -> HttpResponse:
    """The face's fragment for htmx (with its box out of band); a redirect for a plain form."""
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(reverse("gallery:photo-detail", args=[face.photo_id]) + f"#face-{face.pk}")
    gallery = face.photo.gallery
    context = {
        "face": face,
        "photo": face.photo,
        "can_write": role.can_write,
        "error": error,
        "oob": True,
        "people": list(queries.library_people(gallery.owner_id)) if people_changed else None,
    }
    return render(request, "gallery/_face_response.html", context, status=422 if error else 200)


@require_GET
@login_required
def face_detail(request: AuthedRequest, face_id: int) -> HttpResponse:
    face, role = access_face(request.user, face_id)
    return _face_response(request, face, role)


@require_POST
@login_required
def face_tag(request: AuthedRequest, face_id: int) -> HttpResponse:
    face, role = access_face(request.user, face_id, for_write=True)
    form = TagFaceForm(request.POST)
    if not form.is_valid():
        return _face_response(request, face, role, error=" ".join(form.errors.get("__all__", [])))
    person_id, name = form.cleaned_data["person"], form.cleaned_data["name"].strip()
    try:
        # One transaction: a person typed in is not created when the tag itself is refused.
        with transaction.atomic():
            if person_id:
                person, _ = access_person(request.user, person_id)
            else:
                owner = face.photo.gallery.owner
                person = do_get_or_create_person(owner, name, by=request.user)
            do_tag_face(face, person, by=request.user)
    except ActionError as exc:
        return _face_response(request, face, role, error=str(exc))
    except IntegrityError:
        face.refresh_from_db()
        return _face_response(
            request, face, role, error="Someone else tagged this photo at the same time; try again."
        )
    # A typed name may have created a person: refresh the page's list of names.
    return _face_response(request, face, role, people_changed=not person_id)


@require_POST
@login_required
def face_untag(request: AuthedRequest, face_id: int) -> HttpResponse:
    face, role = access_face(request.user, face_id, for_write=True)
    do_untag_face(face, by=request.user)
    return _face_response(request, face, role)

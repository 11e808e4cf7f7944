"""A face on its photo: tagging it with a person, drawing one by hand, "not a face", ignoring
a stranger. htmx posts that return the face's fragment (its box out of band)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest
from gallery import queries
from gallery.access import Role, access_face, access_person, access_photo
from gallery.actions.common import ActionError
from gallery.actions.people import do_get_or_create_person
from gallery.forms import FaceBoxForm, TagFaceForm
from gallery.models import Face
from gallery.presentation import face_status
from recognition.actions.identity import do_ignore_faces, do_tag_face, do_untag_face
from recognition.actions.manual import do_mark_not_face, do_unmark_not_face
from recognition.actions.processing import do_add_face
from recognition.actions.review import do_review_faces
from recognition.models import ReviewDecision


def _face_response(
    request: AuthedRequest,
    face: Face,
    role: Role,
    *,
    error: str = "",
    message: str = "",
    people_changed: bool = False,
    added: bool = False,
) -> HttpResponse:
    """The face's fragment for htmx (with its box out of band); a redirect for a plain form.

    `added`: a new face, whose box is appended to the photo rather than swapped in."""
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif message:
            messages.success(request, message)
        return redirect(reverse("gallery:photo-detail", args=[face.photo_id]) + f"#face-{face.pk}")
    if message and not error:
        messages.success(request, message)
    gallery = face.photo.gallery
    context = {
        "face": face,
        "photo": face.photo,
        "can_write": role.can_write,
        "can_review": can_review(request, role),
        "can_ignore": role is Role.OWNER,
        "error": error,
        "oob": True,
        "added": added,
        "people": list(queries.library_people(request.user, gallery.owner_id))
        if people_changed
        else None,
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
    return _face_response(
        request, face, role, message=f"Tagged {person.name}.", people_changed=not person_id
    )


@require_POST
@login_required
def face_untag(request: AuthedRequest, face_id: int) -> HttpResponse:
    face, role = access_face(request.user, face_id, for_write=True)
    name = face.person.name if face.person else ""
    do_untag_face(face, by=request.user)
    message = f"Removed the tag {name}." if name else ""
    return _face_response(request, face, role, message=message)


def can_review(request: AuthedRequest, role: Role) -> bool:
    """ "Not a face" and "use this face" are training labels for the filter: the gallery's owner
    decides about the faces of their own photos (staff may too), not every editor."""
    return role is Role.OWNER or bool(request.user.is_staff)


def _check_review(request: AuthedRequest, role: Role) -> None:
    if not can_review(request, role):
        raise PermissionDenied("Only the gallery's owner can decide whether this is a face.")


@require_POST
@login_required
def face_not_face(request: AuthedRequest, face_id: int) -> HttpResponse:
    """ "Not a face": the box is a false detection; it disappears from the photo."""
    face, role = access_face(request.user, face_id, for_write=True)
    _check_review(request, role)
    face = do_mark_not_face(face, by=request.user)
    return _face_response(
        request, face, role, message="Removed the box: it is not a face. You can undo it."
    )


@require_POST
@login_required
def face_use(request: AuthedRequest, face_id: int) -> HttpResponse:
    """ "It is a face after all": undoes "not a face"."""
    face, role = access_face(request.user, face_id, for_write=True)
    _check_review(request, role)
    face = do_unmark_not_face(face, by=request.user)
    face.refresh_from_db()
    return _face_response(request, face, role, message="The box is back as a face.")


OVERRULES = {
    "approve": (ReviewDecision.Decision.APPROVE, "The face is used for matching."),
    "reject": (ReviewDecision.Decision.REJECT, "The face is no longer used for matching."),
}


@require_POST
@login_required
def face_overrule(request: AuthedRequest, face_id: int) -> HttpResponse:
    """The gallery's owner (or staff) overrules the filter on a face it rejected: "this face is
    fine, use it" (approve), or takes that back (reject). Recorded as a review decision, a label
    for `train_ood --include-reviews`."""
    face, role = access_face(request.user, face_id, for_write=True)
    if not can_review(request, role):
        raise PermissionDenied("Only the gallery's owner can overrule the filter on this face.")
    choice = OVERRULES.get(request.POST.get("decision", ""))
    if face.review_status == Face.Review.NOT_FACE:
        return _face_response(
            request, face, role, error="This box is marked as not a face: say it is a face first."
        )
    if face.ood_status != Face.Quality.REJECTED or choice is None:
        return _face_response(request, face, role, error="Nothing to overrule on this face.")
    decision, message = choice
    do_review_faces([face], decision, by=request.user)
    face.refresh_from_db()
    if face.is_trusted and face.person and face.assignment == Face.Assignment.CONFIRMED:
        # Only a confirmed face is a template: say so only then.
        message += f" It now helps recognise {face.person.name} in other photos."
    return _face_response(request, face, role, message=message)


@require_POST
@login_required
def face_ignore(request: AuthedRequest, face_id: int) -> HttpResponse:
    """Ignore a stranger's face (or stop ignoring it). The owner's alone, like the bulk ignore
    on "Who is unknown?": it takes the face off the owner's library-wide pages."""
    face, role = access_face(request.user, face_id, for_write=True)
    if role is not Role.OWNER:
        raise PermissionDenied("Only the gallery's owner can ignore faces as strangers.")
    ignored = request.POST.get("ignored", "1") != "0"
    _done, errors = do_ignore_faces([face], by=request.user, ignored=ignored)
    face.refresh_from_db()
    if errors:
        return _face_response(request, face, role, error=errors[0][1])
    message = (
        "Ignored: this stranger is not matched and not asked about."
        if ignored
        else "No longer ignored: the face is matched again."
    )
    return _face_response(request, face, role, message=message)


@require_POST
@login_required
def face_add(request: AuthedRequest, photo_id: int) -> HttpResponse:
    """A face drawn by hand on the photo: processed like a detected face, then shown."""
    photo, role = access_photo(request.user, photo_id, for_write=True)
    form = FaceBoxForm(request.POST)
    error = "" if form.is_valid() else "Draw a box around the face first."
    face = None
    if not error:
        try:
            face = do_add_face(photo, form.box(), by=request.user)
        except ActionError as exc:
            error = str(exc)
    if face is None:
        if request.htmx:
            response = render(request, "gallery/_draw_error.html", {"error": error}, status=422)
            response["HX-Retarget"] = "#draw-status"
            response["HX-Reswap"] = "innerHTML"
            return response
        messages.error(request, error)
        return redirect("gallery:photo-detail", photo_id=photo.pk)
    face = Face.objects.select_related("photo", "photo__gallery", "person", "suggested_person").get(
        pk=face.pk
    )
    return _face_response(
        request, face, role, message=_added_message(face), people_changed=False, added=True
    )


def _added_message(face: Face) -> str:
    status = face_status(face)
    if status.person is not None and status.state == "auto":
        return f"Face added and recognised as {status.person.name}: confirm it below."
    if status.person is not None:
        return f"Face added: maybe {status.person.name}?"
    if status.reasons:
        return f"Face added, but not used for matching: {status.reasons[0].short.lower()}."
    return "Face added. Nobody looks like it yet: type a name."

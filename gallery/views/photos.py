"""The photo page: the preview with its face boxes, and the photo's own actions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest
from gallery import queries
from gallery.access import access_photo
from gallery.actions.photos import do_delete_photo, do_requeue_photo
from gallery.models import Photo


def _neighbours(photo: Photo) -> tuple[Photo | None, Photo | None]:
    """The newer and the older photo next to this one, in the gallery grid's order."""
    same = Photo.objects.filter(gallery_id=photo.gallery_id).only("id")
    newer = (
        same.filter(
            Q(created_at__gt=photo.created_at) | Q(created_at=photo.created_at, id__gt=photo.pk)
        )
        .order_by("created_at", "id")
        .first()
    )
    older = (
        same.filter(
            Q(created_at__lt=photo.created_at) | Q(created_at=photo.created_at, id__lt=photo.pk)
        )
        .order_by("-created_at", "-id")
        .first()
    )
    return newer, older


@require_GET
@login_required
def photo_detail(request: AuthedRequest, photo_id: int) -> HttpResponse:
    photo, role = access_photo(request.user, photo_id)
    can_write = role.can_write
    faces = list(photo.faces.select_related("person", "suggested_person").order_by("left", "id"))
    newer, older = _neighbours(photo)
    context = {
        "photo": photo,
        "gallery": photo.gallery,
        "role": role,
        "can_write": can_write,
        "faces": faces,
        "people": list(queries.library_people(photo.gallery.owner_id)) if can_write else [],
        "newer": newer,
        "older": older,
    }
    return render(request, "gallery/photo_detail.html", context)


@require_POST
@login_required
def photo_delete(request: AuthedRequest, photo_id: int) -> HttpResponse:
    photo, _ = access_photo(request.user, photo_id, for_write=True)
    gallery_id, name = photo.gallery_id, photo.original_name
    do_delete_photo(photo, by=request.user)
    messages.success(request, f"Deleted {name}.")
    return redirect("gallery:gallery-detail", gallery_id=gallery_id)


@require_POST
@login_required
def photo_reprocess(request: AuthedRequest, photo_id: int) -> HttpResponse:
    photo, _ = access_photo(request.user, photo_id, for_write=True)
    if do_requeue_photo(photo):
        messages.success(request, f"{photo.original_name} is queued to be processed again.")
    else:
        messages.info(request, f"{photo.original_name} is already waiting to be processed.")
    return redirect("gallery:photo-detail", photo_id=photo.pk)

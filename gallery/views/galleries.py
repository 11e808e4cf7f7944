"""Gallery list and page, gallery settings and sharing, uploads and their progress panel."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest, parse_id
from gallery import queries
from gallery.access import Role, access_batch, access_gallery, access_member, writable_galleries
from gallery.actions.common import ActionError
from gallery.actions.galleries import (
    do_create_gallery,
    do_delete_gallery,
    do_share_gallery,
    do_unshare_gallery,
    do_update_gallery,
)
from gallery.actions.photos import do_upload_photos
from gallery.forms import GalleryForm, ShareForm
from gallery.models import Gallery, GalleryMember, Photo, UploadBatch
from gallery.views._common import paginate

GALLERIES_PER_PAGE = 24
PHOTOS_PER_PAGE = 48
# The progress panel lists at most this many photos per state; counts cover the rest.
BATCH_LIST_LIMIT = 50


@require_GET
@login_required
def gallery_list(request: AuthedRequest) -> HttpResponse:
    return _render_list(request, GalleryForm())


@require_POST
@login_required
def gallery_create(request: AuthedRequest) -> HttpResponse:
    form = GalleryForm(request.POST)
    if form.is_valid():
        try:
            gallery = do_create_gallery(
                request.user,
                form.cleaned_data["name"],
                form.cleaned_data["description"],
                form.cleaned_data["tags"],
            )
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Created the gallery {gallery.name}. Add photos below.")
            return redirect("gallery:gallery-detail", gallery_id=gallery.pk)
    return _render_list(request, form, status=400)


def _render_list(request: AuthedRequest, form: GalleryForm, status: int = 200) -> HttpResponse:
    tag = request.GET.get("tag", "").strip()
    page = paginate(request, queries.gallery_cards(request.user, tag=tag), GALLERIES_PER_PAGE)
    context = {
        "page": page,
        "tag": tag,
        "tags": queries.visible_tags(request.user),
        "form": form,
    }
    return render(request, "gallery/gallery_list.html", context, status=status)


@require_GET
@login_required
def gallery_detail(request: AuthedRequest, gallery_id: int) -> HttpResponse:
    """The gallery page; only its photo grid for htmx requests aimed at it (sorting, filtering,
    and the refresh an upload's progress panel triggers as photos finish)."""
    gallery, role = access_gallery(request.user, gallery_id)
    filters = queries.PhotoFilters.from_query(request.GET)
    page = paginate(request, queries.gallery_photos(gallery, filters), PHOTOS_PER_PAGE)
    grid = {
        "gallery": gallery,
        "page": page,
        "filters": filters,
        "can_write": role.can_write,
        "people_in_gallery": list(queries.gallery_people(gallery)),
        "sorts": [(key, label) for key, (label, _order) in queries.PhotoFilters.SORTS.items()],
        "targets": _move_targets(request, gallery) if role.can_write else [],
    }
    if request.htmx and request.htmx.target == "photo-grid":
        return render(request, "gallery/_photo_grid.html", grid)
    batches = _batches_to_show(request, gallery)
    context: dict[str, Any] = {
        **grid,
        "role": role,
        "is_owner": role is Role.OWNER,
        "batches": [_batch_context(gallery, batch) for batch in batches],
        "edit_form": _edit_form(gallery),
        "share_form": ShareForm(),
        "members": _members(gallery) if role is Role.OWNER else [],
        "max_upload_bytes": settings.FACEWEB_MAX_UPLOAD_BYTES,
    }
    return render(request, "gallery/gallery_detail.html", context)


def _move_targets(request: AuthedRequest, gallery: Gallery) -> list[Gallery]:
    """Other galleries of the same owner the user may add photos to (bulk "move to")."""
    return list(
        writable_galleries(request.user)
        .filter(owner_id=gallery.owner_id)
        .exclude(pk=gallery.pk)
        .only("id", "name")
        .order_by("name")
    )


def _batches_to_show(request: AuthedRequest, gallery: Gallery) -> list[UploadBatch]:
    """The batch named in `?batch=`, else this user's batches in this gallery still running."""
    batch_id = parse_id(request.GET.get("batch"))
    if batch_id is not None:
        return list(gallery.batches.filter(pk=batch_id))
    unfinished = [Photo.Status.QUEUED, Photo.Status.PROCESSING]
    return list(
        gallery.batches.filter(created_by_id=request.user.pk, photos__status__in=unfinished)
        .distinct()
        .order_by("-id")[:3]
    )


def _batch_context(gallery: Gallery, batch: UploadBatch) -> dict[str, Any]:
    progress = queries.batch_progress(batch)
    photos = batch.photos.only("id", "original_name", "status", "error", "batch_id")
    failed = photos.filter(status=Photo.Status.FAILED).order_by("id") if progress.failed else []
    pending = (
        photos.filter(status__in=[Photo.Status.QUEUED, Photo.Status.PROCESSING]).order_by("id")
        if not progress.finished
        else []
    )
    return {
        "gallery": gallery,
        "batch": batch,
        "progress": progress,
        "failed": list(failed[:BATCH_LIST_LIMIT]),
        "pending": list(pending[:BATCH_LIST_LIMIT]),
    }


def _edit_form(gallery: Gallery) -> GalleryForm:
    return GalleryForm(
        initial={
            "name": gallery.name,
            "description": gallery.description,
            "tags": ", ".join(gallery.tags),
        }
    )


def _members(gallery: Gallery) -> list[GalleryMember]:
    return list(gallery.members.select_related("user").order_by("user__username"))


@require_POST
@login_required
def gallery_update(request: AuthedRequest, gallery_id: int) -> HttpResponse:
    gallery, role = access_gallery(request.user, gallery_id, for_write=True)
    form = GalleryForm(request.POST)
    if form.is_valid():
        try:
            do_update_gallery(
                gallery,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                tags=form.cleaned_data["tags"],
            )
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Saved the gallery's name, description and tags.")
    if request.htmx:
        context = {
            "gallery": gallery,
            "can_write": True,
            "is_owner": role is Role.OWNER,
            "role": role,
            "edit_form": form if form.errors else _edit_form(gallery),
            "edit_open": bool(form.errors),
        }
        return render(request, "gallery/_gallery_header.html", context, status=_status(form))
    if form.errors:
        messages.error(request, _form_errors(form))
    return redirect("gallery:gallery-detail", gallery_id=gallery.pk)


@require_POST
@login_required
def gallery_delete(request: AuthedRequest, gallery_id: int) -> HttpResponse:
    gallery, _ = access_gallery(request.user, gallery_id, owner_only=True)
    name = gallery.name
    do_delete_gallery(gallery, by=request.user)
    messages.success(request, f"Deleted the gallery {name!r}.")
    return redirect("gallery:gallery-list")


@require_POST
@login_required
def gallery_share(request: AuthedRequest, gallery_id: int) -> HttpResponse:
    gallery, _ = access_gallery(request.user, gallery_id, owner_only=True)
    form = ShareForm(request.POST)
    if form.is_valid():
        user, role = form.cleaned_data["username"], form.cleaned_data["role"]
        try:
            do_share_gallery(gallery, user, role)
        except ActionError as exc:
            form.add_error("username", str(exc))
        else:
            can = "view" if role == GalleryMember.Role.VIEWER else "upload and tag"
            messages.success(request, f"{user.get_username()} can now {can} in this gallery.")
    return _members_response(request, gallery, form)


@require_POST
@login_required
def gallery_unshare(request: AuthedRequest, gallery_id: int, user_id: int) -> HttpResponse:
    member, _ = access_member(request.user, gallery_id, user_id)
    do_unshare_gallery(member.gallery, member.user)
    messages.success(request, f"Stopped sharing with {member.user.get_username()}.")
    return _members_response(request, member.gallery, ShareForm())


def _members_response(request: AuthedRequest, gallery: Gallery, form: ShareForm) -> HttpResponse:
    if request.htmx:
        context = {"gallery": gallery, "members": _members(gallery), "share_form": form}
        return render(request, "gallery/_members.html", context, status=_status(form))
    if form.errors:
        messages.error(request, _form_errors(form))
    return redirect(reverse("gallery:gallery-detail", args=[gallery.pk]) + "#sharing")


def _status(form: GalleryForm | ShareForm) -> int:
    # 422, not 400: the page's htmx config swaps a 422 fragment in, so its errors show inline.
    return 422 if form.errors else 200


def _form_errors(form: GalleryForm | ShareForm) -> str:
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


@require_POST
@login_required
def photo_upload(request: AuthedRequest, gallery_id: int) -> HttpResponse:
    """Store the files of one submission as a batch; the plain form and the drop zone post here.

    An htmx or script request gets the batch's progress panel; a plain form is redirected to the
    gallery page, which shows the panel.
    """
    gallery, _ = access_gallery(request.user, gallery_id, for_write=True)
    files = request.FILES.getlist("files")
    error = "" if files else "Choose one or more photos to upload."
    result = None
    if files:
        try:
            result = do_upload_photos(gallery, files, by=request.user)
        except ActionError as exc:
            error = str(exc)
    if result is None:
        if request.htmx:
            return render(request, "gallery/_upload_error.html", {"error": error}, status=422)
        messages.error(request, error)
        return redirect(reverse("gallery:gallery-detail", args=[gallery.pk]) + "#upload")
    if request.htmx:
        return render(request, "gallery/_batch.html", _batch_context(gallery, result.batch))
    if result.accepted:
        messages.success(request, f"Uploaded {len(result.accepted)} photo(s); processing them now.")
    if result.rejected:
        messages.error(request, f"{len(result.rejected)} file(s) were rejected; see below.")
    url = reverse("gallery:gallery-detail", args=[gallery.pk])
    return redirect(f"{url}?batch={result.batch.pk}#upload")


@require_GET
@login_required
def batch_progress(request: AuthedRequest, gallery_id: int, batch_id: int) -> HttpResponse:
    """The polled progress panel; it leaves out its polling trigger once every photo finished."""
    batch, _ = access_batch(request.user, gallery_id, batch_id)
    context = _batch_context(batch.gallery, batch)
    response = render(request, "gallery/_batch.html", context)
    seen = parse_id(request.GET.get("seen"))
    progress = context["progress"]
    if seen is not None and seen != progress.done + progress.failed:
        # More photos finished since the last poll: the page refreshes its grid.
        response["HX-Trigger"] = "photos-changed"
    return response

"""The photo page (a viewer with the photo's face boxes), the photo's own actions, its
download, and the gallery grid's bulk actions on selected photos."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import IO, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest, parse_id, parse_ids
from gallery import queries
from gallery.access import Role, access_gallery, access_photo
from gallery.actions.common import file_size
from gallery.actions.photos import (
    Requeue,
    do_delete_photo,
    do_delete_photos,
    do_move_photos,
    do_requeue_photo,
)
from gallery.models import Face, Photo
from gallery.views._common import safe_next
from gallery.views.faces import can_review
from gallery.views.media import _file_response

# A zip of more photos than this is refused: a library export is a job for the API.
MAX_ZIP_PHOTOS = 500


@require_GET
@login_required
def photo_detail(request: AuthedRequest, photo_id: int) -> HttpResponse:
    photo, role = access_photo(request.user, photo_id)
    can_write = role.can_write
    faces = list(photo.faces.select_related("person", "suggested_person").order_by("left", "id"))
    filters = queries.PhotoFilters.from_query(request.GET)
    before, after = queries.photo_neighbours(photo, filters)
    context = {
        "photo": photo,
        "gallery": photo.gallery,
        "role": role,
        "can_write": can_write,
        "can_review": can_review(request, role),
        "can_ignore": role is Role.OWNER,
        "faces": [f for f in faces if f.review_status != Face.Review.NOT_FACE],
        "not_faces": [f for f in faces if f.review_status == Face.Review.NOT_FACE],
        "people": list(queries.library_people(request.user, photo.gallery.owner_id))
        if can_write
        else [],
        "before": before,
        "after": after,
        "filters": filters,
    }
    return render(request, "gallery/photo_detail.html", context)


@require_GET
@login_required
def photo_download(request: AuthedRequest, photo_id: int) -> HttpResponse:
    """The original file as a download (Content-Disposition: attachment)."""
    photo, _ = access_photo(request.user, photo_id)
    return _file_response(
        photo.original.name or "", photo.original_name, photo.content_type, attachment=True
    )


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
    if do_requeue_photo(photo, reason=Requeue.ASKED, by=request.user):
        messages.success(request, f"{photo.original_name} is queued to be processed again.")
    else:
        messages.info(request, f"{photo.original_name} is already waiting to be processed.")
    return redirect("gallery:photo-detail", photo_id=photo.pk)


@require_POST
@login_required
def photos_bulk(request: AuthedRequest, gallery_id: int) -> HttpResponseBase:
    """Selected photos of the gallery grid: download them as one zip, move or delete them."""
    action = request.POST.get("action", "")
    gallery, _ = access_gallery(request.user, gallery_id, for_write=action in {"move", "delete"})
    ids = parse_ids(request.POST.getlist("photo"))
    photos = list(
        Photo.objects.filter(gallery=gallery, pk__in=ids)
        .select_related("gallery")
        .order_by("-created_at", "-id")
    )
    back = safe_next(request, reverse("gallery:gallery-detail", args=[gallery.pk]))
    if not photos:
        messages.warning(request, "Select at least one photo first.")
        return redirect(back)
    if action == "download":
        if len(photos) > MAX_ZIP_PHOTOS:
            messages.error(request, f"Select at most {MAX_ZIP_PHOTOS} photos for one download.")
            return redirect(back)
        total, limit = sum(p.size_bytes for p in photos), settings.FACEWEB_MAX_ZIP_BYTES
        if total > limit:
            messages.error(
                request,
                f"Those photos are {file_size(total)} together; one download can hold at most "
                f"{file_size(limit)}. Select fewer photos.",
            )
            return redirect(back)
        return _zip_response(photos, f"{gallery.name}.zip")
    if action == "delete":
        deleted = do_delete_photos(photos, by=request.user)
        messages.success(request, f"Deleted {_count(deleted)}.")
    elif action == "move":
        target_id = parse_id(request.POST.get("target"))
        if target_id is None:
            messages.error(request, "Choose the gallery to move the photos to.")
            return redirect(back)
        target, _ = access_gallery(request.user, target_id, for_write=True)
        result = do_move_photos(photos, target, by=request.user)
        if result.moved:
            messages.success(request, f"Moved {_count(len(result.moved))} to {target.name}.")
        for photo, why in result.skipped:
            messages.warning(request, f"{photo.original_name} was not moved: {why}.")
    else:
        messages.error(request, "Choose download, move or delete.")
    return redirect(back)


def _count(n: int) -> str:
    return f"{n} photo{'s' if n != 1 else ''}"


class _Sink:
    """A write-only file for zipfile whose bytes are handed out as they are written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _unique_names(photos: Iterable[Photo]) -> Iterator[tuple[Photo, str]]:
    used: set[str] = set()
    for photo in photos:
        path = PurePosixPath(photo.original_name or f"photo-{photo.pk}.jpg")
        name, n = path.name, 1
        while name.lower() in used:
            n += 1
            name = f"{path.stem} ({n}){path.suffix}"
        used.add(name.lower())
        yield photo, name


def _zip_stream(photos: list[Photo]) -> Iterator[bytes]:
    """The photos' originals as a zip, produced while it is sent (nothing held in memory but
    one chunk): photos are already compressed, so entries are stored."""
    sink = _Sink()
    out = cast("IO[bytes]", sink)  # zipfile writes to anything with write() and flush()
    with zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for photo, name in _unique_names(photos):
            if not photo.original.name or not default_storage.exists(photo.original.name):
                continue
            info = zipfile.ZipInfo(name, date_time=photo.created_at.timetuple()[:6])
            with (
                default_storage.open(photo.original.name, "rb") as source,
                archive.open(info, "w", force_zip64=True) as entry,
            ):
                while chunk := source.read(1 << 20):
                    entry.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def _zip_response(photos: list[Photo], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_zip_stream(photos), content_type="application/zip")
    # Any script is kept (filename*= carries it); separators and control characters are not.
    safe = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in filename)
    response["Content-Disposition"] = content_disposition_header(True, safe or "photos.zip")
    response["Cache-Control"] = "private, no-store"
    if settings.FACEWEB_MEDIA_ACCEL_PREFIX:
        # nginx must not buffer a long stream into a temporary file before sending it.
        response["X-Accel-Buffering"] = "no"
    return response

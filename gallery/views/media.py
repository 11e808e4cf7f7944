"""Stored files, served only after the same access check as the photo they belong to."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
)
from django.templatetags.static import static
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from faceweb.http import AuthedRequest
from gallery.access import access_gallery
from gallery.models import Face, Photo
from recognition.core.images import CONTENT_TYPES

# Stored names are made by gallery.models._storage_name: "<kind>/<gallery id>/<uuid hex>.<ext>".
# Anything else (a "..", a slash too many, an absolute path) is refused before any lookup.
STORED_NAME = re.compile(r"^(originals|derived)/([0-9]{1,18})/[0-9a-f]{32}\.[a-z]{3,4}$")
IMAGE_TYPES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
IMAGE_CONTENT_TYPES = frozenset(CONTENT_TYPES.values())


@require_GET
@login_required
def media(request: AuthedRequest, path: str) -> HttpResponse:
    match = STORED_NAME.match(path)
    if match is None:
        raise Http404("No such file.")
    kind, gallery_id = match.group(1), int(match.group(2))
    gallery, _ = access_gallery(request.user, gallery_id)
    download_name = ""
    content_type = ""
    if kind == "originals":
        photo = (
            Photo.objects.filter(gallery=gallery, original=path)
            .only("original_name", "content_type")
            .first()
        )
        if photo is None:
            raise Http404("No such file.")
        download_name = photo.original_name
        content_type = photo.content_type
    else:
        known = (
            Photo.objects.filter(gallery=gallery)
            .filter(Q(thumbnail=path) | Q(preview=path))
            .exists()
            or Face.objects.filter(photo__gallery=gallery, crop=path).exists()
        )
        if not known:
            raise Http404("No such file.")
    return _file_response(path, download_name, content_type)


def _file_response(
    name: str, download_name: str, detected: str = "", *, attachment: bool = False
) -> HttpResponse:
    """A stored file; `attachment`: saved by the browser as `download_name`, never shown.

    `detected`: the content type of the format found at upload (originals); derived files are
    JPEGs we wrote. Anything not a known image type is sent as a download."""
    if detected:
        content_type = detected if detected in IMAGE_CONTENT_TYPES else "application/octet-stream"
    else:
        suffix = Path(name).suffix.lower()
        content_type = (
            mimetypes.guess_type(name)[0] if suffix in IMAGE_TYPES else None
        ) or "application/octet-stream"
    prefix = settings.FACEWEB_MEDIA_ACCEL_PREFIX
    if prefix:
        # nginx sends the bytes from an `internal` location mapped onto MEDIA_ROOT.
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + name
        if attachment:
            response["Content-Disposition"] = content_disposition_header(True, download_name)
    else:
        if not default_storage.exists(name):
            raise Http404("No such file.")
        response = FileResponse(
            default_storage.open(name, "rb"),
            content_type=content_type,
            filename=download_name or None,
            as_attachment=attachment or content_type == "application/octet-stream",
        )
    # Private: a shared cache must never hand one user's photo to another.
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links to: send them to the icon."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))

"""A user's own data as a zip: the originals of their galleries' photos, with the names and
boxes of the faces in them (`faceweb.json`). Reads only."""

from __future__ import annotations

import json
import tempfile
import zipfile
from typing import IO, Any

from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db.models import Prefetch

from gallery.actions.common import clean_file_name
from gallery.models import Face, Gallery, Photo


def export_zip(user: User) -> IO[bytes]:
    """The zip in a temporary file (gone when closed), positioned at its start."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 (returned open: the response closes it)
    faces = Face.objects.select_related("person").order_by("left", "id")
    galleries = (
        Gallery.objects.filter(owner=user)
        .order_by("id")
        .prefetch_related(
            Prefetch(
                "photos",
                queryset=Photo.objects.order_by("id").prefetch_related(
                    Prefetch("faces", queryset=faces)
                ),
            )
        )
    )
    index: list[dict[str, Any]] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for gallery in galleries:
            folder = f"{gallery.pk}-{clean_file_name(gallery.name, limit=60)}"
            photos = []
            for photo in gallery.photos.all():
                member = f"{folder}/{photo.pk}-{clean_file_name(photo.original_name)}"
                stored_name = photo.original.name or ""
                if stored_name and default_storage.exists(stored_name):
                    with default_storage.open(stored_name, "rb") as stored:
                        archive.writestr(member, stored.read())
                else:
                    member = ""
                photos.append(
                    {
                        "file": member,
                        "name": photo.original_name,
                        "width": photo.width,
                        "height": photo.height,
                        "taken_at": photo.taken_at.isoformat() if photo.taken_at else None,
                        "status": photo.status,
                        "faces": [
                            {
                                "box": {
                                    "left": f.left,
                                    "top": f.top,
                                    "width": f.width,
                                    "height": f.height,
                                },
                                "person": f.person.name if f.person else None,
                                "confirmed": f.assignment == Face.Assignment.CONFIRMED,
                            }
                            for f in photo.faces.all()
                        ],
                    }
                )
            index.append(
                {
                    "gallery": gallery.name,
                    "description": gallery.description,
                    "tags": gallery.tags,
                    "photos": photos,
                }
            )
        archive.writestr(
            "faceweb.json",
            json.dumps({"user": user.get_username(), "galleries": index}, indent=2),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    out.seek(0)
    return out

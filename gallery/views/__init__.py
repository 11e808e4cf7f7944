"""HTML views, split by what they serve; `gallery/urls.py` names them all."""

from __future__ import annotations

from gallery.views.faces import face_detail, face_tag, face_untag
from gallery.views.galleries import (
    batch_progress,
    gallery_create,
    gallery_delete,
    gallery_detail,
    gallery_list,
    gallery_share,
    gallery_unshare,
    gallery_update,
    photo_upload,
)
from gallery.views.media import media
from gallery.views.people import person_delete, person_detail, person_list, person_rename
from gallery.views.photos import photo_delete, photo_detail, photo_reprocess

__all__ = [
    "batch_progress",
    "face_detail",
    "face_tag",
    "face_untag",
    "gallery_create",
    "gallery_delete",
    "gallery_detail",
    "gallery_list",
    "gallery_share",
    "gallery_unshare",
    "gallery_update",
    "media",
    "person_delete",
    "person_detail",
    "person_list",
    "person_rename",
    "photo_delete",
    "photo_detail",
    "photo_reprocess",
    "photo_upload",
]

from __future__ import annotations

from django.urls import path

from gallery import views
from gallery.views import faces, people, photos, tagging, timeline
from gallery.views.media import favicon
from recognition.web import probe_views

app_name = "gallery"

urlpatterns = [
    path("", views.gallery_list, name="gallery-list"),
    path("galleries/new/", views.gallery_create, name="gallery-create"),
    path("galleries/<int:gallery_id>/", views.gallery_detail, name="gallery-detail"),
    path("galleries/<int:gallery_id>/edit/", views.gallery_update, name="gallery-update"),
    path("galleries/<int:gallery_id>/delete/", views.gallery_delete, name="gallery-delete"),
    path("galleries/<int:gallery_id>/share/", views.gallery_share, name="gallery-share"),
    path(
        "galleries/<int:gallery_id>/share/<int:user_id>/remove/",
        views.gallery_unshare,
        name="gallery-unshare",
    ),
    path("galleries/<int:gallery_id>/upload/", views.photo_upload, name="photo-upload"),
    path(
        "galleries/<int:gallery_id>/batches/<int:batch_id>/",
        views.batch_progress,
        name="batch-progress",
    ),
    path("photos/<int:photo_id>/", views.photo_detail, name="photo-detail"),
    path("photos/<int:photo_id>/delete/", views.photo_delete, name="photo-delete"),
    path("photos/<int:photo_id>/reprocess/", views.photo_reprocess, name="photo-reprocess"),
    path("photos/<int:photo_id>/download/", photos.photo_download, name="photo-download"),
    path("photos/<int:photo_id>/faces/add/", faces.face_add, name="face-add"),
    path("galleries/<int:gallery_id>/photos/bulk/", photos.photos_bulk, name="photos-bulk"),
    path("faces/<int:face_id>/", views.face_detail, name="face-detail"),
    path("faces/<int:face_id>/tag/", views.face_tag, name="face-tag"),
    path("faces/<int:face_id>/untag/", views.face_untag, name="face-untag"),
    path("faces/<int:face_id>/not-a-face/", faces.face_not_face, name="face-not-face"),
    path("faces/<int:face_id>/use/", faces.face_use, name="face-use"),
    path("faces/<int:face_id>/overrule/", faces.face_overrule, name="face-overrule"),
    path("faces/<int:face_id>/ignore/", faces.face_ignore, name="face-ignore"),
    path("people/", views.person_list, name="person-list"),
    path("people/<int:person_id>/", views.person_detail, name="person-detail"),
    path("people/<int:person_id>/rename/", views.person_rename, name="person-rename"),
    path("people/<int:person_id>/cover/", people.person_cover, name="person-cover"),
    path("timeline/", timeline.timeline, name="timeline"),
    path("people/<int:person_id>/delete/", views.person_delete, name="person-delete"),
    path("media/<path:path>", views.media, name="media"),
    # Suggestions, "not this person", unknown faces, merges (gallery/views/tagging.py).
    path("faces/<int:face_id>/confirm/", tagging.face_confirm, name="face-confirm"),
    path("faces/<int:face_id>/not-person/", tagging.face_reject, name="face-reject"),
    path("suggestions/", tagging.suggestion_list, name="suggestion-list"),
    path("suggestions/bulk/", tagging.suggestion_bulk, name="suggestion-bulk"),
    path("people/unknown/", tagging.unknown_list, name="unknown-list"),
    path("people/unknown/name/", tagging.unknown_name, name="unknown-name"),
    path("people/unknown/ignore/", tagging.unknown_ignore, name="unknown-ignore"),
    path("people/<int:person_id>/merge/", tagging.person_merge, name="person-merge"),
    path("people/<int:person_id>/hide/", tagging.person_hide, name="person-hide"),
    path("merges/<int:merge_id>/undo/", tagging.merge_undo, name="merge-undo"),
    # Search by face (recognition/web/probe_views.py).
    path("search/", probe_views.search, name="search"),
    # Browsers ask for /favicon.ico whatever the page links to.
    path("favicon.ico", favicon),
]

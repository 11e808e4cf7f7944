"""REST API routes (mounted at /api/). Explicit paths: each names its method-to-function map."""

from __future__ import annotations

from django.urls import path

from gallery import api

app_name = "api"

galleries = api.GalleryViewSet.as_view({"get": "list", "post": "create"})
gallery = api.GalleryViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)
members = api.GalleryMemberViewSet.as_view({"get": "list", "post": "create"})
member = api.GalleryMemberViewSet.as_view({"delete": "destroy"})
gallery_photos = api.GalleryPhotoViewSet.as_view({"get": "list", "post": "create"})
batch = api.BatchViewSet.as_view({"get": "retrieve"})
photo = api.PhotoViewSet.as_view({"get": "retrieve", "delete": "destroy"})
photo_faces = api.PhotoViewSet.as_view({"get": "faces"})
face = api.FaceViewSet.as_view({"get": "retrieve"})
face_tag = api.FaceViewSet.as_view({"post": "tag"})
face_untag = api.FaceViewSet.as_view({"post": "untag"})
people = api.PersonViewSet.as_view({"get": "list", "post": "create"})
person = api.PersonViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
person_faces = api.PersonViewSet.as_view({"get": "faces"})

urlpatterns = [
    path("galleries/", galleries, name="gallery-list"),
    path("galleries/<int:gallery_id>/", gallery, name="gallery-detail"),
    path("galleries/<int:gallery_id>/members/", members, name="member-list"),
    path("galleries/<int:gallery_id>/members/<int:user_id>/", member, name="member-detail"),
    path("galleries/<int:gallery_id>/photos/", gallery_photos, name="gallery-photos"),
    path("galleries/<int:gallery_id>/batches/<int:batch_id>/", batch, name="batch-detail"),
    path("photos/<int:photo_id>/", photo, name="photo-detail"),
    path("photos/<int:photo_id>/faces/", photo_faces, name="photo-faces"),
    path("faces/<int:face_id>/", face, name="face-detail"),
    path("faces/<int:face_id>/tag/", face_tag, name="face-tag"),
    path("faces/<int:face_id>/untag/", face_untag, name="face-untag"),
    path("people/", people, name="person-list"),
    path("people/<int:person_id>/", person, name="person-detail"),
    path("people/<int:person_id>/faces/", person_faces, name="person-faces"),
]

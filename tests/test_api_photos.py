"""REST API: multi-file upload, photo listing with status, batch progress, retrieve, delete."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from gallery.models import Gallery, Photo
from tests.conftest import upload_file
from tests.factories import PhotoFactory


def test_it_uploads_many_files_and_reports_each_rejection(
    gallery: Gallery, bob_client: Client, django_capture_on_commit_callbacks: object
) -> None:
    files = [
        upload_file("obama/obama_small.jpg"),
        upload_file("obama/obama-240p.jpg"),
        SimpleUploadedFile("empty.png", b""),
    ]
    url = reverse("api:gallery-photos", args=[gallery.pk])
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = bob_client.post(url, {"files": files})
    assert response.status_code == 201
    body = response.json()
    assert [p["original_name"] for p in body["accepted"]] == ["obama_small.jpg", "obama-240p.jpg"]
    assert all(p["status"] == "queued" for p in body["accepted"])
    assert body["rejected"] == [{"name": "empty.png", "error": "the file is empty (0 bytes)"}]

    batch = bob_client.get(reverse("api:batch-detail", args=[gallery.pk, body["batch"]])).json()
    assert batch == {
        "id": body["batch"],
        "total": 2,
        "queued": 0,
        "processing": 0,
        "done": 2,
        "failed": 0,
        "finished": True,
        "rejected": body["rejected"],
    }

    listed = bob_client.get(url, {"status": "done"}).json()
    assert listed["count"] == 2
    photo = listed["results"][0]
    assert photo["width"] and photo["thumbnail_url"].startswith("http://testserver/media/derived/")
    faces = bob_client.get(reverse("api:photo-faces", args=[photo["id"]])).json()
    assert faces["count"] == 1
    face = faces["results"][0]
    assert set(face["box"]) == {"left", "top", "width", "height"}
    assert face["crop_url"] and face["ood_status"] in {"accepted", "rejected"}


def test_it_refuses_an_upload_without_files(gallery: Gallery, alice_client: Client) -> None:
    response = alice_client.post(reverse("api:gallery-photos", args=[gallery.pk]), {})
    assert response.status_code == 400
    assert "multipart field `files`" in response.json()["detail"]


def test_it_retrieves_and_deletes_a_photo(
    gallery: Gallery, alice_client: Client, django_capture_on_commit_callbacks: object
) -> None:
    photo = PhotoFactory(gallery=gallery, status=Photo.Status.FAILED, error="bad pixels")
    url = reverse("api:photo-detail", args=[photo.pk])
    data = alice_client.get(url).json()
    assert (data["status"], data["error"], data["gallery"]) == ("failed", "bad pixels", gallery.pk)
    assert data["original_url"].endswith(photo.original.name)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        assert alice_client.delete(url).status_code == 204
    assert alice_client.get(url).status_code == 404

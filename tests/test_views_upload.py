"""Uploading through the gallery page: the plain form, the script/htmx path, the polled panel."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from gallery.models import Gallery, Photo
from tests.conftest import upload_file
from tests.factories import BatchFactory, PhotoFactory

HTMX = {"HX-Request": "true"}


def test_it_uploads_with_the_plain_form_and_shows_the_batch_on_the_gallery_page(
    gallery: Gallery, bob_client: Client
) -> None:
    url = reverse("gallery:photo-upload", args=[gallery.pk])
    files = [
        upload_file("obama/obama_small.jpg"),
        SimpleUploadedFile("notes.jpg", b"plain text, not a photo"),
    ]
    response = bob_client.post(url, {"files": files}, follow=True)
    photo = gallery.photos.get()
    assert response.redirect_chain[0][0].endswith(f"?batch={photo.batch_id}#upload")
    html = response.content.decode()
    assert "Uploaded 1 photo(s); processing them now." in html
    assert f'id="batch-{photo.batch_id}"' in html
    assert 'hx-trigger="every 2s"' in html  # still queued: the panel polls
    assert "notes.jpg" in html and "this is not a photo in a format we take (JPEG, PNG" in html
    assert photo.original_name == "obama_small.jpg" and photo.uploaded_by.username == "bob"


def test_it_asks_for_files_when_none_were_sent(gallery: Gallery, alice_client: Client) -> None:
    url = reverse("gallery:photo-upload", args=[gallery.pk])
    response = alice_client.post(url, {}, headers=HTMX)
    assert response.status_code == 422
    assert b"Choose one or more photos to upload." in response.content
    plain = alice_client.post(url, {}, follow=True)
    assert b"Choose one or more photos to upload." in plain.content


def test_it_processes_an_htmx_upload_and_the_panel_stops_polling_when_done(
    gallery: Gallery, alice_client: Client, django_capture_on_commit_callbacks: object
) -> None:
    url = reverse("gallery:photo-upload", args=[gallery.pk])
    whole = upload_file("biden/biden.jpg").read()
    broken = SimpleUploadedFile("broken.jpg", whole[: len(whole) // 2])
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = alice_client.post(
            url, {"files": [upload_file("obama/obama_small.jpg"), broken]}, headers=HTMX
        )
    panel = response.content.decode()
    assert '<section class="batch card"' in panel
    assert 'hx-trigger="every 2s"' in panel  # rendered before the task ran

    done = gallery.photos.get(original_name="obama_small.jpg")
    failed = gallery.photos.get(original_name="broken.jpg")
    assert done.status == Photo.Status.DONE and done.faces.count() == 1
    assert failed.status == Photo.Status.FAILED and "truncated or corrupt" in failed.error

    final = alice_client.get(
        reverse("gallery:batch-progress", args=[gallery.pk, done.batch_id]), headers=HTMX
    ).content.decode()
    assert "hx-trigger" not in final and "hx-get" not in final
    assert "Upload processed" in final and "2 accepted · 1 done" in final
    assert "broken.jpg" in final and "truncated or corrupt" in final

    grid = alice_client.get(reverse("gallery:gallery-detail", args=[gallery.pk])).content.decode()
    assert "1 face</span>" in grid and 'title="the image data is truncated' in grid


def test_it_keeps_polling_while_any_photo_is_unfinished(
    gallery: Gallery, alice_client: Client
) -> None:
    batch = BatchFactory(gallery=gallery)
    PhotoFactory(gallery=gallery, batch=batch, status=Photo.Status.DONE)
    PhotoFactory(gallery=gallery, batch=batch, status=Photo.Status.PROCESSING)
    url = reverse("gallery:batch-progress", args=[gallery.pk, batch.pk])
    html = alice_client.get(url).content.decode()
    # `seen`: how many had finished, so the next poll can tell the page to refresh its grid.
    assert f'hx-get="{url}?seen=1" hx-trigger="every 2s" hx-swap="outerHTML"' in html
    assert 'aria-valuenow="50"' in html


def test_it_shows_a_running_batch_on_the_gallery_page_without_a_query_string(
    gallery: Gallery, alice_client: Client
) -> None:
    batch = BatchFactory(gallery=gallery)
    PhotoFactory(gallery=gallery, batch=batch, status=Photo.Status.QUEUED)
    html = alice_client.get(reverse("gallery:gallery-detail", args=[gallery.pk])).content.decode()
    assert f'id="batch-{batch.pk}"' in html


def test_it_hides_another_gallerys_batch(gallery: Gallery, alice_client: Client) -> None:
    other = BatchFactory(gallery__owner=gallery.owner)
    url = reverse("gallery:batch-progress", args=[gallery.pk, other.pk])
    assert alice_client.get(url).status_code == 404

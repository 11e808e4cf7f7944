"""Galleries and photos: sorting and filtering the grid, the grid refreshing as uploads finish,
face-centred thumbnails, selected photos downloaded as a zip / moved / deleted, the download
button, the timeline by month taken and finding photos by a person's name."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse

from gallery.actions.people import do_create_person
from gallery.models import Face, FaceEvent, Gallery, GalleryMember, Photo
from gallery.templatetags.gallery_extras import thumb_focus
from recognition.actions.identity import do_tag_face
from recognition.models import Template
from tests.factories import (
    BatchFactory,
    FaceFactory,
    GalleryFactory,
    PersonFactory,
    PhotoFactory,
    face_in_new_photo,
)

HTMX_GRID = {"HX-Request": "true", "HX-Target": "photo-grid"}


def _when(year: int, month: int, day: int = 1) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def _grid_ids(response: object) -> list[int]:
    return [p.pk for p in response.context["page"]]  # type: ignore[attr-defined]


def test_it_sorts_and_filters_the_grid(alice: User, alice_client: Client) -> None:
    gallery = GalleryFactory.create(owner=alice)
    old = PhotoFactory.create(gallery=gallery, taken_at=_when(2001, 5))
    new = PhotoFactory.create(gallery=gallery, taken_at=_when(2020, 1))
    undated = PhotoFactory.create(gallery=gallery)  # uploaded now: its date is the upload time
    ann = PersonFactory.create(owner=alice, name="Ann")
    FaceFactory.create(photo=old, person=ann, assignment=Face.Assignment.CONFIRMED)
    FaceFactory.create(photo=new)  # an unknown face
    FaceFactory.create(
        photo=undated, assignment=Face.Assignment.IGNORED
    )  # a stranger: not "unknown"
    url = reverse("gallery:gallery-detail", args=[gallery.pk])

    assert _grid_ids(alice_client.get(url)) == [undated.pk, new.pk, old.pk]
    assert _grid_ids(alice_client.get(url, {"sort": "taken-oldest"})) == [
        old.pk,
        new.pk,
        undated.pk,
    ]
    assert _grid_ids(alice_client.get(url, {"person": ann.pk})) == [old.pk]
    assert _grid_ids(alice_client.get(url, {"unknown": "1"})) == [new.pk]

    fragment = alice_client.get(url, {"sort": "taken"}, headers=HTMX_GRID)
    html = fragment.content.decode()
    assert html.lstrip().startswith('<section id="photo-grid"') and "<html" not in html
    assert _grid_ids(fragment) == [undated.pk, new.pk, old.pk]
    assert 'hx-trigger="photos-changed from:body"' in html
    # The photo page keeps the grid's order and filters for its previous / next links.
    photo = alice_client.get(
        reverse("gallery:photo-detail", args=[new.pk]), {"sort": "taken-oldest"}
    )
    assert (photo.context["before"], photo.context["after"]) == (old.pk, undated.pk)


def test_it_asks_the_page_to_refresh_the_grid_as_photos_finish(
    alice: User, alice_client: Client
) -> None:
    gallery = GalleryFactory.create(owner=alice)
    batch = BatchFactory.create(gallery=gallery)
    PhotoFactory.create(gallery=gallery, batch=batch)
    PhotoFactory.create(gallery=gallery, batch=batch, status=Photo.Status.QUEUED)
    url = reverse("gallery:batch-progress", args=[gallery.pk, batch.pk])
    changed = alice_client.get(url, {"seen": 0}, headers={"HX-Request": "true"})
    assert changed["HX-Trigger"] == "photos-changed"
    assert "seen=1" in changed.content.decode()  # the next poll knows what was seen
    same = alice_client.get(url, {"seen": 1}, headers={"HX-Request": "true"})
    assert "HX-Trigger" not in same


def test_it_centres_thumbnails_on_the_faces() -> None:
    portrait: Any = Photo(width=600, height=1200)
    portrait.faces_left, portrait.faces_right = 250, 350
    portrait.faces_top, portrait.faces_bottom = 100, 200  # a head near the top
    assert thumb_focus(portrait) == "50.0% 0.0%"
    portrait.faces_top, portrait.faces_bottom = 500, 700
    assert thumb_focus(portrait) == "50.0% 50.0%"
    landscape: Any = Photo(width=2000, height=1000)
    landscape.faces_left, landscape.faces_right = 1500, 1700
    landscape.faces_top, landscape.faces_bottom = 400, 600
    assert thumb_focus(landscape) == "100.0% 50.0%"
    no_faces = Photo(width=600, height=1200)
    assert thumb_focus(no_faces) == "50.0% 10.0%"  # the upper part of a portrait


def test_it_downloads_the_original_as_an_attachment(alice: User, alice_client: Client) -> None:
    photo = PhotoFactory.create(
        gallery=GalleryFactory.create(owner=alice), original_name="Beach day.jpg"
    )
    response: Any = alice_client.get(reverse("gallery:photo-download", args=[photo.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Beach day.jpg"'
    assert b"".join(response.streaming_content) == default_storage.open(photo.original.name).read()


def test_it_downloads_selected_photos_as_a_streamed_zip(
    alice: User, bob: User, bob_client: Client
) -> None:
    gallery = GalleryFactory.create(owner=alice, name="Trip")
    GalleryMember.objects.create(gallery=gallery, user=bob, role="viewer")
    a = PhotoFactory.create(gallery=gallery, original_name="same.jpg")
    b = PhotoFactory.create(gallery=gallery, original_name="same.jpg")
    PhotoFactory.create(gallery=gallery, original_name="not chosen.jpg")
    elsewhere = PhotoFactory.create(original_name="another gallery.jpg")
    response: Any = bob_client.post(
        reverse("gallery:photos-bulk", args=[gallery.pk]),
        {"action": "download", "photo": [a.pk, b.pk, elsewhere.pk]},
    )
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="Trip.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == ["same (2).jpg", "same.jpg"]
    assert archive.read("same.jpg") == default_storage.open(b.original.name).read()

    # A name in another script is sent as RFC 6266 says (it came as "=?utf-8?b?...?=", which
    # browsers save literally).
    gallery.name = "Отпуск/2019"
    gallery.save(update_fields=["name"])
    response = bob_client.post(
        reverse("gallery:photos-bulk", args=[gallery.pk]), {"action": "download", "photo": [a.pk]}
    )
    disposition = response["Content-Disposition"]
    assert (
        disposition == "attachment; filename*=utf-8''%D0%9E%D1%82%D0%BF%D1%83%D1%81%D0%BA_2019.zip"
    )


def test_it_refuses_a_zip_over_the_size_limit(
    alice: User, bob: User, bob_client: Client, settings: Any
) -> None:
    """A zip streams the originals as they are; nothing bounded how many bytes one request
    could make the server read and send."""
    settings.FACEWEB_MAX_ZIP_BYTES = 2500
    gallery = GalleryFactory.create(owner=alice, name="Trip")
    GalleryMember.objects.create(gallery=gallery, user=bob, role="viewer")
    small = [PhotoFactory.create(gallery=gallery, size_bytes=1000) for _ in range(3)]
    url = reverse("gallery:photos-bulk", args=[gallery.pk])
    response = bob_client.post(
        url, {"action": "download", "photo": [p.pk for p in small]}, follow=True
    )
    assert not getattr(response, "streaming", False)
    assert (
        "Those photos are 2.9 KB together; one download can hold at most 2.4 KB. "
        "Select fewer photos." in response.content.decode()
    )
    response = bob_client.post(url, {"action": "download", "photo": [p.pk for p in small[:2]]})
    assert response.streaming


def test_it_moves_and_deletes_selected_photos(alice: User, alice_client: Client) -> None:
    source = GalleryFactory.create(owner=alice, name="Inbox")
    target = GalleryFactory.create(owner=alice, name="Family")
    someone_elses = GalleryFactory.create(name="Not alice's")
    GalleryMember.objects.create(gallery=someone_elses, user=alice, role="editor")
    photo = PhotoFactory.create(gallery=source)
    ann = PersonFactory.create(owner=alice)
    face = FaceFactory.create(photo=photo, person=ann, assignment=Face.Assignment.CONFIRMED)
    doomed = PhotoFactory.create(gallery=source)
    url = reverse("gallery:photos-bulk", args=[source.pk])

    refused = alice_client.post(
        url, {"action": "move", "photo": [photo.pk], "target": someone_elses.pk}, follow=True
    )
    assert "belongs to another owner" in refused.content.decode()
    response = alice_client.post(
        url, {"action": "move", "photo": [photo.pk], "target": target.pk}, follow=True
    )

    assert f"Moved 1 photo to {target.name}." in response.content.decode()
    photo.refresh_from_db()
    face.refresh_from_db()
    assert photo.gallery == target and face.person == ann
    for name in (photo.original.name, photo.thumbnail.name, face.crop.name):
        assert name.split("/")[1] == str(target.pk) and default_storage.exists(name)
        media = alice_client.get(reverse("gallery:media", kwargs={"path": name}))
        assert media.status_code == 200  # access follows the new gallery
    assert FaceEvent.objects.filter(action="photo_moved", data__to=target.pk).exists()

    response = alice_client.post(url, {"action": "delete", "photo": [doomed.pk]}, follow=True)
    assert "Deleted 1 photo." in response.content.decode()
    assert not Photo.objects.filter(pk=doomed.pk).exists()


def test_it_keeps_templates_with_a_moved_photo(alice: User, alice_client: Client) -> None:
    source = GalleryFactory.create(owner=alice)
    target = GalleryFactory.create(owner=alice)
    face = face_in_new_photo(source, "obama/obama.jpg")
    do_tag_face(face, do_create_person(alice, "Obama", by=alice), by=alice)
    assert Template.objects.get(face=face).gallery_id == source.pk
    alice_client.post(
        reverse("gallery:photos-bulk", args=[source.pk]),
        {"action": "move", "photo": [face.photo_id], "target": target.pk},
    )
    assert Template.objects.get(face=face).gallery_id == target.pk


def test_it_groups_the_timeline_by_month_taken_and_finds_photos_by_name(
    alice: User, bob: User, bob_client: Client
) -> None:
    shared = GalleryFactory.create(owner=alice)
    GalleryMember.objects.create(gallery=shared, user=bob, role="viewer")
    own = GalleryFactory.create(owner=bob)
    private = GalleryFactory.create(owner=alice)
    march = [PhotoFactory.create(gallery=shared, taken_at=_when(2019, 3, d)) for d in (2, 20)]
    july = PhotoFactory.create(gallery=own, taken_at=_when(2019, 7, 4))
    PhotoFactory.create(gallery=private, taken_at=_when(2019, 3, 5))  # not bob's to see
    PhotoFactory.create(gallery=shared, status=Photo.Status.QUEUED)  # not processed yet
    ann = PersonFactory.create(owner=alice, name="Ann Smith")
    FaceFactory.create(photo=march[0], person=ann, assignment=Face.Assignment.CONFIRMED)

    response = bob_client.get(reverse("gallery:timeline"))

    assert [p.pk for p in response.context["page"]] == [july.pk, march[1].pk, march[0].pk]
    assert [(m["month"].month, m["count"]) for m in response.context["months"]] == [(7, 1), (3, 2)]
    html = response.content.decode()
    assert html.index("July 2019") < html.index("March 2019")
    assert html.count('class="timeline-month"') == 2

    found = bob_client.get(reverse("gallery:timeline"), {"q": "smith"})
    assert [p.pk for p in found.context["page"]] == [march[0].pk]
    assert "Photos of “smith”" in found.content.decode() and "Ann Smith" in found.content.decode()
    # The header's search box shows what was searched (on the timeline only).
    topsearch = found.content.decode().split('class="topsearch"')[1].split("</form>")[0]
    assert 'value="smith"' in topsearch


def test_it_serves_the_grid_within_a_query_budget(
    alice: User, alice_client: Client, django_assert_max_num_queries: object
) -> None:
    gallery: Gallery = GalleryFactory.create(owner=alice)
    for _ in range(30):
        FaceFactory.create(photo=PhotoFactory.create(gallery=gallery))
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        response = alice_client.get(reverse("gallery:gallery-detail", args=[gallery.pk]))
    assert response.content.decode().count('class="thumb status-done"') == 30
    with django_assert_max_num_queries(8):  # type: ignore[operator]
        alice_client.get(reverse("gallery:timeline"))

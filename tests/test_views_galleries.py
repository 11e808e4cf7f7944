"""Gallery list and gallery page: visibility, roles, counts, tags, sharing, deletion, budgets."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.models import Gallery, GalleryMember, Photo
from tests.factories import GalleryFactory, PhotoFactory

HTMX = {"HX-Request": "true"}


def test_it_redirects_the_landing_page_to_login_for_anonymous_visitors(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("login") + "?next=/"


def test_it_signs_in_and_out(alice: User, client: Client) -> None:
    from tests.conftest import PASSWORD

    login = client.get(reverse("login"))
    assert b'name="password"' in login.content
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("gallery:gallery-list")
    page = client.get("/")
    assert b"Sign out" in page.content and b"alice" in page.content
    assert client.post(reverse("logout")).status_code == 302
    assert client.get("/").status_code == 302


def test_it_lists_own_and_shared_galleries_with_role_counts_and_tags(
    alice: User, bob: User, charlie: User, bob_client: Client
) -> None:
    mine = GalleryFactory(owner=bob, name="Bob's own", tags=["family"])
    shared = GalleryFactory(owner=alice, name="Alice shares", tags=["beach", "2024"])
    GalleryMember.objects.create(gallery=shared, user=bob, role=GalleryMember.Role.VIEWER)
    GalleryFactory(owner=charlie, name="Charlie's secret")
    PhotoFactory.create_batch(2, gallery=shared)
    PhotoFactory(gallery=shared, status=Photo.Status.FAILED, thumbnail="", preview="")

    page = bob_client.get(reverse("gallery:gallery-list")).content.decode()

    assert "Bob&#x27;s own" in page and "Alice shares" in page
    assert "Charlie" not in page
    assert 'class="badge role-owner">owner' in page
    assert 'class="badge role-viewer">viewer' in page
    assert "3 photos" in page and "1 failed" in page and "shared by alice" in page
    for tag in ("family", "beach", "2024"):
        assert f'?tag={tag}">{tag}</a>' in page
    assert mine.pk and shared.pk


def test_it_filters_the_gallery_list_by_tag(alice: User, alice_client: Client) -> None:
    GalleryFactory(owner=alice, name="Sea", tags=["beach"])
    GalleryFactory(owner=alice, name="Hills", tags=["walks"])
    page = alice_client.get(reverse("gallery:gallery-list"), {"tag": "beach"}).content.decode()
    assert "Sea" in page and "Hills" not in page
    assert 'class="tag is-active" href="?tag=beach"' in page


def test_it_creates_a_gallery_from_the_form(alice: User, alice_client: Client) -> None:
    response = alice_client.post(
        reverse("gallery:gallery-create"),
        {"name": "  Summer  ", "description": "By the sea", "tags": "Beach, family, beach"},
    )
    gallery = Gallery.objects.get(owner=alice)
    assert response["Location"] == reverse("gallery:gallery-detail", args=[gallery.pk])
    assert (gallery.name, gallery.tags) == ("Summer", ["beach", "family"])


def test_it_shows_form_errors_when_a_gallery_has_no_name(alice_client: Client) -> None:
    response = alice_client.post(reverse("gallery:gallery-create"), {"name": ""})
    assert response.status_code == 400
    assert b"This field is required." in response.content
    assert not Gallery.objects.exists()


def test_it_keeps_the_gallery_list_within_its_query_budget(
    alice: User, bob: User, alice_client: Client, django_assert_max_num_queries: object
) -> None:
    for i in range(12):
        gallery = GalleryFactory(owner=alice if i % 2 else bob, tags=[f"t{i}"])
        GalleryMember.objects.get_or_create(gallery=gallery, user=alice if i % 2 == 0 else bob)
        PhotoFactory(gallery=gallery)
    with django_assert_max_num_queries(6):  # type: ignore[operator]
        response = alice_client.get(reverse("gallery:gallery-list"))
    assert response.content.decode().count('class="gallery-card card"') == 12


def test_it_shows_the_gallery_grid_with_pagination(
    gallery: Gallery, alice_client: Client, django_assert_max_num_queries: object
) -> None:
    PhotoFactory.create_batch(50, gallery=gallery, thumbnail="", preview="")
    with django_assert_max_num_queries(9):  # type: ignore[operator]
        first = alice_client.get(reverse("gallery:gallery-detail", args=[gallery.pk]))
    html = first.content.decode()
    assert html.count('class="thumb status-done"') == 48
    assert "Page 1 of 2" in html
    second = alice_client.get(reverse("gallery:gallery-detail", args=[gallery.pk]), {"page": 2})
    assert second.content.decode().count('class="thumb status-done"') == 2


def test_it_flags_failed_photos_in_the_grid_with_their_error(
    gallery: Gallery, alice_client: Client
) -> None:
    PhotoFactory(gallery=gallery, status=Photo.Status.FAILED, error="the file is bad", thumbnail="")
    html = alice_client.get(reverse("gallery:gallery-detail", args=[gallery.pk])).content.decode()
    assert 'title="the file is bad">could not be read</span>' in html


def test_it_shows_the_upload_form_to_editors_but_not_to_viewers(
    gallery: Gallery, bob: User, bob_client: Client
) -> None:
    url = reverse("gallery:gallery-detail", args=[gallery.pk])
    editor_page = bob_client.get(url).content.decode()
    assert 'enctype="multipart/form-data"' in editor_page
    assert 'id="sharing"' not in editor_page  # only the owner shares
    GalleryMember.objects.filter(gallery=gallery, user=bob).update(role="viewer")
    viewer_page = bob_client.get(url).content.decode()
    assert 'enctype="multipart/form-data"' not in viewer_page
    assert "Edit name, description and tags" not in viewer_page


def test_it_edits_name_and_tags_inline_with_htmx(gallery: Gallery, bob_client: Client) -> None:
    response = bob_client.post(
        reverse("gallery:gallery-update", args=[gallery.pk]),
        {"name": "Holidays 2024", "description": "", "tags": "Sea, Sun"},
        headers=HTMX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith('<header class="gallery-header" id="gallery-header">')
    assert "Holidays 2024" in html and ">sea</a>" in html and ">sun</a>" in html
    gallery.refresh_from_db()
    assert gallery.tags == ["sea", "sun"]


def test_it_shows_gallery_edit_errors_inline(gallery: Gallery, alice_client: Client) -> None:
    response = alice_client.post(
        reverse("gallery:gallery-update", args=[gallery.pk]), {"name": ""}, headers=HTMX
    )
    assert response.status_code == 422
    assert b"This field is required." in response.content
    gallery.refresh_from_db()
    assert gallery.name == "Holidays"


def test_it_shares_and_unshares_a_gallery(
    gallery: Gallery, alice_client: Client, charlie: User, bob: User
) -> None:
    share_url = reverse("gallery:gallery-share", args=[gallery.pk])
    response = alice_client.post(share_url, {"username": "charlie", "role": "viewer"}, headers=HTMX)
    assert response.status_code == 200
    assert "charlie" in response.content.decode()
    assert gallery.members.get(user=charlie).role == "viewer"

    unknown = alice_client.post(share_url, {"username": "nobody", "role": "viewer"}, headers=HTMX)
    assert unknown.status_code == 422
    assert "There is no user called &#x27;nobody&#x27;." in unknown.content.decode()

    myself = alice_client.post(share_url, {"username": "alice", "role": "editor"}, headers=HTMX)
    assert "The owner already has full access." in myself.content.decode()

    remove = alice_client.post(reverse("gallery:gallery-unshare", args=[gallery.pk, bob.pk]))
    assert remove.status_code == 302
    assert set(gallery.members.values_list("user__username", flat=True)) == {"charlie"}


def test_it_deletes_a_gallery_with_its_files(
    gallery: Gallery, alice_client: Client, django_capture_on_commit_callbacks: object
) -> None:
    photo = PhotoFactory(gallery=gallery)
    path = photo.original.path
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = alice_client.post(reverse("gallery:gallery-delete", args=[gallery.pk]))
    assert response["Location"] == reverse("gallery:gallery-list")
    assert not Gallery.objects.filter(pk=gallery.pk).exists()
    import os

    assert not os.path.exists(path)


@pytest.mark.parametrize("page", ["0", "999", "x"])
def test_it_tolerates_bad_page_numbers(gallery: Gallery, alice_client: Client, page: str) -> None:
    PhotoFactory(gallery=gallery)
    response = alice_client.get(
        reverse("gallery:gallery-detail", args=[gallery.pk]), {"page": page}
    )
    assert response.status_code == 200

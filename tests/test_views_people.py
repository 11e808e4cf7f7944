"""People list and person page: only faces in galleries the user can see, within query budgets."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.models import Face, GalleryMember
from tests.factories import FaceFactory, GalleryFactory, PersonFactory, PhotoFactory


def _tag(person: object, gallery: object, n: int) -> list[Face]:
    return [
        FaceFactory(photo=PhotoFactory(gallery=gallery), person=person, assignment="confirmed")
        for _ in range(n)
    ]


def test_it_lists_visible_people_with_counts_and_cover(
    alice: User, bob: User, charlie: User, bob_client: Client
) -> None:
    shared = GalleryFactory(owner=alice)
    private = GalleryFactory(owner=alice)
    GalleryMember.objects.create(gallery=shared, user=bob, role="viewer")
    ann = PersonFactory(owner=alice, name="Ann")
    faces = _tag(ann, shared, 2)
    _tag(ann, private, 3)  # bob cannot see these three
    PersonFactory(owner=bob, name="Bea")
    PersonFactory(owner=charlie, name="Cid")  # charlie's library: invisible to bob

    html = bob_client.get(reverse("gallery:person-list")).content.decode()

    assert "<strong>Ann</strong>" in html and "<strong>Bea</strong>" in html
    assert "Cid" not in html
    assert "2 photos · alice\u2019s library" in html
    assert reverse("gallery:media", kwargs={"path": faces[-1].crop.name}) in html


def test_it_filters_people_by_name(alice: User, alice_client: Client) -> None:
    PersonFactory(owner=alice, name="Ann")
    PersonFactory(owner=alice, name="Bob")
    html = alice_client.get(reverse("gallery:person-list"), {"q": "an"}).content.decode()
    assert "<strong>Ann</strong>" in html and "<strong>Bob</strong>" not in html


def test_it_shows_only_the_faces_the_user_can_see_on_a_person_page(
    alice: User, bob: User, bob_client: Client
) -> None:
    shared = GalleryFactory(owner=alice, name="Shared one")
    private = GalleryFactory(owner=alice, name="Private one")
    GalleryMember.objects.create(gallery=shared, user=bob, role="viewer")
    ann = PersonFactory(owner=alice, name="Ann")
    visible = _tag(ann, shared, 2)
    hidden = _tag(ann, private, 2)

    html = bob_client.get(reverse("gallery:person-detail", args=[ann.pk])).content.decode()

    assert "2 confirmed photos" in html
    for face in visible:
        assert f"#face-{face.pk}" in html
    for face in hidden:
        assert f"#face-{face.pk}" not in html
        assert face.crop.name not in html
    assert "Private one" not in html


def test_it_keeps_the_people_pages_within_their_query_budgets(
    alice: User, alice_client: Client, django_assert_max_num_queries: object
) -> None:
    gallery = GalleryFactory(owner=alice)
    people = [PersonFactory(owner=alice) for _ in range(15)]
    for person in people:
        _tag(person, gallery, 2)
    # Also counts the hidden people and the suggestions, and groups the unnamed faces.
    with django_assert_max_num_queries(10):  # type: ignore[operator]
        listing = alice_client.get(reverse("gallery:person-list"))
    assert listing.content.decode().count('class="person-card card"') == 15

    _tag(people[0], gallery, 50)
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        page = alice_client.get(reverse("gallery:person-detail", args=[people[0].pk]))
    html = page.content.decode()
    assert html.count('class="face-tile state-confirmed') == 48 and "Page 1 of 2" in html


def test_it_renames_a_person(alice: User, alice_client: Client) -> None:
    ann = PersonFactory(owner=alice, name="Ann")
    response = alice_client.post(reverse("gallery:person-rename", args=[ann.pk]), {"name": "Anne"})
    assert response.status_code == 302
    ann.refresh_from_db()
    assert ann.name == "Anne"
    alice_client.post(reverse("gallery:person-rename", args=[ann.pk]), {"name": "   "})
    ann.refresh_from_db()
    assert ann.name == "Anne"

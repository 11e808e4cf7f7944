"""The photo page: face boxes over the preview, and tagging faces with htmx posts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from gallery.models import Face, FaceEvent, GalleryMember, Person, Photo
from gallery.queries import PhotoFilters, gallery_photos, photo_neighbours
from tests.factories import FaceFactory, PersonFactory, PhotoFactory, World, make_world

HTMX = {"HX-Request": "true"}


def _world(alice: User, bob: User, role: str = GalleryMember.Role.EDITOR) -> World:
    return make_world(alice, bob, role)


def test_it_draws_each_face_box_in_percent_of_the_photo(alice: User, alice_client: Client) -> None:
    world = make_world(alice)
    # 640x480 photo; the factory's face is at (64, 48) and 160x120: 10%, 10%, 25%, 25%.
    second = FaceFactory(photo=world.photo, left=320, top=240, width=64, height=96)
    html = alice_client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()
    assert 'style="left:10.000%;top:10.000%;width:25.000%;height:25.000%"' in html
    assert 'style="left:50.000%;top:50.000%;width:10.000%;height:20.000%"' in html
    assert f'id="box-{second.pk}"' in html and f'id="face-{world.face.pk}"' in html
    assert ">Ann</span>" in html  # the named box's label
    assert reverse("gallery:media", kwargs={"path": world.photo.preview.name}) in html


def test_it_shows_each_face_with_crop_name_and_filter_status(
    alice: User, alice_client: Client
) -> None:
    world = make_world(alice)
    FaceFactory(
        photo=world.photo,
        left=400,
        ood_status=Face.Quality.REJECTED,
        ood_score=3.25,
        ood_reasons=["face 30 px, below the 40 px minimum", "blurred"],
    )
    html = alice_client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()
    assert html.count('class="face-card') == 2
    assert "<strong>Ann</strong>" in html and ">Confirmed</span>" in html
    # Plain words for everyone; the numbers behind them only for staff.
    assert ">Not used for matching</span>" in html
    assert "<li>Face is very small</li>" in html
    assert "<li>Too blurry to recognise reliably</li>" in html
    assert "score" not in html.lower() and "30 px" not in html
    assert reverse("gallery:media", kwargs={"path": world.face.crop.name}) in html
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    html = alice_client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()
    assert '<details class="staff-details">' in html and "Filter score 3.25" in html
    assert "face 30 px, below the 40 px minimum" in html


def test_it_shows_the_error_of_a_failed_photo(alice: User, alice_client: Client) -> None:
    world = make_world(alice)
    photo = PhotoFactory(
        gallery=world.gallery, status=Photo.Status.FAILED, error="the image data is truncated"
    )
    html = alice_client.get(reverse("gallery:photo-detail", args=[photo.pk])).content.decode()
    assert "This photo could not be processed:" in html
    assert "the image data is truncated" in html


def test_it_tags_a_face_with_a_new_person_by_name(
    alice: User, bob: User, bob_client: Client
) -> None:
    world = _world(alice, bob)
    face = FaceFactory(photo=world.photo, left=400)
    response = bob_client.post(
        reverse("gallery:face-tag", args=[face.pk]), {"name": " Zoë "}, headers=HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    card = f'<article class="face-card state-confirmed" id="face-{face.pk}"'
    assert html.lstrip().startswith(card)
    assert "<strong>Zoë</strong>" in html
    assert f'id="box-{face.pk}"' in html and 'hx-swap-oob="true"' in html  # the box follows
    assert '<datalist id="people-options" hx-swap-oob="true">' in html
    face.refresh_from_db()
    # The person joins the gallery owner's library, whoever typed the name.
    assert face.person.owner == alice and face.person.name == "Zoë"
    assert face.assignment == Face.Assignment.CONFIRMED and face.assigned_by == bob
    assert FaceEvent.objects.filter(face=face, action="face_tagged", user=bob).exists()


def test_it_tags_a_face_with_an_existing_person_by_name_or_id(
    alice: User, bob: User, bob_client: Client
) -> None:
    world = _world(alice, bob)
    face = cast(Face, FaceFactory(photo=PhotoFactory(gallery=world.gallery)))
    bob_client.post(reverse("gallery:face-tag", args=[face.pk]), {"name": "ann"}, headers=HTMX)
    face.refresh_from_db()
    assert face.person == world.person
    other = cast(Person, PersonFactory(owner=alice, name="Ben"))
    # A person bob sees no face of is not his to use.
    bob_client.post(reverse("gallery:face-tag", args=[face.pk]), {"person": other.pk})
    face.refresh_from_db()
    assert face.person == world.person
    FaceFactory(photo=PhotoFactory(gallery=world.gallery), person=other, assignment="confirmed")
    bob_client.post(reverse("gallery:face-tag", args=[face.pk]), {"person": other.pk})
    face.refresh_from_db()
    assert face.person == other
    assert Person.objects.filter(owner=alice).count() == 2


def test_it_refuses_two_faces_of_one_photo_for_the_same_person_inline(
    alice: User, alice_client: Client
) -> None:
    world = make_world(alice)
    face = FaceFactory(photo=world.photo, left=400)
    response = alice_client.post(
        reverse("gallery:face-tag", args=[face.pk]), {"name": "Ann"}, headers=HTMX
    )
    assert response.status_code == 422  # swapped in by the page's htmx config
    html = response.content.decode()
    assert 'class="face-card state-unknown has-error"' in html
    assert "Ann is already tagged on another face in this photo" in html
    face.refresh_from_db()
    assert face.person is None


def test_it_does_not_create_a_person_when_the_tag_is_refused(
    alice: User, alice_client: Client
) -> None:
    world = make_world(alice)
    face = FaceFactory(photo=world.photo, left=400)
    other_library = PersonFactory(name="Stranger's person")
    response = alice_client.post(
        reverse("gallery:face-tag", args=[face.pk]), {"person": other_library.pk}, headers=HTMX
    )
    assert response.status_code == 404  # another library: not visible to alice at all
    response = alice_client.post(reverse("gallery:face-tag", args=[face.pk]), {}, headers=HTMX)
    assert response.status_code == 422 and b"Type a name or pick a person." in response.content


def test_it_untags_a_face(alice: User, alice_client: Client) -> None:
    world = make_world(alice)
    response = alice_client.post(reverse("gallery:face-untag", args=[world.face.pk]), headers=HTMX)
    assert response.status_code == 200
    assert ">Unknown</span>" in response.content.decode()
    world.face.refresh_from_db()
    assert world.face.person is None and world.face.assignment == Face.Assignment.NONE


def test_it_offers_a_suggestion_as_one_click(alice: User, alice_client: Client) -> None:
    world = make_world(alice)
    face = FaceFactory(
        photo=world.photo, left=400, suggested_person=PersonFactory(owner=alice, name="Cleo")
    )
    html = alice_client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()
    assert "Maybe <a" in html and "<strong>Cleo</strong></a>?" in html
    assert "Yes, Cleo</button>" in html
    alice_client.post(
        reverse("gallery:face-tag", args=[face.pk]), {"person": face.suggested_person_id}
    )
    face.refresh_from_db()
    assert face.person.name == "Cleo" and face.suggested_person is None


def test_it_shows_no_tagging_forms_to_viewers(alice: User, bob: User, bob_client: Client) -> None:
    world = _world(alice, bob, GalleryMember.Role.VIEWER)
    html = bob_client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()
    assert "Ann" in html
    assert "tag-form" not in html and "people-options" not in html and "Delete photo" not in html


def test_it_lists_the_owners_people_for_tagging(
    alice: User, bob: User, alice_client: Client, bob_client: Client
) -> None:
    world = _world(alice, bob)
    PersonFactory(owner=alice, name="Dora")  # no face bob can see: alice's private name
    PersonFactory(owner=bob, name="Bob's cousin")  # bob's own library: not for alice's photos

    def datalist(client: Client) -> str:
        html = client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()
        return html[html.index('<datalist id="people-options"') : html.index("</datalist>")]

    assert 'value="Ann"' in datalist(bob_client) and "Dora" not in datalist(bob_client)
    assert "cousin" not in datalist(bob_client)
    assert 'value="Ann"' in datalist(alice_client) and 'value="Dora"' in datalist(alice_client)


def test_it_links_to_the_neighbouring_photos(alice: User, alice_client: Client) -> None:
    world = make_world(alice)
    newer = PhotoFactory(gallery=world.gallery)
    html = alice_client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()
    assert f'href="{reverse("gallery:photo-detail", args=[newer.pk])}" rel="prev"' in html
    assert 'rel="next"' not in html


def test_it_finds_the_neighbours_in_every_order_with_two_small_queries(alice: User) -> None:
    """The photo page loaded every id of the gallery (with face aggregates) to find two; now
    one row before and one after, in the grid's order and filters, ties broken by id."""
    world = make_world(alice)
    noon = datetime(2020, 5, 1, 12, tzinfo=UTC)
    photos = [world.photo]
    for i in range(7):
        # Ties on purpose: pairs share an upload time; some share a date taken, some have none.
        taken = noon - timedelta(days=i // 3) if i % 2 else None
        photos.append(cast(Photo, PhotoFactory(gallery=world.gallery, taken_at=taken)))
        Photo.objects.filter(pk=photos[-1].pk).update(created_at=noon + timedelta(hours=i // 2))
    FaceFactory(photo=photos[3], person=world.person)
    FaceFactory(photo=photos[5], person=world.person)
    filter_sets = [PhotoFilters(sort=sort) for sort in PhotoFilters.SORTS]
    filter_sets += [PhotoFilters(person=world.person.pk), PhotoFilters(unknown=True)]
    for filters in filter_sets:
        for photo in Photo.objects.filter(gallery=world.gallery).select_related("gallery"):
            ids = list(gallery_photos(world.gallery, filters).values_list("pk", flat=True))
            if photo.pk not in ids:  # not in the filtered grid: the whole gallery's order
                ids = list(
                    gallery_photos(world.gallery, PhotoFilters(sort=filters.sort)).values_list(
                        "pk", flat=True
                    )
                )
            at = ids.index(photo.pk)
            expected = (ids[at - 1] if at else None, ids[at + 1] if at + 1 < len(ids) else None)
            with CaptureQueriesContext(connection) as queries:
                assert photo_neighbours(photo, filters) == expected, (filters, photo.pk)
            assert len(queries) <= 3
            assert all(q["sql"].rstrip().endswith("LIMIT 1") for q in queries), queries


def test_it_deletes_and_requeues_photos(
    alice: User, alice_client: Client, django_capture_on_commit_callbacks: object
) -> None:
    world = make_world(alice)
    failed = PhotoFactory(gallery=world.gallery, status=Photo.Status.FAILED, error="x")
    response = alice_client.post(reverse("gallery:photo-reprocess", args=[failed.pk]))
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == Photo.Status.QUEUED and failed.error == ""
    with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
        response = alice_client.post(reverse("gallery:photo-delete", args=[world.photo.pk]))
    assert response["Location"] == reverse("gallery:gallery-detail", args=[world.gallery.pk])
    assert not Photo.objects.filter(pk=world.photo.pk).exists()


def test_it_sends_the_csrf_token_from_the_body_hx_headers(alice: User) -> None:
    import json

    world = make_world(alice)
    face = FaceFactory(photo=world.photo, left=400)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    html = client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()
    body_tag = html[html.index("<body") : html.index(">", html.index("<body"))]
    headers = json.loads(body_tag.split("hx-headers='", 1)[1].split("'", 1)[0])
    url = reverse("gallery:face-tag", args=[face.pk])
    assert client.post(url, {"name": "Eve"}, headers=HTMX).status_code == 403
    response = client.post(url, {"name": "Eve"}, headers={**HTMX, **headers})
    assert response.status_code == 200 and "<strong>Eve</strong>" in response.content.decode()

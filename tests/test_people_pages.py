"""The people pages: counts that separate confirmed from automatic tags, renaming to a taken name
offers a merge, hidden people found again, a chosen cover face, the largest unnamed groups."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.models import Face, FaceEvent, GalleryMember, Person, PersonMerge
from tests.factories import (
    FaceFactory,
    GalleryFactory,
    PersonFactory,
    PhotoFactory,
    face_in_new_photo,
)


def _faces(person: Person, gallery: object, n: int, assignment: str) -> list[Face]:
    return [
        FaceFactory.create(
            photo=PhotoFactory.create(gallery=gallery), person=person, assignment=assignment
        )
        for _ in range(n)
    ]


def test_it_counts_confirmed_and_automatic_tags_apart(
    alice: User, alice_client: Client, bob: User, bob_client: Client
) -> None:
    gallery = GalleryFactory.create(owner=alice)
    GalleryMember.objects.create(gallery=gallery, user=bob, role="viewer")
    ann = PersonFactory.create(owner=alice, name="Ann")
    _faces(ann, gallery, 1, Face.Assignment.CONFIRMED)
    _faces(ann, gallery, 12, Face.Assignment.SUGGESTED)

    listing = alice_client.get(reverse("gallery:person-list")).content.decode()
    page = alice_client.get(reverse("gallery:person-detail", args=[ann.pk])).content.decode()

    # "12 to confirm" opens those suggestions; bob may not confirm them, so is not asked to.
    suggestions = reverse("gallery:suggestion-list") + f"?person={ann.pk}"
    assert f'1 photo · <a class="to-confirm" href="{suggestions}">12 to confirm</a>' in listing
    bobs = bob_client.get(reverse("gallery:person-list")).content.decode()
    assert "<strong>Ann</strong>" in bobs and "to confirm" not in bobs
    assert "1 confirmed photo · 12 tagged automatically, not yet confirmed" in page
    assert page.count('data-state="auto"') == 12 and page.count('data-state="confirmed"') == 1


def test_it_offers_a_merge_when_renaming_to_a_taken_name(alice: User, alice_client: Client) -> None:
    gallery = GalleryFactory.create(owner=alice)
    ann = PersonFactory.create(owner=alice, name="Ann")
    annie = PersonFactory.create(owner=alice, name="Annie")
    moved = _faces(annie, gallery, 2, Face.Assignment.CONFIRMED)
    url = reverse("gallery:person-rename", args=[annie.pk])

    response = alice_client.post(url, {"name": " ann "}, follow=True)

    annie.refresh_from_db()
    assert annie.name == "Annie"  # not renamed silently into a second "Ann"
    html = response.content.decode()
    assert "There is already a person called Ann. Are they the same person?" in html
    assert 'id="same-name"' in html and "Yes, merge into Ann" in html
    assert f'name="into" value="{ann.pk}"' in html

    merged = alice_client.post(reverse("gallery:person-merge", args=[annie.pk]), {"into": ann.pk})
    assert merged["Location"] == reverse("gallery:person-detail", args=[ann.pk])
    assert PersonMerge.objects.filter(source=annie, target=ann).exists()
    assert {f.person_id for f in Face.objects.filter(pk__in=[f.pk for f in moved])} == {ann.pk}


def test_it_keeps_two_people_with_one_name_when_asked(alice: User, alice_client: Client) -> None:
    PersonFactory.create(owner=alice, name="Ann")
    other = PersonFactory.create(owner=alice, name="Ann B.")
    url = reverse("gallery:person-rename", args=[other.pk])
    response = alice_client.post(url, {"name": "Ann", "same_name": "keep"}, follow=True)
    other.refresh_from_db()
    assert other.name == "Ann" and "Renamed Ann B. to Ann." in response.content.decode()
    assert Person.objects.filter(owner=alice, name="Ann").count() == 2


def test_it_lists_hidden_people_and_shows_them_again(
    alice: User, alice_client: Client, bob: User, bob_client: Client
) -> None:
    gallery = GalleryFactory.create(owner=alice)
    GalleryMember.objects.create(gallery=gallery, user=bob, role="viewer")
    poster = PersonFactory.create(owner=alice, name="Poster")
    _faces(poster, gallery, 1, Face.Assignment.CONFIRMED)
    response = alice_client.post(
        reverse("gallery:person-hide", args=[poster.pk]), {"hidden": "1"}, follow=True
    )
    assert "Find them again under “Hidden people”" in response.content.decode()

    listing = alice_client.get(reverse("gallery:person-list")).content.decode()
    assert "<strong>Poster</strong>" not in listing and "Hidden people (1)" in listing
    hidden = alice_client.get(reverse("gallery:person-list"), {"show": "hidden"}).content.decode()
    assert "<strong>Poster</strong>" in hidden and "Show again" in hidden
    # bob may see the hidden list but not change it, and is offered no button that would fail.
    bobs = bob_client.get(reverse("gallery:person-list"), {"show": "hidden"}).content.decode()
    assert "<strong>Poster</strong>" in bobs and "Show again" not in bobs
    assert (
        bob_client.post(
            reverse("gallery:person-hide", args=[poster.pk]), {"hidden": "0"}
        ).status_code
        == 403
    )

    back = reverse("gallery:person-list") + "?show=hidden"
    response = alice_client.post(
        reverse("gallery:person-hide", args=[poster.pk]), {"hidden": "0", "next": back}
    )
    assert response["Location"] == back
    poster.refresh_from_db()
    assert not poster.hidden
    assert (
        "<strong>Poster</strong>"
        in alice_client.get(reverse("gallery:person-list")).content.decode()
    )


def test_it_uses_the_chosen_cover_face(
    alice: User, alice_client: Client, charlie_client: Client
) -> None:
    gallery = GalleryFactory.create(owner=alice)
    ann = PersonFactory.create(owner=alice, name="Ann")
    # The older one: without a choice the newest confirmed face is the cover.
    chosen, newest = _faces(ann, gallery, 2, Face.Assignment.CONFIRMED)
    auto = _faces(ann, gallery, 1, Face.Assignment.SUGGESTED)[0]
    url = reverse("gallery:person-cover", args=[ann.pk])

    listing = reverse("gallery:person-list")
    assert alice_client.get(listing).context["page"][0].cover == newest.crop.name
    assert charlie_client.post(url, {"face": chosen.pk}).status_code == 404
    alice_client.post(url, {"face": chosen.pk})

    ann.refresh_from_db()
    assert ann.cover_face == chosen
    assert FaceEvent.objects.filter(person=ann, action="person_cover_set").exists()
    cover = alice_client.get(reverse("gallery:person-list")).context["page"][0].cover
    assert cover == chosen.crop.name
    response = alice_client.post(url, {"face": auto.pk}, follow=True)  # not confirmed: refused
    assert "Only a confirmed face of Ann can be their cover." in response.content.decode()
    ann.refresh_from_db()
    assert ann.cover_face == chosen
    alice_client.post(url, {"face": ""})  # back to the newest confirmed face
    ann.refresh_from_db()
    assert ann.cover_face is None

    # A cover that stops being a confirmed face of Ann stops being her cover.
    alice_client.post(url, {"face": chosen.pk})
    alice_client.post(reverse("gallery:face-untag", args=[chosen.pk]))
    ann.refresh_from_db()
    assert ann.cover_face is None
    alice_client.post(url, {"face": newest.pk})
    alice_client.post(reverse("gallery:face-tag", args=[newest.pk]), {"name": "Bea"})
    ann.refresh_from_db()
    assert ann.cover_face is None


def test_it_shows_the_largest_unnamed_groups_on_the_people_page(
    alice: User, alice_client: Client
) -> None:
    gallery = GalleryFactory.create(owner=alice)
    obama = [face_in_new_photo(gallery, f"obama/{n}") for n in ("obama.jpg", "obama1.jpg")]
    face_in_new_photo(gallery, "biden/biden.jpg")
    response = alice_client.get(reverse("gallery:person-list"))
    groups = response.context["groups"]
    assert [g.size for g in groups] == [2, 1]
    assert {f.pk for f in groups[0].faces} == {f.pk for f in obama}
    html = response.content.decode()
    assert "Not named yet" in html and f"#group-{groups[0].key}" in html

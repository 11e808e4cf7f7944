"""What every page says: plain words (no engineer's numbers or jargon outside the staff-only
details disclosure), branded error pages, a favicon, a flash message for htmx actions, and no
inline script a Content-Security-Policy would block."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from gallery.models import Face, GalleryMember
from tests.factories import FaceFactory, PersonFactory, PhotoFactory, make_world

JARGON = re.compile(
    r"out.of.distribution|classifier|laplacian|threshold|distance|\bscore\b|\bood\b|ood-v\d"
    r"|\b\d+\.\d{2,}\b",  # a raw number such as 0.058 or 3.25
    re.IGNORECASE,
)
STAFF_DETAILS = re.compile(r'<details class="staff-details">.*?</details>', re.DOTALL)


def visible_text(html: str) -> str:
    """The words a reader sees (attributes, scripts and styles dropped)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.DOTALL | re.IGNORECASE)
    return re.sub(r"<[^>]+>", " ", html)


@pytest.fixture
def every_state(alice: User, bob: User) -> dict[str, object]:
    """alice's gallery with a face in each state, shared with bob; the rejected faces carry the
    filter's real reason strings and scores."""
    world = make_world(alice, bob, GalleryMember.Role.EDITOR)
    ann = world.person
    photo = world.photo
    FaceFactory.create(
        photo=photo,
        left=200,
        person=PersonFactory.create(owner=alice, name="Ben"),
        assignment=Face.Assignment.SUGGESTED,
        match_distance=0.457,
    )
    FaceFactory.create(photo=photo, left=300, suggested_person=ann, match_distance=0.583)
    FaceFactory.create(photo=photo, left=400, assignment=Face.Assignment.IGNORED)
    for left, review in ((500, ""), (520, "approved"), (540, "confirmed"), (560, "not_face")):
        FaceFactory.create(
            photo=photo,
            left=left,
            ood_status=Face.Quality.REJECTED,
            ood_score=0.982,
            ood_model_version="ood-v1",
            review_status=review,
            ood_reasons=[
                "blurred (Laplacian variance 3, below 16)",
                "classifier 0.98 (threshold 0.50)",
                "unlike typical faces (distance 1.02 from the average face)",
            ],
        )
    FaceFactory.create(
        photo=PhotoFactory.create(gallery=world.gallery), suggested_person=ann, match_distance=0.51
    )
    return {"world": world}


def _pages(world: object) -> list[str]:
    w = world
    return [
        reverse("gallery:gallery-list"),
        reverse("gallery:gallery-detail", args=[w.gallery.pk]),  # type: ignore[attr-defined]
        reverse("gallery:photo-detail", args=[w.photo.pk]),  # type: ignore[attr-defined]
        reverse("gallery:person-list"),
        reverse("gallery:person-detail", args=[w.person.pk]),  # type: ignore[attr-defined]
        reverse("gallery:suggestion-list"),
        reverse("gallery:unknown-list"),
        reverse("gallery:unknown-list") + "?show=ignored",
        reverse("gallery:timeline"),
        reverse("gallery:search"),
    ]


@pytest.mark.parametrize("staff", [False, True], ids=["member", "staff"])
def test_it_shows_no_jargon_outside_the_staff_details(
    every_state: dict[str, object], alice: User, bob: User, staff: bool
) -> None:
    for user in (alice, bob):
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
        client = Client()
        client.force_login(user)
        pages = _pages(every_state["world"])
        if staff:
            pages.append(reverse("review:review-queue"))
            pages.append(reverse("review:review-queue") + "?show=reviewed")
        for url in pages:
            response = client.get(url)
            assert response.status_code == 200, url
            html = response.content.decode()
            found = JARGON.findall(visible_text(STAFF_DETAILS.sub(" ", html)))
            assert not found, (user.username, url, found)
            if not staff:
                assert "staff-details" not in html, url
    # The photo page really did show the numbers to staff, behind the disclosure.
    if staff:
        html = client.get(_pages(every_state["world"])[2]).content.decode()
        details = " ".join(STAFF_DETAILS.findall(html))
        assert "Filter score 0.98" in details and "Laplacian variance 3" in details


def test_it_shows_each_state_in_its_own_words_on_the_photo(
    every_state: dict[str, object], alice_client: Client
) -> None:
    world = every_state["world"]
    html = alice_client.get(reverse("gallery:photo-detail", args=[world.photo.pk])).content.decode()  # type: ignore[attr-defined]
    states = re.findall(r'class="facebox state-([a-z-]+)"', html)
    assert sorted(states) == sorted(
        ["confirmed", "auto", "suggested", "ignored", "not-used", "unknown", "not-used"]
    )  # the approved face is used again: unknown; the non-face has no box
    assert ">Ann</span>" in html and ">Ben?</span>" in html and ">Maybe Ann?</span>" in html
    # The rejected face and the one a reviewer kept out; the approved face has no reasons.
    assert html.count("<li>Too blurry to recognise reliably</li>") == 2
    assert html.count("<li>Unusual face: not used for automatic matching</li>") == 2
    assert "1 box marked as not a face" in html
    assert "A person checked this face: it is used for matching." in html


def test_it_sends_no_inline_script_or_handler(
    every_state: dict[str, object], alice_client: Client
) -> None:
    for url in _pages(every_state["world"]):
        html = alice_client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert not re.search(r"\son[a-z]+=", html), url


def test_it_answers_errors_with_branded_pages(
    every_state: dict[str, object], bob: User, charlie_client: Client
) -> None:
    world = every_state["world"]
    missing = charlie_client.get(reverse("gallery:gallery-detail", args=[world.gallery.pk]))  # type: ignore[attr-defined]
    assert missing.status_code == 404
    assert (
        "Nothing here" in missing.content.decode() and 'class="topbar"' in missing.content.decode()
    )
    GalleryMember.objects.filter(user=bob).update(role=GalleryMember.Role.VIEWER)
    viewer = Client()
    viewer.force_login(bob)
    refused = viewer.post(reverse("gallery:photo-delete", args=[world.photo.pk]))  # type: ignore[attr-defined]
    assert refused.status_code == 403 and "You cannot do that here" in refused.content.decode()
    # The page says why (the reason raised with the refusal), not one text for every refusal.
    assert "You can view this gallery but not change it." in refused.content.decode()
    rename = reverse("gallery:person-rename", args=[world.person.pk])  # type: ignore[attr-defined]
    refused = viewer.post(rename, {"name": "X"})
    assert refused.status_code == 403
    html = refused.content.decode()
    assert "Only alice can rename, hide, merge or delete the people of their library" in html
    assert "You can look at this gallery" not in html
    broken = server_error(RequestFactory().get("/"))
    assert broken.status_code == 500 and b"Something went wrong on our side" in broken.content


def test_it_has_a_favicon(alice_client: Client) -> None:
    response = alice_client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
    assert 'rel="icon"' in alice_client.get(reverse("gallery:gallery-list")).content.decode()


def test_it_adds_flash_messages_to_htmx_answers(
    every_state: dict[str, object], alice_client: Client
) -> None:
    face = every_state["world"].face  # type: ignore[attr-defined]
    url = reverse("gallery:face-untag", args=[face.pk])
    html = alice_client.post(url, headers={"HX-Request": "true"}).content.decode()
    assert re.search(r'<ul class="messages" id="messages"[^>]*hx-swap-oob="true">', html)
    assert "Removed the tag Ann." in html
    # Shown once: the next page does not repeat it.
    page = alice_client.get(reverse("gallery:gallery-list")).content.decode()
    assert "Removed the tag Ann." not in page
    # A poll that queued nothing gets nothing extra.
    poll = alice_client.get(
        reverse("gallery:face-detail", args=[face.pk]), headers={"HX-Request": "true"}
    )
    assert 'id="messages"' not in poll.content.decode()

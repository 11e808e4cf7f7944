"""In a real browser: sign in, upload with the file chooser, watch processing finish, tag a face,
accept suggestions on the photo page and the suggestions list, search by an uploaded face."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from gallery.models import Face, Gallery, Person, Photo
from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD, PHOTOS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _photo_url(base: str, gallery: Gallery, name: str) -> str:
    return f"{base}/photos/{Photo.objects.get(gallery=gallery, original_name=name).pk}/"


def test_it_tags_a_face_accepts_suggestions_and_finds_the_person(
    live_server: object, page: object, shot: object
) -> None:
    base = live_server.url  # type: ignore[attr-defined]
    alice = User.objects.create_user("alice", "alice@example.test", PASSWORD)
    gallery = Gallery.objects.create(owner=alice, name="Presidents")
    sign_in(page, base, "alice", PASSWORD)

    # Upload four photos with the file chooser; the page's script sends them on choose.
    page.goto(f"{base}/galleries/{gallery.pk}/")
    files = [PHOTOS / "obama" / n for n in ("obama.jpg", "obama1.jpg", "obama2.jpg")]
    files.append(PHOTOS / "biden" / "biden.jpg")
    page.set_input_files("input[name=files]", [str(p) for p in files])
    panel = page.locator("#batches .batch").first
    panel.get_by_text("Upload processed").wait_for()
    assert "4 accepted · 4 done" in re.sub(r"\s+", " ", panel.inner_text())
    page.reload()
    assert page.locator(".thumb").count() == 4
    shot(page, "01-gallery-after-upload")

    # Tag the face of obama.jpg by typing a new name.
    page.goto(_photo_url(base, gallery, "obama.jpg"))
    card = page.locator(".face-card").first
    card.locator("input[name=name]").fill("Barack Obama")
    card.get_by_role("button", name="Tag").click()
    page.locator(".face-card .face-name", has_text="Barack Obama").wait_for()
    shot(page, "02-photo-tagged")
    obama = Person.objects.get(name="Barack Obama")

    # The other Obama photos were matched again after that tag: accept one on its photo page.
    page.goto(_photo_url(base, gallery, "obama1.jpg"))
    card = page.locator(".face-card").first
    shot(page, "03-photo-with-suggestion")
    card.get_by_role("button", name="Yes, Barack Obama").click()
    page.get_by_role("button", name="Yes, Barack Obama").wait_for(state="detached")
    face = Face.objects.get(photo__original_name="obama1.jpg")
    assert face.person == obama and face.assignment == Face.Assignment.CONFIRMED

    # ...and the last one from the suggestions list; Biden is not offered as Obama.
    page.goto(f"{base}/suggestions/")
    items = page.locator(".suggestion")
    assert items.count() == 1
    shot(page, "04-suggestions")
    items.first.get_by_role("button", name="Yes, Barack Obama").click()
    page.locator(".suggestion .badge", has_text="confirmed").wait_for()
    assert obama.faces.filter(assignment=Face.Assignment.CONFIRMED).count() == 3
    assert not Face.objects.filter(photo__original_name="biden.jpg", person=obama).exists()

    # Search by an uploaded face: one face, straight to the answer.
    page.goto(f"{base}/search/")
    page.set_input_files("#search-image", str(PHOTOS / "obama" / "obama_small.jpg"))
    page.get_by_role("button", name="Search").click()
    outcome = page.locator("#search-outcome")
    outcome.wait_for()
    assert outcome.get_attribute("data-answer") == "same"
    assert page.locator(".search-hit .hit-name").first.inner_text() == "Barack Obama"
    assert page.locator(".search-hit").first.locator(".thumb").count() == 3
    shot(page, "05-search-result")

    # A group photo: the faces are drawn, the largest is preselected, the user picks another.
    page.goto(f"{base}/search/")
    page.set_input_files("#search-image", str(PHOTOS / "_multi_face" / "obama_and_biden.jpg"))
    page.get_by_role("button", name="Search").click()
    page.locator("#pick-face").wait_for()
    assert page.locator(".pick-box").count() >= 2
    assert page.locator(".pick-radio:checked").count() == 1
    shot(page, "06-search-pick-face")
    page.get_by_role("button", name="Search this face").click()
    page.locator("#search-outcome").wait_for()
    shot(page, "07-search-picked-result")

    # Who is unknown: Biden's face waits there as a group; name it in one go.
    page.goto(f"{base}/people/unknown/")
    group = page.locator(".cluster").first
    group.locator("input[name=name]").fill("Joe Biden")
    shot(page, "08-unknown-groups")
    group.get_by_role("button", name="Name", exact=True).click()
    page.locator(".message", has_text="Joe Biden").wait_for()
    biden = Person.objects.get(name="Joe Biden")
    assert biden.faces.get().photo.original_name == "biden.jpg"
    page.goto(f"{base}/people/{obama.pk}/")
    page.locator("#person-tools select[name=into]").select_option(label="Joe Biden")
    shot(page, "09-person-tools")

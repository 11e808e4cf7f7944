"""In a real browser, the people and photo pages (issue 14): a face drawn by hand is matched, an
automatic tag looks different from a confirmed one, a stranger is ignored on "Who is unknown?",
renaming to a taken name offers a merge, hidden people are found again, the timeline groups
photos by month, and no main page scrolls sideways on a 390 px phone. Screenshots of every page
(desktop and phone) go to test-artifacts/screenshots/pages-*.png."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import Q
from playwright.sync_api import expect

from gallery.actions.people import do_create_person
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery, Person, Photo
from recognition.actions.identity import do_confirm_suggestion, do_tag_face
from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD, upload_file

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _upload(gallery: Gallery, user: User, *relatives: str) -> dict[str, Photo]:
    """Processed before this returns (Celery eager, autocommit: on_commit runs at once)."""
    result = do_upload_photos(gallery, [upload_file(r) for r in relatives], by=user)
    assert not result.rejected, result.rejected
    photos = {p.original_name: Photo.objects.get(pk=p.pk) for p in result.accepted}
    assert all(p.status == Photo.Status.DONE for p in photos.values())
    return photos


def _box_style(page: Any, face: Face) -> dict[str, str]:
    return page.eval_on_selector(
        f"#box-{face.pk}",
        "b => ({style: getComputedStyle(b).borderTopStyle, label: b.innerText.trim()})",
    )


def test_it_matches_a_face_drawn_by_hand_and_marks_automatic_tags(
    live_server: Any, page: Any, shot: Any
) -> None:
    base = live_server.url
    alice = User.objects.create_user("alice", "alice@example.test", PASSWORD)
    gallery = Gallery.objects.create(owner=alice, name="Presidents")
    photos = _upload(
        gallery,
        alice,
        "obama/obama.jpg",
        "obama/obama1.jpg",
        "_multi_face/obama_and_biden.jpg",
        "biden/biden.jpg",
    )
    obama = do_create_person(alice, "Barack Obama", by=alice)
    biden = do_create_person(alice, "Joe Biden", by=alice)
    do_tag_face(photos["obama.jpg"].faces.get(), obama, by=alice)
    do_tag_face(photos["obama1.jpg"].faces.get(), obama, by=alice)
    do_tag_face(photos["biden.jpg"].faces.get(), biden, by=alice)
    sign_in(page, base, "alice", PASSWORD)

    # The group photo: Biden confirmed by hand, Obama tagged automatically by the matcher.
    group = photos["obama_and_biden.jpg"]
    auto = group.faces.get(person=obama, assignment=Face.Assignment.SUGGESTED)
    confirmed = group.faces.get(Q(person=biden) | Q(suggested_person=biden))
    do_confirm_suggestion(confirmed, by=alice)
    page.goto(f"{base}/photos/{group.pk}/")
    assert _box_style(page, confirmed) == {"style": "solid", "label": "Joe Biden"}
    assert _box_style(page, auto) == {"style": "dashed", "label": "Barack Obama?"}
    card = page.locator(f"#face-{auto.pk}")
    assert card.locator(".state-badge").inner_text() == "Tagged automatically"
    shot(page, "pages-01-auto-and-confirmed")

    # "Not a face" and its undo: the face count follows (it counted the cards' old classes,
    # which htmx swaps in only when the swap settles).
    n = group.faces.count()
    assert page.locator("#face-count").inner_text() == str(n)
    card.get_by_role("button", name="Not a face").click()
    page.locator(f"#face-{auto.pk}[data-state='not-a-face']").wait_for()
    counted = "n => document.getElementById('face-count').textContent === String(n)"
    page.wait_for_function(counted, arg=n - 1)
    page.locator(f"#face-{auto.pk}").get_by_role("button", name="It is a face after all").click()
    page.locator(f"#face-{auto.pk}:not([data-state='not-a-face'])").wait_for()
    page.wait_for_function(counted, arg=n)

    # obama2.jpg: the detector "missed" the face (its row is removed); draw it with the mouse.
    drawn_photo = _upload(gallery, alice, "obama/obama2.jpg")["obama2.jpg"]
    missed = drawn_photo.faces.get()
    missed.delete()
    page.goto(f"{base}/photos/{drawn_photo.pk}/")
    page.get_by_role("button", name="Draw a face").click()
    stage = page.locator("#photo-stage").bounding_box()
    sx, sy = stage["width"] / drawn_photo.width, stage["height"] / drawn_photo.height
    x0, y0 = stage["x"] + (missed.left - 10) * sx, stage["y"] + (missed.top - 10) * sy
    x1 = stage["x"] + (missed.left + missed.width + 10) * sx
    y1 = stage["y"] + (missed.top + missed.height + 10) * sy
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()
    page.locator(".face-card .face-name", has_text="Barack Obama").wait_for()
    page.locator(".message", has_text="recognised as Barack Obama").wait_for()
    face = drawn_photo.faces.get()
    assert face.manual and face.person == obama
    assert page.locator(f"#box-{face.pk}.state-auto").count() == 1
    shot(page, "pages-02-face-drawn-by-hand")

    # The viewer: the arrow key goes to the neighbouring photo.
    page.keyboard.press("ArrowRight")
    page.wait_for_url(re.compile(rf".*/photos/(?!{drawn_photo.pk}/)\d+/"))


def test_it_ignores_strangers_offers_merges_finds_hidden_people_and_fits_a_phone(
    live_server: Any, page: Any, browser: Any, shot: Any
) -> None:
    base = live_server.url
    alice = User.objects.create_user("alice", "alice@example.test", PASSWORD)
    gallery = Gallery.objects.create(owner=alice, name="Summer")
    photos = _upload(
        gallery,
        alice,
        "obama/obama.jpg",
        "obama/obama1.jpg",
        "biden/biden.jpg",
        "biden/biden2.jpg",
        "kit_harington/john1.jpeg",
    )
    obama = do_create_person(alice, "Barack Obama", by=alice)
    do_tag_face(photos["obama.jpg"].faces.get(), obama, by=alice)
    Photo.objects.filter(pk=photos["obama.jpg"].pk).update(
        taken_at=datetime(2015, 6, 3, tzinfo=UTC)
    )
    Photo.objects.filter(pk=photos["biden.jpg"].pk).update(
        taken_at=datetime(2015, 6, 9, tzinfo=UTC)
    )
    Photo.objects.filter(pk=photos["john1.jpeg"].pk).update(
        taken_at=datetime(2018, 2, 1, tzinfo=UTC)
    )
    sign_in(page, base, "alice", PASSWORD)

    # Who is unknown? Biden's two photos are one group, Kit's one another: ignore the stranger.
    page.goto(f"{base}/people/unknown/")
    kit = photos["john1.jpeg"].faces.get()
    card = page.locator(".cluster", has=page.locator(f"input[value='{kit.pk}']"))
    shot(page, "pages-03-unknown")
    card.get_by_role("button", name="Ignore").click()
    page.locator(".message", has_text="Ignored 1 face").wait_for()
    assert page.locator(f"input[value='{kit.pk}']").count() == 0
    kit.refresh_from_db()
    assert kit.assignment == Face.Assignment.IGNORED
    # Name the Biden group in one go.
    group = page.locator(".cluster").first
    group.locator("input[name=name]").fill("Joe Biden")
    group.get_by_role("button", name="Name").click()
    page.locator(".message", has_text="Joe Biden").wait_for()
    biden = Person.objects.get(name="Joe Biden")

    # A second "Obama" typed on a photo, then renamed to the taken name: a merge is offered.
    page.goto(f"{base}/photos/{photos['obama1.jpg'].pk}/")
    card = page.locator(".face-card").first
    card.locator("input[name=name]").fill("B. Obama")
    card.get_by_role("button", name="Tag", exact=True).click()
    page.locator(".face-card .face-name", has_text="B. Obama").wait_for()
    other = Person.objects.get(name="B. Obama")
    page.goto(f"{base}/people/{other.pk}/")
    page.locator("summary", has_text="Rename").click()
    page.locator("form[action$='/rename/'] input[name=name]").fill("barack obama")
    page.get_by_role("button", name="Save").click()
    page.locator("#same-name").wait_for()
    shot(page, "pages-04-rename-offers-merge")
    page.get_by_role("button", name="Yes, merge into Barack Obama").click()
    page.locator(".message", has_text="B. Obama was merged into Barack Obama").wait_for()
    other.refresh_from_db()
    assert other.merged_into == obama and obama.faces.count() == 2

    # Hide Joe Biden, then find him again under the hidden people and show him.
    page.goto(f"{base}/people/{biden.pk}/")
    page.get_by_role("button", name="Hide this person").click()
    page.goto(f"{base}/people/")
    assert page.locator(".person-card", has_text="Joe Biden").count() == 0
    page.get_by_role("link", name=re.compile(r"Hidden people \(1\)")).click()
    hidden = page.locator(".person-card", has_text="Joe Biden")
    shot(page, "pages-05-hidden-people")
    hidden.get_by_role("button", name="Show again").click()
    page.locator(".message", has_text="shown on the people page again").wait_for()
    page.goto(f"{base}/people/")
    assert page.locator(".person-card", has_text="Joe Biden").count() == 1

    # Selecting photos on a desktop: a visible "Select photos" button, then a click on a photo
    # selects it (the boxes showed only under the mouse, the actions only after a selection).
    page.goto(f"{base}/galleries/{gallery.pk}/")
    first = page.locator(".thumb").first
    expect(first.locator(".thumb-pick")).to_have_css("opacity", "0")
    assert not page.get_by_role("button", name="Download as zip").is_visible()
    page.get_by_role("button", name="Select photos").click()
    expect(first.locator(".thumb-pick")).to_have_css("opacity", "1")
    first.locator("a").click()
    assert first.locator(".thumb-pick").is_checked() and "/galleries/" in page.url
    assert page.locator("[data-selected-count]").inner_text() == "1 selected"
    assert page.get_by_role("button", name="Download as zip").is_visible()
    shot(page, "pages-07-selecting-photos")
    page.get_by_role("button", name="Cancel selection").click()
    assert not first.locator(".thumb-pick").is_checked()

    # The timeline: months by date taken, newest first; undated photos by upload time.
    page.goto(f"{base}/timeline/")
    sections = page.locator(".timeline-month")
    titles = [t.strip() for t in page.locator(".month-title").all_inner_texts()]
    upload_month = f"{Photo.objects.get(pk=photos['biden2.jpg'].pk).created_at:%B %Y}"
    assert titles == [upload_month, "February 2018", "June 2015"]
    assert [sections.nth(i).locator(".thumb").count() for i in range(3)] == [2, 1, 2]
    shot(page, "pages-06-timeline")

    # Every main page on a 390 px phone, and in a 390 px window with a mouse: nothing wider
    # than the screen, no main-nav link cut off (a staff member has the most: Review queue),
    # the viewer's arrows on one row and no zoom buttons (pinch, or + and -, zoom).
    User.objects.filter(pk=alice.pk).update(is_staff=True)
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    mobile = phone.new_page()
    sign_in(mobile, base, "alice", PASSWORD)
    window = browser.new_context(viewport={"width": 390, "height": 844})
    narrow = window.new_page()
    sign_in(narrow, base, "alice", PASSWORD)
    pages = {
        "galleries": "/",
        "gallery": f"/galleries/{gallery.pk}/",
        "photo": f"/photos/{photos['obama1.jpg'].pk}/",
        "people": "/people/",
        "person": f"/people/{obama.pk}/",
        "suggestions": "/suggestions/",
        "unknown": "/people/unknown/",
        "ignored": "/people/unknown/?show=ignored",
        "timeline": "/timeline/",
        "search": "/search/",
        "not-found": "/no-such-page/",
    }
    for i, (name, path) in enumerate(pages.items()):
        for target, prefix in ((mobile, "phone"), (narrow, "narrow"), (page, "desktop")):
            target.goto(base + path)
            target.wait_for_load_state("networkidle")
            width, inner = target.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert width <= inner, (prefix, name, width, inner)
            cut = target.evaluate(
                """() => { const nav = document.querySelector('.mainnav');
                return [nav.scrollWidth > nav.clientWidth, ...[...nav.querySelectorAll('a')]
                  .filter(a => a.getBoundingClientRect().right > window.innerWidth)
                  .map(a => a.innerText)]; }"""
            )
            assert cut == [False], (prefix, name, cut)
            shot(target, f"pages-{prefix}-{i + 10:02d}-{name}")
    for target, prefix in ((mobile, "phone"), (narrow, "narrow")):
        target.goto(f"{base}/photos/{photos['obama1.jpg'].pk}/")
        prev, after = (target.locator(f"[data-nav='{w}']").bounding_box() for w in ("prev", "next"))
        assert prev is not None and after is not None and prev["y"] == after["y"], prefix
        assert target.locator(".zoom-btn:visible").count() == 0, prefix
        assert target.locator("[data-fullscreen]").is_visible(), prefix
    assert "Review queue" in mobile.locator(".mainnav").inner_text()
    phone.close()
    window.close()

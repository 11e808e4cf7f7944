"""In a real browser: the gallery's owner (not staff) sees why the filter set a blurred face
aside, says "This face is fine, use it" on the face card, the card changes in place and the face
is matched; "Stop using this face" takes it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from gallery.actions.people import do_create_person
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery
from recognition.actions.identity import do_tag_face
from recognition.models import ReviewDecision
from tests.browser.conftest import blurred_obama, sign_in
from tests.conftest import PASSWORD, upload_file

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_lets_the_owner_use_a_face_the_filter_set_aside_and_take_it_back(
    live_server: Any, page: Any, shot: Any, tmp_path: Path
) -> None:
    base = live_server.url
    alice = User.objects.create_user("alice", "alice@example.test", PASSWORD)
    gallery = Gallery.objects.create(owner=alice, name="Presidents")
    result = do_upload_photos(gallery, [upload_file("obama/obama.jpg")], by=alice)
    obama = do_create_person(alice, "Barack Obama", by=alice)
    do_tag_face(result.accepted[0].faces.get(), obama, by=alice)

    sign_in(page, base, "alice", PASSWORD)
    page.goto(f"{base}/galleries/{gallery.pk}/")
    page.set_input_files("input[name=files]", str(blurred_obama(tmp_path / "blurred.jpg")))
    page.locator("#batches .batch").first.get_by_text("Upload processed").wait_for()
    face = Face.objects.get(photo__original_name="blurred.jpg")
    assert face.ood_status == Face.Quality.REJECTED and not face.is_trusted

    page.goto(f"{base}/photos/{face.photo_id}/")
    card = page.locator(f"#face-{face.pk}")
    text = card.inner_text()
    assert "Not used for matching" in text and "Too blurry to recognise reliably" in text
    assert "sharpness" not in text and "weight" not in text  # numbers are for staff only
    assert card.locator("details").count() == 0
    shot(page, "20-owner-sees-rejected-face")

    card.get_by_role("button", name="This face is fine, use it").click()
    card = page.locator(f"#face-{face.pk}", has_text="Stop using this face")
    card.wait_for()
    assert "Barack Obama" in card.inner_text()  # matched at once: offered or tagged
    # Not confirmed yet, so not a template: the message promises no more than matching.
    flash = page.locator("#messages").inner_text()
    assert "The face is used for matching." in flash and "helps recognise" not in flash
    shot(page, "21-owner-overruled-filter")
    face.refresh_from_db()
    assert face.review_status == Face.Review.APPROVED and face.is_trusted
    assert obama.pk in {face.person_id, face.suggested_person_id}
    label = ReviewDecision.objects.get(face=face)
    assert (label.reviewer, label.decision) == (alice, ReviewDecision.Decision.APPROVE)

    card.get_by_role("button", name="Stop using this face").click()
    card = page.locator(f"#face-{face.pk}", has_text="This face is fine, use it")
    card.wait_for()
    assert "Not used for matching" in card.inner_text()
    shot(page, "22-owner-took-it-back")
    face.refresh_from_db()
    assert face.review_status == Face.Review.CONFIRMED and not face.is_trusted
    assert face.person_id is None or face.assignment == Face.Assignment.CONFIRMED

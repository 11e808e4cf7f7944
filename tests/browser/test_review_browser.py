"""In a real browser: a blurred upload is rejected with its reason, a staff reviewer approves it in
the review queue, and the approved face is matched to the person it shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from gallery.actions.people import do_create_person
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery
from recognition.actions.identity import do_tag_face
from tests.browser.conftest import blurred_obama, sign_in
from tests.conftest import PASSWORD, upload_file

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_lets_a_reviewer_approve_a_rejected_face_which_then_gets_matched(
    live_server: object, page: object, browser: object, shot: object, tmp_path: Path
) -> None:
    base = live_server.url  # type: ignore[attr-defined]
    alice = User.objects.create_user("alice", "alice@example.test", PASSWORD)
    User.objects.create_user("reviewer", "reviewer@example.test", PASSWORD, is_staff=True)
    gallery = Gallery.objects.create(owner=alice, name="Presidents")
    # Obama is known already (autocommit here: the upload is processed before this returns).
    result = do_upload_photos(gallery, [upload_file("obama/obama.jpg")], by=alice)
    obama = do_create_person(alice, "Barack Obama", by=alice)
    do_tag_face(result.accepted[0].faces.get(), obama, by=alice)

    sign_in(page, base, "alice", PASSWORD)
    page.goto(f"{base}/galleries/{gallery.pk}/")
    page.set_input_files("input[name=files]", str(blurred_obama(tmp_path / "blurred-obama.jpg")))
    page.locator("#batches .batch").first.get_by_text("Upload processed").wait_for()
    face = Face.objects.get(photo__original_name="blurred-obama.jpg")
    assert face.ood_status == Face.Quality.REJECTED and face.person_id is None
    assert any("blur" in reason for reason in face.ood_reasons)
    page.goto(f"{base}/photos/{face.photo_id}/")
    card = page.locator(f"#face-{face.pk}")
    assert "Too blurry to recognise reliably" in card.inner_text()
    shot(page, "10-rejected-face")

    reviewer = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    staff_page = reviewer.new_page()
    try:
        sign_in(staff_page, base, "reviewer", PASSWORD)
        staff_page.goto(f"{base}/review/")
        row = staff_page.locator(f"#review-face-{face.pk}")
        assert "Too blurry to recognise reliably" in row.inner_text()
        shot(staff_page, "11-review-queue")
        row.get_by_role("button", name="Approve").click()
        staff_page.locator(f"#review-face-{face.pk}", has_text="Approved").wait_for()
        shot(staff_page, "12-review-approved")
    finally:
        reviewer.close()

    face.refresh_from_db()
    assert face.review_status == Face.Review.APPROVED and face.is_trusted
    offered = face.person_id if face.assignment == Face.Assignment.SUGGESTED else None
    assert (offered or face.suggested_person_id) == obama.pk
    page.goto(f"{base}/photos/{face.photo_id}/")
    assert "Yes, Barack Obama" in page.locator(f"#face-{face.pk}").inner_text()
    shot(page, "13-approved-face-matched")

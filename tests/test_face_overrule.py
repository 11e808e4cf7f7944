"""The gallery owner overrules the filter on a face of their own gallery: "This face is fine,
use it" (and taking that back), from the face card. Real embeddings of the shared photos."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from PIL import Image, ImageFilter

from gallery.actions.people import do_create_person
from gallery.actions.photos import do_requeue_photo, do_upload_photos
from gallery.models import Face, FaceEvent, Gallery
from recognition.actions.identity import do_tag_face
from recognition.actions.manual import do_mark_not_face
from recognition.actions.review import do_review_faces
from recognition.models import ReviewDecision, Template
from recognition.tasks import process_photo
from tests.conftest import client_for, photo_path, upload_file
from tests.factories import face_in_new_photo

HTMX = {"HX-Request": "true"}


def _overrule(client: Client, face: Face, decision: str = "approve", htmx: bool = True) -> int:
    url = reverse("gallery:face-overrule", args=[face.pk])
    return client.post(url, {"decision": decision}, headers=HTMX if htmx else None).status_code


def test_it_lets_the_owner_use_a_rejected_face_which_becomes_a_template_and_gets_matched(
    gallery: Gallery, alice: User, alice_client: Client
) -> None:
    obama = do_create_person(alice, "Obama", by=alice)
    rejected = face_in_new_photo(gallery, "obama/obama.jpg", trusted=False)
    do_tag_face(rejected, obama, by=alice)
    assert not Template.objects.filter(face=rejected).exists()
    # Before the overrule Obama has no template: another photo of him matches nobody.
    before = face_in_new_photo(gallery, "obama/obama2.jpg")
    assert before.person_id is None and before.suggested_person_id is None
    response = alice_client.post(
        reverse("gallery:face-overrule", args=[rejected.pk]), {"decision": "approve"}, headers=HTMX
    )
    assert response.status_code == 200
    assert (
        "The face is used for matching. It now helps recognise Obama" in response.content.decode()
    )
    rejected.refresh_from_db()
    assert rejected.review_status == Face.Review.APPROVED and rejected.is_trusted
    assert rejected.reviewed_by == alice
    assert Template.objects.get(face=rejected).person == obama
    label = ReviewDecision.objects.get(face=rejected)
    assert (label.reviewer, label.decision) == (alice, ReviewDecision.Decision.APPROVE)
    assert FaceEvent.objects.filter(face=rejected, action="face_review_approved").exists()
    # A new photo of Obama is now matched to the face the owner let in.
    later = face_in_new_photo(gallery, "obama/obama1.jpg")
    from recognition.actions.identity import do_match_faces

    do_match_faces([later])
    later.refresh_from_db()
    assert obama.pk in {later.person_id, later.suggested_person_id}


def test_it_takes_the_overrule_back(gallery: Gallery, alice: User, alice_client: Client) -> None:
    obama = do_create_person(alice, "Obama", by=alice)
    face = face_in_new_photo(gallery, "obama/obama.jpg", trusted=False)
    do_tag_face(face, obama, by=alice)
    assert _overrule(alice_client, face, "approve") == 200
    page = alice_client.get(reverse("gallery:face-detail", args=[face.pk]), headers=HTMX)
    assert "Stop using this face" in page.content.decode()
    assert _overrule(alice_client, face, "reject") == 200
    face.refresh_from_db()
    assert face.review_status == Face.Review.CONFIRMED and not face.is_trusted
    assert not Template.objects.filter(face=face).exists()
    assert list(
        ReviewDecision.objects.filter(face=face).order_by("id").values_list("decision", flat=True)
    ) == ["approve", "reject"]


def test_it_offers_the_button_to_the_owner_only_on_rejected_faces(
    gallery: Gallery, alice_client: Client, bob_client: Client
) -> None:
    rejected = face_in_new_photo(gallery, "obama/obama.jpg", trusted=False)
    accepted = face_in_new_photo(gallery, "obama/obama1.jpg")

    def card(client: Client, face: Face) -> str:
        url = reverse("gallery:face-detail", args=[face.pk])
        return client.get(url, headers=HTMX).content.decode()

    assert "This face is fine, use it" in card(alice_client, rejected)
    assert "This face is fine, use it" not in card(alice_client, accepted)
    assert "This face is fine, use it" not in card(bob_client, rejected)
    # Nothing to overrule on a face the filter accepted.
    assert _overrule(alice_client, accepted) == 422
    assert not ReviewDecision.objects.exists()


def test_it_refuses_editors_and_strangers(
    gallery: Gallery, bob_client: Client, charlie_client: Client
) -> None:
    face = face_in_new_photo(gallery, "obama/obama.jpg", trusted=False)
    assert _overrule(bob_client, face, htmx=False) == 403  # an editor of the gallery, not its owner
    assert _overrule(charlie_client, face, htmx=False) == 404
    face.refresh_from_db()
    assert face.review_status == Face.Review.NONE and not ReviewDecision.objects.exists()


def test_it_tells_the_owner_why_in_words_and_staff_the_numbers(
    gallery: Gallery,
    alice: User,
    alice_client: Client,
    staff: User,
    tmp_path: Path,
    django_capture_on_commit_callbacks: object,
) -> None:
    """A really blurred photo through the real pipeline and the shipped filter."""
    with Image.open(photo_path("biden/biden2.jpg")) as img:
        img.convert("RGB").filter(ImageFilter.GaussianBlur(14)).save(tmp_path / "soft.jpg")
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file(tmp_path / "soft.jpg")], by=alice)
    face = Face.objects.get(photo=result.accepted[0])
    assert face.ood_status == Face.Quality.REJECTED
    url = reverse("gallery:face-detail", args=[face.pk])
    owner_card = alice_client.get(url, headers=HTMX).content.decode()
    assert "Too blurry to recognise reliably" in owner_card
    assert "sharpness" not in owner_card and "<details" not in owner_card
    assert "This face is fine, use it" in owner_card
    gallery.members.create(user=staff, role="viewer")
    staff_card = client_for(staff).get(url, headers=HTMX).content.decode()
    details = staff_card[staff_card.index("<details") :]
    assert "sharpness" in details and "Filter score" in details


def test_it_refuses_viewers_and_requests_without_the_csrf_token(
    gallery: Gallery, alice: User, charlie: User
) -> None:
    face = face_in_new_photo(gallery, "obama/obama.jpg", trusted=False)
    gallery.members.create(user=charlie, role="viewer")
    assert _overrule(client_for(charlie), face, htmx=False) == 403
    # The owner's own browser session, but a form posted from another site: no CSRF token.
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(alice)
    assert _overrule(forged, face) == 403
    face.refresh_from_db()
    assert face.review_status == Face.Review.NONE and not ReviewDecision.objects.exists()


def test_it_leaves_a_box_marked_not_a_face_to_its_own_undo(
    gallery: Gallery, alice: User, alice_client: Client
) -> None:
    """ "Use this face" posted from a stale card of a box since marked "not a face" must not
    make the box a trusted face behind the owner's back (its tag would stay cleared and the
    NOT_FACE label would stand next to an approval); "It is a face after all" undoes it."""
    obama = do_create_person(alice, "Obama", by=alice)
    face = face_in_new_photo(gallery, "obama/obama.jpg", trusted=False)
    do_tag_face(face, obama, by=alice)
    do_mark_not_face(face, by=alice)
    assert _overrule(alice_client, face) == 422
    # Nor from the staff review queue, which lists reviewed faces, "not a face" ones included.
    assert do_review_faces([face], ReviewDecision.Decision.APPROVE, by=alice) == []
    face.refresh_from_db()
    assert face.review_status == Face.Review.NOT_FACE and not face.is_trusted
    assert not Template.objects.filter(face=face).exists()
    assert list(ReviewDecision.objects.values_list("decision", flat=True)) == ["not_face"]


def test_it_keeps_the_owners_decision_and_its_training_label_when_the_photo_is_processed_again(
    gallery: Gallery,
    alice: User,
    alice_client: Client,
    tmp_path: Path,
    django_capture_on_commit_callbacks: object,
) -> None:
    """ "Find faces again" replaces the photo's face rows: the owner's overrule is carried to the
    new face, and so must be the ReviewDecision that `train_ood --include-reviews` learns from
    (it hung off the old row and went with it)."""
    with Image.open(photo_path("biden/biden2.jpg")) as img:
        img.convert("RGB").filter(ImageFilter.GaussianBlur(14)).save(tmp_path / "soft.jpg")
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file(tmp_path / "soft.jpg")], by=alice)
    photo = result.accepted[0]
    old = Face.objects.get(photo=photo)
    assert old.ood_status == Face.Quality.REJECTED
    assert _overrule(alice_client, old) == 200
    decided_at = ReviewDecision.objects.get().created_at

    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_requeue_photo(photo, by=alice)
    assert process_photo.delay(photo.pk).get() in {"done", "skipped"}  # eager: ran on commit
    new = Face.objects.get(photo=photo)
    assert new.pk != old.pk and new.review_status == Face.Review.APPROVED and new.is_trusted
    label = ReviewDecision.objects.get()
    assert (label.face_id, label.reviewer, label.decision) == (new.pk, alice, "approve")
    assert label.created_at == decided_at

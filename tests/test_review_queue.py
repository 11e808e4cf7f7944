"""The staff review queue of faces the out-of-distribution filter rejected: listing and filters,
approve / confirm one at a time (htmx) and in bulk, who-and-when records, Django admin actions,
non-staff refused; approving makes a face trusted, matched and (when tagged) a template."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from gallery.actions.people import do_create_person
from gallery.models import Face, FaceEvent, Gallery, Person
from recognition.actions.identity import do_tag_face
from recognition.models import ReviewDecision, Template
from tests.conftest import PASSWORD, client_for
from tests.factories import face_in_new_photo, make_face, make_photo

QUEUE = "review:review-queue"


def _reject(face: Face, score: float, *reasons: str) -> Face:
    Face.objects.filter(pk=face.pk).update(
        ood_status=Face.Quality.REJECTED,
        ood_score=score,
        ood_reasons=list(reasons),
        ood_model_version="ood-v1",
    )
    face.refresh_from_db()
    return face


def _tagged_reject(gallery: Gallery, relative: str, score: float, person: Person, by: User) -> Face:
    """A face the filter rejected (score, one classifier reason), tagged with `person`."""
    face = _reject(
        face_in_new_photo(gallery, relative, trusted=False), score, f"classifier {score:.2f}"
    )
    do_tag_face(face, person, by=by)
    return face


@pytest.fixture
def rejected(gallery: Gallery) -> list[Face]:
    """Three rejected Obama faces awaiting review, and one the filter accepted."""
    faces = [
        _reject(
            face_in_new_photo(gallery, "obama/obama1.jpg", trusted=False),
            0.97,
            "blurred (Laplacian variance 12, below 60)",
            "classifier 0.97 (threshold 0.60)",
        ),
        _reject(
            face_in_new_photo(gallery, "obama/obama2.jpg", trusted=False),
            0.71,
            "too dark (mean brightness 31 of 255)",
            "classifier 0.71 (threshold 0.60)",
        ),
        _reject(
            face_in_new_photo(gallery, "obama/obama3.jpg", trusted=False),
            0.64,
            "head turned (yaw ~52°)",
            "classifier 0.64 (threshold 0.60)",
        ),
    ]
    face_in_new_photo(gallery, "obama/obama.jpg")  # accepted: never in the queue
    return faces


@pytest.fixture
def staff_client(staff: User) -> Client:
    return client_for(staff)


def _ids_in(body: str, faces: list[Face]) -> list[int]:
    return [f.pk for f in faces if f'id="review-face-{f.pk}"' in body]


def test_it_lists_rejected_faces_with_score_and_reasons_for_staff(
    rejected: list[Face], staff_client: Client, django_assert_max_num_queries: object
) -> None:
    with django_assert_max_num_queries(8):
        response = staff_client.get(reverse(QUEUE))
    assert response.status_code == 200
    body = response.content.decode()
    assert _ids_in(body, rejected) == [f.pk for f in rejected]
    assert body.count('class="card suggestion review-face') == 3
    # Most out of distribution first, with the readable reasons.
    assert body.index(f"review-face-{rejected[0].pk}") < body.index(f"review-face-{rejected[2].pk}")
    assert "blurred (Laplacian variance 12, below 60)" in body
    assert "head turned (yaw ~52°)" in body
    assert "score 0.97" in body


def test_it_refuses_the_queue_to_non_staff_and_sends_anonymous_to_login(
    rejected: list[Face], alice_client: Client, charlie_client: Client
) -> None:
    face = rejected[0]
    assert alice_client.get(reverse(QUEUE)).status_code == 404  # the gallery's owner, not staff
    assert charlie_client.get(reverse(QUEUE)).status_code == 404
    decide = reverse("review:review-decide", args=[face.pk])
    assert alice_client.post(decide, {"decision": "approve"}).status_code == 404
    bulk = reverse("review:review-bulk")
    assert charlie_client.post(bulk, {"decision": "approve", "face": [face.pk]}).status_code == 404
    image = reverse("review:review-image", args=[face.pk, "crop"])
    assert charlie_client.get(image).status_code == 404
    anonymous = Client().get(reverse(QUEUE))
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]
    face.refresh_from_db()
    assert face.review_status == Face.Review.NONE
    assert not ReviewDecision.objects.exists()


def test_it_filters_by_reason_gallery_and_date_and_sorts_by_score(
    rejected: list[Face], staff_client: Client, alice: User
) -> None:
    other = Gallery.objects.create(owner=alice, name="Work")
    elsewhere = _reject(
        face_in_new_photo(other, "biden/biden.jpg", trusted=False), 0.99, "too dark (mean 20)"
    )
    Face.objects.filter(pk=rejected[2].pk).update(created_at=timezone.now() - timedelta(days=40))
    everyone = [*rejected, elsewhere]

    def shown(**params: str) -> list[int]:
        return _ids_in(staff_client.get(reverse(QUEUE), params).content.decode(), everyone)

    assert shown(q="DARK") == [rejected[1].pk, elsewhere.pk]
    assert shown(gallery=str(other.pk)) == [elsewhere.pk]
    last_month = (timezone.now() - timedelta(days=41)).date().isoformat()
    last_week = (timezone.now() - timedelta(days=7)).date().isoformat()
    assert shown(since=last_week) == [rejected[0].pk, rejected[1].pk, elsewhere.pk]
    assert shown(since=last_month, until=last_week) == [rejected[2].pk]
    body = staff_client.get(reverse(QUEUE), {"sort": "score-asc"}).content.decode()
    order = sorted(everyone, key=lambda f: body.index(f"review-face-{f.pk}"))
    assert [f.ood_score for f in order] == [0.64, 0.71, 0.97, 0.99]
    # The htmx filter form swaps only the list.
    fragment = staff_client.get(
        reverse(QUEUE), {"q": "yaw"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="review-list"
    ).content.decode()
    assert fragment.startswith('<div id="review-list">') and "<html" not in fragment
    assert _ids_in(fragment, everyone) == [rejected[2].pk]


def test_it_paginates_the_queue(gallery: Gallery, staff_client: Client) -> None:
    photo = make_photo(gallery)
    for i in range(30):
        face = make_face(photo, "obama/obama1.jpg", left=10 * i, trusted=False)
        _reject(face, 0.9, "classifier 0.90")
    first = staff_client.get(reverse(QUEUE)).content.decode()
    second = staff_client.get(reverse(QUEUE), {"page": "2"}).content.decode()
    assert first.count('class="card suggestion review-face') == 24
    assert second.count('class="card suggestion review-face') == 6
    assert "Page 1 of 2" in first


def test_it_approves_one_face_with_htmx_and_records_who_and_when(
    rejected: list[Face], staff_client: Client, staff: User
) -> None:
    face = rejected[0]
    before = timezone.now()
    response = staff_client.post(
        reverse("review:review-decide", args=[face.pk]),
        {"decision": "approve"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(
        f'<li class="card suggestion review-face is-done" id="review-face-{face.pk}"'
    )
    assert "Approved by reviewer" in body
    face.refresh_from_db()
    assert face.review_status == Face.Review.APPROVED and face.is_trusted
    assert face.reviewed_by == staff and face.reviewed_at >= before
    decision = ReviewDecision.objects.get(face=face)
    assert (decision.reviewer, decision.decision) == (staff, "approve")
    assert decision.ood_score == 0.97 and decision.reasons == face.ood_reasons
    event = FaceEvent.objects.get(face=face, action="face_review_approved")
    assert event.user == staff and event.data["ood_score"] == 0.97
    # A double click records nothing twice, and the face leaves the queue.
    staff_client.post(reverse("review:review-decide", args=[face.pk]), {"decision": "approve"})
    assert ReviewDecision.objects.filter(face=face).count() == 1
    assert f"review-face-{face.pk}" not in staff_client.get(reverse(QUEUE)).content.decode()
    reviewed = staff_client.get(reverse(QUEUE), {"show": "reviewed"}).content.decode()
    assert f"review-face-{face.pk}" in reviewed and "Approved by reviewer" in reviewed


def test_it_confirms_rejections_in_bulk(
    rejected: list[Face], staff_client: Client, staff: User
) -> None:
    chosen = rejected[:2]
    response = staff_client.post(
        reverse("review:review-bulk"),
        {"decision": "reject", "face": [f.pk for f in chosen], "next": reverse(QUEUE)},
    )
    assert response.status_code == 302 and response["Location"] == reverse(QUEUE)
    for face in chosen:
        face.refresh_from_db()
        assert face.review_status == Face.Review.CONFIRMED and not face.is_trusted
        assert face.reviewed_by == staff and face.reviewed_at is not None
    assert ReviewDecision.objects.filter(decision="reject", reviewer=staff).count() == 2
    assert FaceEvent.objects.filter(action="face_review_confirmed", user=staff).count() == 2
    rejected[2].refresh_from_db()
    assert rejected[2].review_status == Face.Review.NONE
    page = staff_client.get(reverse(QUEUE)).content.decode()
    assert _ids_in(page, rejected) == [rejected[2].pk]
    assert "Confirmed the rejection of 2 faces." in page


def test_it_makes_an_approved_tagged_face_a_template_and_matches_approved_faces(
    gallery: Gallery, alice: User, staff_client: Client
) -> None:
    obama = do_create_person(alice, "Obama", by=alice)
    do_tag_face(face_in_new_photo(gallery, "obama/obama.jpg"), obama, by=alice)
    tagged = _tagged_reject(gallery, "obama/obama1.jpg", 0.8, obama, alice)
    unknown = _reject(
        face_in_new_photo(gallery, "obama/obama2.jpg", trusted=False), 0.8, "classifier 0.80"
    )
    assert not Template.objects.filter(face=tagged).exists()
    staff_client.post(
        reverse("review:review-bulk"), {"decision": "approve", "face": [tagged.pk, unknown.pk]}
    )
    assert Template.objects.get(face=tagged).person == obama
    unknown.refresh_from_db()
    # Matched against Obama's templates: tagged automatically or offered as a suggestion.
    assert obama.pk in {unknown.person_id, unknown.suggested_person_id}
    # Confirming the rejection again takes the template away.
    staff_client.post(reverse("review:review-bulk"), {"decision": "reject", "face": [tagged.pk]})
    assert not Template.objects.filter(face=tagged).exists()


def test_it_serves_the_crop_and_photo_to_reviewers_who_are_not_members(
    rejected: list[Face], staff_client: Client
) -> None:
    face = rejected[0]
    face.crop.save("face.jpg", ContentFile(b"\xff\xd8\xff\xe0 not really a jpeg"), save=True)
    response = staff_client.get(reverse("review:review-image", args=[face.pk, "crop"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content).startswith(b"\xff\xd8")
    assert (
        staff_client.get(reverse("review:review-image", args=[face.pk, "photo"])).status_code == 404
    )


def test_it_approves_and_confirms_from_django_admin(rejected: list[Face]) -> None:
    admin_user = User.objects.create_superuser("root", "root@example.test", PASSWORD)
    client = client_for(admin_user)
    url = reverse("admin:gallery_face_changelist")
    accepted = Face.objects.filter(ood_status=Face.Quality.ACCEPTED).get()
    response = client.post(
        url,
        {"action": "approve_rejected_faces", "_selected_action": [rejected[0].pk, accepted.pk]},
        follow=True,
    )
    assert "Approved 1 face(s); skipped 1 the filter did not reject." in response.content.decode()
    client.post(url, {"action": "confirm_face_rejection", "_selected_action": [rejected[1].pk]})
    states = dict(
        Face.objects.filter(pk__in=[f.pk for f in rejected]).values_list("pk", "review_status")
    )
    assert states == {rejected[0].pk: "approved", rejected[1].pk: "confirmed", rejected[2].pk: ""}
    assert set(ReviewDecision.objects.values_list("reviewer__username", flat=True)) == {"root"}
    accepted.refresh_from_db()
    assert accepted.review_status == ""


def test_it_flags_and_can_sort_first_faces_whose_person_has_no_usable_face(
    gallery: Gallery, alice: User, staff_client: Client
) -> None:
    enrolled = do_create_person(alice, "Obama", by=alice)
    do_tag_face(face_in_new_photo(gallery, "obama/obama.jpg"), enrolled, by=alice)
    other = _tagged_reject(gallery, "obama/obama1.jpg", 0.95, enrolled, alice)
    lonely = do_create_person(alice, "Biden", by=alice)
    only = _tagged_reject(gallery, "biden/biden.jpg", 0.61, lonely, alice)
    untagged = _reject(
        face_in_new_photo(gallery, "obama/obama2.jpg", trusted=False), 0.99, "classifier 0.99"
    )
    faces = [untagged, other, only]

    def order(body: str) -> list[Face]:
        return sorted(faces, key=lambda f: body.index(f'id="review-face-{f.pk}"'))

    by_score = staff_client.get(reverse(QUEUE)).content.decode()
    assert order(by_score) == [untagged, other, only]
    assert by_score.count("sole-reference") == 1
    assert "No usable face of Biden yet" in by_score

    first = staff_client.get(reverse(QUEUE), {"sort": "unenrolled"}).content.decode()
    assert order(first) == [only, untagged, other]

    # A row re-rendered on its own (htmx, here after a request without a decision) keeps it.
    row = staff_client.post(
        reverse("review:review-decide", args=[only.pk]), {"decision": ""}, HTTP_HX_REQUEST="true"
    )
    assert row.status_code == 422
    assert "No usable face of Biden yet" in row.content.decode()

    # Once one of Biden's faces is approved he is enrolled, and the flag goes.
    staff_client.post(reverse("review:review-decide", args=[only.pk]), {"decision": "approve"})
    assert Template.objects.filter(person=lonely).exists()
    reviewed = staff_client.get(reverse(QUEUE), {"show": "reviewed"}).content.decode()
    assert "sole-reference" not in reviewed

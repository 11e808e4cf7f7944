"""Moving a library between model versions on real photos with the real models: the default
dlib ResNet and its flip-averaged variant (a real second version). Names, confirmations, "not
this person" decisions and reviews survive a switch and a switch back; searches answer
throughout; a job crashed in the middle resumes without losing or doubling a photo."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from django.contrib.auth.models import User

from gallery.actions.common import ActionError
from gallery.actions.people import do_create_person
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, FaceEvent, FaceNotPerson, Gallery, Person, Photo
from recognition.actions import models as model_actions
from recognition.actions.identity import do_reject_suggestion, do_tag_face
from recognition.actions.models import do_drop_version, do_resume_reembed, do_start_reembed
from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION
from recognition.index.search import search_people
from recognition.models import ModelVersion, ReembedJob, StagedPhoto, Template
from recognition.runtime import active_version
from tests.conftest import upload_file

PHOTOS = [
    "biden/biden.jpg",
    "biden/biden2.jpg",
    "obama/obama.jpg",
    "obama/obama1.jpg",
    "obama/obama2.jpg",
    "obama/obama3.jpg",
    "_multi_face/obama_and_biden.jpg",
    "kit_harington/john1.jpeg",
]


class Crash(RuntimeError):
    pass


@pytest.fixture
def crash_after() -> Iterator[Callable[[int], None]]:
    def arm(k: int) -> None:
        def hook(staged: int) -> None:
            if staged >= k:
                raise Crash(f"crashed after {staged} photos")

        model_actions.STAGE_HOOK = hook

    yield arm
    model_actions.STAGE_HOOK = None


def _library(gallery: Gallery, alice: User, capture: object) -> dict[str, Photo]:
    with capture(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file(p) for p in PHOTOS], by=alice)
    assert not result.rejected
    photos = {p: Photo.objects.get(pk=r.pk) for p, r in zip(PHOTOS, result.accepted, strict=True)}
    assert all(p.status == Photo.Status.DONE for p in photos.values())
    return photos


def _only_face(photo: Photo) -> Face:
    faces = list(photo.faces.all())
    assert len(faces) == 1, faces
    return faces[0]


def _state() -> dict[int, tuple[object, ...]]:
    """What people decided about each face (never touched by a switch)."""
    return {
        f.pk: (f.person_id, f.assignment, f.review_status, f.left, f.top, f.width, f.height)
        for f in Face.objects.filter(assignment__in=["confirmed", "ignored"])
    } | {
        f.pk: (f.review_status,)
        for f in Face.objects.exclude(review_status="").exclude(assignment="confirmed")
    }


def _not_persons() -> set[tuple[int, int, int | None]]:
    return set(FaceNotPerson.objects.values_list("face_id", "person_id", "via_face_id"))


def _search(face: Face, gallery: Gallery) -> list[int]:
    face.refresh_from_db()
    result = search_people(
        np.asarray(face.embedding),
        gallery_ids=[gallery.pk],
        embedder_version=active_version(),
        top_n=3,
        plan="exact",
    )
    return [c.person_id for c in result.candidates]


def _switch(target: str, capture: object) -> ReembedJob:
    with capture(execute=True):  # type: ignore[operator]
        job = do_start_reembed(target)
    job.refresh_from_db()
    return job


def test_it_switches_to_the_flip_version_and_back_keeping_every_decision(
    gallery: Gallery,
    alice: User,
    django_capture_on_commit_callbacks: object,
    crash_after: Callable[[int], None],
) -> None:
    capture = django_capture_on_commit_callbacks
    photos = _library(gallery, alice, capture)
    biden = do_create_person(alice, "Joe Biden", by=alice)
    obama = do_create_person(alice, "Barack Obama", by=alice)
    kit = do_create_person(alice, "Kit Harington", by=alice)
    with capture(execute=True):  # type: ignore[operator]
        # The faces near a confirmed one are matched again after the commit.
        do_tag_face(_only_face(photos["biden/biden.jpg"]), biden, by=alice)
        do_tag_face(_only_face(photos["obama/obama.jpg"]), obama, by=alice)
        do_tag_face(_only_face(photos["obama/obama1.jpg"]), obama, by=alice)
        do_tag_face(_only_face(photos["kit_harington/john1.jpeg"]), kit, by=alice)
    # "Not this person" on an automatic tag.
    obama3 = _only_face(photos["obama/obama3.jpg"])
    assert obama3.person_id == obama.pk and obama3.assignment == Face.Assignment.SUGGESTED
    with capture(execute=True):  # type: ignore[operator]
        do_reject_suggestion(obama3, by=alice)
    # The matcher names the other Obama faces automatically under the calibrated default.
    obama2 = _only_face(photos["obama/obama2.jpg"])
    obama2.refresh_from_db()
    assert obama2.person_id == obama.pk and obama2.assignment == Face.Assignment.SUGGESTED

    before = _state()
    not_persons = _not_persons()
    assert not_persons, "the rejection was recorded"
    faces_before = {
        f.pk: np.asarray(f.embedding).copy() for f in Face.objects.filter(photo__gallery=gallery)
    }
    probe = _only_face(photos["biden/biden2.jpg"])
    assert _search(probe, gallery)[0] == biden.pk

    # Crash after 3 photos: the job stops, the old version still serves.
    crash_after(3)
    job = _switch(DLIB_RESNET_FLIP_VERSION, capture)
    assert job.state == ReembedJob.State.FAILED and "crashed after 3" in job.error
    assert StagedPhoto.objects.filter(job=job).count() == 3
    assert active_version() == DLIB_RESNET_VERSION
    assert set(Face.objects.values_list("embedder_version", flat=True)) == {DLIB_RESNET_VERSION}
    assert _search(probe, gallery)[0] == biden.pk
    model_actions.STAGE_HOOK = None
    with capture(execute=True):  # type: ignore[operator]
        do_resume_reembed(job)
    job.refresh_from_db()
    assert job.state == ReembedJob.State.SWITCHED, job.error
    assert active_version() == DLIB_RESNET_FLIP_VERSION
    assert ModelVersion.objects.get(is_active=True).name == DLIB_RESNET_FLIP_VERSION

    # Nothing lost or doubled: the same face rows, each once, all of the new version.
    assert StagedPhoto.objects.filter(job=job).count() == len(PHOTOS)
    faces_after = {
        f.pk: np.asarray(f.embedding) for f in Face.objects.filter(photo__gallery=gallery)
    }
    assert faces_after.keys() == faces_before.keys()
    assert set(Face.objects.values_list("embedder_version", flat=True)) == {
        DLIB_RESNET_FLIP_VERSION
    }
    moved = [np.linalg.norm(faces_after[k] - faces_before[k]) for k in faces_before]
    assert all(0 < d < 0.3 for d in moved), moved  # a different, close vector per face
    assert _state() == before
    assert _not_persons() == not_persons
    # Templates: only the confirmed faces, all in the flip version's own basis.
    templates = Template.objects.select_related("basis")
    assert {t.face_id for t in templates} == {
        pk for pk, s in before.items() if len(s) > 1 and s[1] == "confirmed"
    }
    assert {(t.embedder_version, t.basis.embedder_version) for t in templates} == {
        (DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_FLIP_VERSION)
    }
    # Searches answer under the new version, and the flip version is calibrated (its own
    # ceilings and stranger model): the matcher, run again by the switch on the flip vectors,
    # names the other Obama face automatically again, and leaves the rejected one alone.
    assert _search(probe, gallery)[0] == biden.pk
    obama2.refresh_from_db()
    assert obama2.person_id == obama.pk and obama2.assignment == Face.Assignment.SUGGESTED
    assert obama2.embedder_version == DLIB_RESNET_FLIP_VERSION
    obama3.refresh_from_db()
    assert obama3.person_id != obama.pk

    # And back: the same detector and landmarks give back the very same vectors.
    back = _switch(DLIB_RESNET_VERSION, capture)
    assert back.state == ReembedJob.State.SWITCHED, back.error
    assert active_version() == DLIB_RESNET_VERSION
    restored = {f.pk: np.asarray(f.embedding) for f in Face.objects.filter(photo__gallery=gallery)}
    assert restored.keys() == faces_before.keys()
    assert max(np.abs(restored[k] - faces_before[k]).max() for k in restored) < 1e-5
    assert _state() == before
    assert _not_persons() == not_persons
    assert _search(probe, gallery)[0] == biden.pk
    obama2.refresh_from_db()
    assert obama2.person_id == obama.pk  # the calibrated default names it too
    assert set(Template.objects.values_list("embedder_version", flat=True)) == {DLIB_RESNET_VERSION}

    # The flip version's leftovers (its vectors kept by the switch back) can be dropped.
    counts = do_drop_version(DLIB_RESNET_FLIP_VERSION)
    assert counts["kept_photos"] == len(PHOTOS)
    assert counts["bases"] >= 1
    with pytest.raises(ActionError):
        do_drop_version(DLIB_RESNET_VERSION)
    assert Person.objects.filter(pk__in=[biden.pk, obama.pk, kit.pk]).count() == 3


def test_it_names_nobody_automatically_after_a_switch_to_an_uncalibrated_model(
    gallery: Gallery,
    alice: User,
    django_capture_on_commit_callbacks: object,
    uncalibrated_flip: str,
) -> None:
    """The learning phase: a version without thresholds withdraws the matcher's tags."""
    capture = django_capture_on_commit_callbacks
    names = ["obama/obama.jpg", "obama/obama1.jpg", "obama/obama2.jpg"]
    with capture(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file(p) for p in names], by=alice)
    first, second, third = (_only_face(Photo.objects.get(pk=r.pk)) for r in result.accepted)
    obama = do_create_person(alice, "Barack Obama", by=alice)
    with capture(execute=True):  # type: ignore[operator]
        do_tag_face(first, obama, by=alice)
        do_tag_face(second, obama, by=alice)
    third.refresh_from_db()
    assert third.person_id == obama.pk and third.assignment == Face.Assignment.SUGGESTED
    job = _switch(uncalibrated_flip, capture)
    assert job.state == ReembedJob.State.SWITCHED, job.error
    third.refresh_from_db()
    assert third.embedder_version == uncalibrated_flip
    assert third.person_id is None and third.assignment == Face.Assignment.NONE
    first.refresh_from_db()
    assert first.person_id == obama.pk and first.assignment == Face.Assignment.CONFIRMED


def test_it_refuses_an_unknown_or_active_model(alice: User) -> None:
    with pytest.raises(ActionError, match="not installed"):
        do_start_reembed("insightface-buffalo_l")
    with pytest.raises(ActionError, match="already the active"):
        do_start_reembed(DLIB_RESNET_VERSION)


def test_it_sends_a_photo_embedded_with_the_old_model_through_the_new_one(
    gallery: Gallery,
    alice: User,
    django_capture_on_commit_callbacks: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that ran the models just before a switch committed must not store vectors of
    the version that is no longer active: the photo goes back to the queue."""
    from recognition.actions import processing
    from recognition.runtime import backend

    calls: list[str] = []

    def stale_then_current() -> object:
        # The first run still holds the flip version's backend (the switch happened meanwhile).
        calls.append("run")
        return backend(DLIB_RESNET_FLIP_VERSION if len(calls) == 1 else None)

    monkeypatch.setattr(processing, "active_backend", stale_then_current)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file("biden/biden.jpg")], by=alice)
    photo = Photo.objects.get(pk=result.accepted[0].pk)
    assert len(calls) == 2
    assert photo.status == Photo.Status.DONE
    assert set(photo.faces.values_list("embedder_version", flat=True)) == {DLIB_RESNET_VERSION}
    assert FaceEvent.objects.filter(
        action=FaceEvent.Action.PHOTO_REQUEUED, data__reason="new_version"
    ).exists()

"""Templates follow tags, reviews, deletions and merges; refits keep searches correct."""

from __future__ import annotations

import math

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from gallery.actions.photos import do_delete_photo
from gallery.models import Face, Gallery
from recognition.actions.identity import do_merge_people, do_tag_face, do_untag_face
from recognition.index.bases import (
    active_basis,
    do_finish_refit,
    do_refit_batch,
    do_start_refit,
    search_bases,
)
from recognition.index.enrolment import sync_face_templates
from recognition.index.search import search_people
from recognition.models import ProjectionBasis, Template
from recognition.tasks import refit_basis
from tests.factories import VERSION, brute_force, make_faces, make_people
from tests.lfw_embeddings import lfw_embeddings


@pytest.fixture
def untagged(alice: User, gallery: Gallery) -> list[Face]:
    """Eight real faces (two images of each of four people), trusted, not tagged yet."""
    data = lfw_embeddings()
    rows = [i for i in range(len(data.labels)) if data.labels[i] < 4 and i % 4 < 2]
    return make_faces(gallery, data.vectors[rows], [None] * len(rows), confirmed=False)


def _template_vector_ok(face: Face) -> bool:
    row = Template.objects.get(face=face)
    basis = search_bases(VERSION)[-1][1] if row.basis.is_active is False else None
    basis = basis or active_basis(VERSION)[1]
    expected = basis.rotate(np.asarray(face.embedding))
    return bool(np.abs(np.asarray(row.vector) - expected).max() < 1e-5)


def test_it_creates_and_removes_templates_on_tag_and_untag(
    alice: User, untagged: list[Face]
) -> None:
    person = make_people(alice, 1)[0]
    face = untagged[0]
    do_tag_face(face, person, by=alice)
    row = Template.objects.get(face=face)
    assert (row.person_id, row.gallery_id, row.owner_id) == (
        person.pk,
        face.photo.gallery_id,
        alice.pk,
    )
    assert row.embedder_version == VERSION
    assert _template_vector_ok(face)
    do_untag_face(face, by=alice)
    assert not Template.objects.filter(face=face).exists()


def test_it_creates_the_first_basis_from_trusted_embeddings(
    alice: User, untagged: list[Face]
) -> None:
    assert not ProjectionBasis.objects.exists()
    person = make_people(alice, 1)[0]
    do_tag_face(untagged[0], person, by=alice)
    basis = ProjectionBasis.objects.get()
    assert basis.is_active and basis.version == 1
    assert basis.n_samples == len(untagged)  # every trusted face, tagged or not


def test_it_uses_the_identity_basis_when_nothing_is_trusted(gallery: Gallery) -> None:
    _, basis = active_basis(VERSION)
    assert basis.n_samples == 0
    assert np.array_equal(basis.rotation, np.eye(128, dtype=np.float32))


def test_it_removes_templates_when_the_photo_is_deleted(alice: User, untagged: list[Face]) -> None:
    people = make_people(alice, 2)
    do_tag_face(untagged[0], people[0], by=alice)
    do_tag_face(untagged[1], people[1], by=alice)
    assert Template.objects.count() == 2
    do_delete_photo(untagged[0].photo, by=alice)
    assert list(Template.objects.values_list("face_id", flat=True)) == [untagged[1].pk]


def test_it_keeps_untrusted_faces_out_until_a_reviewer_approves(
    alice: User, untagged: list[Face]
) -> None:
    person = make_people(alice, 1)[0]
    face = untagged[0]
    Face.objects.filter(pk=face.pk).update(ood_status=Face.Quality.REJECTED)
    face.refresh_from_db()
    do_tag_face(face, person, by=alice)
    assert not Template.objects.filter(face=face).exists()
    Face.objects.filter(pk=face.pk).update(review_status=Face.Review.APPROVED)
    sync_face_templates([face.pk])
    assert Template.objects.filter(face=face).exists()
    Face.objects.filter(pk=face.pk).update(review_status=Face.Review.CONFIRMED)
    sync_face_templates([face.pk])
    assert not Template.objects.filter(face=face).exists()


def test_it_ignores_suggested_matches(alice: User, untagged: list[Face]) -> None:
    person = make_people(alice, 1)[0]
    Face.objects.filter(pk=untagged[0].pk).update(
        person=person, assignment=Face.Assignment.SUGGESTED
    )
    sync_face_templates([untagged[0].pk])
    assert not Template.objects.exists()


def test_it_moves_templates_when_people_are_merged(alice: User, untagged: list[Face]) -> None:
    source, target = make_people(alice, 2)
    do_tag_face(untagged[0], source, by=alice)
    do_tag_face(untagged[3], target, by=alice)
    do_merge_people(source, target, by=alice)
    assert set(Template.objects.values_list("person_id", flat=True)) == {target.pk}


def test_it_syncs_idempotently_in_a_fixed_number_of_queries(
    alice: User, untagged: list[Face], django_assert_max_num_queries: object
) -> None:
    people = make_people(alice, 4)
    Face.objects.filter(pk__in=[f.pk for f in untagged]).update(
        assignment=Face.Assignment.CONFIRMED
    )
    for i, face in enumerate(untagged):
        Face.objects.filter(pk=face.pk).update(person=people[i % 4])
    ids = [f.pk for f in untagged]
    sync_face_templates(ids)
    first = sorted(Template.objects.values_list("face_id", "person_id", "basis_id"))
    with django_assert_max_num_queries(8):
        sync_face_templates(ids)
    assert sorted(Template.objects.values_list("face_id", "person_id", "basis_id")) == first
    assert len(first) == len(untagged)


@pytest.fixture
def enrolled(alice: User, gallery: Gallery) -> dict:
    """Templates of 12 real people, all under a first basis fitted on 4 of them."""
    data = lfw_embeddings()
    people = make_people(alice, len(data.names))
    first = [i for i in range(len(data.labels)) if data.labels[i] < 4]
    rest = [i for i in range(len(data.labels)) if data.labels[i] >= 4]
    faces = make_faces(gallery, data.vectors[first], [people[data.labels[i]] for i in first])
    sync_face_templates([f.pk for f in faces])  # basis v1: fitted on 16 faces
    more = make_faces(
        gallery, data.vectors[rest], [people[data.labels[i]] for i in rest], tag="more"
    )
    sync_face_templates([f.pk for f in more])
    order = first + rest
    return {
        "vectors": data.vectors[order],
        "person_ids": np.array([people[data.labels[i]].pk for i in order]),
        "faces": faces + more,
        "people": people,
    }


def _check_searches(enrolled: dict, gallery: Gallery) -> None:
    """Exact, index with delta=inf and the default staged search all give brute force."""
    for query in enrolled["vectors"][::5]:
        expected = brute_force(query, enrolled["vectors"], enrolled["person_ids"], 3)
        for kwargs in (
            {"plan": "exact"},
            {"plan": "hnsw", "delta": math.inf, "shortlist": 500},
        ):
            result = search_people(
                query, gallery_ids=[gallery.pk], embedder_version=VERSION, top_n=3, **kwargs
            )
            got = [(c.person_id, c.distance) for c in result.candidates]
            assert [p for p, _ in got] == [p for p, _ in expected], kwargs
            assert np.allclose([d for _, d in got], [d for _, d in expected], atol=1e-5)
        staged = search_people(
            query, gallery_ids=[gallery.pk], embedder_version=VERSION, top_n=1, plan="hnsw"
        )
        assert staged.best.person_id == expected[0][0]


def test_it_refits_and_searches_stay_correct_during_and_after(
    alice: User, gallery: Gallery, enrolled: dict
) -> None:
    old_id, old = active_basis(VERSION)
    assert old.n_samples == 16
    target = do_start_refit(VERSION)
    assert not target.is_active and target.version == 2
    assert do_start_refit(VERSION).pk == target.pk  # a second start resumes
    assert do_refit_batch(VERSION, target, 20) == 20
    assert Template.objects.filter(basis_id=target.pk).count() == 20
    assert [pk for pk, _ in search_bases(VERSION)] == [old_id, target.pk]
    _check_searches(enrolled, gallery)  # half the rows in each basis

    # A face tagged during the refit is written with the active (old) basis ...
    extra_vector = lfw_embeddings().vectors[:1] + 0.03  # near person 0, not a tie
    extra = make_faces(gallery, extra_vector, [None], confirmed=False, tag="x")[0]
    do_tag_face(extra, enrolled["people"][5], by=alice)
    assert Template.objects.get(face=extra).basis_id == old_id
    # ... and the finish moves it too, in the transaction that flips the active basis.
    do_finish_refit(VERSION, target)
    target.refresh_from_db()
    assert target.is_active
    assert not ProjectionBasis.objects.get(pk=old_id).is_active
    assert set(Template.objects.values_list("basis_id", flat=True)) == {target.pk}
    new = active_basis(VERSION)[1]
    assert new.n_samples == 48  # fitted when the refit started
    for row in Template.objects.select_related("face"):
        expected = new.rotate(np.asarray(row.face.embedding))
        assert np.abs(np.asarray(row.vector) - expected).max() < 1e-5
    enrolled["vectors"] = np.concatenate([enrolled["vectors"], extra_vector])
    enrolled["person_ids"] = np.append(enrolled["person_ids"], enrolled["people"][5].pk)
    _check_searches(enrolled, gallery)


def test_it_refits_through_the_task_and_the_command(gallery: Gallery, enrolled: dict) -> None:
    assert refit_basis.delay(VERSION, None, 7).get() == "done"
    assert ProjectionBasis.objects.get(is_active=True).version == 2
    call_command("refit_basis", "--batch-size", "10")
    active = ProjectionBasis.objects.get(is_active=True)
    assert active.version == 3
    assert set(Template.objects.values_list("basis_id", flat=True)) == {active.pk}
    _check_searches(enrolled, gallery)


def test_it_creates_the_level_one_index_the_settings_ask_for(
    gallery: Gallery, settings: object
) -> None:
    from django.db import connection

    settings.FACEWEB_SEARCH_LEVELS = [40, 64, 128]
    call_command("refit_basis", "--ensure-index")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'recognition_template_prefix40_hnsw'"
        )
        (definition,) = cursor.fetchone()
    assert "subvector(vector, 1, 40)" in definition and "hnsw" in definition

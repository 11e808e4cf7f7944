"""Staged prefix search against brute force, on real embeddings in the real PostgreSQL."""

from __future__ import annotations

import math

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from gallery.models import Gallery
from recognition.core.calibration import Thresholds, thresholds
from recognition.core.projection import fit_basis
from recognition.core.staged import SearchParams, SearchStats, staged_rank
from recognition.index.bases import active_basis
from recognition.index.enrolment import sync_face_templates
from recognition.index.search import (
    TemplateTable,
    search_faces,
    search_params,
    search_people,
    vector_literal,
)
from recognition.models import ProjectionBasis
from tests.factories import (
    VERSION,
    brute_force,
    make_faces,
    make_people,
    synthetic_like,
)
from tests.lfw_embeddings import lfw_embeddings


@pytest.fixture
def enrolled(alice: User, gallery: Gallery) -> dict:
    """3 templates of each of 12 real LFW people; the 4th image of each is the probe."""
    data = lfw_embeddings()
    people = make_people(alice, len(data.names))
    template_rows = [i for i in range(len(data.labels)) if i % 4 != 3]
    probe_rows = [i for i in range(len(data.labels)) if i % 4 == 3]
    faces = make_faces(
        gallery,
        data.vectors[template_rows],
        [people[data.labels[i]] for i in template_rows],
    )
    sync_face_templates([f.pk for f in faces])
    return {
        "vectors": data.vectors[template_rows],
        "person_ids": np.array([people[data.labels[i]].pk for i in template_rows]),
        "face_ids": np.array([f.pk for f in faces]),
        "probes": data.vectors[probe_rows],
        "probe_person_ids": [people[data.labels[i]].pk for i in probe_rows],
        "all": data.vectors,
    }


def _as_pairs(result: object) -> list[tuple[int, float]]:
    return [(c.person_id, c.distance) for c in result.candidates]


@pytest.mark.parametrize("mode", ["fixed", "variable"])
def test_it_equals_brute_force_with_infinite_delta_and_a_full_shortlist(
    enrolled: dict, gallery: Gallery, mode: str
) -> None:
    for query in enrolled["all"]:
        result = search_people(
            query,
            gallery_ids=[gallery.pk],
            embedder_version=VERSION,
            top_n=5,
            delta=math.inf,
            shortlist=1000,
            mode=mode,
            plan="hnsw",
        )
        expected = brute_force(query, enrolled["vectors"], enrolled["person_ids"], 5)
        assert [p for p, _ in _as_pairs(result)] == [p for p, _ in expected]
        assert np.allclose([d for _, d in _as_pairs(result)], [d for _, d in expected], atol=1e-5)
        # The face named is the person's nearest template.
        for c in result.candidates:
            rows = enrolled["person_ids"] == c.person_id
            nearest = enrolled["face_ids"][rows][
                np.argmin(np.linalg.norm(enrolled["vectors"][rows] - query, axis=1))
            ]
            assert c.face_id == nearest
        assert result.stats.plan == "hnsw"
        assert result.stats.shortlist_rows == len(enrolled["vectors"])


def test_it_gives_the_exact_answer_with_the_exact_plan(enrolled: dict, gallery: Gallery) -> None:
    for query in enrolled["probes"]:
        result = search_people(query, gallery_ids=[gallery.pk], embedder_version=VERSION)
        assert result.stats.plan == "exact"  # 36 rows: far below the exact-plan limit
        expected = brute_force(query, enrolled["vectors"], enrolled["person_ids"], 5)
        assert [p for p, _ in _as_pairs(result)] == [p for p, _ in expected]
        assert np.allclose([d for _, d in _as_pairs(result)], [d for _, d in expected], atol=1e-5)


def test_it_finds_the_enrolled_person_with_the_default_levels(
    enrolled: dict, gallery: Gallery
) -> None:
    agree = correct = 0
    for query, truth in zip(enrolled["probes"], enrolled["probe_person_ids"], strict=True):
        staged = search_people(
            query, gallery_ids=[gallery.pk], embedder_version=VERSION, plan="hnsw"
        )
        exact = brute_force(query, enrolled["vectors"], enrolled["person_ids"], 1)[0]
        agree += staged.best.person_id == exact[0]
        correct += staged.best.person_id == truth
        # Levels 48, 64, 128 (the defaults) were evaluated, on fewer and fewer rows.
        assert staged.stats.components_per_level == [48, 64, 128]
        assert staged.stats.rows_per_level[0] == 32  # the shortlist, of 36 templates
        assert staged.stats.rows_per_level == sorted(staged.stats.rows_per_level, reverse=True)
    assert agree == len(enrolled["probes"])
    assert correct >= len(enrolled["probes"]) - 1


def test_it_prunes_with_the_seeds_ratio_rule() -> None:
    """Level 1 sees 4 classes; only those within delta (distances, not squared) of the best go
    on, so the far class's tail components are never read."""
    vectors = np.array(
        [
            [1.0, 0, 0, 0],  # class 1, prefix distance 1
            [1.2, 0, 5, 0],  # class 2, prefix 1.2 (kept with delta 1.3), full sqrt(26.44)
            [1.4, 0, 0, 0],  # class 3, prefix 1.4: ratio 1.4 > 1.3, pruned
            [9.0, 0, 0, 0],  # class 4, pruned
        ],
        dtype=np.float32,
    )
    labels = np.array([1, 2, 3, 4])
    faces = np.array([10, 20, 30, 40])
    stats = SearchStats()
    params = SearchParams(levels=(2, 4), delta=1.3)
    out = staged_rank(np.zeros(4, np.float32), vectors, labels, faces, params, 1, stats)
    assert [(c.person_id, c.face_id) for c in out] == [(1, 10)]
    assert stats.rows_per_level == [4, 2]
    assert stats.classes_per_level == [2, 2]
    assert stats.components_read == 4 * 2 + 2 * 2
    # Asking for 3 names keeps the 3 nearest classes whatever delta says.
    out3 = staged_rank(np.zeros(4, np.float32), vectors, labels, faces, params, 3)
    assert [c.person_id for c in out3] == [1, 3, 2]
    # Squared ratio would be 1.96 > 1.3^2 = 1.69 for class 3, 1.44 < 1.69 for class 2: the
    # rule compares distances, so the two readings agree on this data by construction.
    variable = SearchParams(levels=(1,), delta=1.3, mode="variable", step=1)
    vstats = SearchStats()
    staged_rank(np.zeros(4, np.float32), vectors, labels, faces, variable, 1, vstats)
    # Step 1 (1 component): classes 1 and 2 stay (1.2/1 <= 1.3); step 2 adds nothing; step 3
    # separates them (class 2 is 5 away), one class is left and is completed to D at once.
    assert vstats.components_per_level == [1, 2, 3, 4]
    assert vstats.classes_per_level[-2] == 1


@pytest.fixture
def crowded(alice: User, gallery: Gallery) -> dict:
    """A big gallery of 2,000 synthetic templates next to the small real one (2.3% of rows)."""
    data = lfw_embeddings()
    big = Gallery.objects.create(owner=alice, name="Crowd")
    crowd = synthetic_like(data.vectors, 2000, seed=1)
    crowd_people = make_people(alice, 500, prefix="crowd")
    crowd_faces = make_faces(big, crowd, [crowd_people[i % 500] for i in range(2000)], tag="c")
    people = make_people(alice, len(data.names))
    faces = make_faces(gallery, data.vectors, [people[i] for i in data.labels])
    sync_face_templates([f.pk for f in crowd_faces] + [f.pk for f in faces])
    return {
        "big": big,
        "vectors": data.vectors,
        "person_ids": np.array([people[i].pk for i in data.labels]),
        "queries": np.concatenate([data.vectors[:6], crowd[:6]]),
    }


def test_it_keeps_results_through_a_selective_filter(
    crowded: dict, gallery: Gallery, settings: object
) -> None:
    """48 of 2,048 rows pass the filter. A plain HNSW scan (ef_search 20) would return about
    20 x 2.3% = 0.5 of them; the iterative scan must return the full shortlist and the exact
    answer among the filtered rows."""
    basis_id, basis = active_basis(VERSION)
    table = TemplateTable()
    query = basis.rotate(crowded["queries"][7])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = 20")
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql = (
            f"SELECT face_id FROM {table.name} WHERE basis_id + 0 = %s AND gallery_id + 0 = %s "
            f"ORDER BY {table.prefix_expr(48, False)} <-> %s::vector(48) LIMIT 10"
        )
        args = [basis_id, gallery.pk, vector_literal(query[:48])]
        cursor.execute("EXPLAIN " + sql, args)
        plan = "\n".join(r[0] for r in cursor.fetchall())
        assert "recognition_template_prefix48_hnsw" in plan
        cursor.execute(sql, args)
        plain = len(cursor.fetchall())
        cursor.execute("RESET hnsw.ef_search; RESET enable_seqscan")
    assert plain < 10  # without the iterative scan the filter drops results

    for query in crowded["queries"]:
        result = search_people(
            query,
            gallery_ids=[gallery.pk],
            embedder_version=VERSION,
            top_n=5,
            shortlist=10,
            delta=math.inf,
            plan="hnsw",
        )
        assert result.stats.shortlist_rows == 10
        expected = brute_force(query, crowded["vectors"], crowded["person_ids"], 5)
        got = _as_pairs(result)
        # The shortlist holds the 10 nearest over 48 components; the best must be among them.
        assert got[0][0] == expected[0][0]
        assert abs(got[0][1] - expected[0][1]) < 1e-5
        assert {p for p, _ in got} <= set(crowded["person_ids"].tolist())
        # The settings the search used are gone afterwards, even inside this transaction.
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('enable_seqscan')")
            assert cursor.fetchone()[0] == "on"
        # auto picks the exact plan for so few rows, and it is exact.
        auto = search_people(query, gallery_ids=[gallery.pk], embedder_version=VERSION)
        assert auto.stats.plan == "exact"
        assert [p for p, _ in _as_pairs(auto)] == [p for p, _ in expected]

    # Both galleries: too many rows for the exact plan, so the index serves the search.
    settings.FACEWEB_SEARCH_EXACT_MAX_ROWS = 1000
    both = search_people(
        crowded["queries"][0],
        gallery_ids=[gallery.pk, crowded["big"].pk],
        embedder_version=VERSION,
        top_n=1,
    )
    assert both.stats.plan == "hnsw"
    assert both.best.person_id == crowded["person_ids"][0]
    assert both.best.distance < 1e-5  # the query is one of the templates


def test_it_never_returns_people_outside_the_galleries(
    enrolled: dict, alice: User, charlie: User
) -> None:
    other = Gallery.objects.create(owner=charlie, name="Elsewhere")
    query = enrolled["probes"][0]
    assert search_people(query, gallery_ids=[other.pk], embedder_version=VERSION).candidates == []
    assert search_people(query, gallery_ids=[], embedder_version=VERSION).candidates == []


def test_it_skips_excluded_people(enrolled: dict, gallery: Gallery) -> None:
    query = enrolled["probes"][2]
    first = search_people(query, gallery_ids=[gallery.pk], embedder_version=VERSION, top_n=3)
    for plan in ("exact", "hnsw"):
        again = search_people(
            query,
            gallery_ids=[gallery.pk],
            embedder_version=VERSION,
            top_n=2,
            plan=plan,
            exclude_person_ids={first.best.person_id},
        )
        assert [c.person_id for c in again.candidates] == [
            c.person_id for c in first.candidates[1:3]
        ]


def test_it_matches_many_faces_at_once(enrolled: dict, gallery: Gallery) -> None:
    results = search_faces(
        enrolled["probes"], gallery_ids=[gallery.pk], embedder_version=VERSION, top_n=2
    )
    assert len(results) == len(enrolled["probes"])
    for query, result in zip(enrolled["probes"], results, strict=True):
        single = search_people(query, gallery_ids=[gallery.pk], embedder_version=VERSION, top_n=2)
        assert _as_pairs(result) == _as_pairs(single)


def test_it_searches_with_no_templates_and_no_basis_yet(gallery: Gallery) -> None:
    query = lfw_embeddings().vectors[0]
    result = search_people(query, gallery_ids=[gallery.pk], embedder_version=VERSION)
    assert result.candidates == []
    # A search never writes: it does not fit and store a first basis either.
    assert not ProjectionBasis.objects.exists()


def test_it_accepts_the_same_person_and_refuses_strangers_at_the_thresholds(
    enrolled: dict, gallery: Gallery
) -> None:
    limits = thresholds(VERSION)
    assert limits == Thresholds(same=0.5, possible=0.6)
    accepted = 0
    for query, truth in zip(enrolled["probes"], enrolled["probe_person_ids"], strict=True):
        best = search_people(query, gallery_ids=[gallery.pk], embedder_version=VERSION).best
        accepted += best.person_id == truth and best.distance <= limits.possible
    assert accepted >= len(enrolled["probes"]) - 1
    with pytest.raises(LookupError):
        thresholds("some-other-model")


def test_it_rotates_stored_templates_by_the_active_basis(enrolled: dict) -> None:
    from recognition.models import Template

    basis_id, basis = active_basis(VERSION)
    # The first basis was fitted on the trusted embeddings that existed (36 faces).
    assert basis.n_samples == 36
    assert np.abs(basis.rotation - fit_basis(enrolled["vectors"]).rotation)[:20].max() < 1e-3
    row = Template.objects.select_related("face").first()
    assert row.basis_id == basis_id
    assert (
        np.abs(np.asarray(row.vector) - basis.rotate(np.asarray(row.face.embedding))).max() < 1e-5
    )


def test_its_default_parameters_are_the_apps() -> None:
    """Code that builds SearchParams() (evaluation, benchmarks) measures what the app runs."""
    assert SearchParams() == search_params()

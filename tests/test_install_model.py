"""install_model and the 512-d path: packs built in the test with the signatures of InsightFace's
(tests/onnx_packs.py), validated, gated by the licence, installed, and a library moved onto one
(its own 512-d vectors, PCA basis and templates) and back, names intact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from gallery.actions.people import do_create_person
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery, Photo
from recognition.actions.identity import do_tag_face
from recognition.actions.models import do_start_reembed
from recognition.core.backends.insightface_pack import norm_crop, similarity_transform
from recognition.core.backends.packs import LICENCE_TERMS
from recognition.core.versions import DLIB_RESNET_VERSION
from recognition.index.search import search_people
from recognition.models import ModelVersion, ProjectionBasis, ReembedJob, Template
from recognition.runtime import active_version, backend
from tests.conftest import upload_file
from tests.onnx_packs import write_pack, zip_folder

BUFFALO = "insightface-buffalo_l"


@pytest.fixture
def models_dir(tmp_path: Path, settings: object) -> Path:
    target = tmp_path / "models"
    settings.FACEWEB_MODELS_DIR = target  # type: ignore[attr-defined]
    return target


def _install(path: Path, *extra: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("install_model", str(path), *extra, stdout=out)
    return out.getvalue()


def test_it_refuses_a_pack_until_the_licence_is_accepted(
    tmp_path: Path, models_dir: Path, db: None
) -> None:
    pack = write_pack(tmp_path / "buffalo_l")
    from io import StringIO

    out = StringIO()
    with pytest.raises(CommandError, match="--accept-licence"):
        call_command("install_model", str(pack), stdout=out)
    assert "NON-COMMERCIAL RESEARCH PURPOSES ONLY" in out.getvalue()
    assert not ModelVersion.objects.exists()
    assert not models_dir.exists()


def test_it_installs_a_folder_with_its_files_and_manifest(
    tmp_path: Path, models_dir: Path, db: None
) -> None:
    pack = write_pack(tmp_path / "buffalo_l")
    (pack / "README.md").write_text("Pack readme: research only.")
    output = _install(pack, "--accept-licence")
    assert "Installed insightface-buffalo_l" in output and "Pack readme" in output
    row = ModelVersion.objects.get(name=BUFFALO)
    assert (row.kind, row.dim, row.metric, row.is_active) == ("pack", 512, "cosine", False)
    assert row.licence.startswith(LICENCE_TERMS) and row.licence_accepted_at is not None
    installed = models_dir / "buffalo_l"
    assert {p.name for p in installed.iterdir()} == {
        "det_10g.onnx",
        "w600k_r50.onnx",
        "genderage.onnx",
        "manifest.json",
    }
    manifest = json.loads((installed / "manifest.json").read_text())
    assert set(manifest["files"]) == {"det_10g.onnx", "w600k_r50.onnx", "genderage.onnx"}
    assert backend(BUFFALO).dimension == 512


def test_it_installs_the_zip_as_published_with_a_folder_inside(
    tmp_path: Path, models_dir: Path, db: None
) -> None:
    folder = write_pack(tmp_path / "src", "scrfd_10g_bnkps.onnx", "glintr100.onnx")
    archive = zip_folder(folder, tmp_path / "antelopev2.zip", inside="antelopev2")
    _install(archive, "--accept-licence")
    row = ModelVersion.objects.get(name="insightface-antelopev2")
    assert row.files["recognizer"] == "glintr100.onnx"
    assert (models_dir / "antelopev2" / "scrfd_10g_bnkps.onnx").is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"det_outputs": 6}, "9 outputs"),
        ({"dim": 256}, "expected \\(N, 512\\)"),
    ],
)
def test_it_refuses_files_with_the_wrong_signature(
    tmp_path: Path, models_dir: Path, db: None, kwargs: dict[str, int], message: str
) -> None:
    pack = write_pack(tmp_path / "buffalo_l", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(CommandError, match=message):
        _install(pack, "--accept-licence")
    assert not ModelVersion.objects.exists()


def test_it_refuses_a_folder_that_is_no_known_pack(tmp_path: Path, db: None) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(CommandError, match="not a known InsightFace pack"):
        _install(tmp_path / "stuff", "--accept-licence")


def test_it_aligns_five_points_onto_the_arcface_template() -> None:
    template = np.array(
        [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]]
    )
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = template @ rot.T * 2.5 + [300, 120]
    matrix = similarity_transform(points, template)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - template).max() < 1e-6
    image = np.zeros((600, 600, 3), dtype=np.uint8)
    x, y = points[0].round().astype(int)
    image[y - 3 : y + 4, x - 3 : x + 4] = 255  # a bright left eye
    chip = norm_crop(image, points)
    assert chip.shape == (112, 112, 3)
    assert chip[52, 38].max() > 100 and chip[52, 74].max() == 0


def test_it_moves_a_library_onto_a_pack_and_back_with_names_intact(
    tmp_path: Path,
    models_dir: Path,
    gallery: Gallery,
    alice: User,
    django_capture_on_commit_callbacks: object,
) -> None:
    capture = django_capture_on_commit_callbacks
    _install(write_pack(tmp_path / "buffalo_l"), "--accept-licence")
    with capture(execute=True):  # type: ignore[operator]
        result = do_upload_photos(
            gallery,
            [upload_file(p) for p in ("biden/biden.jpg", "_multi_face/obama_and_biden.jpg")],
            by=alice,
        )
    photos = [Photo.objects.get(pk=p.pk) for p in result.accepted]
    biden = do_create_person(alice, "Joe Biden", by=alice)
    named = photos[0].faces.get()
    with capture(execute=True):  # type: ignore[operator]
        do_tag_face(named, biden, by=alice)
    before_ids = set(Face.objects.values_list("pk", flat=True))

    with capture(execute=True):  # type: ignore[operator]
        job = do_start_reembed(BUFFALO)
    job.refresh_from_db()
    assert job.state == ReembedJob.State.SWITCHED, job.error
    assert active_version() == BUFFALO
    # Every old face kept (embedded from its own box where the new detector missed it); the
    # pack's own detection in each photo became a new face.
    faces = list(Face.objects.all())
    assert before_ids <= {f.pk for f in faces}
    assert len(faces) == len(before_ids) + len(photos)
    for face in faces:
        vector = np.asarray(face.embedding)
        assert face.embedder_version == BUFFALO and vector.shape == (512,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    named.refresh_from_db()
    assert (named.person_id, named.assignment) == (biden.pk, Face.Assignment.CONFIRMED)
    template = Template.objects.select_related("basis").get(face=named)
    assert template.embedder_version == BUFFALO and template.basis.dim == 512
    assert len(template.vector) == 512
    assert ProjectionBasis.objects.get(embedder_version=BUFFALO, is_active=True).dim == 512
    hits = search_people(
        np.asarray(named.embedding), gallery_ids=[gallery.pk], embedder_version=BUFFALO
    )
    assert hits.candidates[0].person_id == biden.pk and hits.candidates[0].distance < 1e-3

    # Back to the default: 128-d again, the name still on the same face.
    with capture(execute=True):  # type: ignore[operator]
        back = do_start_reembed(DLIB_RESNET_VERSION)
    back.refresh_from_db()
    assert back.state == ReembedJob.State.SWITCHED, back.error
    named.refresh_from_db()
    assert named.person_id == biden.pk and np.asarray(named.embedding).shape == (128,)
    assert set(Template.objects.values_list("embedder_version", flat=True)) == {DLIB_RESNET_VERSION}

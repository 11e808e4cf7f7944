"""`manage.py evaluate --model A B` compares model versions side by side on a labelled folder."""

from __future__ import annotations

import shutil
from io import StringIO
from pathlib import Path

from django.core.management import call_command

from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION


def test_it_compares_two_versions_on_real_faces(faces_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "people"
    people = [d for d in sorted((faces_dir / "lfw").iterdir()) if len(list(d.iterdir())) >= 2]
    for person in people[:8]:
        (folder / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:2]:
            shutil.copy(image, folder / person.name / image.name)
    out = StringIO()
    call_command(
        "evaluate",
        str(folder),
        "--model",
        DLIB_RESNET_VERSION,
        DLIB_RESNET_FLIP_VERSION,
        "--no-cache",
        "--out",
        str(tmp_path / "out"),
        stdout=out,
    )
    results = (tmp_path / "out" / "results.md").read_text()
    assert f"{DLIB_RESNET_VERSION}: CenterFace" in results
    assert f"{DLIB_RESNET_FLIP_VERSION}: CenterFace" in results


def test_it_evaluates_an_installed_pack_with_its_own_detector(
    faces_dir: Path, tmp_path: Path, settings: object, db: None
) -> None:
    from tests.onnx_packs import write_pack

    settings.FACEWEB_MODELS_DIR = tmp_path / "models"  # type: ignore[attr-defined]
    call_command(
        "install_model",
        str(write_pack(tmp_path / "buffalo_l")),
        "--accept-licence",
        stdout=StringIO(),
    )
    folder = tmp_path / "people"
    people = [d for d in sorted((faces_dir / "lfw").iterdir()) if len(list(d.iterdir())) >= 2]
    for person in people[:6]:
        (folder / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:2]:
            shutil.copy(image, folder / person.name / image.name)
    call_command(
        "evaluate",
        str(folder),
        "--model",
        "insightface-buffalo_l",
        DLIB_RESNET_VERSION,
        "--no-cache",
        "--out",
        str(tmp_path / "out"),
        stdout=StringIO(),
    )
    results = (tmp_path / "out" / "results.md").read_text()
    # The pack's rows come from its own detector and alignment (tests/onnx_packs.py).
    assert "insightface-buffalo_l: SCRFD" in results
    assert f"{DLIB_RESNET_VERSION}: CenterFace" in results

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

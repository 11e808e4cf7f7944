"""`manage.py assess DIR --json OUT`: the app's decision on every face of a folder, storing
nothing; unreadable files are listed with their error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image, ImageFilter

from gallery.models import Face, Photo
from recognition.core.images import decode_image
from recognition.management.commands import assess as assess_command
from tests.conftest import FACES_DIR, photo_path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    (root / "1998" / "summer").mkdir(parents=True)
    shutil.copy(photo_path("biden/biden2.jpg"), root / "biden.jpg")
    rgb = np.asarray(Image.open(photo_path("biden/biden2.jpg")).convert("RGB"))
    Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(20)).save(root / "1998" / "blurred.jpg")
    shutil.copy(FACES_DIR / "nonface" / "brick.png", root / "1998" / "summer" / "wall.png")
    (root / "notes.txt").write_text("not a photo")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (root / ".hidden.jpg").write_bytes(b"ignored")
    return root


@pytest.mark.django_db
def test_it_reports_every_face_of_a_folder_and_stores_nothing(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report" / "assess.json"
    call_command("assess", str(archive), "--json", str(out))
    report = json.loads(out.read_text())
    assert set(report) == {"images", "summary"}
    images = report["images"]
    assert sorted(images) == [
        "1998/blurred.jpg",
        "1998/summer/wall.png",
        "biden.jpg",
        "broken.jpg",
        "notes.txt",
    ]
    (clean,) = images["biden.jpg"]["faces"]
    assert set(clean) == {"box", "accepted", "reasons"}
    x0, y0, x1, y1 = clean["box"]
    assert 0 <= x0 < x1 and 0 <= y0 < y1 and clean["accepted"] and clean["reasons"] == []
    blurred = images["1998/blurred.jpg"]["faces"]
    assert blurred and not blurred[0]["accepted"]
    assert any("blur" in reason for reason in blurred[0]["reasons"]), blurred[0]["reasons"]
    assert images["1998/summer/wall.png"] == {"faces": []}
    for bad in ("broken.jpg", "notes.txt"):
        assert images[bad]["faces"] == [] and images[bad]["error"]
    assert report["summary"] == {"images": 5, "faces": 2, "no_face": 1, "rejected": 1}
    assert not Photo.objects.exists() and not Face.objects.exists()


@pytest.mark.django_db
def test_it_lists_links_to_nothing_and_pipes_with_an_error_and_reads_odd_names(
    tmp_path: Path,
) -> None:
    """An archive copied off an old disk: a link whose target is gone, a link to itself, a named
    pipe (opening it would hang the run), a file name with a newline and one that is not UTF-8.
    Each is listed; none is skipped in silence, none stops the run."""
    root = tmp_path / "archive"
    root.mkdir()
    shutil.copy(photo_path("biden/biden2.jpg"), root / "odd\nname.jpg")
    odd_bytes = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 name on a UTF-8 file system
    shutil.copy(photo_path("biden/biden2.jpg"), root / odd_bytes)
    (root / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    os.mkfifo(root / "pipe.jpg")
    (root / "album").mkdir()
    (root / "elsewhere").symlink_to(tmp_path, target_is_directory=True)  # a cycle, too
    out = tmp_path / "assess.json"
    call_command("assess", str(root), "--json", str(out))
    report = json.loads(out.read_text())
    images = report["images"]
    assert sorted(images) == sorted(
        ["elsewhere", "gone.jpg", "loop.jpg", "pipe.jpg", "odd\nname.jpg", odd_bytes]
    )
    assert "link to a folder" in images["elsewhere"]["error"]
    for name in ("gone.jpg", "loop.jpg"):
        assert images[name]["faces"] == [] and "link" in images[name]["error"], images[name]
    assert images["pipe.jpg"]["faces"] == [] and "not a regular file" in images["pipe.jpg"]["error"]
    for name in ("odd\nname.jpg", odd_bytes):
        assert len(images[name]["faces"]) == 1 and "error" not in images[name]
    assert report["summary"] == {"images": 6, "faces": 2, "no_face": 0, "rejected": 0}


@pytest.mark.django_db
def test_it_lists_a_photo_the_pipeline_fails_on_and_reports_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that decodes but breaks a later step (here the detector raises on one photo, as
    an unforeseen input would) is one error in the report, not a run without a report."""
    root = tmp_path / "archive"
    root.mkdir()
    shutil.copy(photo_path("biden/biden2.jpg"), root / "fine.jpg")
    shutil.copy(photo_path("obama/obama.jpg"), root / "trouble.jpg")
    real = assess_command.detect_and_align
    trouble_shape = decode_image(root / "trouble.jpg", max_pixels=10**8).rgb.shape

    def detect(rgb: np.ndarray, detector: Any) -> Any:
        if rgb.shape == trouble_shape:
            raise RuntimeError("unexpected input")
        return real(rgb, detector)

    monkeypatch.setattr(assess_command, "detect_and_align", detect)
    out = tmp_path / "assess.json"
    call_command("assess", str(root), "--json", str(out))
    images = json.loads(out.read_text())["images"]
    assert len(images["fine.jpg"]["faces"]) == 1
    assert images["trouble.jpg"]["faces"] == []
    assert "could not be processed" in images["trouble.jpg"]["error"]

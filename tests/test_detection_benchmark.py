"""The detection benchmark's rule, tallies and report (evaluation/detection.py)."""

from __future__ import annotations

import io
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from evaluation.detection import (
    AnnotatedImage,
    Detection,
    ImageOutcome,
    TrueFace,
    markdown,
    match,
    read_annotations,
    report_json,
    run_detector,
    size_bucket,
    summarise,
)
from evaluation.detection_set import ANNOTATIONS, build

REPO = pathlib.Path(__file__).resolve().parent.parent
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))

FACE = TrueFace((100.0, 100.0, 200.0, 220.0))


def det(x0: float, y0: float, x1: float, y1: float, score: float = 0.9) -> Detection:
    return Detection((x0, y0, x1, y1), score)


def test_it_counts_a_face_found_when_the_centre_is_inside_and_widths_agree_within_2_5() -> None:
    assert match([FACE], [det(110, 130, 190, 200)]) == ([True], 0)
    # A HOG-style box: narrower, shifted down, centre still inside.
    assert match([FACE], [det(95, 140, 195, 230)]) == ([True], 0)
    assert match([FACE], [det(130, 130, 170, 170)]) == ([True], 0)  # 40 px: 2.5x narrower
    assert match([FACE], [det(135, 130, 170, 170)]) == ([False], 1)  # 35 px: too small
    assert match([FACE], [det(0, 0, 260, 300)]) == ([False], 1)  # 260 px: 2.6x wider


def test_it_refuses_a_detection_whose_centre_is_outside_or_too_wide() -> None:
    assert match([FACE], [det(190, 100, 290, 220)]) == ([False], 1)  # centre x 240
    assert match([FACE], [det(24, 40, 276, 280)]) == ([False], 1)  # 252 px wide > 250
    assert match([FACE], [det(25, 40, 275, 280)]) == ([True], 0)  # 250 px: exactly 2.5x


def test_each_detection_finds_one_face_and_duplicates_are_false_positives() -> None:
    left, right = TrueFace((0.0, 0.0, 100.0, 100.0)), TrueFace((100.0, 0.0, 200.0, 100.0))
    found, fps = match([left, right], [det(10, 10, 90, 90, 0.9), det(12, 12, 92, 92, 0.8)])
    assert found == [True, False] and fps == 1
    # A detection straddling both goes to the face whose centre is nearest.
    found, fps = match([left, right], [det(70, 10, 170, 90)])
    assert found == [False, True] and fps == 0


def test_size_buckets_follow_the_true_width() -> None:
    assert [size_bucket(w) for w in (8, 31.9, 32, 63.9, 64, 127, 128, 900)] == [
        "<32",
        "<32",
        "32-63",
        "32-63",
        "64-127",
        "64-127",
        ">=128",
        ">=128",
    ]


def outcome(name: str, faces: list[TrueFace], found: list[bool], fps: int) -> ImageOutcome:
    return ImageOutcome(AnnotatedImage(name, tuple(faces)), tuple(found), fps, 0.05, 0.5)


def test_it_summarises_recall_by_size_condition_and_source_and_false_positives() -> None:
    small = TrueFace((0.0, 0.0, 20.0, 24.0), ("dark",))
    big = TrueFace((0.0, 0.0, 200.0, 240.0))
    turned = TrueFace((300.0, 0.0, 350.0, 60.0), ("profile",))
    outcomes = [
        outcome("composite-dark-00.jpg", [small, big], [False, True], 1),
        outcome("photo-a.jpg", [big, turned], [True, True], 0),
        outcome("nonface-cat.png", [], [], 2),
    ]
    s = summarise("hog", outcomes)
    assert (s.faces.found, s.faces.total) == (3, 4)
    assert s.by_size["<32"].recall == 0 and s.by_size[">=128"].recall == 1
    assert s.by_size["64-127"].recall is None
    assert s.by_condition["dark"].recall == 0 and s.by_condition["profile"].recall == 1
    assert s.by_condition["none"].recall == 1 and s.by_condition["rotated"].total == 0
    assert s.by_source["composite"].recall == 0.5 and s.by_source["photo"].recall == 1
    assert s.false_positives_per_image == 1.0
    assert s.false_positives_per_face_free_image == 2.0
    assert s.false_positives_per_image_with_faces == 0.5
    assert s.ms_per_image == pytest.approx(50) and s.ms_per_megapixel == pytest.approx(100)
    assert s.missed == ("composite-dark-00.jpg #0",)

    report = report_json([s])
    assert set(report) == {"detectors"}
    row = report["detectors"]["hog"]
    assert row["recall"] == 0.75
    assert row["recall_by_size"] == {"<32": 0.0, "32-63": 1.0, "64-127": None, ">=128": 1.0}
    assert row["false_positives_per_image"] == 1.0 and row["ms_per_image"] == 50.0
    json.dumps(report)  # plain JSON types only
    table = markdown([s])
    assert "| hog | 75.0% (3/4) |" in table and "| Detector |" in table


def test_it_reads_a_folder_and_runs_a_detector_over_it(tmp_path: pathlib.Path) -> None:
    Image.new("RGB", (64, 48)).save(tmp_path / "photo-a.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "nonface-b.png")
    (tmp_path / "boxes.json").write_text(
        json.dumps({"photo-a.png": [[10, 10, 30, 34]], "nonface-b.png": []})
    )
    (tmp_path / "conditions.json").write_text(json.dumps({"photo-a.png": [["blurred"]]}))
    images = read_annotations(tmp_path)
    assert [i.name for i in images] == ["nonface-b.png", "photo-a.png"]
    assert images[1].faces[0].conditions == ("blurred",)

    def fake_detect(rgb: np.ndarray) -> list[Detection]:
        return [det(12, 12, 30, 30)] if rgb.shape[1] == 64 else [det(0, 0, 10, 10)]

    def load(path: pathlib.Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("RGB"))

    s = summarise("fake", run_detector(tmp_path, images, load, fake_detect))
    assert s.faces.recall == 1 and s.false_positives_per_face_free_image == 1


def test_it_refuses_annotations_that_do_not_fit(tmp_path: pathlib.Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "photo-a.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"photo-a.png": [[5, 5, 5, 9]]}))
    with pytest.raises(ValueError, match="empty"):
        read_annotations(tmp_path)
    (tmp_path / "boxes.json").write_text(json.dumps({"photo-missing.png": []}))
    with pytest.raises(FileNotFoundError):
        read_annotations(tmp_path)
    (tmp_path / "boxes.json").write_text(json.dumps({"photo-a.png": [[0, 0, 4, 4]]}))
    (tmp_path / "conditions.json").write_text(json.dumps({"photo-a.png": [["foggy"]]}))
    with pytest.raises(ValueError, match="unknown conditions"):
        read_annotations(tmp_path)


def test_the_generator_builds_an_annotated_set_the_benchmark_reads(tmp_path: pathlib.Path) -> None:
    boxes = build(FACES, tmp_path, seed=3, per_condition=1, max_lfw=400)
    images = read_annotations(tmp_path)
    assert len(images) == len(boxes) == 28 + 14 + 5
    by_name = {i.name: i for i in images}
    assert len(by_name["photo-_multi_face-obama_and_biden.jpg"].faces) == 3
    assert by_name["nonface-moon.png"].faces == ()
    for condition in ("plain", "rotated", "dark", "blurred", "profile"):
        image = by_name[f"composite-{condition}-00.jpg"]
        assert len(image.faces) >= 6
        expected = () if condition == "plain" else (condition,)
        assert all(f.conditions == expected for f in image.faces)
        with Image.open(tmp_path / image.name) as img:
            width, height = img.size
        for face in image.faces:
            x0, y0, x1, y1 = face.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        widths = sorted(f.width for f in image.faces)
        assert widths[0] < 32 and widths[-1] >= 128
    # Deterministic: the same seed gives the same boxes.
    assert build(FACES, tmp_path / "again", seed=3, per_condition=1, max_lfw=400) == boxes


def test_evaluate_detection_runs_every_detector_on_the_same_photos(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    annotated = json.loads(ANNOTATIONS.read_text())["photos"]
    boxes = {}
    for relative in ("_multi_face/obama_and_biden.jpg", "_multi_face/two_people.jpg"):
        name = "photo-" + relative.replace("/", "-")
        shutil.copyfile(FACES / "photos" / relative, folder / name)
        boxes[name] = annotated[relative]
    shutil.copyfile(FACES / "nonface" / "coffee.png", folder / "nonface-coffee.png")
    boxes["nonface-coffee.png"] = []
    (folder / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "detection.json"
    text = io.StringIO()
    call_command(
        "evaluate_detection",
        str(folder),
        *("--detector", "centerface", "hog"),
        *("--json", str(out)),
        stdout=text,
    )
    report = json.loads(out.read_text())
    assert set(report["detectors"]) == {"centerface", "hog"}
    cf = report["detectors"]["centerface"]
    assert cf["recall"] == 1.0 and cf["faces"] == 5 and cf["images"] == 3
    assert cf["recall_by_size"]["<32"] is None and cf["recall_by_size"][">=128"] == 1.0
    assert cf["false_positives_per_image"] == 0.0 and cf["ms_per_image"] > 0
    assert report["detectors"]["hog"]["recall"] == 1.0
    assert "| centerface | 100.0% (5/5) |" in text.getvalue()

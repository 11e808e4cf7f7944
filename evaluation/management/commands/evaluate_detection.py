"""Face detection recall, false positives and speed on a folder of annotated photos."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.detection import (
    BOXES_FILE,
    CONDITIONS,
    SIZE_BUCKETS,
    WIDTH_FACTOR,
    Detection,
    DetectorSummary,
    markdown,
    read_annotations,
    report_json,
    run_detector,
    summarise,
)
from recognition.core.detection import DETECTORS, DetectorConfig, detect_faces
from recognition.core.images import decode_image
from recognition.runtime import detector_config


def detector_fn(config: DetectorConfig) -> Any:
    def detect(rgb: Any) -> list[Detection]:
        return [
            Detection((f.left, f.top, f.right, f.bottom), f.score)
            for f in detect_faces(rgb, config)
        ]

    return detect


def run(folder: Path, models: list[str], base: DetectorConfig) -> list[DetectorSummary]:
    """Every detector over the same annotated images, one after the other, in this process."""
    images = read_annotations(folder)

    def load(path: Path) -> Any:
        return decode_image(path, max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS).rgb

    summaries = []
    for model in models:
        config = replace(base, model=model)
        detect = detector_fn(config)
        detect(load(folder / images[0].name))  # load the model outside the timings
        summaries.append(summarise(model, run_detector(folder, images, load, detect)))
    return summaries


class Command(BaseCommand):
    help = (
        f"Recall of face detectors on DIR, a folder of photos whose {BOXES_FILE} maps each file "
        "name to its true face boxes [x0, y0, x1, y1] in pixels (python -m "
        "evaluation.detection_set DIR builds one from ../shared/faces). A true face counts as "
        "found when a detection's centre lies inside its box and the two widths agree within "
        f"a factor of {WIDTH_FACTOR:g}; each detection finds at most one face, and a detection "
        "that finds none is a false positive. Reports recall by face width ("
        + ", ".join(b[0] for b in SIZE_BUCKETS)
        + " px) and by condition ("
        + ", ".join(CONDITIONS)
        + ", from DIR/conditions.json), false positives per image without faces and per image "
        "with faces, and ms per photo and per megapixel (decoding not included), every "
        "detector in one run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path, help=f"folder with images and {BOXES_FILE}")
        parser.add_argument(
            "--detector",
            nargs="+",
            choices=DETECTORS,
            default=["centerface", "hog"],
            help="detectors to run side by side (default: centerface hog)",
        )
        parser.add_argument("--json", type=Path, help="write the results as JSON here")
        parser.add_argument(
            "--missed", action="store_true", help="list every missed face per detector"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        folder: Path = options["folder"]
        if not (folder / BOXES_FILE).is_file():
            raise CommandError(f"{folder / BOXES_FILE} does not exist")
        summaries = run(folder, options["detector"], detector_config())
        self.stdout.write(markdown(summaries))
        self.stdout.write(
            f"\n{len(summaries[0].missed) if summaries else 0} faces missed by the first "
            f"detector; load average {os.getloadavg()[0]:.1f}"
        )
        if options["missed"]:
            for s in summaries:
                self.stdout.write(f"\n{s.name} missed: " + ", ".join(s.missed))
        if options["json"]:
            options["json"].write_text(json.dumps(report_json(summaries), indent=1) + "\n")
            self.stdout.write(f"wrote {options['json']}")

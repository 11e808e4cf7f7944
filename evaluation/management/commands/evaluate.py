"""Evaluate the recognition pipeline on a labeled folder `<Person>/<image>` (e.g. LFW)."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.folder import embed_labeled_folder
from evaluation.metrics import read_pairs
from evaluation.report import Variant, evaluate, write_report
from recognition.core.detection import DETECTORS
from recognition.core.embedding import get_embedder
from recognition.runtime import detector_config

DETECTOR_NAMES = {"centerface": "CenterFace", "hog": "HOG", "cnn": "MMOD"}


class Command(BaseCommand):
    help = (
        "Verification (LFW pairs, 10-fold), closed- and open-set identification and the app's "
        "open-set decisions by library size on a labeled folder, the app's pipeline first; "
        "writes results.json, results.md, cmc.png, det.png and distances.png."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset_dir", type=Path, help="folder of <Person>/<image> files")
        parser.add_argument("--pairs", type=Path, help="LFW-format pairs file for verification")
        parser.add_argument("--out", type=Path, help="default: var/eval/<dataset name>")
        parser.add_argument(
            "--seed",
            type=int,
            default=1,
            help="open-set identity hold-out, drawn once from the labels for every pipeline",
        )
        parser.add_argument("--limit", type=int, help="only the first N images (sorted)")
        parser.add_argument(
            "--detector",
            nargs="+",
            choices=DETECTORS,
            help="detectors to compare, one pipeline each (default: FACEWEB_DETECTOR)",
        )
        parser.add_argument(
            "--upsample", type=int, default=1, help="HOG upsampling of the non-app detectors"
        )
        parser.add_argument(
            "--retry",
            choices=["cnn", "none"],
            default="cnn",
            help="detector for images where HOG finds no face (cnn: dlib MMOD, ~2 s/image on "
            "CPU); HOG only",
        )
        parser.add_argument("--no-cache", action="store_true", help="do not read/write var/cache")
        parser.add_argument(
            "--ood",
            action="store_true",
            help="only the out-of-distribution rows (k-NN + all / + exclusion) -> BENCHMARKS.md",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["dataset_dir"].resolve()
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        pairs_file: Path | None = options["pairs"]
        if pairs_file is not None and not pairs_file.is_file():
            raise CommandError(f"{pairs_file} is not a file")
        if options["ood"]:
            from evaluation.ood import run

            cache = None if options["no_cache"] else settings.VAR_DIR / "cache"
            self.stdout.write(run(root, cache))
            return
        out = options["out"] or settings.VAR_DIR / "eval" / root.name
        embed = functools.partial(
            embed_labeled_folder,
            root,
            None if options["no_cache"] else settings.VAR_DIR / "cache",
            embedder=get_embedder(settings.FACEWEB_EMBEDDER, settings.FACEWEB_DEVICE or None),
            limit=options["limit"],
        )
        variants: list[Variant] = []
        # The app's own pipeline (its detector at its settings, no flip) comes first: the
        # headline numbers are what the app runs; variants follow, on the same split.
        app = settings.FACEWEB_DETECTOR
        models = options["detector"] or [app]
        models = sorted(set(models), key=lambda m: (m != app, models.index(m)))
        for model in models:
            upsample = settings.FACEWEB_DETECT_UPSAMPLE if model == app else options["upsample"]
            detector = replace(detector_config(), model=model, upsample=upsample)
            name = DETECTOR_NAMES[model] + (" (app)" if model == app else "")
            data = embed(detector=detector)
            variants += [Variant(name, data), Variant(f"{name} + flip TTA", data, flip_tta=True)]
            if model == "hog" and options["retry"] == "cnn":
                retried = embed(detector=detector, fallback=replace(detector, model="cnn"))
                variants += [
                    Variant("HOG, MMOD retry", retried),
                    Variant("HOG, MMOD retry + flip TTA", retried, flip_tta=True),
                ]
        pairs = read_pairs(pairs_file) if pairs_file is not None else None
        report = evaluate(
            variants,
            pairs,
            seed=options["seed"],
            pairs_file=pairs_file.name if pairs_file is not None else None,
        )
        for path in write_report(report, out):
            self.stdout.write(f"wrote {path}")
        self.stdout.write((out / "results.md").read_text())

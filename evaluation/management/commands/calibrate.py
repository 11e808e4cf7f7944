"""Fit the open-set stranger model of the app's embedder on a labelled folder.

    manage.py calibrate ../shared/faces/lfw [--out recognition/weights/calibration-<version>.json]

Every labelled face plays a stranger against random libraries of several sizes drawn from the
other identities (recognition/core/calibration.py explains the model); the matcher reads the
result to size its auto-tag and suggestion limits to the searcher's library. The detect/embed
pass is the one `manage.py evaluate` caches under var/cache (the app's detector and embedder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from evaluation.folder import embed_labeled_folder
from evaluation.openset import CALIBRATION_SIZES, fit_model
from recognition.core import calibration
from recognition.runtime import detector_config, embedder


class Command(BaseCommand):
    help = "Fit the library-size-aware open-set limits and store them for the embedder version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset_dir", type=Path, help="folder of <identity>/<image> files")
        parser.add_argument("--out", type=Path, help="default: recognition/weights/calibration-<v>")
        parser.add_argument("--seed", type=int, default=0, help="library draws")
        parser.add_argument("--limit", type=int, help="only the first N images (sorted)")
        parser.add_argument(
            "--searches",
            type=int,
            default=200_000,
            help="simulated stranger searches per library size",
        )
        parser.add_argument("--no-cache", action="store_true", help="do not read/write var/cache")

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["dataset_dir"].resolve()
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        model = embedder()
        data = embed_labeled_folder(
            root,
            None if options["no_cache"] else settings.VAR_DIR / "cache",
            embedder=model,
            detector=detector_config(),
            limit=options["limit"],
        )
        if len(np.unique(data.labels[data.found])) < 3:
            raise CommandError("need faces of at least 3 identities")
        fitted = fit_model(
            data.embeddings,
            data.labels,
            data.found,
            np.arange(len(data.labels)),
            embedder_version=model.version,
            ceiling=calibration.thresholds(model.version),
            sizes=CALIBRATION_SIZES,
            searches_per_size=options["searches"],
            seed=options["seed"],
            fitted_on={
                "dataset": root.name,
                "detector": settings.FACEWEB_DETECTOR,
                "date": timezone.now().date().isoformat(),
                "command": "manage.py calibrate " + " ".join(sys.argv[2:]),
            },
        )
        out: Path = options["out"] or calibration.model_path(model.version)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(fitted.to_json(), indent=1) + "\n")
        self.stdout.write(f"wrote {out}")
        score = fitted.score
        self.stdout.write(
            f"limits on the score: distance minus {score.beta:g} x the mean distance to the next "
            f"{score.cohort} people (missing ones count {score.fill:.3f}); the fixed "
            f"{fitted.ceiling.same:g} / {fitted.ceiling.possible:g} stay the distance ceilings"
        )
        for n in (10, 100, 1000, 3000, 10000):
            limits = fitted.limits(n)
            self.stdout.write(
                f"library of {n:>6,} people: auto-tag <= {limits.same:.3f}, "
                f"suggest <= {limits.possible:.3f}"
            )

"""Fit the open-set stranger model of the app's embedder on a labelled folder.

    manage.py calibrate ../shared/faces/lfw [--model VERSION]
                        [--out recognition/weights/calibration-<version>.json]

Every labelled face plays a stranger against random libraries of several sizes drawn from the
other identities (recognition/core/calibration.py explains the model); the matcher reads the
result to size its auto-tag and suggestion limits to the searcher's library. The detect/embed
pass is the one `manage.py evaluate` caches under var/cache (the app's detector and embedder).

`--model` fits another version than the active one (built in, or an installed pack). The
flip-averaged dlib version's vector is by definition the mean of dlib's vectors of the chip and
of its mirror image, which the evaluation pass of `dlib-resnet-v1` stores beside each plain
vector; so it is read from that pass (and its cache) rather than embedded a second time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from evaluation.folder import embed_labeled_folder
from evaluation.openset import CALIBRATION_SIZES, fit_model
from recognition.core import calibration
from recognition.core.versions import (
    BUILTIN,
    DLIB_RESNET_FLIP_VERSION,
    DLIB_RESNET_VERSION,
    PACK_PREFIX,
)
from recognition.runtime import active_version, backend, detector_config


def _command(options: dict[str, Any], version: str) -> str:
    """The command line that reproduces the fit (also when called from code)."""
    words = ["manage.py calibrate", str(options["dataset_dir"]), "--model", version]
    for flag in ("seed", "limit", "searches"):
        if options[flag] is not None and options[flag] != DEFAULTS.get(flag):
            words += [f"--{flag}", str(options[flag])]
    return " ".join(words)


DEFAULTS = {"seed": 0, "searches": 200_000}


class Command(BaseCommand):
    help = "Fit the library-size-aware open-set limits and store them for the embedder version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset_dir", type=Path, help="folder of <identity>/<image> files")
        parser.add_argument(
            "--model",
            help="version to calibrate (default: the active one): built in or an installed pack",
        )
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
        version = options["model"] or active_version()
        flip = version == DLIB_RESNET_FLIP_VERSION
        if version not in BUILTIN and not version.startswith(PACK_PREFIX):
            raise CommandError(f"unknown model version {version!r}")
        try:
            model = backend(DLIB_RESNET_VERSION if flip else version)
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        data = embed_labeled_folder(
            root,
            None if options["no_cache"] else settings.VAR_DIR / "cache",
            embedder=model,
            detector=detector_config(),
            limit=options["limit"],
        )
        if flip:
            data = data.with_flip_tta()  # (plain + mirrored) / 2: DlibFlipEmbedder's vectors
        if len(np.unique(data.labels[data.found])) < 3:
            raise CommandError("need faces of at least 3 identities")
        fitted = fit_model(
            data.embeddings,
            data.labels,
            data.found,
            np.arange(len(data.labels)),
            embedder_version=version,
            ceiling=calibration.thresholds(version),
            sizes=CALIBRATION_SIZES,
            searches_per_size=options["searches"],
            seed=options["seed"],
            fitted_on={
                "dataset": root.name,
                "detector": settings.FACEWEB_DETECTOR,
                "date": timezone.now().date().isoformat(),
                "command": _command(options, version),
            },
        )
        out: Path = options["out"] or calibration.model_path(version)
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

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
from recognition.core.versions import BUILTIN
from recognition.runtime import backend, detector_config

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
            "--model",
            nargs="+",
            help="model versions to compare side by side (built in, or an installed InsightFace "
            "pack: insightface-buffalo_l); default: FACEWEB_EMBEDDER",
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
            help="only the out-of-distribution rows (k-NN + all / + exclusion) -> <out>/ood.md",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["dataset_dir"].resolve()
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        pairs_file: Path | None = options["pairs"]
        if pairs_file is not None and not pairs_file.is_file():
            raise CommandError(f"{pairs_file} is not a file")
        out = options["out"] or settings.VAR_DIR / "eval" / root.name
        if options["ood"]:
            self._ood(root, out, pairs_file, options)
            return
        versions = options["model"] or [settings.FACEWEB_EMBEDDER]
        variants: list[Variant] = []
        for version in versions:
            variants += self._variants(root, version, len(versions) > 1, options)
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

    def _ood(self, root: Path, out: Path, pairs: Path | None, options: dict[str, Any]) -> None:
        """The filter's exclusion rows, written to <out>/ood.md (never to BENCHMARKS.md)."""
        from evaluation.ood import RunOptions, run

        cache = None if options["no_cache"] else settings.VAR_DIR / "cache"
        markdown = run(
            root,
            cache,
            RunOptions(seed=options["seed"], limit=options["limit"] or 0, pairs=pairs),
        )
        out.mkdir(parents=True, exist_ok=True)
        path = out / "ood.md"
        path.write_text(markdown + "\n")
        self.stdout.write(markdown)
        self.stdout.write(f"wrote {path}")

    def _variants(
        self, root: Path, version: str, named: bool, options: dict[str, Any]
    ) -> list[Variant]:
        """The rows of one model version: its detector(s), each plain and with flip TTA."""
        if version in BUILTIN:
            embedder: Any = get_embedder(version, settings.FACEWEB_DEVICE or None)
        else:
            try:
                embedder = backend(version)
            except LookupError as exc:
                raise CommandError(str(exc)) from exc
        embed = functools.partial(
            embed_labeled_folder,
            root,
            None if options["no_cache"] else settings.VAR_DIR / "cache",
            embedder=embedder,
            limit=options["limit"],
        )
        variants: list[Variant] = []
        own_detector = version not in BUILTIN
        # The app's own pipeline (its detector at its settings, no flip) comes first: the
        # headline numbers are what the app runs; variants follow, on the same split.
        app = settings.FACEWEB_DETECTOR
        models = ["scrfd"] if own_detector else options["detector"] or [app]
        models = sorted(set(models), key=lambda m: (m != app, models.index(m)))
        for model in models:
            upsample = settings.FACEWEB_DETECT_UPSAMPLE if model == app else options["upsample"]
            detector = replace(detector_config(), model=model, upsample=upsample)
            name = "SCRFD" if own_detector else DETECTOR_NAMES[model]
            name += " (app)" if model == app and version == settings.FACEWEB_EMBEDDER else ""
            name = f"{version}: {name}" if named else name
            data = embed(detector=detector)
            variants += [Variant(name, data), Variant(f"{name} + flip TTA", data, flip_tta=True)]
            if model == "hog" and options["retry"] == "cnn" and not own_detector:
                retried = embed(detector=detector, fallback=replace(detector, model="cnn"))
                variants += [
                    Variant(f"{name}, MMOD retry", retried),
                    Variant(f"{name}, MMOD retry + flip TTA", retried, flip_tta=True),
                ]
        return variants

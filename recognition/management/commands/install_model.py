"""Install an InsightFace pack the operator downloaded: a folder, or the zip as published."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from recognition.actions.models import do_register_pack
from recognition.core.backends.packs import LICENCE_TERMS, PackError, read_pack, unpack_zip


class Command(BaseCommand):
    help = (
        "Validate an InsightFace model pack (buffalo_l, antelopev2, ...) you downloaded yourself, "
        "show its licence terms and, with --accept-licence, copy it into FACEWEB_MODELS_DIR and "
        "register it. Nothing is downloaded. Then: manage.py switch_model insightface-<pack>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the pack's folder or its .zip")
        parser.add_argument("--name", help="the pack's name when its files do not tell")
        parser.add_argument(
            "--accept-licence",
            action="store_true",
            help="you accept the pack's terms: non-commercial research use only",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source = Path(options["path"]).expanduser()
        if not source.exists():
            raise CommandError(f"{source} does not exist")
        with tempfile.TemporaryDirectory(prefix="faceweb-pack-") as tmp:
            root = source
            if source.is_file():
                try:
                    root = unpack_zip(source, Path(tmp) / source.stem)
                except PackError as exc:
                    raise CommandError(str(exc)) from exc
            try:
                pack = read_pack(root, options["name"])
            except PackError as exc:
                raise CommandError(f"not installed: {exc}") from exc
            self.stdout.write(f"Pack {pack.name}: {', '.join(f.name for f in pack.files)}")
            self.stdout.write(
                f"Files valid: SCRFD detector with 5 points, ArcFace {pack.dimension}-d."
            )
            self.stdout.write("Licence terms:\n  " + LICENCE_TERMS)
            if pack.licence_text:
                self.stdout.write("The pack's own terms:\n" + pack.licence_text)
            if not options["accept_licence"]:
                raise CommandError(
                    "not installed: read the licence terms above and run again with "
                    "--accept-licence if your use meets them"
                )
            target = Path(settings.FACEWEB_MODELS_DIR) / pack.name
            staging = target.with_name(f".{pack.name}.installing")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for f in pack.files:
                shutil.copyfile(f.path, staging / f.name)
            manifest = {
                "pack": pack.name,
                "version": pack.version,
                "files": {f.name: f.sha256 for f in pack.files},
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        files = {
            "detector": pack.detector.name,
            "recognizer": pack.recognizer.name,
            "sha256": manifest["files"],
        }
        licence = LICENCE_TERMS + ("\n\n" + pack.licence_text if pack.licence_text else "")
        row = do_register_pack(pack.version, pack.name, files, licence, by=None)
        self.stdout.write(
            self.style.SUCCESS(f"Installed {row.name} in {target}.")
            + f" Move the library to it with: manage.py switch_model {row.name}"
        )

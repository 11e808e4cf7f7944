"""The app's own decision on every face of a folder, storing nothing: a dry run before importing
an archive, and the command the filter's tables can be checked with.

    manage.py assess DIR --json OUT

Each image goes through what processing runs (decode, detect, align, embed, the
out-of-distribution filter with its reasons); nothing is written to the database or to media.
A file that is not a readable image is listed with its error and the run goes on.

JSON: {"images": {"<relative path>": {"faces": [{"box": [x0, y0, x1, y1], "accepted": bool,
"reasons": [str]}]}}, "summary": {"images": n, "faces": n, "no_face": n, "rejected": n}};
an unreadable file's entry also has "error" (a sentence) and no faces.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from recognition.core.images import BadImage, decode_image
from recognition.core.pipeline import detect_and_align, embed_detected
from recognition.runtime import assess_faces, detector_config, embedder

logger = logging.getLogger(__name__)


def _not_a_file(path: Path) -> str:
    """Why an entry that is neither a folder nor a file cannot be read (never opened: a named
    pipe would block the run)."""
    if path.is_dir():
        return "a link to a folder: not followed (assess that folder on its own)"
    if path.is_symlink() and not path.exists():
        return "a link to a file that does not exist (or a link to itself)"
    return "not a regular file (a pipe, socket or device)"


def assess_folder(root: Path) -> dict[str, Any]:
    """The decisions for every file under `root` (recursively, hidden files skipped)."""
    detector, model = detector_config(), embedder()
    images: dict[str, dict[str, Any]] = {}
    summary = {"images": 0, "faces": 0, "no_face": 0, "rejected": 0}
    # Every entry but folders: a link to nothing or a pipe is listed with its error, not skipped
    # in silence. Links to folders are not followed (rglob), so a link cycle cannot loop; they
    # are listed too, so photos behind one are not missed unsaid.
    files = sorted(
        p
        for p in root.rglob("*")
        if (p.is_symlink() or not p.is_dir())
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    for path in files:
        rel = path.relative_to(root).as_posix()
        summary["images"] += 1
        if not path.is_file():
            images[rel] = {"faces": [], "error": _not_a_file(path)}
            continue
        try:
            decoded = decode_image(path, max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS)
        except BadImage as exc:
            images[rel] = {"faces": [], "error": str(exc)}
            continue
        except OSError as exc:
            images[rel] = {"faces": [], "error": f"could not read the file ({exc.strerror})"}
            continue
        try:
            detected = detect_and_align(decoded.rgb, detector)
            analysed = embed_detected([detected], model)[0][0]
            verdicts = assess_faces(analysed, model.version)
        except MemoryError:
            images[rel] = {"faces": [], "error": "the image is too large to process in memory"}
            continue
        except Exception as exc:
            # Processing hands such a failure back with its photo (processing._prepare); a dry
            # run over an archive lists it and goes on, so one file never costs the whole report.
            logger.exception("assess: %s could not be processed", rel)
            images[rel] = {
                "faces": [],
                "error": f"the photo could not be processed ({type(exc).__name__}: {exc})",
            }
            continue
        faces = [
            {
                "box": [a.detection.left, a.detection.top, a.detection.right, a.detection.bottom],
                "accepted": not v.rejected,
                "reasons": list(v.reasons),
            }
            for a, v in zip(analysed, verdicts, strict=True)
        ]
        images[rel] = {"faces": faces}
        summary["faces"] += len(faces)
        summary["no_face"] += not faces
        summary["rejected"] += sum(not f["accepted"] for f in faces)
    return {"images": images, "summary": summary}


class Command(BaseCommand):
    help = (
        "Detect, embed and filter every image of a folder as processing would, storing nothing; "
        "write each face's decision and reasons as JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path, help="a folder of images (searched recursively)")
        parser.add_argument(
            "--json", dest="json_out", type=Path, required=True, help="where to write the JSON"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["folder"]
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        result = assess_folder(root.resolve())
        out: Path = options["json_out"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        s = result["summary"]
        errors = sum("error" in entry for entry in result["images"].values())
        self.stdout.write(
            f"{s['images']} files, {s['faces']} faces ({s['rejected']} set aside by the filter), "
            f"{s['no_face']} images without a face, {errors} unreadable; wrote {out}"
        )

"""Train the out-of-distribution filter on a labelled folder (and reviewer decisions).

    manage.py train_ood ../shared/faces/lfw [--include-reviews] [--out recognition/weights/ood-v2]

The faces come from the app's own pipeline (its detector, dlib alignment, its embedder), clean,
under benign shifts (in distribution unless 1-NN gets them wrong) and degraded (out of
distribution); identities are split once from the labels (train / calibration / test).

Writes <out>.pt (weights, feature statistics, reference sample) and <out>.json (version,
threshold, metrics, date, dataset). The sample pass (detect, degrade, embed) is cached under
var/cache; with the cache, training takes well under a minute.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation import ood_training as T
from evaluation.ood import ABLATION_HEADER, ablation_line, shift_table
from recognition.core import ood
from recognition.runtime import detector_config
from recognition.runtime import rules as app_rules

ABLATIONS: dict[str, dict[str, Any]] = {
    "embedding + quality + distance to mean (shipped)": {},
    "quality + distance to mean, no raw embedding": {"use_embedding": False},
    "quality + distance to mean + k-NN distance to 1000 shipped faces": {
        "use_embedding": False,
        "features": ood.FEATURES,
        "reference_size": 1000,
    },
}


def next_version(weights_dir: Path) -> str:
    numbers = [
        int(m.group(1))
        for p in weights_dir.glob("ood-v*.json")
        if (m := re.fullmatch(r"ood-v(\d+)", p.stem))
    ]
    return f"ood-v{max(numbers, default=0) + 1}"


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


def _auc(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def confusion_line(name: str, m: dict[str, Any]) -> str:
    c = m["confusion"]
    return (
        f"| {name} | {c['n']} | {_pct(c['accuracy'])} | {_pct(c['TPR'])} | {_pct(c['TNR'])} | "
        f"{_pct(c['FPR'])} | {_pct(c['FNR'])} | {_pct(m['degraded_rejected'])} | "
        f"{_pct(m['clean_rejected'])} | {_pct(m['knn_errors_rejected'])} | {_auc(m['auc'])} |"
    )


CONFUSION_HEADER = (
    "| rows | n | accuracy | TPR | TNR | FPR | FNR | degraded rejected | clean rejected "
    "| k-NN errors rejected | AUC |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


class Command(BaseCommand):
    help = "Train the out-of-distribution filter and write versioned weights + metadata."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset_dir", type=Path, help="folder of <identity>/<image> files")
        parser.add_argument("--out", type=Path, help="weights base path (default: next ood-vN)")
        parser.add_argument(
            "--include-reviews",
            action="store_true",
            help="reviewer decisions as extra labels (approve: in distribution, reject: OOD)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--per-image", type=float, default=1.0, help="degraded variants per image"
        )
        parser.add_argument("--workers", type=int, default=2, help="processes for the pass")
        parser.add_argument("--epochs", type=int, default=T.TrainConfig.epochs)
        parser.add_argument("--cache-dir", type=Path, help="default: var/cache")
        parser.add_argument("--no-cache", action="store_true")
        parser.add_argument(
            "--max-per-identity",
            type=int,
            default=T.PassConfig.max_per_identity,
            help="images per identity in the pass (0: all; the embedding is the cost)",
        )
        parser.add_argument(
            "--ablation", action="store_true", help="also train feature-set variants and compare"
        )
        parser.add_argument(
            "--target-clean-reject",
            type=float,
            default=T.TrainConfig.target_clean_reject,
            help="calibration: share of clean faces the filter may reject",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["dataset_dir"].resolve()
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        cache_dir = (
            None if options["no_cache"] else (options["cache_dir"] or settings.VAR_DIR / "cache")
        )
        out: Path = options["out"] or ood.WEIGHTS_DIR / next_version(ood.WEIGHTS_DIR)
        out = out.with_suffix("") if out.suffix in {".pt", ".json"} else out
        version = out.name
        # The app's own detector (CenterFace by default): the filter sees the faces it will
        # judge. One onnxruntime thread per pass worker.
        detector = replace(detector_config(), threads=1)
        pass_config = T.PassConfig(
            detector=detector,
            per_image=options["per_image"],
            seed=options["seed"],
            embedder=settings.FACEWEB_EMBEDDER,
            max_per_identity=options["max_per_identity"],
        )
        started = time.perf_counter()
        samples = T.build_samples(
            root, cache_dir, pass_config, workers=options["workers"], progress=True
        )
        pass_s = time.perf_counter() - started
        dataset = T.make_dataset(samples)
        reviews = 0
        if options["include_reviews"]:
            dataset, reviews = self._add_reviews(dataset, settings.FACEWEB_EMBEDDER)
        rules = app_rules()
        base = T.TrainConfig(
            epochs=options["epochs"],
            seed=options["seed"],
            target_clean_reject=options["target_clean_reject"],
        )
        started = time.perf_counter()
        result = T.train(dataset, base, rules)
        train_s = time.perf_counter() - started
        ablation = {}
        if options["ablation"]:
            self.stdout.write(ABLATION_HEADER)
            for name, variant in ABLATIONS.items():
                config = T.TrainConfig(**{**base.__dict__, **variant})
                r = T.train(dataset, config, rules)
                ablation[name] = {"test": r.metrics["test"], "threshold": r.threshold}
                self.stdout.write(ablation_line(name, r.metrics["test"]))
            # `train` filled the reference distances of the last variant: redo the shipped one.
            result = T.train(dataset, base, rules)
        meta = T.metadata(
            version,
            result,
            dataset,
            dataset=str(root),
            config=base,
            pass_config=pass_config,
            rules=rules,
            embedder_version=settings.FACEWEB_EMBEDDER,
            extra={
                "reviews": reviews,
                "seconds": {"sample_pass": round(pass_s, 1), "training": round(train_s, 1)},
                **({"ablation": ablation} if ablation else {}),
            },
        )
        pt, js = ood.save_model(out, result.net, result.spec, result.reference, meta)
        self.stdout.write(CONFUSION_HEADER)
        for split in ("train", "calibration", "test", "held_out"):
            self.stdout.write(confusion_line(split, result.metrics[split]))
        self.stdout.write("")
        self.stdout.write(shift_table(result.metrics["test"], result.metrics["detector_missed"]))
        self.stdout.write(f"threshold {result.threshold:.3f}")
        self.stdout.write(f"wrote {pt} ({pt.stat().st_size // 1024} KiB) and {js}")
        self.stdout.write(f"sample pass {pass_s:.0f} s, training {train_s:.0f} s")

    def _add_reviews(self, dataset: T.Dataset, embedder_version: str) -> tuple[T.Dataset, int]:
        from recognition.models import ReviewDecision

        latest: dict[int, ReviewDecision] = {}
        for row in (
            ReviewDecision.objects.select_related("face")
            .filter(face__embedder_version=embedder_version, face__embedding__isnull=False)
            .order_by("created_at", "id")
        ):
            latest[row.face_id] = row  # a reviewer's later decision replaces an earlier one
        if not latest:
            return dataset, 0
        rows = list(latest.values())
        embeddings = np.stack([np.asarray(r.face.embedding, dtype=np.float32) for r in rows])
        raw = np.stack([T.raw_from_quality(r.face.quality or {}) for r in rows])
        labels = np.array([0 if r.decision == ReviewDecision.Decision.APPROVE else 1 for r in rows])
        return T.add_rows(dataset, embeddings, raw, labels, "review", "review"), len(rows)

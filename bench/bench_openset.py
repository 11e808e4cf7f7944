"""Open-set trust on the LFW dev split: the app's decisions by library size, and FNIR @ FPIR 1%
of the score variants tried to miss fewer mated faces.

Run: .venv/bin/python -m bench.bench_openset [--faces ../shared/faces/lfw] [--seed 1]

Uses the app's detector and embedder (cached under var/cache by `manage.py evaluate`), the
open-set split drawn once from the labels (`evaluation.openset.label_split`) and writes the
`trust-openset` and `trust-fnir` sections of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import django
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))
SPREAD_SEEDS = (0, 1, 2, 3, 4)


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=pathlib.Path, default=FACES / "lfw")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")
    django.setup()
    from django.conf import settings

    from bench._report import write_section
    from evaluation.folder import embed_labeled_folder
    from evaluation.openset import (
        SCORE_VARIANTS,
        LibraryRow,
        fit_model,
        label_split,
        library_rows,
        variant_fnir,
    )
    from evaluation.report import markdown_table
    from recognition.core import calibration
    from recognition.runtime import detector_config, embedder

    load_before = os.getloadavg()
    started = time.perf_counter()
    model = embedder()
    data = embed_labeled_folder(
        args.faces.resolve(),
        settings.VAR_DIR / "cache",
        embedder=model,
        detector=detector_config(),
    )
    split, unenrolled = label_split(data.labels, seed=args.seed)
    ceiling = calibration.thresholds(model.version)
    enrolled_rows = np.concatenate([split.gallery, split.probes])
    fitted = fit_model(
        data.embeddings,
        data.labels,
        data.found,
        enrolled_rows,
        embedder_version=model.version,
        ceiling=ceiling,
    )
    app_rows = library_rows(data.embeddings, data.labels, data.found, split, fitted)
    fixed_rows = library_rows(
        data.embeddings,
        data.labels,
        data.found,
        split,
        calibration.fixed_limits(model.version),
    )
    flip = data.with_flip_tta()
    flip_fitted = fit_model(
        flip.embeddings,
        flip.labels,
        flip.found,
        enrolled_rows,
        embedder_version=model.version,
        ceiling=ceiling,
    )
    flip_rows = library_rows(flip.embeddings, flip.labels, flip.found, split, flip_fitted)

    def table(rows_by_name: list[tuple[str, list[LibraryRow]]]) -> str:
        return markdown_table(
            [
                "Limits",
                "People",
                "Libraries",
                "Auto / suggest limit",
                "Strangers auto-tagged (%)",
                "Strangers suggested (%)",
                "Auto-tag precision (%)",
                "Mated tagged as someone else (%)",
                "Mated auto-tagged right (%)",
                "Mated found (%)",
                "FNIR @ FPIR 1% (%)",
            ],
            [
                [
                    name,
                    f"{r.size:,}",
                    f"{r.libraries:,}",
                    f"{r.same:.3f} / {r.possible:.3f}",
                    _pct(r.stranger_auto),
                    _pct(r.stranger_suggested),
                    _pct(r.auto_precision),
                    _pct(r.mated_auto_wrong),
                    _pct(r.mated_auto_correct),
                    _pct(r.mated_found),
                    _pct(r.fnir_at_fpir_1),
                ]
                for name, rows in rows_by_name
                for r in rows
            ],
        )

    per_face_ms = 1000 * data.times.embed / max(int(data.found.sum()), 1)
    flip_ms = 1000 * data.times.embed_flip / max(int(data.found.sum()), 1)
    fnir_rows = []
    for name, how in SCORE_VARIANTS.items():
        values = [
            variant_fnir(data, label_split(data.labels, seed=s)[0], **how)
            for s in (args.seed, *SPREAD_SEEDS)
        ]
        fnir_rows.append((name, values[0], values[1:]))
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started

    head = (
        f"`.venv/bin/python -m bench.bench_openset` ({elapsed:.0f} s with cached embeddings; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, "
        f"{os.cpu_count()} cores). Data: `{args.faces.name}` ({len(data.names):,} images, "
        f"{len(data.label_names):,} identities), the app's pipeline "
        f"({settings.FACEWEB_DETECTOR}, `{model.version}`, no flip). Split drawn once from "
        f"the labels, seed {args.seed}: {len(unenrolled)} identities never enrolled "
        f"({len(split.nonmated):,} strangers' faces), {len(split.probes):,} mated probes, "
        f"gallery {len(split.gallery):,} images. Targets: auto-tag precision >= 99.5%, "
        f"strangers auto-tagged <= 0.5% at every size, >= 70% of mated faces found "
        f"(tagged right or suggested right first)."
    )
    openset = "\n".join(
        [
            "## Open-set decisions by library size (issue #12)",
            "",
            head,
            "",
            "The matcher's own code (`evaluation.openset.library_rows`: the 4 nearest people "
            "per face, `StrangerModel.limits` for the library's size with targets "
            f"{settings.FACEWEB_AUTO_TAG_STRANGER_RATE:.1%} auto-tag / "
            f"{settings.FACEWEB_SUGGEST_STRANGER_RATE:.0%} suggestion, per-person limits for "
            "people with 5+ gallery faces, `matching.assign_photo`), exact search in numpy. "
            "The stranger model is fitted like `manage.py calibrate` on the enrolled identities "
            "only, so no stranger's face is seen by it. A library is a random draw of that many "
            "enrolled identities (all their gallery images as templates), drawn again until 400+ "
            "mated searches are pooled; every stranger's face is searched in every library. "
            "'Fixed' is the matcher before: 0.5 / 0.6 at every size.",
            "",
            table(
                [
                    ("library-sized (app)", app_rows),
                    ("fixed 0.5 / 0.6, plain distance (before)", fixed_rows),
                    ("library-sized, flip TTA", flip_rows),
                ]
            ),
            "",
            "What it says. The limits are on the cohort-normalised score (distance minus 0.75 x "
            "the mean distance to the next 3 people the search found; `calibration.Score`), so "
            "their values are not distances and need not shrink with the library: a face's "
            "distance limit is the score limit plus its own offset, within the fixed 0.5 / 0.6. "
            "Strangers' automatic tags stay well under the 0.5% target at every size (the "
            "growth rule between measured sizes errs strict), precision is over 99.5% and 90%+ "
            "of mated faces are tagged right or suggested right first; the fixed limits tagged "
            "3.5-4.5% of strangers in large libraries and suggested somebody for nearly all. "
            "The price is fewer automatic tags of mated faces in large libraries (79% against "
            "90% at 2,706 people): they become suggestions. Caveats: one dataset (the limits are "
            "fitted and measured on LFW, disjoint identities, not other photo sets); the app "
            "searches with the staged PostgreSQL search, here exact; precision depends on the "
            "share of strangers among searched faces (here LFW's: 647 to 1,724).",
        ]
    )
    fnir = "\n".join(
        [
            "## Fewer misses: FNIR @ FPIR 1% by score (issue #12)",
            "",
            head,
            "",
            "All identities of the split enrolled (the largest library). FNIR: mated searches "
            "whose rank-1 person is not the mate within the limit that lets through at most 1% "
            f"of strangers. Seed {args.seed} first, then mean (min-max) over seeds "
            f"{', '.join(map(str, SPREAD_SEEDS))}. Embedding one face costs "
            f"{per_face_ms:.1f} ms here; the mirrored chip costs {flip_ms:.1f} ms more "
            "(batched 64, measured while the embeddings were computed, shared machine).",
            "",
            markdown_table(
                ["Score", f"FNIR @ FPIR 1%, seed {args.seed} (%)", "Over seeds (%)"],
                [
                    [
                        name,
                        _pct(first),
                        f"{_pct(float(np.mean(rest)))} ({_pct(min(rest))}-{_pct(max(rest))})",
                    ]
                    for name, first, rest in fnir_rows
                ],
            ),
            "",
            "What it says. Cohort normalisation is the gain: the 3 people after the best one "
            "are what the matcher's search returns anyway, so it costs nothing at run time, and "
            "it halves the misses (32% to 16% over seeds; 14.3% on seed 1, target 15%). Beta "
            "and the cohort size were chosen on this split (a 3 x 5 grid; 10 people measure a "
            "little better but need a larger search). Flip-averaged embeddings gain another 2-3 "
            "points for twice the embedding time per face; in the app that is a new embedder "
            "version (re-embed every face), left to the models switch, not made the default "
            "here. Fusing the two nearest templates of a person does not help (most LFW "
            "people have one or two gallery images). Quality-weighted templates were not "
            "measured: the cached LFW embeddings carry no detector score, and LFW faces are "
            "uniformly good.",
        ]
    )
    print(openset)
    print()
    print(fnir)
    if not args.no_write:
        write_section("trust-openset", openset)
        write_section("trust-fnir", fnir)


if __name__ == "__main__":
    main()

"""The whole protocol over pipeline variants, and its JSON / Markdown / PNG report."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.folder import LabeledEmbeddings
from evaluation.metrics import (
    DLIB_THRESHOLD,
    FPIR_TARGETS,
    IdentificationResult,
    OpenSetResult,
    OpenSetSearches,
    PairDistances,
    Pairs,
    Split,
    VerificationResult,
    closed_set_identification,
    closed_set_split,
    det_curve,
    open_set_fnir_at_fpir,
    open_set_searches,
    pair_distances,
    verification_10fold,
)
from evaluation.openset import LibraryRow, fit_model, label_split, library_rows
from recognition.core import calibration


@dataclass(frozen=True)
class Variant:
    """One pipeline's embeddings of the dataset, named for the tables."""

    name: str
    data: LabeledEmbeddings
    flip_tta: bool = False  # average each embedding with its mirrored chip's


@dataclass(frozen=True)
class VariantReport:
    name: str
    faces_found: int
    misses: dict[str, str]
    ms_per_image: dict[str, float]
    verification: VerificationResult | None
    closed_set: IdentificationResult  # every identity enrolled
    closed_set_enrolled: IdentificationResult  # mated searches of the open-set split
    open_set: OpenSetResult
    fnir_over_seeds: dict[str, tuple[float, ...]]  # FPIR target -> FNIR for each spread seed
    libraries: tuple[LibraryRow, ...]  # the app's decisions by library size
    # Curves for the plots; not written to JSON.
    pair_distances: PairDistances | None
    searches: OpenSetSearches


@dataclass(frozen=True)
class EvaluationReport:
    dataset: str
    images: int
    identities: int
    embedder_version: str
    pairs_file: str | None
    seed: int
    spread_seeds: tuple[int, ...]
    load_average: float  # 1-minute load when evaluated: timings on a shared machine depend on it
    variants: tuple[VariantReport, ...]


def _found_only(split: Split, found: np.ndarray) -> Split:
    return Split(
        split.gallery[found[split.gallery]],
        split.probes[found[split.probes]],
        split.nonmated[found[split.nonmated]],
    )


def evaluate_variant(
    variant: Variant,
    pairs: Pairs | None,
    *,
    split: Split,
    unenrolled: np.ndarray,
    spread_splits: Sequence[Split] = (),
    auto_rate: float = calibration.DEFAULT_AUTO_RATE,
    suggest_rate: float = calibration.DEFAULT_SUGGEST_RATE,
) -> VariantReport:
    """Every protocol on one pipeline's embeddings. The open-set splits are drawn from the
    labels (`evaluation.openset.label_split`), the same for every variant: an image where this
    pipeline found no face is a missed mated search, or a stranger's search that cannot go
    wrong. The closed-set rows use the images it found a face in."""
    data = variant.data.with_flip_tta() if variant.flip_tta else variant.data
    verification = distances = None
    if pairs is not None:
        distances = pair_distances(data, pairs)
        verification = verification_10fold(
            distances.distances,
            distances.same,
            distances.fold,
            missing_face=distances.missing_face,
            missing_file=distances.missing_file,
        )
    closed = closed_set_split(data.labels, data.found)
    searches = open_set_searches(data.embeddings, data.labels, split, data.found)
    spread: dict[str, list[float]] = {f"{t:g}": [] for t in FPIR_TARGETS}
    for other in spread_splits:
        points = open_set_fnir_at_fpir(
            open_set_searches(data.embeddings, data.labels, other, data.found)
        )
        for point in points:
            spread[f"{point.fpir_target:g}"].append(point.fnir)
    # The limits come from a stranger model fitted, like `manage.py calibrate` does, on the
    # enrolled identities only: the strangers' faces are never seen by the calibration.
    enrolled_rows = np.concatenate([split.gallery, split.probes])
    model = fit_model(
        data.embeddings,
        data.labels,
        data.found,
        enrolled_rows,
        embedder_version=data.embedder_version,
        ceiling=calibration.THRESHOLDS.get(
            data.embedder_version, calibration.Thresholds(same=0.5, possible=0.6)
        ),
    )
    libraries = library_rows(
        data.embeddings,
        data.labels,
        data.found,
        split,
        model,
        auto_rate=auto_rate,
        suggest_rate=suggest_rate,
    )
    enrolled_split = _found_only(split, data.found)
    return VariantReport(
        name=variant.name,
        faces_found=int(data.found.sum()),
        misses=data.misses,
        ms_per_image=data.times.ms_per_image(variant.flip_tta),
        verification=verification,
        closed_set=closed_set_identification(data.embeddings, data.labels, closed),
        closed_set_enrolled=closed_set_identification(data.embeddings, data.labels, enrolled_split),
        open_set=OpenSetResult(
            points=open_set_fnir_at_fpir(searches),
            mated_searches=len(split.probes),
            nonmated_searches=len(split.nonmated),
            unenrolled_identities=len(unenrolled),
            gallery_images=len(enrolled_split.gallery),
            gallery_identities=len(np.unique(data.labels[enrolled_split.gallery])),
        ),
        fnir_over_seeds={k: tuple(v) for k, v in spread.items()},
        libraries=tuple(libraries),
        pair_distances=distances,
        searches=searches,
    )


def evaluate(
    variants: Sequence[Variant],
    pairs: Pairs | None,
    *,
    seed: int = 1,
    spread_seeds: Sequence[int] = range(5),
    pairs_file: str | None = None,
) -> EvaluationReport:
    """All protocols for each variant (e.g. plain, flip TTA, a detector retry).

    Closed set: every second image, in file order, of each identity with 2+ images is a probe,
    as in ../shared/faces/README.md; reported with every identity enrolled and, as the README
    does, on the open-set gallery. Open set: `seed` picks the 20% of multi-image identities that
    are never enrolled (drawn from the labels: 168 identities, 1,724 mated probes, 2,706 enrolled
    identities on ../shared/faces/lfw);
    FNIR is also given over `spread_seeds`, since 1% of ~700 non-mated searches is 7 searches.
    Every split is drawn once, from the labels, and shared by all variants.
    """
    first = variants[0].data
    for v in variants[1:]:
        if v.data.names != first.names or not np.array_equal(v.data.labels, first.labels):
            raise ValueError(f"variant {v.name!r} embeds other images than {variants[0].name!r}")
    split, unenrolled = label_split(first.labels, seed=seed)
    spread_splits = [label_split(first.labels, seed=other)[0] for other in spread_seeds]
    return EvaluationReport(
        dataset=pathlib.Path(first.root).name,
        images=len(first.names),
        identities=len(first.label_names),
        embedder_version=first.embedder_version,
        pairs_file=pairs_file,
        seed=seed,
        spread_seeds=tuple(spread_seeds),
        load_average=os.getloadavg()[0],
        variants=tuple(
            evaluate_variant(
                v, pairs, split=split, unenrolled=unenrolled, spread_splits=spread_splits
            )
            for v in variants
        ),
    )


def _finite_or_none(value: object) -> object:
    # JSON has no Infinity/NaN; an unreachable threshold is written as null.
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def report_json(report: EvaluationReport) -> dict:
    """The report as JSON-ready data; non-finite numbers become null."""

    def variant(v: VariantReport) -> dict:
        return {
            "name": v.name,
            "faces_found": v.faces_found,
            "misses": v.misses,
            "ms_per_image": v.ms_per_image,
            "verification": dataclasses.asdict(v.verification) if v.verification else None,
            "closed_set": dataclasses.asdict(v.closed_set),
            "closed_set_enrolled": dataclasses.asdict(v.closed_set_enrolled),
            "open_set": dataclasses.asdict(v.open_set),
            "fnir_over_seeds": v.fnir_over_seeds,
            "libraries": [dataclasses.asdict(row) for row in v.libraries],
        }

    return _finite_or_none(
        {
            "dataset": report.dataset,
            "images": report.images,
            "identities": report.identities,
            "embedder_version": report.embedder_version,
            "pairs_file": report.pairs_file,
            "seed": report.seed,
            "spread_seeds": report.spread_seeds,
            "load_average": report.load_average,
            "variants": [variant(v) for v in report.variants],
        }
    )


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _identification_table(results: Sequence[tuple[str, IdentificationResult]]) -> str:
    return markdown_table(
        [
            "Algorithm",
            "Top-1 (%)",
            "Top-5 (%)",
            "Time of one image classification (ms)",
            "Probes / gallery identities",
        ],
        [
            [
                f"k-NN (1-NN), all gallery images, {name}",
                _pct(r.top1),
                _pct(r.top5),
                f"{r.ms_per_query:.2f}",
                f"{r.probes:,} / {r.gallery_identities:,}",
            ]
            for name, r in results
        ],
    )


def report_markdown(report: EvaluationReport) -> str:
    """Tables laid out like the seed papers': algorithm, accuracy (%), time of one query (ms)."""
    variants = report.variants
    base = variants[0]
    cs, cse, os_ = base.closed_set, base.closed_set_enrolled, base.open_set
    stages = ("decode", "detect", "align", "embed")
    out = [
        f"Dataset `{report.dataset}`: {report.images:,} images of {report.identities:,} "
        f"identities; embedder `{report.embedder_version}`; one face per image, the one nearest "
        "the image centre. Images without a face take no part in identification; a verification "
        "pair with such an image counts as 'different'. The first pipeline is the app's own "
        "(its detector at its settings, no flip); the others differ only as their names say "
        "(another detector, or flip TTA: the mirrored chip embedded too and averaged).",
        "",
        "**Detection and time per image** (wall-clock ms on this machine, measured when the "
        "embeddings were computed; embed is batched, 64 chips per forward pass; flip TTA embeds "
        "the mirrored chip as well and averages the two):",
        "",
        markdown_table(
            ["Pipeline", "Faces found", "No face", *stages, "total"],
            [
                [v.name, f"{v.faces_found:,}", str(report.images - v.faces_found)]
                + [f"{v.ms_per_image[k]:.2f}" for k in (*stages, "total")]
                for v in variants
            ],
        ),
        "",
    ]
    if base.verification is not None:
        v = base.verification
        out += [
            f"**Verification** (`{report.pairs_file}`: {v.pairs:,} pairs, {v.same_pairs:,} same; "
            "LFW protocol: 10 folds, the threshold chosen on 9 folds and tested on the 10th; "
            "accuracy is the mean over folds ± standard deviation):",
            "",
            markdown_table(
                [
                    "Algorithm",
                    "Accuracy (%)",
                    "Mean threshold",
                    "Accuracy at 0.6 (%)",
                    "Pairs with a missed face",
                ],
                [
                    [
                        f"Euclidean distance, {r.name}",
                        f"{_pct(r.verification.accuracy)} ± {_pct(r.verification.accuracy_std)}",
                        f"{np.mean(r.verification.thresholds):.3f}",
                        _pct(r.verification.accuracy_at_fixed),
                        str(r.verification.missing_face),
                    ]
                    for r in variants
                    if r.verification is not None
                ],
            ),
            "",
        ]
    out += [
        "Time of one image classification: one probe searched alone against the prepared "
        "gallery (top 5 identities), wall-clock ms, median of 50 probes in the fastest of 5 "
        "rounds; 1-minute load average "
        f"{report.load_average:.1f} on this machine's {os.cpu_count()} cores while measured.",
        "",
        f"**Closed-set identification, every identity enrolled** ({cs.probes:,} probes: every "
        f"second image of each identity with 2+ images; gallery: the other {cs.gallery_images:,} "
        f"images, {cs.gallery_identities:,} identities, for the first pipeline):",
        "",
        _identification_table([(v.name, v.closed_set) for v in variants]),
        "",
        f"**Closed-set identification on the open-set gallery** (the README's layout: "
        f"{cse.probes:,} probes of enrolled identities; gallery {cse.gallery_images:,} images, "
        f"{cse.gallery_identities:,} identities):",
        "",
        _identification_table([(v.name, v.closed_set_enrolled) for v in variants]),
        "",
        f"**Open-set identification** ({os_.unenrolled_identities} of the multi-image identities "
        f"never enrolled, seed {report.seed}: {os_.nonmated_searches:,} non-mated and "
        f"{os_.mated_searches:,} mated searches. FPIR: share of non-mated searches whose nearest "
        "gallery image is below the threshold; FNIR: share of mated searches whose rank-1 "
        "identity is not the mate below the threshold; the threshold is the largest with FPIR "
        f"at most the target. Last column: FNIR @ FPIR 1% over seeds "
        f"{', '.join(map(str, report.spread_seeds))}, mean (min-max)):",
        "",
        markdown_table(
            ["Algorithm"]
            + [f"FNIR (%) @ FPIR {100 * p.fpir_target:g}%" for p in os_.points]
            + ["FNIR (%) @ FPIR 1%, seeds"],
            [
                [f"1-NN + distance threshold, {r.name}"]
                + [f"{_pct(p.fnir)} (t = {p.threshold:.3f})" for p in r.open_set.points]
                + [_spread(r.fnir_over_seeds.get("0.01", ()))]
                for r in variants
            ],
        ),
        "",
        library_markdown(variants),
    ]
    return "\n".join(out) + "\n"


def library_markdown(variants: Sequence[VariantReport]) -> str:
    """The app's decisions by library size, one table for all variants."""
    rows = []
    for v in variants:
        for r in v.libraries:
            rows.append(
                [
                    v.name,
                    f"{r.size:,}",
                    f"{r.libraries:,}",
                    f"{r.same:.3f} / {r.possible:.3f}",
                    f"{_pct(r.stranger_auto)} ({r.stranger_searches:,})",
                    _pct(r.stranger_suggested),
                    f"{_pct(r.auto_precision)}",
                    f"{_pct(r.mated_auto_wrong)}",
                    f"{_pct(r.mated_auto_correct)}",
                    f"{_pct(r.mated_found)} ({r.mated_searches:,})",
                    _pct(r.fnir_at_fpir_1),
                ]
            )
    return "\n".join(
        [
            "**Open-set decisions by library size** (the matcher's own code: the 4 nearest "
            "people per face, `StrangerModel.limits` for the library's size, per-person limits "
            "for people with 5+ faces, `matching.assign_photo`; exact search in numpy instead "
            "of the staged PostgreSQL search. A library is a random draw of that many enrolled "
            "identities with all their gallery images as templates, drawn again until 400+ "
            "mated searches are pooled; every stranger's face is searched in every library. "
            "The stranger model is fitted like `manage.py calibrate` but on the enrolled "
            "identities only, so the strangers are unseen. Limits are on the cohort-normalised "
            "score (`calibration.Score`), within the fixed 0.5 / 0.6 on the plain distance. "
            "Precision counts the strangers' and the mated faces' tags at the split's own mix "
            "of strangers and mated faces. Found = tagged right, or suggested with the right "
            "person):",
            "",
            markdown_table(
                [
                    "Pipeline",
                    "People",
                    "Libraries",
                    "Limits auto / suggest",
                    "Strangers auto-tagged (%) (searches)",
                    "Strangers suggested (%)",
                    "Auto-tag precision (%)",
                    "Mated tagged as someone else (%)",
                    "Mated auto-tagged right (%)",
                    "Mated found (%) (searches)",
                    "FNIR @ FPIR 1% (%)",
                ],
                rows,
            ),
        ]
    )


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{_pct(float(np.mean(values)))} ({_pct(min(values))}-{_pct(max(values))})"


def write_plots(report: EvaluationReport, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """cmc.png, det.png and distances.png for every variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in report.variants:
        ranks = np.arange(1, len(v.closed_set.cmc) + 1)
        ax.plot(ranks, 100 * np.array(v.closed_set.cmc), marker=".", label=v.name)
    ax.set(xlabel="rank", ylabel="identification rate (%)", title=f"CMC, {report.dataset}")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(out_dir / "cmc.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for v in report.variants:
        _, fpir, fnir = det_curve(v.searches)
        keep = fpir > 0
        ax.plot(100 * fpir[keep], 100 * fnir[keep], label=v.name)
    ax.set(
        xscale="log",
        xlabel="FPIR (%)",
        ylabel="FNIR (%)",
        title=f"Open-set DET, {report.dataset}",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    paths.append(out_dir / "det.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    with_pairs = [v for v in report.variants if v.pair_distances is not None]
    cols = min(max(len(with_pairs), 1), 2)
    rows = max((len(with_pairs) + 1) // 2, 1)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    for ax, v in zip(axes.ravel(), with_pairs, strict=False):
        pd = v.pair_distances
        finite = np.isfinite(pd.distances)
        bins = np.linspace(0, 1.2, 61)
        ax.hist(pd.distances[finite & pd.same], bins=bins, alpha=0.6, label="same person")
        ax.hist(pd.distances[finite & ~pd.same], bins=bins, alpha=0.6, label="different")
        ax.axvline(DLIB_THRESHOLD, color="k", linestyle="--", label="0.6")
        ax.set(xlabel="Euclidean distance", ylabel="pairs", title=f"Pair distances, {v.name}")
        ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "distances.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def write_report(report: EvaluationReport, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """results.json, results.md and the plots in out_dir; returns the paths written."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(report_json(report), indent=2, allow_nan=False) + "\n")
    md_path = out_dir / "results.md"
    md_path.write_text(report_markdown(report))
    return [json_path, md_path, *write_plots(report, out_dir)]

"""The seeds' "k-NN + all" vs "k-NN + exclusion" rows on a labelled folder (LFW).

Exclusion means both sides of the search: faces the filter rejects are removed from the gallery
and a rejected probe is answered "out of distribution" instead of a name. Accuracy is reported on
the probes that were answered, next to the share that was refused, and also counting refusals as
errors, so the gain cannot hide in the refusals. Staged k-NN (recognition/core/staged.py:
staged_rank, the in-memory form of the sequential search) gets the same two rows.

The filter was trained on LFW (train_ood): the rows on all identities include the identities it was
trained on, whose 1-NN mistakes were its labels. The rows on the held-out identities (the 30% that
`train_ood` never trained on, by the same seeded split) are the honest ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import ood_training as T
from evaluation.folder import list_labeled_images
from evaluation.metrics import closed_set_split, gallery_index, search_identities
from recognition.core import ood
from recognition.core.detection import DetectorConfig, align_faces, detect_faces
from recognition.core.geometry import squared_distances
from recognition.core.images import DEFAULT_MAX_PIXELS, decode_image
from recognition.core.projection import fit_basis
from recognition.core.staged import SearchParams, staged_rank
from recognition.core.versions import EMBEDDING_DIM


@dataclass(frozen=True)
class Row:
    name: str
    subset: str
    gallery_images: int
    probes: int
    answered: int
    top1_answered: float  # on the probes that got an answer
    top1_all: float  # refusals counted as errors
    ms_search: float  # per probe, one at a time
    ms_filter: float  # per probe: quality features + classifier (0 for "all")

    @property
    def refused(self) -> float:
        return 1 - self.answered / self.probes if self.probes else float("nan")


@dataclass(frozen=True)
class FilterVerdicts:
    rejected: np.ndarray  # (N,) bool
    scores: np.ndarray  # (N,)


def verdicts(samples: T.Samples, model: ood.OodModel, rules: ood.Rules) -> FilterVerdicts:
    """The shipped filter on precomputed rows, exactly as inference computes it (no exclusions)."""
    quality = T.quality_vectors(samples.raw)
    if model.reference is not None:
        dist = model.reference.distances(samples.embedding)
        quality[:, ood.FEATURES.index("mean_dist")] = dist[:, 0]
        quality[:, ood.FEATURES.index("knn_dist")] = dist[:, 1]
    scores = model.scores(samples.embedding, quality)
    raw = samples.raw
    size = raw[:, T.QUALITY_FIELDS.index("size_px")]
    blur = raw[:, T.QUALITY_FIELDS.index("blur")]
    hard = (size < rules.min_face_px) | (blur < rules.min_blur)
    return FilterVerdicts(hard | (scores >= model.threshold), scores)


def still_enrolled(
    labels: np.ndarray, gallery: np.ndarray, probes: np.ndarray, accepted: np.ndarray
) -> np.ndarray:
    """Per probe: does its identity keep at least one accepted gallery image?

    A probe whose identity loses every gallery image to the filter is no longer a closed-set
    search under exclusion (its person is not enrolled: a failure to enrol, in ISO/IEC 19795's
    terms), so it can only be wrong there whatever the matcher does.
    """
    kept = np.unique(labels[gallery[accepted[gallery]]])
    return np.isin(labels[probes], kept)


def error_sources(
    emb: np.ndarray,
    labels: np.ndarray,
    gallery: np.ndarray,
    probes: np.ndarray,
    accepted: np.ndarray,
) -> dict[str, int]:
    """Where 1-NN's mistakes come from, and how much exclusion could possibly fix.

    For each misidentified probe the gallery image that took it is its "thief". `stolen_by_rejected`
    counts the mistakes whose thief the filter rejects (exclusion can fix only those);
    `fixed_by_oracle` is how many mistakes would be fixed if every thief were removed, an upper
    bound that no filter reaches without removing other images too.
    """
    g, q = emb[gallery].astype(np.float64), emb[probes].astype(np.float64)
    d = squared_distances(q, g)
    nearest = d.argmin(axis=1)
    wrong = labels[gallery[nearest]] != labels[probes]
    thieves = np.unique(nearest[wrong])
    d[:, thieves] = np.inf
    after = labels[gallery[d.argmin(axis=1)]] == labels[probes]
    return {
        "errors": int(wrong.sum()),
        "thieves": len(thieves),
        "stolen_by_rejected": int((~accepted[gallery[nearest[wrong]]]).sum()),
        "fixed_by_oracle": int((after & wrong).sum()),
        "broken_by_oracle": int((~after & ~wrong).sum()),
    }


def _knn(
    gallery: np.ndarray, g_labels: np.ndarray, probes: np.ndarray, timing: int
) -> tuple[np.ndarray, float]:
    if not len(gallery) or not len(probes):
        return np.full(len(probes), -1), float("nan")
    index = gallery_index(gallery, g_labels)
    pred = index.ids[search_identities(index, probes).argmin(axis=1)]
    for probe in probes[:10]:  # warm caches before timing
        search_identities(index, probe[None, :])
    samples = []
    for probe in probes[:timing]:
        t0 = time.perf_counter()
        search_identities(index, probe[None, :]).argmin(axis=1)
        samples.append(time.perf_counter() - t0)
    return pred, 1000 * float(np.median(samples))


def _staged(
    gallery: np.ndarray, g_labels: np.ndarray, probes: np.ndarray, params: SearchParams
) -> tuple[np.ndarray, float]:
    if not len(gallery) or not len(probes):
        return np.full(len(probes), -1), float("nan")
    basis = fit_basis(gallery)
    vectors = basis.rotate(gallery)
    queries = basis.rotate(probes)
    faces = np.arange(len(gallery))
    pred = np.empty(len(probes), dtype=np.int64)
    samples = []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        best = staged_rank(q, vectors, g_labels, faces, params, top_n=1)
        samples.append(time.perf_counter() - t0)
        pred[i] = best[0].person_id if best else -1
    return pred, 1000 * float(np.median(samples))


def filter_ms_per_face(root: Path, name: str, model: ood.OodModel, rules: ood.Rules) -> float:
    """Median time of the filter on one real face (chip features, reference distances, MLP)."""
    rgb = decode_image(root / name, max_pixels=DEFAULT_MAX_PIXELS).rgb
    faces = detect_faces(rgb, DetectorConfig())
    chips = align_faces(rgb, faces[:1])
    emb = np.zeros((1, EMBEDDING_DIM), dtype=np.float32)
    face = faces[0]
    samples = []
    for _ in range(50):
        t0 = time.perf_counter()
        ood.assess(chips, [face.width], [face.landmarks], [face.score], emb, model, rules)
        samples.append(time.perf_counter() - t0)
    return 1000 * float(np.median(samples))


def _rows(
    subset: str,
    emb: np.ndarray,
    labels: np.ndarray,
    gallery: np.ndarray,
    probes: np.ndarray,
    accepted: np.ndarray,
    ms_filter: float,
    params: SearchParams,
    timing: int,
) -> list[Row]:
    truth = labels[probes]
    every = np.ones(len(probes), bool)
    variants = {
        "all": (gallery, every),
        # Isolates the gallery side: every probe is answered.
        "exclusion, gallery only": (gallery[accepted[gallery]], every),
        "exclusion": (gallery[accepted[gallery]], accepted[probes]),
    }
    rows = []
    for method in ("k-NN", "staged k-NN"):
        for variant, (g, answered) in variants.items():
            if method == "staged k-NN" and variant == "exclusion, gallery only":
                continue
            if method == "k-NN":
                pred, ms = _knn(emb[g], labels[g], emb[probes], timing)
            else:
                pred, ms = _staged(emb[g], labels[g], emb[probes], params)
            correct = (pred == truth) & answered
            rows.append(
                Row(
                    name=f"{method} + {variant}",
                    subset=subset,
                    gallery_images=len(g),
                    probes=len(probes),
                    answered=int(answered.sum()),
                    top1_answered=float(correct.sum() / max(answered.sum(), 1)),
                    top1_all=float(correct.mean()) if len(probes) else float("nan"),
                    ms_search=ms,
                    ms_filter=0.0 if variant == "all" else ms_filter,
                )
            )
    return rows


def evaluate(
    samples: T.Samples,
    model: ood.OodModel,
    rules: ood.Rules,
    split_seed: int,
    ms_filter: float,
    params: SearchParams | None = None,
    timing: int = 200,
) -> tuple[list[Row], dict[str, Any]]:
    """Rows on clean LFW (all identities, held-out identities) and on held-out identities with
    the degraded copies of their images added to the gallery and the probes (the seeds' setting:
    a reference set that holds bad photos)."""
    params = params or SearchParams()
    clean = samples.subset((samples.kind == T.CLEAN) & samples.detected)
    names, labels = np.unique(clean.identity, return_inverse=True)
    split = closed_set_split(labels, np.ones(len(clean), dtype=bool))
    accepted = ~verdicts(clean, model, rules).rejected
    held_out = np.array([T.split_of(str(n), split_seed) != "train" for n in names])[labels]

    degraded = samples.subset((samples.kind != T.CLEAN) & samples.detected)
    row_of = {str(p): i for i, p in enumerate(clean.path)}
    source = np.array([row_of.get(str(p), -1) for p in degraded.path], dtype=np.int64)
    degraded = degraded.subset(source >= 0)
    source = source[source >= 0]
    emb = np.concatenate([clean.embedding, degraded.embedding])
    all_labels = np.concatenate([labels, labels[source]])
    all_accepted = np.concatenate([accepted, ~verdicts(degraded, model, rules).rejected])
    copies = len(clean) + np.arange(len(degraded))
    in_gallery = np.isin(source, split.gallery) & held_out[source]
    in_probes = np.isin(source, split.probes) & held_out[source]

    rows: list[Row] = []
    lost = {}
    unenrolled = {}
    for subset, mask in (("all identities", np.ones(len(clean), bool)), ("held-out", held_out)):
        gallery = split.gallery[mask[split.gallery]]
        probes = split.probes[mask[split.probes]]
        enrolled = still_enrolled(labels, gallery, probes, accepted)
        lost[subset] = int((~enrolled).sum())
        unenrolled[subset] = [
            len(np.unique(labels[probes[~enrolled]])),
            len(np.unique(labels[gallery])),
        ]
        rows += _rows(
            subset, clean.embedding, labels, gallery, probes, accepted, ms_filter, params, timing
        )
        # The closed-set question proper: identities that are enrolled under both galleries.
        rows += _rows(
            f"{subset}, still enrolled",
            clean.embedding,
            labels,
            gallery,
            probes[enrolled],
            accepted,
            ms_filter,
            params,
            timing,
        )
    gallery = np.concatenate([split.gallery[held_out[split.gallery]], copies[in_gallery]])
    probes = np.concatenate([split.probes[held_out[split.probes]], copies[in_probes]])
    rows += _rows(
        "held-out + degraded copies",
        emb,
        all_labels,
        gallery,
        probes,
        all_accepted,
        ms_filter,
        params,
        timing,
    )
    facts = {
        "images": len(clean),
        "rejected_share": round(float((~accepted).mean()), 4),
        "gallery_rejected": int((~accepted[split.gallery]).sum()),
        "probes_rejected": int((~accepted[split.probes]).sum()),
        "held_out_identities": int(sum(T.split_of(str(n), split_seed) != "train" for n in names)),
        "probes_losing_their_identity": lost,
        "identities_failing_to_enrol": unenrolled,
        "error_sources": error_sources(
            clean.embedding, labels, split.gallery, split.probes, accepted
        ),
        "degraded_gallery": int(in_gallery.sum()),
        "degraded_probes": int(in_probes.sum()),
        "params": {"levels": list(params.levels), "delta": params.delta},
    }
    return rows, facts


def _error_sources_text(e: dict[str, int]) -> str:
    return (
        f"Why exclusion cannot raise Top-1 much on clean LFW: of the {e['errors']} probes 1-NN "
        f"gets wrong with all faces, the gallery image that took the probe is rejected by the "
        f"filter for {e['stolen_by_rejected']}; removing all {e['thieves']} such images (an "
        f"oracle no filter can be) would fix {e['fixed_by_oracle']} and break "
        f"{e['broken_by_oracle']}. The mistakes are look-alikes, not bad photos."
    )


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


def _auc(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary(rows: list[Row]) -> str:
    """One line per subset: what exclusion did to k-NN Top-1."""
    lines = []
    for subset in dict.fromkeys(r.subset for r in rows):
        by = {r.name: r for r in rows if r.subset == subset}
        base, gal, ex = (
            by["k-NN + all"],
            by["k-NN + exclusion, gallery only"],
            by["k-NN + exclusion"],
        )
        lines.append(
            f"- {subset}: k-NN Top-1 {_pct(base.top1_all)} with all faces; excluding rejected "
            f"faces from the gallery only: {_pct(gal.top1_all)} "
            f"({100 * (gal.top1_all - base.top1_all):+.1f} points); with rejected probes refused "
            f"as well: {_pct(ex.top1_answered)} on the {_pct(1 - ex.refused)} answered "
            f"({100 * (ex.top1_answered - base.top1_all):+.1f} points), {_pct(ex.top1_all)} "
            "counting refusals as errors."
        )
    return "\n".join(lines)


def rows_markdown(rows: list[Row]) -> str:
    out = [
        "| identities | algorithm | gallery images | probes | refused as OOD | Top-1 on answered "
        "| Top-1, refusals as errors | ms/probe search | ms/probe filter |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.subset} | {r.name} | {r.gallery_images} | {r.probes} | {_pct(r.refused)} | "
            f"{_pct(r.top1_answered)} | {_pct(r.top1_all)} | {r.ms_search:.2f} | "
            f"{r.ms_filter:.2f} |"
        )
    return "\n".join(out)


def filter_markdown(meta: dict[str, Any]) -> str:
    """The filter's own confusion tables (from its json metadata), the seeds' layout."""
    m = meta["metrics"]
    lines = [
        "| rows | n | accuracy | TPR | TNR | FPR | FNR | degraded rejected | clean rejected "
        "| k-NN errors rejected | AUC |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split in ("train", "calibration", "test", "held_out"):
        s = m[split]
        c = s["confusion"]
        lines.append(
            f"| {split} | {c['n']} | {_pct(c['accuracy'])} | {_pct(c['TPR'])} | {_pct(c['TNR'])} "
            f"| {_pct(c['FPR'])} | {_pct(c['FNR'])} | {_pct(s['degraded_rejected'])} "
            f"| {_pct(s['clean_rejected'])} | {_pct(s['knn_errors_rejected'])} | {_auc(s['auc'])} |"
        )
    kinds = m["test"]["per_kind_rejected"]
    missed = m["detector_missed"]
    lines += [
        "",
        "Per degradation (test half): share the filter rejects among faces the detector still "
        "finds, and share the detector no longer finds at all (those never reach the filter).",
        "",
        "| degradation | filter rejects | detector misses |",
        "|---|---|---|",
    ]
    for kind in sorted(kinds):
        miss = missed.get(kind, {"missed": 0, "of": 0})
        lines.append(
            f"| {kind} | {_pct(kinds[kind])} | "
            f"{_pct(miss['missed'] / miss['of'] if miss['of'] else None)} |"
        )
    if "ablation" in meta:
        lines += [
            "",
            "Feature sets (test half, threshold calibrated the same way):",
            "",
            "| inputs | degraded rejected | clean rejected | k-NN errors rejected | AUC |",
            "|---|---|---|---|---|",
        ]
        for name, a in meta["ablation"].items():
            t = a["test"]
            lines.append(
                f"| {name} | {_pct(t['degraded_rejected'])} | {_pct(t['clean_rejected'])} | "
                f"{_pct(t['knn_errors_rejected'])} | {_auc(t['auc'])} |"
            )
    return "\n".join(lines)


def run(root: Path, cache_dir: Path | None, *, write_benchmarks: bool = True) -> str:
    """Evaluate the shipped filter on `root`; returns the markdown (and writes BENCHMARKS.md)."""
    from django.conf import settings

    from evaluation.folder import embed_labeled_folder
    from recognition.runtime import rules as app_rules

    model = ood.get_model()
    if model is None:
        raise RuntimeError("no out-of-distribution model in recognition/weights: run train_ood")
    sample_pass = model.meta["sample_pass"]
    detector = DetectorConfig(**sample_pass["detector"])
    data = embed_labeled_folder(root, cache_dir, detector=detector, progress=False)
    clean = {n: data.embeddings[i] for i, n in enumerate(data.names) if data.found[i]}
    samples = T.build_samples(
        root,
        cache_dir,
        T.PassConfig(
            detector=detector,
            per_image=sample_pass["degraded_per_image"],
            seed=sample_pass["seed"],
            embedder=settings.FACEWEB_EMBEDDER,
        ),
        workers=2,
        clean_embeddings=clean,
    )
    rules = app_rules()
    first = next(n for n, _ in list_labeled_images(root))
    rows, facts = evaluate(
        samples, model, rules, sample_pass["seed"], filter_ms_per_face(root, first, model, rules)
    )
    markdown = "\n".join(
        [
            f"## Out-of-distribution filter ({model.version}) and exclusion",
            "",
            f"Filter `{model.version}` trained by `manage.py train_ood {model.meta['dataset']}` "
            f"on {model.meta['created_at']}: threshold {model.threshold:.3f} on "
            "P(out-of-distribution), hard rules "
            f"(face < {rules.min_face_px} px, Laplacian variance < {rules.min_blur:.0f}). "
            "Positive = out of distribution (degraded, or misidentified by leave-one-out 1-NN); "
            "threshold calibrated on the calibration half of the held-out identities, numbers "
            "reported on the test half.",
            "",
            f"Training time with the sample pass cached: {model.meta['seconds']['training']} s "
            "(the cold pass, detect + degrade + embed 6,360 images and 6,360 degraded copies, "
            "took 10 min with 2 workers on the shared 2-core machine).",
            "",
            filter_markdown(model.meta),
            "",
            f"Identification with exclusion: `manage.py evaluate {root} --ood`. Closed set, "
            "every 2nd image of each multi-image identity is a probe, the rest and all "
            "single-image identities the gallery; the filter rejects "
            f"{_pct(facts['rejected_share'])} "
            f"of the {facts['images']} clean LFW faces ({facts['gallery_rejected']} gallery "
            f"images, {facts['probes_rejected']} probes). Held-out: the "
            f"{facts['held_out_identities']} identities the filter never trained on. "
            "Probes whose identity loses every gallery image to the filter (so can only be "
            "wrong under exclusion): "
            + ", ".join(
                f"{k} {v} (their {facts['identities_failing_to_enrol'][k][0]} identities of "
                f"{facts['identities_failing_to_enrol'][k][1]} fail to enrol)"
                for k, v in facts["probes_losing_their_identity"].items()
            )
            + ". The rows marked 'still enrolled' are the closed-set comparison proper: both "
            "galleries, same probes, namely those whose identity keeps an accepted gallery image "
            "(failure to enrol is the separate cost counted above, as ISO/IEC 19795 reports it). "
            + _error_sources_text(facts["error_sources"])
            + " Held-out + degraded copies: the detected degraded variants of held-out images join "
            f"the gallery ({facts['degraded_gallery']}) and the probes "
            f"({facts['degraded_probes']}) next to their clean originals. Staged "
            f"k-NN: levels {facts['params']['levels']}, delta {facts['params']['delta']}.",
            "",
            rows_markdown(rows),
            "",
            summary(rows),
        ]
    )
    if write_benchmarks:
        from bench._report import write_section

        write_section("ood", markdown)
    return markdown

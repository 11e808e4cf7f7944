"""The seeds' "k-NN + all" vs "k-NN + exclusion" rows on a labelled folder (LFW), and the
filter's per-shift table (`shift_table`).

Exclusion means both sides of the search: faces the filter rejects are removed from the gallery
and a rejected probe is answered "out of distribution" instead of a name. Accuracy is reported on
the probes that were answered, next to the share that was refused, and also counting refusals as
errors, so the gain cannot hide in the refusals. Staged k-NN (recognition/core/staged.py:
staged_rank, the in-memory form of the sequential search) gets the same two rows.

The filter was trained on LFW (train_ood): on that folder the rows on all identities include the
identities it was trained on, whose 1-NN mistakes were its labels; the rows on the held-out
identities (those `train_ood`'s split, drawn from the labels, kept out) are the honest ones. On
any other folder every identity is held out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import ood_training as T
from evaluation.metrics import (
    Pairs,
    closed_set_split,
    gallery_index,
    read_pairs,
    search_identities,
)
from recognition.core import ood
from recognition.core.detection import DetectorConfig, align_faces, detect_faces
from recognition.core.embedding import Embedder
from recognition.core.geometry import squared_distances
from recognition.core.images import DEFAULT_MAX_PIXELS, BadImage, decode_image
from recognition.core.projection import fit_basis
from recognition.core.staged import SearchParams, staged_rank


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
    contrast = raw[:, T.QUALITY_FIELDS.index("contrast")]
    hard = (size < rules.min_face_px) | ((blur < rules.min_blur) & (contrast >= rules.low_contrast))
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


def filter_ms_per_face(
    root: Path,
    names: list[str],
    model: ood.OodModel,
    rules: ood.Rules,
    detector: DetectorConfig,
    embedder: Embedder,
    repeats: int = 50,
) -> float:
    """Median time of the filter on one real face (chip features, reference distances,
    classifier, reasons), with that face's own embedding: the first image of `names` where the
    detector finds a face. NaN when none has one."""
    for name in names:
        try:
            rgb = decode_image(root / name, max_pixels=DEFAULT_MAX_PIXELS).rgb
        except BadImage:
            continue
        faces = detect_faces(rgb, detector)
        if not faces:
            continue
        face = faces[0]
        chips = align_faces(rgb, [face])
        emb = embedder.embed(chips)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ood.assess(
                chips,
                [min(face.width, face.height)],
                [face.landmarks],
                [face.score],
                emb,
                model,
                rules,
            )
            samples.append(time.perf_counter() - t0)
        return 1000 * float(np.median(samples))
    return float("nan")


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


def held_out_identities(names: np.ndarray, model: ood.OodModel, root: Path) -> np.ndarray:
    """Per identity: did the filter never train on it? On the folder it was trained on, the
    identities its own split (drawn from the labels, `identity_splits`) kept out of training;
    on any other folder every identity."""
    meta = model.meta
    trained_on = Path(str(meta.get("dataset", ""))).resolve()
    if trained_on != root.resolve():
        return np.ones(len(names), dtype=bool)
    sample_pass = meta.get("sample_pass", {})
    splits = T.identity_splits(
        [str(n) for n in names],
        int(sample_pass.get("seed", 0)),
        float(sample_pass.get("held_out", 0.3)),
    )
    return np.array([splits[str(n)] != "train" for n in names], dtype=bool)


def evaluate(
    samples: T.Samples,
    model: ood.OodModel,
    rules: ood.Rules,
    held_out_names: np.ndarray,
    ms_filter: float,
    params: SearchParams | None = None,
    timing: int = 200,
) -> tuple[list[Row], dict[str, Any]]:
    """Rows on the clean faces (all identities, held-out identities) and on held-out identities
    with the degraded copies of their images added to the gallery and the probes (the seeds'
    setting: a reference set that holds bad photos). `held_out_names` is per identity, in the
    sorted order of the clean rows' identities (`held_out_identities`)."""
    params = params or SearchParams()
    clean = samples.subset((samples.kind == T.CLEAN) & samples.detected)
    names, labels = np.unique(clean.identity, return_inverse=True)
    if len(held_out_names) != len(names):
        raise ValueError("held_out_names needs one entry per identity of the clean rows")
    split = closed_set_split(labels, np.ones(len(clean), dtype=bool))
    accepted = ~verdicts(clean, model, rules).rejected
    held_out = held_out_names[labels]

    degraded = samples.subset(np.isin(samples.kind, T.DEGRADED) & samples.detected)
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
        "held_out_identities": int(held_out_names.sum()),
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


def _kind_label(kind: str) -> str:
    return kind.replace("_", " ")


def shift_table(m: dict[str, Any], missed: dict[str, Any]) -> str:
    """The filter per shift on held-out identities (`evaluate_rows` output): how often it
    rejects each benign shift (target <= 5%) and each degradation (target >= 90% overall), how
    often 1-NN gets those faces wrong, and how often the detector no longer finds the face."""
    per, n, err = m["per_kind_rejected"], m["per_kind_n"], m["per_kind_nn_error"]
    hard = m.get("per_kind_hard", {})

    def line(kind: str, group: str) -> str:
        miss = missed.get(kind, {"missed": 0, "of": 0})
        lost = miss["missed"] / miss["of"] if miss["of"] else None
        return (
            f"| {_kind_label(kind)} | {group} | {n.get(kind, 0)} | {_pct(per.get(kind))} | "
            f"{_pct(hard.get(kind))} | {_pct(err.get(kind))} | {_pct(lost)} |"
        )

    lines = [
        "| shift | kind | faces | filter rejects | of which by the hard rules | 1-NN error "
        "| detector misses (all splits) |",
        "|---|---|---|---|---|---|---|",
        line(T.CLEAN, "clean"),
    ]
    lines += [line(k, "benign") for k in T.BENIGN if k in per]
    lines += [line(k, "degraded") for k in T.DEGRADED if k in per]
    e, eb = m["nn_error"], m["nn_error_clean_benign"]
    worst = max((per[k] or 0.0 for k in (T.CLEAN, *T.BENIGN) if k in per), default=0.0)
    lines += [
        "",
        f"- clean + benign faces rejected: {_pct(m['benign_rejected'])} of the benign shifts, "
        f"{_pct(m['clean_rejected'])} of the clean faces, worst single shift {_pct(worst)} "
        "(target <= 5% each).",
        f"- degraded faces rejected: {_pct(m['degraded_rejected'])} of {m['n_degraded']} "
        "(target >= 90%).",
        f"- 1-NN error among rejected faces {_pct(e['rejected'])} ({e['n_rejected']}) vs "
        f"accepted {_pct(e['accepted'])} ({e['n_accepted']}): ratio {e['ratio']} "
        "(target >= 5); "
        f"clean and benign faces only: {_pct(eb['rejected'])} ({eb['n_rejected']}) vs "
        f"{_pct(eb['accepted'])} ({eb['n_accepted']}), ratio {eb['ratio']}.",
        f"- confusion (positive = out of distribution): TPR {_pct(m['confusion']['TPR'])}, "
        f"FPR {_pct(m['confusion']['FPR'])}, AUC {_auc(m['auc'])}.",
    ]
    return "\n".join(lines)


def ablation_line(name: str, m: dict[str, Any]) -> str:
    per = m["per_kind_rejected"]
    worst = max((per[k] or 0.0 for k in (T.CLEAN, *T.BENIGN) if k in per), default=0.0)
    return (
        f"| {name} | {_pct(m['clean_rejected'])} | {_pct(worst)} | "
        f"{_pct(m['degraded_rejected'])} | {m['nn_error']['ratio']} | {_auc(m['auc'])} |"
    )


ABLATION_HEADER = (
    "| inputs | clean rejected | worst benign shift rejected | degraded rejected "
    "| 1-NN error ratio rejected/accepted | AUC |\n|---|---|---|---|---|---|"
)


@dataclass(frozen=True)
class RunOptions:
    """What `manage.py evaluate --ood` honours."""

    seed: int = 0  # the degradations drawn per image
    limit: int = 0  # the first N images (sorted), 0: all
    pairs: Path | None = None  # LFW-format pairs: verification with and without the filter
    workers: int = 2


def pair_rows(
    samples: T.Samples, accepted: np.ndarray, pairs: Pairs, same: float
) -> dict[str, Any]:
    """Verification at the app's suggestion distance on the pairs whose two faces were found:
    on all of them, and on those whose two faces the filter accepts."""
    clean = samples.subset((samples.kind == T.CLEAN) & samples.detected)
    row = {str(p): i for i, p in enumerate(clean.path)}
    a = np.array([row.get(x, -1) for x in pairs.first])
    b = np.array([row.get(x, -1) for x in pairs.second])
    found = (a >= 0) & (b >= 0)
    a, b, truth = a[found], b[found], pairs.same[found]
    dist = np.linalg.norm(clean.embedding[a] - clean.embedding[b], axis=1)
    correct = (dist <= same) == truth
    both = accepted[a] & accepted[b]
    return {
        "pairs": len(pairs.same),
        "found": int(found.sum()),
        "both_accepted": int(both.sum()),
        "accuracy_all": round(float(correct.mean()), 4) if len(correct) else None,
        "accuracy_accepted": round(float(correct[both].mean()), 4) if both.any() else None,
        "threshold": same,
    }


def run(root: Path, cache_dir: Path | None, options: RunOptions = RunOptions()) -> str:
    """Evaluate the shipped filter on `root` through the app's pipeline (its detector, its
    embedder, its search settings); returns the markdown. Writes nothing but the cache: the
    caller decides where the report goes (never BENCHMARKS.md from here)."""
    from django.conf import settings

    from recognition.core.calibration import thresholds
    from recognition.core.embedding import get_embedder
    from recognition.index.search import search_params
    from recognition.runtime import detector_config
    from recognition.runtime import rules as app_rules

    model = ood.get_model()
    if model is None:
        raise RuntimeError("no out-of-distribution model in recognition/weights: run train_ood")
    detector = replace(detector_config(), threads=1)
    config = T.PassConfig(
        detector=detector,
        per_image=1.0,
        seed=options.seed,
        embedder=settings.FACEWEB_EMBEDDER,
        benign_train=0,
        benign_cal=0,
        benign_test=0,
        max_per_identity=0,
        singles=True,
        limit=options.limit,
    )
    samples = T.build_samples(root, cache_dir, config, workers=options.workers)
    rules = app_rules()
    clean = samples.subset((samples.kind == T.CLEAN) & samples.detected)
    names = np.unique(clean.identity)
    held_out = held_out_identities(names, model, root)
    embedder = get_embedder(settings.FACEWEB_EMBEDDER, settings.FACEWEB_DEVICE or None)
    images = [str(p) for p in samples.path[samples.kind == T.CLEAN]]
    ms = filter_ms_per_face(root, images, model, rules, detector, embedder)
    params = search_params()
    rows, facts = evaluate(samples, model, rules, held_out, ms, params)
    trained_here = bool(held_out.sum() < len(held_out))
    lines = [
        f"## Out-of-distribution filter ({model.version}) and exclusion on {root.name}",
        "",
        f"`manage.py evaluate {root} --ood --seed {options.seed}"
        + (f" --limit {options.limit}" if options.limit else "")
        + (f" --pairs {options.pairs}" if options.pairs else "")
        + "`: measured now, through the app's detector "
        f"({detector.model}), embedder ({settings.FACEWEB_EMBEDDER}) and search settings "
        f"(levels {list(params.levels)}, delta {params.delta}). Filter `{model.version}`, "
        f"threshold {model.threshold:.3f}; it rejects {_pct(facts['rejected_share'])} of the "
        f"{facts['images']} clean faces here. "
        + (
            f"Held-out: the {facts['held_out_identities']} identities of this folder the filter "
            "never trained on (its own split, drawn from the labels)."
            if trained_here
            else "The filter never trained on this folder: every identity is held out."
        ),
        f"Filter time per face (a real face, its own embedding): {ms:.2f} ms.",
        "",
        rows_markdown(rows),
        "",
        summary(rows),
        "",
        _error_sources_text(facts["error_sources"]),
    ]
    if options.pairs is not None:
        accepted = ~verdicts(clean, model, rules).rejected
        same = thresholds(settings.FACEWEB_EMBEDDER).possible
        p = pair_rows(samples, accepted, read_pairs(options.pairs), same)
        lines += [
            "",
            f"Pairs ({options.pairs.name}): {p['found']} of {p['pairs']} with both faces found; "
            f"verification at distance {p['threshold']}: {_pct(p['accuracy_all'])} on all of "
            f"them, {_pct(p['accuracy_accepted'])} on the {p['both_accepted']} whose two faces "
            "the filter accepts.",
        ]
    return "\n".join(lines)

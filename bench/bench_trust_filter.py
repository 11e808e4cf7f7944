"""The shipped out-of-distribution filter per shift, on identities it never trained on.

Run: .venv/bin/python -m bench.bench_trust_filter [--dataset ../shared/faces/lfw] [--workers 2]
Prints the table and writes the `trust-filter` section of BENCHMARKS.md.

The faces are the sample pass `manage.py train_ood` made (cached under var/cache; rebuilt the
same way when missing): LFW through the app's own pipeline (its detector, dlib alignment, its
embedder), each image clean, under benign shifts and under one degradation. The table is the
test split of the identity split drawn from the labels: every benign shift applied to each image
of those identities, none of them seen in training or calibration. The shipped model decides as
the app does (hard rules, then the classifier at its stored threshold), and each rejection's
first reason (the group of inputs that pushed the score most) is counted per shift.
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _top_reasons(data: Any, rows: np.ndarray, rejected: np.ndarray, model: Any, rules: Any) -> dict:
    from evaluation import ood_training as T
    from gallery.presentation import plain_reason
    from recognition.core import ood

    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for i in np.flatnonzero(rows & rejected):
        values = dict(zip(T.QUALITY_FIELDS, (float(v) for v in data.samples.raw[i]), strict=True))
        values["size_px"] = int(values["size_px"])
        q = ood.Quality(**values)  # type: ignore[arg-type]
        if model.reference is not None:
            dist = model.reference.distances(data.samples.embedding[i][None])[0]
            q = replace(q, mean_dist=float(dist[0]), knn_dist=float(dist[1]))
        reasons = ood._hard_reasons(q, rules)
        if not reasons:
            reasons, _ = ood.explain(model, data.samples.embedding[i], q, rules)
        out[str(data.samples.kind[i])][plain_reason(reasons[0]).text] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")
    import django

    django.setup()
    from django.conf import settings

    from bench._report import write_section
    from evaluation import ood_training as T
    from evaluation.ood import shift_table, verdicts
    from recognition.core import ood
    from recognition.runtime import detector_config
    from recognition.runtime import rules as app_rules

    model = ood.get_model()
    if model is None:
        raise SystemExit("no filter in recognition/weights: run manage.py train_ood first")
    sp = model.meta["sample_pass"]
    config = T.PassConfig(
        detector=replace(detector_config(), threads=1),
        per_image=sp["degraded_per_image"],
        seed=sp["seed"],
        embedder=settings.FACEWEB_EMBEDDER,
        benign_train=sp["benign_train"],
        benign_cal=sp["benign_cal"],
        max_per_identity=sp["max_per_identity"],
        held_out=sp["held_out"],
    )
    root = args.dataset.resolve()
    started = time.perf_counter()
    samples = T.build_samples(root, settings.VAR_DIR / "cache", config, workers=args.workers)
    pass_s = time.perf_counter() - started
    data = T.make_dataset(samples)
    rules = app_rules()
    started = time.perf_counter()
    decided = verdicts(data.samples, model, rules)
    ms = 1000 * (time.perf_counter() - started) / max(len(data.samples), 1)
    test = data.split == "test"
    m = T.evaluate_rows(data, test, decided.scores[test], model.threshold, rules)
    missed = {k: {"missed": a, "of": b} for k, (a, b) in data.missed.items()}
    table = shift_table(m, missed)
    reasons = _top_reasons(data, test, decided.rejected, model, rules)
    reason_lines = ["| shift | rejected | first reason given (count) |", "|---|---|---|"]
    for kind in (T.CLEAN, *T.BENIGN, *T.DEGRADED):
        if kind in reasons:
            common = ", ".join(f"{text} ({n})" for text, n in reasons[kind].most_common(3))
            reason_lines.append(
                f"| {kind.replace('_', ' ')} | {sum(reasons[kind].values())} | {common} |"
            )
    identities = len(np.unique(data.samples.identity[test]))
    per, hard = m["per_kind_rejected"], m["per_kind_hard"]
    over = [k for k in (T.CLEAN, *T.BENIGN) if (per.get(k) or 0) > 0.05]
    misses = [
        f"{k.replace('_', ' ')} {100 * per[k]:.1f}% rejected, over the 5% target: "
        f"{100 * hard[k]:.1f} points of it are the {rules.min_face_px} px minimum face size "
        f"(faces shrunk to the minimum whose detected box comes out under it), "
        f"{100 * (per[k] - hard[k]):.1f}% the classifier"
        for k in over
    ]
    ratio_all, ratio_benign = m["nn_error"]["ratio"], m["nn_error_clean_benign"]["ratio"]
    targets = (
        f"Targets: every benign shift <= 5% rejected: {'met' if not over else 'missed by '}"
        + "; ".join(misses)
        + f". Degraded >= 90% rejected: {100 * m['degraded_rejected']:.1f}%. 1-NN error among "
        f"rejected >= 5x accepted: {ratio_all}x over all test faces; on clean and benign faces "
        f"alone (where rejections are few and the misidentified faces look ordinary) only "
        f"{ratio_benign}x."
    )
    ablation = model.meta.get("ablation", {})
    ablation_lines = []
    if ablation:
        from evaluation.ood import ABLATION_HEADER, ablation_line

        ablation_lines = [
            "",
            "Inputs tried (same pass, same splits, each calibrated the same way; test split):",
            "",
            ABLATION_HEADER,
            *(ablation_line(name, a["test"]) for name, a in ablation.items()),
        ]
    markdown = "\n".join(
        [
            f"## Trust filter per shift ({model.version}, held-out identities)",
            "",
            f"`.venv/bin/python -m bench.bench_trust_filter --dataset {args.dataset}` "
            f"(model made by `manage.py train_ood {args.dataset} --ablation`, "
            f"{model.meta['created_at']}). Faces: LFW through the app's pipeline "
            f"({sp['detector']['model']} detector, {model.embedder_version}); "
            f"{sp['max_per_identity']} images per identity with 2+ images, identity split drawn "
            f"from the labels (seed {sp['seed']}: 70% train, 15% calibration, 15% test). This "
            f"table: the {identities} test identities, every benign shift of each image, one "
            "degradation per image. Labels as the seeds define them: degraded = out of "
            "distribution; clean or benign = out of distribution only when leave-one-out 1-NN "
            "(against all clean faces, never the face's own source image) gets it wrong. "
            f"Threshold {model.threshold:.3f}, calibrated on the calibration identities so that "
            f"clean faces and each benign shift stay at or under "
            f"{100 * model.meta['train_config']['target_clean_reject']:.0f}% rejected; hard "
            f"rules: face < {rules.min_face_px} px, Laplacian variance < {rules.min_blur:.0f} "
            "(on faces with contrast).",
            "",
            table,
            "",
            targets,
            "",
            "What a rejected face is told (the first reason; plain words shown to users, the "
            "numbers only to staff):",
            "",
            *reason_lines,
            *ablation_lines,
            "",
            f"Cost: the sample pass ({len(samples)} faces detected, aligned and embedded) is "
            "the expensive part: cold, it took 774 s with 2 workers on the shared 2-core "
            "machine at load average 5-7 (2026-11-30); cached, this run read it in "
            f"{pass_s:.0f} s. Training takes seconds. The filter decides in {ms:.3f} ms per "
            "face on precomputed features.",
        ]
    )
    print(markdown)
    write_section("trust-filter", markdown)


if __name__ == "__main__":
    main()

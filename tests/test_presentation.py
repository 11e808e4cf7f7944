"""The plain words of face states and of the filter's reasons (gallery/presentation.py)."""

from __future__ import annotations

import dataclasses

import pytest

from gallery.models import Face, Person
from gallery.presentation import State, face_status, plain_reason, plain_reasons
from recognition.core import ood

# Every reason string recognition/core/ood.py writes today, with its plain sentence.
TODAY = [
    ("face 31 px, below 40 px minimum", "Face is very small"),
    ("extremely blurred (Laplacian variance 3, below 5)", "Too blurry to recognise reliably"),
    ("blurred (Laplacian variance 40, below 60)", "Too blurry to recognise reliably"),
    ("too dark (mean brightness 20 of 255)", "Too dark"),
    ("too bright (mean brightness 250 of 255)", "Too bright"),
    ("low contrast (7)", "Too little contrast"),
    ("head turned (yaw ~48°)", "Head turned away"),
    ("head tilted (roll ~35°)", "Head tilted to one side"),
    ("unlike typical faces (distance 1.02 from the average face)", None),
    ("classifier 0.98 (threshold 0.50)", None),
]


@pytest.mark.parametrize(("raw", "sentence"), TODAY)
def test_it_says_each_reason_of_today_in_plain_words_and_keeps_the_numbers(
    raw: str, sentence: str | None
) -> None:
    reason = plain_reason(raw)
    assert reason.text == (sentence or "Unusual face: not used for automatic matching")
    assert reason.detail == raw  # the numbers stay, for staff
    for word in ("laplacian", "classifier", "threshold", "distance", "px", "yaw", "roll"):
        assert word not in reason.text.lower()


def test_it_reads_the_strings_the_filter_really_writes() -> None:
    """The patterns follow recognition/core/ood.py: a new reason there must not fall through."""
    rules = ood.Rules(min_face_px=40)
    dark = ood.Quality(
        size_px=20,
        blur=1.0,
        noise=0.0,
        brightness=10.0,
        contrast=3.0,
        dark_frac=0.9,
        bright_frac=0.0,
        det_score=1.0,
        yaw=60.0,
        roll=40.0,
        pitch=0.7,
        emb_norm=1.0,
        mean_dist=2.0,
        knn_dist=1.0,
    )
    bright = dataclasses.replace(dark, blur=10.0, brightness=240.0, contrast=80.0)
    flat = dataclasses.replace(dark, brightness=120.0, dark_frac=0.0, blur=30.0)
    typical = {"blur": 40.0, "brightness": 125.0, "contrast": 36.0}
    raw = [*ood._hard_reasons(dark, rules)]
    for q in (dark, bright, flat):
        raw += [ood._sentence(group, q, rules, typical) for group in set(ood.GROUPS.values())]
    assert len(raw) >= 30
    assert all(plain_reason(r).code != "other" for r in raw), raw


# What each reason ood-v2 writes (recognition/core/ood.py `_sentence`) must read as: the plain
# sentence says the same thing, not a neighbour's ("up or down" is not "to one side").
OOD_V2 = [
    ("face is small (34 px); weight +2.0", "Face is very small"),
    ("strong blur (sharpness 5); weight +5.7", "Too blurry to recognise reliably"),
    ("blurred (sharpness 30); weight +1.0", "Too blurry to recognise reliably"),
    ("grainy or over-sharpened (sharpness 900); weight +1.2", "Grainy or over-sharpened picture"),
    ("grainy, noisy picture (noise 3.0); weight +1.1", "Grainy, noisy picture"),
    (
        "part of the face is cut off or in deep shadow (19% black); weight +2.2",
        "Part of the face is cut off or in deep shadow",
    ),
    ("very dark (brightness 20 of 255); weight +3.0", "Too dark"),
    ("very bright, washed out (brightness 250 of 255); weight +3.0", "Too bright"),
    ("low contrast (contrast 7); weight +1.0", "Too little contrast"),
    ("harsh contrast (contrast 90); weight +1.0", "Harsh light: very strong contrast"),
    ("barely recognisable as a face (detector 0.85); weight +1.2", "Hard to make out as a face"),
    ("head turned ~50 degrees; weight +2.0", "Head turned away"),
    ("head tilted ~30 degrees; weight +2.0", "Head tilted to one side"),
    ("head tilted up or down (pitch 1.02); weight +1.2", "Head tilted up or down"),
    (
        "unlike the faces the model was trained on (distance 0.66); weight +2.1",
        "Unusual face: not used for automatic matching",
    ),
]


@pytest.mark.parametrize(("raw", "sentence"), OOD_V2)
def test_it_says_what_each_ood_v2_reason_means(raw: str, sentence: str) -> None:
    reason = plain_reason(raw)
    assert reason.text == sentence
    assert reason.detail == raw
    assert not any(ch.isdigit() for ch in reason.text)


def test_it_reads_structured_reasons_by_code() -> None:
    # The shape the filter on the trust branch stores: its own sentence and staff detail.
    given = {"code": "blurred", "text": "The face is blurred.", "detail": "sharpness 0.12"}
    reason = plain_reason({**given, "weight": 0.7})
    assert (reason.text, reason.detail) == ("The face is blurred.", "blurred: sharpness 0.12")
    assert reason.short == "The face is blurred"
    bare = plain_reason({"code": "blur", "blur": 3.21, "limit": 5})  # numbers, no sentence
    assert bare.text == "Too blurry to recognise reliably"
    assert bare.detail == "blur: blur 3.21, limit 5"
    unknown = plain_reason({"code": "new-rule", "message": "Eyes closed"})
    assert unknown.text == "Eyes closed"  # a code this module does not know yet keeps its text
    assert [r.text for r in plain_reasons(["blurred (x)", "extremely blurred (y)"])] == [
        "Too blurry to recognise reliably"
    ]


def _face(**fields: object) -> Face:
    defaults = {"left": 0, "top": 0, "width": 50, "height": 50, "ood_status": "accepted"}
    return Face(**{**defaults, **fields})


def test_it_gives_each_face_one_state() -> None:
    ann = Person(pk=1, name="Ann")
    cases = [
        (_face(person=ann, assignment="confirmed"), State.CONFIRMED, "Ann"),
        (_face(person=ann, assignment="suggested"), State.AUTO, "Ann?"),
        (_face(suggested_person=ann), State.SUGGESTED, "Maybe Ann?"),
        (_face(), State.UNKNOWN, "?"),
        (_face(assignment="ignored"), State.IGNORED, "Ignored"),
        (_face(ood_status="rejected", ood_reasons=["blurred (3)"]), State.NOT_USED, "Not used"),
        (_face(review_status="not_face"), State.NOT_A_FACE, "?"),
    ]
    for face, state, label in cases:
        status = face_status(face)
        assert status.state is state, face
        assert status.box_label == label
    # A reviewer's approval wins over the filter: the face is used, nothing says "rejected".
    approved = face_status(_face(ood_status="rejected", review_status="approved", ood_score=0.9))
    assert approved.state is State.UNKNOWN and approved.used_for_matching
    assert approved.notes == ["A person checked this face: it is used for matching."]
    assert "Filter score 0.90" in approved.staff
    # A confirmed tag on a face the filter kept out says so, in words.
    kept_out = face_status(
        _face(person=ann, assignment="confirmed", ood_status="rejected", ood_reasons=["blurred"])
    )
    assert kept_out.state is State.CONFIRMED and not kept_out.used_for_matching
    assert "too blurry to recognise reliably" in kept_out.sentence

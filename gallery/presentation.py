"""What a face's state and the filter's reasons mean, in the words users see.

One state per face, the same on every page (photo, person, suggestions, unknown, review):
confirmed / tagged automatically / suggestion / unknown / ignored / not used for matching (with
why) / not a face. Numbers (filter scores, match distances, model versions) are kept apart in
`staff` lines, which templates show only to staff, inside a details disclosure.

The filter's reasons are read in two forms: today's strings from recognition/core/ood.py
("blurred (Laplacian variance 3, below 5)") and structured ones (a mapping with a `code`, a plain
`text` or `message`, and numbers). `plain_reason` is the one place that knows both.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gallery.models import Face, Person


class State(enum.StrEnum):
    CONFIRMED = "confirmed"
    AUTO = "auto"
    SUGGESTED = "suggested"
    UNKNOWN = "unknown"
    IGNORED = "ignored"
    NOT_USED = "not-used"
    NOT_A_FACE = "not-a-face"


LABELS = {
    State.CONFIRMED: "Confirmed",
    State.AUTO: "Tagged automatically",
    State.SUGGESTED: "Suggestion",
    State.UNKNOWN: "Unknown",
    State.IGNORED: "Ignored",
    State.NOT_USED: "Not used for matching",
    State.NOT_A_FACE: "Not a face",
}


@dataclass(frozen=True)
class Reason:
    code: str
    text: str  # a short plain sentence, no numbers
    detail: str = ""  # the numbers behind it, for staff

    @property
    def short(self) -> str:
        """The sentence without its explanation ("Unusual face"), to go inside another one."""
        return self.text.split(":", 1)[0].rstrip(".")


# Plain sentences per reason code. Structured reasons carry their code; today's strings are
# recognised by their opening words (STRING_CODES).
SENTENCES = {
    "small": "Face is very small",
    "blur": "Too blurry to recognise reliably",
    "dark": "Too dark",
    "bright": "Too bright",
    "contrast": "Too little contrast",
    "harsh": "Harsh light: very strong contrast",
    "noise": "Grainy, noisy picture",
    "grain": "Grainy or over-sharpened picture",
    "detection": "Hard to make out as a face",
    "turned": "Head turned away",
    "tilted": "Head tilted to one side",
    "pitch": "Head tilted up or down",
    "unusual": "Unusual face: not used for automatic matching",
    "filter": "Unusual face: not used for automatic matching",
    "partial": "Part of the face is cut off or in deep shadow",
    "other": "Not clear enough to recognise",
}

STRING_CODES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^face \d+ ?px|^face is small|^small|too small", re.I), "small"),
    (re.compile(r"^(extremely |strong )?blur", re.I), "blur"),
    (re.compile(r"^too dark|^(very )?dark", re.I), "dark"),
    (re.compile(r"^too bright|^(very )?bright", re.I), "bright"),
    (re.compile(r"^low contrast", re.I), "contrast"),
    (re.compile(r"^harsh contrast", re.I), "harsh"),
    (re.compile(r"^grainy or over-sharpened", re.I), "grain"),
    (re.compile(r"^grainy", re.I), "noise"),
    (re.compile(r"^barely recognisable", re.I), "detection"),
    (re.compile(r"^head turned|yaw", re.I), "turned"),
    (re.compile(r"^head tilted up or down|pitch", re.I), "pitch"),
    (re.compile(r"^head tilted|roll", re.I), "tilted"),
    (re.compile(r"^unlike typical|^unlike the faces|unusual", re.I), "unusual"),
    (re.compile(r"^classifier|score", re.I), "filter"),
    (re.compile(r"partial|cut off", re.I), "partial"),
]


def _string_code(reason: str) -> str:
    for pattern, code in STRING_CODES:
        if pattern.search(reason):
            return code
    return "other"


def plain_reason(reason: str | Mapping[str, object]) -> Reason:
    """One reason of the filter as a plain sentence plus the numbers behind it."""
    if isinstance(reason, Mapping):
        code = str(reason.get("code") or "other")
        given = str(reason.get("text") or reason.get("message") or "")
        numbers = {
            k: v for k, v in reason.items() if k not in {"code", "text", "message", "detail"}
        }
        detail = str(reason.get("detail") or "") or ", ".join(
            f"{k} {_number(v)}" for k, v in numbers.items()
        )
        # The filter's own sentence wins; the table fills in for codes that come without one.
        text = given or SENTENCES.get(code) or SENTENCES["other"]
        return Reason(code=code, text=text, detail=f"{code}: {detail}" if detail else code)
    text = str(reason)
    code = _string_code(text)
    return Reason(code=code, text=SENTENCES[code], detail=text)


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def plain_reasons(reasons: Iterable[str | Mapping[str, object]]) -> list[Reason]:
    """The reasons as plain sentences, each sentence once (details of repeats are joined)."""
    by_text: dict[str, Reason] = {}
    for raw in reasons:
        reason = plain_reason(raw)
        seen = by_text.get(reason.text)
        if seen is None:
            by_text[reason.text] = reason
        else:
            detail = "; ".join(d for d in (seen.detail, reason.detail) if d)
            by_text[reason.text] = Reason(seen.code, seen.text, detail)
    return list(by_text.values())


@dataclass(frozen=True)
class FaceStatus:
    state: State
    label: str
    sentence: str  # a plain sentence for the face card
    person: Person | None  # the person named (confirmed, automatic) or offered (suggestion)
    reasons: list[Reason] = field(default_factory=list)  # why not used for matching
    notes: list[str] = field(default_factory=list)  # plain extra facts ("a reviewer checked")
    staff: list[str] = field(default_factory=list)  # numbers, for staff only

    @property
    def used_for_matching(self) -> bool:
        return not self.reasons and self.state not in {State.NOT_USED, State.NOT_A_FACE}

    @property
    def box_label(self) -> str:
        """The short text under the face's box on the photo."""
        name = self.person.name if self.person else ""
        if self.state is State.CONFIRMED:
            return name
        if self.state is State.AUTO:
            return f"{name}?"
        if self.state is State.SUGGESTED:
            return f"Maybe {name}?"
        if self.state is State.NOT_USED:
            return "Not used"
        if self.state is State.IGNORED:
            return "Ignored"
        return "?"


def face_status(face: Face) -> FaceStatus:
    """The one state of a face, its plain words, and the numbers for staff."""
    staff = _staff_lines(face)
    untrusted = not face.is_trusted
    reasons = plain_reasons(face.ood_reasons or []) if untrusted else []
    if untrusted and not reasons and face.review_status != Face.Review.NOT_FACE:
        reasons = [Reason("filter", SENTENCES["filter"])]
    notes = []
    if face.review_status == Face.Review.APPROVED:
        notes.append("A person checked this face: it is used for matching.")
    elif face.review_status == Face.Review.CONFIRMED:
        notes.append("A reviewer agreed it should not be used for matching.")
    if face.manual:
        notes.append("Drawn by hand.")

    def status(state: State, sentence: str, person: Person | None = None) -> FaceStatus:
        return FaceStatus(state, LABELS[state], sentence, person, reasons, notes, staff)

    if face.review_status == Face.Review.NOT_FACE:
        return status(State.NOT_A_FACE, "Marked as not a face: it is not shown or matched.")
    person = face.person if face.person_id is not None else None
    if person is not None and face.assignment == Face.Assignment.CONFIRMED:
        sentence = f"{person.name}, confirmed."
        if reasons:
            sentence += f" Not used to recognise {person.name} elsewhere: {_lower(reasons)}."
        return status(State.CONFIRMED, sentence, person)
    if person is not None:
        return status(State.AUTO, f"Tagged {person.name} automatically: is that right?", person)
    if face.assignment == Face.Assignment.IGNORED:
        return status(State.IGNORED, "Ignored as a stranger: not matched and not asked about.")
    if untrusted:
        return status(State.NOT_USED, f"Not used for matching: {_lower(reasons)}.")
    suggested = face.suggested_person if face.suggested_person_id is not None else None
    if suggested is not None:
        return status(State.SUGGESTED, f"Maybe {suggested.name}?", suggested)
    return status(State.UNKNOWN, "Nobody is named for this face yet.")


def _lower(reasons: list[Reason]) -> str:
    text = "; ".join(r.short for r in reasons)
    return text[:1].lower() + text[1:]


def _staff_lines(face: Face) -> list[str]:
    lines = []
    if face.ood_score is not None:
        lines.append(f"Filter score {face.ood_score:.2f}")
    lines.extend(plain_reason(r).detail for r in (face.ood_reasons or []))
    if face.ood_model_version:
        lines.append(f"Filter model {face.ood_model_version}")
    if face.match_distance is not None:
        lines.append(f"Match distance {face.match_distance:.3f}")
    if face.det_score and not face.manual:
        lines.append(f"Detector score {face.det_score:.2f}")
    if face.embedder_version:
        lines.append(f"Embedder {face.embedder_version}")
    lines.append(f"Box {face.width}x{face.height} px at ({face.left}, {face.top})")
    return [line for line in lines if line]

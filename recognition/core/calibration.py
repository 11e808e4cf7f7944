"""Open-set decision thresholds per embedder version (Euclidean distances, original space).

`search_people` returns the full distance of each candidate's nearest template; the matcher
accepts the best candidate as the same person when it is within `same`, offers it as a
possible match within `possible`, and calls the face unknown beyond.

dlib-resnet-v1: 0.6 is dlib's own verification threshold (98.55% on the full LFW 6,000-pair
protocol, /work/shared/faces/README.md); 0.5 is the stricter auto-tag level. Measured on the LFW
half in /work/shared/faces (BENCHMARKS.md, "search", `manage.py benchmark_search`), FPIR / FNIR:
- library of 50 people: 1.5% / 11.9% at 0.5, 29% / 1.2% at 0.6;
- library of 200 people: 4.9% / 13.2% at 0.5, 61% / 2.3% at 0.6;
- all 2,683 enrolled LFW people: 18% / 6.7% at 0.5, 98% / 2.9% at 0.6.
So 0.5 keeps wrong automatic tags to a few percent of strangers' faces in a personal library
(the matcher also demands a margin over the runner-up), while 0.6 is only good for suggestions a
person confirms: most strangers get one. FPIR grows with the number of people enrolled; a
library of thousands of people needs a lower `same` (0.45: 3.9% / 16.8% on all of LFW).
"""

from __future__ import annotations

from dataclasses import dataclass

from recognition.core.versions import DLIB_RESNET_VERSION


@dataclass(frozen=True)
class Thresholds:
    same: float  # auto-tag at or below this distance
    possible: float  # suggest at or below this distance; unknown beyond

    def __post_init__(self) -> None:
        if not (0 < self.same <= self.possible):
            raise ValueError(f"need 0 < same <= possible, got {self.same}, {self.possible}")


THRESHOLDS: dict[str, Thresholds] = {
    DLIB_RESNET_VERSION: Thresholds(same=0.5, possible=0.6),
}


def thresholds(embedder_version: str) -> Thresholds:
    """The thresholds of a version. An uncalibrated version raises: its distances mean nothing
    until measured, and guessing would auto-tag strangers."""
    try:
        return THRESHOLDS[embedder_version]
    except KeyError:
        raise LookupError(
            f"no calibrated thresholds for embedder {embedder_version!r}; "
            "measure them and add them to recognition/core/calibration.py"
        ) from None

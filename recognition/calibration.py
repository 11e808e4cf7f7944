"""Open-set decision thresholds per embedder version (Euclidean distances, original space).

`search_people` returns the full distance of each candidate's nearest template; the matcher
accepts the best candidate as the same person when it is within `same`, offers it as a
possible match within `possible`, and calls the face unknown beyond.

dlib-resnet-v1: 0.6 is dlib's own verification threshold (98.55% on the full LFW 6,000-pair
protocol, /work/shared/faces/README.md); 0.5 is the stricter auto-tag level. See BENCHMARKS.md
("search") for the FPIR/FNIR these give on the LFW half in /work/shared/faces.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    same: float  # auto-tag at or below this distance
    possible: float  # suggest at or below this distance; unknown beyond

    def __post_init__(self) -> None:
        if not (0 < self.same <= self.possible):
            raise ValueError(f"need 0 < same <= possible, got {self.same}, {self.possible}")


THRESHOLDS: dict[str, Thresholds] = {
    "dlib-resnet-v1": Thresholds(same=0.5, possible=0.6),
}


def thresholds(embedder_version: str) -> Thresholds:
    """The thresholds of a version. An uncalibrated version raises: its distances mean nothing
    until measured, and guessing would auto-tag strangers."""
    try:
        return THRESHOLDS[embedder_version]
    except KeyError:
        raise LookupError(
            f"no calibrated thresholds for embedder {embedder_version!r}; "
            "measure them and add them to recognition/calibration.py"
        ) from None

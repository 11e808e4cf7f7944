"""What a model version may be trusted with: thresholds and the out-of-distribution filter are
per version, and a version without them is in a learning phase.

Until the filter is trained for a version only the quality rules (size, blur, pose, exposure)
judge its faces; until its thresholds are calibrated the matcher tags nothing automatically and
suggests nothing (its distances mean nothing yet), and the pages say so. These two lookups are
the only places that answer "is version X trusted"; `train_ood` and `calibrate` fill them.
"""

from __future__ import annotations

from dataclasses import dataclass

from recognition.core.calibration import Thresholds, thresholds
from recognition.core.ood import OodModel, model_for

LEARNING_PHASE = (
    "Automatic matching is in a learning phase for this model: faces are checked for quality "
    "only and nobody is named automatically until it has been calibrated."
)
# Calibrated, but the out-of-distribution filter was trained on another version's vectors:
# matching works, and the quality rules alone decide which faces it may use.
QUALITY_ONLY = (
    "The out-of-distribution filter has not been trained for this model yet: its faces are "
    "checked by the quality rules only (size, blur, pose, exposure) before they are matched."
)


def match_thresholds(embedder_version: str) -> Thresholds | None:
    """The version's calibrated thresholds, or None: no automatic tags, no suggestions."""
    try:
        return thresholds(embedder_version)
    except LookupError:
        return None


def ood_model_for(embedder_version: str, shipped: OodModel | None = None) -> OodModel | None:
    """The filter trained for this version's vectors, or None (quality rules only): `shipped`
    when it was trained on them, else the newest shipped filter that was."""
    if shipped is not None and shipped.embedder_version == embedder_version:
        return shipped
    return model_for(embedder_version)


@dataclass(frozen=True)
class Trust:
    version: str
    calibrated: bool
    filter_trained: bool

    @property
    def learning(self) -> bool:
        """Not fully trusted yet: no thresholds, or no filter of its own."""
        return not (self.calibrated and self.filter_trained)

    @property
    def notice(self) -> str:
        """What the pages say about the active version: the learning phase (nobody named
        automatically) while uncalibrated; quality rules only while the filter is missing."""
        if not self.calibrated:
            return LEARNING_PHASE
        if not self.filter_trained:
            return QUALITY_ONLY
        return ""


def trust(embedder_version: str, shipped: OodModel | None) -> Trust:
    return Trust(
        embedder_version,
        match_thresholds(embedder_version) is not None,
        ood_model_for(embedder_version, shipped) is not None,
    )

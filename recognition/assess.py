"""After a photo's faces are stored: the out-of-distribution filter, then matching.

Interim rule set until the learned filter (recognition/ood.py) is wired in: faces under the minimum
size are rejected with their reason, all others accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings

from gallery.models import Face


def do_assess_and_match(faces: Sequence[Face], chips: Sequence[np.ndarray]) -> None:
    for face in faces:
        if face.too_small:
            side = min(face.width, face.height)
            face.ood_status = Face.Quality.REJECTED
            face.ood_reasons = [
                f"face {side} px, below the {settings.FACEWEB_MIN_FACE_PX} px minimum"
            ]
        else:
            face.ood_status = Face.Quality.ACCEPTED
            face.ood_reasons = []
        face.save(update_fields=["ood_status", "ood_reasons"])

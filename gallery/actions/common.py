"""What every action module shares: the error a user sees, and name cleaning."""

from __future__ import annotations

import unicodedata
from pathlib import PurePath


class ActionError(ValueError):
    """A request that cannot be carried out; the message is shown to the user."""


def clean_display_name(name: str, *, limit: int = 255) -> str:
    """A file or person name safe to show: no path parts, no control characters, bounded."""
    base = PurePath(name.replace("\\", "/")).name if name else ""
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return (cleaned or "unnamed")[:limit]

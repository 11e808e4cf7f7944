"""What every action module shares: the error a user sees, cleaning of names, sizes in words."""

from __future__ import annotations

import unicodedata
from pathlib import PurePath

from django.template.defaultfilters import filesizeformat


class ActionError(ValueError):
    """A request that cannot be carried out; the message is shown to the user."""


def clean_text(text: str, *, limit: int) -> str:
    """A person's name or a tag as typed: control and format characters dropped (the joiners of
    emoji sequences stay), runs of white space made one space, trimmed, bounded. Every other
    character stays ("AC/DC", "Zoë", "José María")."""
    kept = (" " if ch.isspace() else ch for ch in text if ch.isspace() or _visible(ch))
    return " ".join("".join(kept).split())[:limit].strip()


# Zero-width (non-)joiners build emoji and some scripts' letters; other format characters
# (bidirectional overrides) only disguise what a name says.
_JOINERS = frozenset("\u200c\u200d")


def _visible(ch: str) -> bool:
    return unicodedata.category(ch)[0] != "C" or ch in _JOINERS


def clean_file_name(name: str, *, limit: int = 255) -> str:
    """An uploaded file's name safe to show: its last path part only, no control characters,
    bounded; "unnamed" when nothing is left. It is shown, never used as a path."""
    base = PurePath(name.replace("\\", "/")).name if name else ""
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return (cleaned or "unnamed")[:limit]


def file_size(n: int) -> str:
    """A number of bytes as the pages show it ("2.4 MB"), without filesizeformat's non-breaking
    space (the text also goes into plain messages)."""
    return filesizeformat(n).replace("\xa0", " ")

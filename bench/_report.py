"""Shared writer for BENCHMARKS.md: each benchmark owns one marked section of the file."""

from __future__ import annotations

import fcntl
import pathlib
import re

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nNumbers measured on the development machine by the scripts in `bench/`.\n"


def write_section(name: str, markdown: str, path: pathlib.Path = BENCHMARKS) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->`, or append it.

    An exclusive lock on a side file keeps two scripts writing at once from losing a section.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"section name {name!r} must be letters, digits, '_', '.', '-'")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else HEADER
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)

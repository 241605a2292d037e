"""Ranged GETs for the drivers that read over HTTP (Swift, S3, external sources): the Range
header asking for ``length`` bytes at ``offset``, and the check that the answer's
Content-Range holds those bytes, so a server that ignores the range (and sends the object
from its start) is never taken for the bytes asked for."""

from __future__ import annotations

import re

_CONTENT_RANGE = re.compile(r"bytes\s+([0-9]+)-([0-9]+)/([0-9]+|\*)", re.ASCII)


def range_header(offset: int, length: int | None) -> str | None:
    """The Range value for ``length`` bytes (to the end when None) at ``offset``; None when
    that is the whole object (no Range needed)."""
    if length is None:
        return f"bytes={offset}-" if offset else None
    return f"bytes={offset}-{offset + length - 1}"


def answers_range(content_range: str | None, offset: int, length: int | None) -> bool:
    """Whether a response's Content-Range starts at ``offset`` and, when a length was asked
    for, ends where it was asked to or at the object's end (a server clamps a range that
    runs past the end)."""
    match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    if match is None or int(match.group(1)) != offset:
        return False
    if length is None:
        return True
    end, total = int(match.group(2)), match.group(3)
    return end == offset + length - 1 or (total != "*" and end == int(total) - 1)

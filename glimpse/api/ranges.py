"""Byte ranges of image data asked for by a download request (spec §2.6): one ``Range: bytes=``
range, or the legacy request header ``Content-Range: bytes a-b/total`` that Glance honours.

The rules, Glance's where it has them and RFC 9110's where it leaves a gap:

* ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (the last n bytes); the unit is
  case-insensitive and blanks around ``=`` and ``-`` are allowed, as Glance (WebOb) allows
  them. An end past the data is clamped to its last byte; a suffix longer than the data
  selects all of it.
* A comma (several ranges) is Invalid (400) before anything else, as in Glance.
* Anything else selects nothing: RangeNotSatisfiable (416, naming the size): a range that
  does not parse (another unit, a negative or non-ASCII number, junk), an end before its
  start, a start at or past the end of the data, ``bytes=-0``, and so any range of empty
  data.
* ``Range`` wins over ``Content-Range`` when both are sent. ``Content-Range`` must be
  ``bytes a-b/total`` or ``bytes a-b/*``; an end at or past a stated total is malformed
  (416); otherwise it follows the ``bytes=a-b`` rules (an end past the data is clamped,
  where Glance refuses it when the total is ``*``: one rule for both headers).

Numbers longer than any image size could be are not converted (Python refuses to convert
more than 4300 digits, and the conversion is quadratic below that): as a start they are past
the data, as an end or a suffix they reach its end.
"""

from __future__ import annotations

import dataclasses
import re

from glimpse.errors import Invalid, RangeNotSatisfiable

# Every size glimpse can hold has fewer digits than this (2**64 has 20).
_MAX_DIGITS = 20
_BEYOND: int = 10**_MAX_DIGITS

_RANGE = re.compile(r"bytes *= *([0-9]*) *- *([0-9]*)", re.ASCII | re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"bytes +([0-9]+)-([0-9]+)/([0-9]+|\*)", re.ASCII | re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """The bytes ``start`` to ``end`` (both included) of data of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        """The response's Content-Range value."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(range_header: str | None, content_range_header: str | None,
                size: int) -> ByteRange | None:
    """The range a request selects of data of ``size`` bytes; None when it asks for none (the
    whole data, answered 200). Raises Invalid (several ranges) or RangeNotSatisfiable."""
    if range_header is not None:
        if "," in range_header:
            raise Invalid("Requests with multiple ranges are not supported. You may make "
                          "multiple single-range requests instead.")
        return _from_range(range_header.strip(), size)
    if content_range_header is not None:
        return _from_content_range(content_range_header.strip(), size)
    return None


def _from_range(text: str, size: int) -> ByteRange:
    match = _RANGE.fullmatch(text)
    if match is None or match.group(1) == match.group(2) == "":
        raise RangeNotSatisfiable("Invalid Range header.", size)
    first, last = match.groups()
    if first == "":
        suffix = _number(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("The Range header selects no bytes of the image data.", size)
        return ByteRange(max(size - suffix, 0), size - 1, size)
    return _bounded(_number(first), _number(last) if last else None, size, "Range")


def _from_content_range(text: str, size: int) -> ByteRange:
    match = _CONTENT_RANGE.fullmatch(text)
    if match is None:
        raise RangeNotSatisfiable("Invalid Content-Range header.", size)
    first, last, total = _number(match.group(1)), _number(match.group(2)), match.group(3)
    if total != "*" and last >= _number(total):
        raise RangeNotSatisfiable("Invalid Content-Range header.", size)
    return _bounded(first, last, size, "Content-Range")


def _bounded(first: int, last: int | None, size: int, header: str) -> ByteRange:
    if last is not None and last < first:
        raise RangeNotSatisfiable(f"Invalid {header} header: the end is before the start.", size)
    if first >= size:
        raise RangeNotSatisfiable(
            f"Invalid start position in {header} header. Start position MUST be in the "
            f"inclusive range [0, {size - 1}].", size)
    end = size - 1 if last is None else min(last, size - 1)
    return ByteRange(first, end, size)


def _number(digits: str) -> int:
    """ASCII digits as an int; past any image size when too long to convert cheaply."""
    stripped = digits.lstrip("0")
    if len(stripped) > _MAX_DIGITS:
        return _BEYOND
    return int(stripped or "0")


class RequestedRange:
    """A request's range headers, resolved once the size of the image's data is known: given
    to ImageService.open_data as ``choose``, it parses them with that size and keeps the
    result in ``byte_range`` (None: all of the data) for the response."""

    def __init__(self, range_header: str | None, content_range_header: str | None) -> None:
        self.range_header = range_header
        self.content_range_header = content_range_header
        self.byte_range: ByteRange | None = None

    def __call__(self, size: int) -> tuple[int, int | None]:
        self.byte_range = parse_range(self.range_header, self.content_range_header, size)
        if self.byte_range is None:
            return 0, None
        return self.byte_range.start, self.byte_range.length

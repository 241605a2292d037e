"""parse_range: every form of a download's range (spec §2.6), and hostile values."""

from __future__ import annotations

import pytest

from glimpse.api.ranges import ByteRange, RequestedRange, parse_range
from glimpse.errors import Invalid, RangeNotSatisfiable
from glimpse.stores.ranged import answers_range, range_header

SIZE = 26


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=3-10", 3, 10),
    ("bytes=0-0", 0, 0),
    ("bytes=0-25", 0, 25),
    ("bytes=25-25", 25, 25),
    ("bytes=3-", 3, 25),
    ("bytes=0-", 0, 25),
    ("bytes=25-", 25, 25),
    ("bytes=-1", 25, 25),
    ("bytes=-5", 21, 25),
    ("bytes=-26", 0, 25),
    # An end past the data is clamped; a suffix longer than the data is all of it.
    ("bytes=3-26", 3, 25),
    ("bytes=3-1000000", 3, 25),
    ("bytes=-27", 0, 25),
    ("bytes=-1000000", 0, 25),
    # The unit in any case, blanks around '=' and '-', and around the whole value.
    ("BYTES=3-10", 3, 10),
    ("Bytes = 3 - 10", 3, 10),
    ("  bytes=3-10\t", 3, 10),
    ("bytes=0003-010", 3, 10),
    # Numbers longer than any size: an end or a suffix reaches the end of the data.
    ("bytes=3-" + "9" * 5000, 3, 25),
    ("bytes=-" + "9" * 5000, 0, 25),
    ("bytes=3-99999999999999999999999", 3, 25),
    ("bytes=" + "0" * 5000 + "3-4", 3, 4),
])
def test_range_forms(header: str, start: int, end: int) -> None:
    chosen = parse_range(header, None, SIZE)
    assert chosen == ByteRange(start, end, SIZE)
    assert chosen.length == end - start + 1
    assert chosen.content_range() == f"bytes {start}-{end}/{SIZE}"


def test_no_header_is_the_whole_data() -> None:
    assert parse_range(None, None, SIZE) is None
    assert parse_range(None, None, 0) is None


@pytest.mark.parametrize("header", [
    "bytes=0-1,3-4", "bytes=0-1, 3-4", "bytes=-1,-2", ",", "bytes=,", "junk,junk",
    "bytes=0-1,", "bytes=" + ",".join(["0-1"] * 1000),
])
def test_several_ranges_are_invalid(header: str) -> None:
    """A comma is refused (400) before anything else is looked at, as in Glance."""
    with pytest.raises(Invalid) as caught:
        parse_range(header, None, SIZE)
    assert not isinstance(caught.value, RangeNotSatisfiable)
    assert "multiple ranges" in caught.value.message


@pytest.mark.parametrize("header", [
    # Junk, another unit, no unit, a missing '='.
    "", " ", "bytes", "bytes=", "bytes=-", "bytes= - ", "junk", "items=0-5", "0-5", "bytes 0-5",
    "bytes:0-5", "=0-5", "bytes=a-b", "bytes=1-x", "bytes=0x10-", "bytes=1e3-",
    # Negative and signed numbers, several dashes.
    "bytes=-5-10", "bytes=--5", "bytes=+3-5", "bytes=3--5", "bytes=3-5-", "bytes=1-2-3",
    # Non-ASCII digits (Arabic-Indic, full width), control characters, NUL.
    "bytes=\u0663-\u0665", "bytes=\uff13-5", "bytes=3-5\x00", "bytes=\n3-5", "bytes=3-5;x",
    # An end before the start, a start at or past the end, an empty suffix.
    "bytes=10-3", "bytes=1-0", "bytes=26-", "bytes=26-30", "bytes=100-", "bytes=-0",
    "bytes=-000", "bytes=" + "9" * 5000 + "-",
    "bytes=99999999999999999999999-99999999999999999999999",
])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, None, SIZE)
    assert caught.value.size == SIZE


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-5", "bytes=3-"])
def test_any_range_of_empty_data_is_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, None, 0)
    assert caught.value.size == 0


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes 3-10/26", 3, 10),
    ("bytes 3-10/*", 3, 10),
    ("bytes 0-25/26", 0, 25),
    ("bytes 25-25/*", 25, 25),
    ("BYTES 3-10/26", 3, 10),
    ("  bytes 3-10/26 ", 3, 10),
    # An end past the data is clamped, as with Range (a total may be stated larger).
    ("bytes 3-30/*", 3, 25),
    ("bytes 3-30/100", 3, 25),
])
def test_legacy_content_range(header: str, start: int, end: int) -> None:
    assert parse_range(None, header, SIZE) == ByteRange(start, end, SIZE)


@pytest.mark.parametrize("header", [
    "", "bytes", "bytes 3-10", "bytes 3-/26", "bytes -5/26", "bytes */26", "bytes */*",
    "bytes=3-10", "bytes 3-10/26,bytes 0-1/26", "items 3-10/26", "bytes 10-3/26",
    "bytes 3-10/10", "bytes 3-10/5", "bytes 26-30/*", "bytes 26-26/27", "bytes -1-3/26",
    "bytes \u0663-\u0665/26", "bytes 3-10/2x", "bytes " + "9" * 5000 + "-1/*",
])
def test_unsatisfiable_content_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(None, header, SIZE)
    assert caught.value.size == SIZE


def test_range_wins_over_content_range() -> None:
    assert parse_range("bytes=1-2", "bytes 3-4/26", SIZE) == ByteRange(1, 2, SIZE)
    # Even a bad Range: the Content-Range is not looked at.
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=30-", "bytes 3-4/26", SIZE)
    with pytest.raises(Invalid):
        parse_range("bytes=0-1,2-3", "bytes 3-4/26", SIZE)


def test_requested_range_keeps_what_it_chose() -> None:
    wanted = RequestedRange("bytes=-5", None)
    assert wanted.byte_range is None
    assert wanted(SIZE) == (21, 5)
    assert wanted.byte_range == ByteRange(21, 25, SIZE)
    whole = RequestedRange(None, None)
    assert whole(SIZE) == (0, None)
    assert whole.byte_range is None
    with pytest.raises(RangeNotSatisfiable):
        RequestedRange("bytes=26-", None)(SIZE)


# -- the stores' side: asking for a range and checking the answer ---------------------------


def test_range_header_for_a_store() -> None:
    assert range_header(0, None) is None
    assert range_header(5, None) == "bytes=5-"
    assert range_header(0, 1) == "bytes=0-0"
    assert range_header(5, 10) == "bytes=5-14"


@pytest.mark.parametrize(("answer", "offset", "length", "ok"), [
    ("bytes 5-14/100", 5, 10, True),
    ("bytes 5-99/100", 5, None, True),
    ("bytes 5-99/*", 5, None, True),
    ("bytes 5-9/10", 5, 10, True),  # clamped at the end of the object
    ("bytes 5-9/*", 5, 10, False),  # short, and the end is not known to be the object's
    ("bytes 0-99/100", 5, None, False),  # the start, not the range
    ("bytes 5-13/100", 5, 10, False),
    ("bytes 5-15/100", 5, 10, False),
    ("bytes */100", 5, 10, False),
    (None, 5, 10, False),
    ("", 5, None, False),
    ("junk", 5, None, False),
])
def test_a_stores_answer_must_hold_the_range(
    answer: str | None, offset: int, length: int | None, ok: bool
) -> None:
    assert answers_range(answer, offset, length) is ok

"""Operator-supplied sizes and booleans read the same wherever they are written."""

from __future__ import annotations

import pytest

from glimpse.errors import Invalid
from glimpse.scalars import parse_bool, parse_size


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0), ("10", 10), ("10B", 10), (" 7 b ", 7),
    ("3K", 3 << 10), ("3KB", 3 << 10), ("3kib", 3 << 10),
    ("2G", 2 << 30), ("2GB", 2 << 30), ("2 GiB", 2 << 30), ("1t", 1 << 40), ("5 M", 5 << 20),
])
def test_sizes_with_every_suffix_operators_write(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "GB", "B", "1.5G", "-1", "2P", "2GBB", "2 G B", "1e9"])
def test_malformed_sizes_are_invalid_never_a_crash(text: str) -> None:
    with pytest.raises(Invalid, match="Invalid size"):
        parse_size(text)


@pytest.mark.parametrize(("text", "value"),
                         [("yes", True), ("On", True), ("0", False), ("", False)])
def test_booleans(text: str, value: bool) -> None:
    assert parse_bool(text) is value


def test_a_malformed_boolean_is_invalid() -> None:
    with pytest.raises(Invalid):
        parse_bool("maybe")

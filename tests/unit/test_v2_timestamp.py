"""v2's timestamps: Glance's form (seconds, "Z"), however the datetime was made."""

from __future__ import annotations

import datetime as dt

import pytest

from glimpse.api.v2.images_json import timestamp

UTC = dt.UTC


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 12, 5, 23, 42, 5, 812445, tzinfo=UTC),
        dt.datetime(2026, 12, 5, 23, 42, 5, tzinfo=UTC),
        dt.datetime(2026, 12, 5, 23, 42, 5, 999999),
        dt.datetime(2026, 1, 2, 3, 4, 5, 1),
    ],
)
def test_seconds_and_z_as_strftime_gives_them(value: dt.datetime) -> None:
    assert timestamp(value) == value.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_microseconds_are_cut_not_rounded() -> None:
    assert timestamp(dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == (
        "2026-12-31T23:59:59Z"
    )


def test_none_is_null() -> None:
    assert timestamp(None) is None

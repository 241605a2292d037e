"""v1 list parameters into the version-neutral ListQuery (spec §9): exact matches only."""

from __future__ import annotations

from glimpse.api.v1.query import parse_list_query
from glimpse.domain.model import Filter, ListQuery, Op, SortKey


def parse(*params: tuple[str, str]) -> ListQuery:
    query, _, _ = parse_list_query(list(params), default_limit=25, max_limit=1000)
    return query


def test_filters_are_exact_matches_but_the_inclusive_size_bounds() -> None:
    query = parse(("name", "in:a,b"), ("status", "active"), ("disk_format", "raw"),
                  ("container_format", "bare"), ("min_ram", "512"), ("min_disk", "1"),
                  ("protected", "True"), ("size_min", "3"), ("size_max", "10"))
    assert set(query.filters) == {  # "in:" is part of the name in v1 (Q16)
        Filter("name", Op.EQ, "in:a,b"), Filter("status", Op.EQ, "active"),
        Filter("disk_format", Op.EQ, "raw"), Filter("container_format", Op.EQ, "bare"),
        Filter("min_ram", Op.EQ, 512), Filter("min_disk", Op.EQ, 1),
        Filter("protected", Op.EQ, True), Filter("size", Op.GTE, 3), Filter("size", Op.LTE, 10),
    }


def test_a_repeated_parameter_replaces_the_earlier_one() -> None:
    query = parse(("name", "a"), ("size_min", "1"), ("name", "b"), ("size_min", "2"))
    assert set(query.filters) == {Filter("name", Op.EQ, "b"), Filter("size", Op.GTE, 2)}


def test_one_sort_key_and_direction() -> None:
    assert parse().sort == [SortKey("created_at", descending=True)]
    assert parse(("sort_dir", "asc")).sort == [SortKey("created_at", descending=False)]
    assert parse(("sort_key", "name")).sort == [SortKey("name", descending=True)]
    assert parse(("sort_key", "size"), ("sort_dir", "asc"), ("sort_key", "name")).sort == [
        SortKey("name", descending=False)]

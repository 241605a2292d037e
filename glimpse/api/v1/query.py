"""List query parameters of v1 (spec §9) into a domain ListQuery."""

from __future__ import annotations

import re
from typing import Any

from glimpse.api.v1.headers import parse_timestamp
from glimpse.domain.fields import SORTABLE
from glimpse.domain.model import Filter, ListQuery, Op, SortKey
from glimpse.domain.validation import is_uuid_like
from glimpse.errors import Invalid

_EXACT = ("name", "status", "disk_format", "container_format")
_INTEGER = ("size_min", "size_max", "min_ram", "min_disk")
# v1's filters are exact matches but for the inclusive size bounds (no operator syntax: Q16).
_FILTERS: dict[str, tuple[str, Op]] = {
    **{name: (name, Op.EQ) for name in (*_EXACT, "min_ram", "min_disk", "protected")},
    "size_min": ("size", Op.GTE), "size_max": ("size", Op.LTE),
}
_STRICT_BOOL = {"true": True, "1": True, "false": False, "0": False}


def _is_count(value: str) -> bool:
    return re.fullmatch(r"[0-9]{1,18}", value) is not None


def _int_filter(name: str, value: str) -> int:
    if not _is_count(value):
        raise Invalid(f"Bad value passed to filter {name} got {value}")
    return int(value)


def parse_list_query(
    params: list[tuple[str, str]], default_limit: int, max_limit: int
) -> tuple[ListQuery, bool | None, str | None]:
    """Returns the query, the is_public parameter (None for 'none' or absent) and the marker."""
    query = ListQuery(limit=default_limit)
    is_public: bool | None = True
    marker: str | None = None
    sort_key, sort_dir = "created_at", "desc"
    filters: dict[str, Any] = {}  # by parameter: a repeated one replaces the earlier value
    for name, value in params:
        if name in _EXACT:
            filters[name] = value
        elif name in _INTEGER:
            filters[name] = _int_filter(name, value)
        elif name == "protected":
            if value.lower() not in _STRICT_BOOL:
                raise Invalid(f"Bad value passed to filter protected got {value}")
            filters[name] = _STRICT_BOOL[value.lower()]
        elif name == "is_public":
            lowered = value.lower()
            if lowered == "none":
                is_public = None
            elif lowered in _STRICT_BOOL:
                is_public = _STRICT_BOOL[lowered]
            else:
                raise Invalid(f"Bad value passed to filter is_public got {value}")
        elif name == "changes-since":
            try:
                query.changes_since = parse_timestamp(name, value)
            except Invalid as exc:
                raise Invalid(f"Unrecognized changes-since value: {value}") from exc
        elif name.startswith("property-"):
            query.properties[name[len("property-"):]] = value
        elif name == "sort_key":
            if value not in SORTABLE:
                raise Invalid(f"Unsupported sort_key. Acceptable values: {', '.join(SORTABLE)}")
            sort_key = value
        elif name == "sort_dir":
            if value not in ("asc", "desc"):
                raise Invalid("Unsupported sort_dir. Acceptable values: asc, desc")
            sort_dir = value
        elif name == "limit":
            if not _is_count(value):
                raise Invalid("limit param must be an integer")
            query.limit = min(int(value), max_limit)
        elif name == "marker":
            if not is_uuid_like(value):
                raise Invalid("Invalid marker format")
            marker = value
    query.filters = [Filter(*_FILTERS[name], value) for name, value in filters.items()]
    query.sort = [SortKey(sort_key, descending=sort_dir == "desc")]
    return query, is_public, marker

"""The query string of ``GET /v2/images`` into a domain ListQuery, and the page links.

Every parameter that is not one of the list's own (limit, marker, sorting, member_status,
visibility, tag) is a filter, and filters are ANDed, a repeated one too. An image attribute is
matched exactly, with the operators below where v2 has them; any other key is a custom
property that must have that value.

Operators: ``in:`` and ``eq:`` prefix the value of name, id, status, container_format and
disk_format; created_at and updated_at take gt, gte, lt, lte, eq and neq. Only these words
are operators, so ``name=foo:bar`` is the name "foo:bar" (Glance refuses it, bug §7.7). A name
that starts with an operator word and a colon is written with ``eq:`` before it:
``name=eq:in:x`` is the name "in:x".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode

from glimpse.domain.fields import BY_NAME, MAX_BIGINT, SORTABLE
from glimpse.domain.model import (
    Filter,
    Image,
    ListQuery,
    MemberStatus,
    Op,
    Scope,
    SortKey,
    Visibility,
)
from glimpse.errors import Invalid

__all__ = ["V2List", "decode_query", "page_links", "parse_list_query"]

COLLECTION = "/v2/images"
# A list of more is not a client's (each filter is a clause; SQLite nests ANDed clauses and
# refuses a tree deeper than 1000).
MAX_PARAMETERS = 100
MAX_LIST_VALUES = 1000  # values of one in: list

# The list's own parameters, given at most once (repeating them has no meaning to AND).
_SINGLE = ("limit", "marker", "member_status", "visibility")
# Operators v2 knows for the fields that take them; any other "word:" is part of the value.
_LISTED_FIELDS = ("name", "id", "status", "container_format", "disk_format")
_LIST_OPERATORS = ("in", "eq")
_ALL_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "in")
_TIMESTAMP_FIELDS = ("created_at", "updated_at")
_TIMESTAMP_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte")
_INTEGER_FIELDS = ("size", "virtual_size", "min_ram", "min_disk")
_STRING_FIELDS = ("owner", "checksum", "os_hash_algo", "os_hash_value")
# Attributes a v2 list never selects on: killed and deleted images are never listed.
_REFUSED = {
    "changes-since": 'The "changes-since" filter is no longer available on v2.',
    "deleted": "Deleted images are never listed: 'deleted' is not a filter.",
    "deleted_at": "Deleted images are never listed: 'deleted_at' is not a filter.",
}
_BOOLEANS = {"true": True, "false": False}
_DIRECTIONS = {"asc": False, "desc": True}
_COUNT = re.compile(r"-?[0-9]{1,19}")
# ISO 8601 in its extended form, as Glance's iso8601 parser takes it: a date, optionally a
# time to the hour, minute, second or a fraction of it, optionally a zone.
_INSTANT = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[Tt ](?P<hour>[0-9]{2})(?::?(?P<minute>[0-9]{2})"
    r"(?::?(?P<second>[0-9]{2})(?:[.,](?P<fraction>[0-9]+))?)?)?)?"
    r"(?P<zone>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?")


@dataclasses.dataclass(frozen=True)
class V2List:
    """A parsed list request: the query for ``ImageService.list_images`` and the marker id."""

    query: ListQuery
    marker: str | None


def decode_query(raw: bytes) -> list[tuple[str, str]]:
    """A raw query string as (key, value) pairs in order: UTF-8 strictly (percent-escapes
    too), no NUL anywhere, ``+`` a space (what ``page_links`` writes)."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise Invalid("Query parameters must be UTF-8 text") from exc
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise Invalid("Query parameters may not contain NUL characters")
    return pairs


def parse_list_query(
    params: Sequence[tuple[str, str]], default_limit: int, max_limit: int
) -> V2List:
    """The list a request asks for. Invalid names what is wrong (the API's 400)."""
    if len(params) > MAX_PARAMETERS:
        raise Invalid(f"Too many query parameters: at most {MAX_PARAMETERS} are taken")
    single: dict[str, str] = {}
    sort_params: list[tuple[str, str]] = []
    query = ListQuery(scope=Scope.ALL, limit=default_limit)
    hidden_given = False
    for key, value in params:
        if key in _SINGLE:
            if key in single:
                raise Invalid(f"Parameter '{key}' may be given only once")
            single[key] = value
        elif key in ("sort", "sort_key", "sort_dir"):
            sort_params.append((key, value))
        elif key == "tag":
            query.tags.append(value.strip())
        elif key in _REFUSED:
            raise Invalid(_REFUSED[key])
        else:
            hidden_given |= key == "os_hidden"
            _add_filter(query, key, value)
    if not hidden_given:
        # Hidden images are listed only when asked for.
        query.filters.append(Filter("os_hidden", Op.EQ, False))
    if "limit" in single:
        query.limit = min(_limit(single["limit"]), max_limit)
    query.sort = _sort(sort_params)
    _scope(query, single.get("visibility"), single.get("member_status"))
    return V2List(query, single.get("marker"))


def page_links(
    params: Sequence[tuple[str, str]], page: Sequence[Image], limit: int
) -> tuple[str, str | None]:
    """(first, next): the list again without a marker, and, when the page is full, the list
    from its last image. Every parameter is kept, a repeated one each time, in order."""
    kept = [(k, v) for k, v in params if k != "marker"]
    first = f"{COLLECTION}?{urlencode(kept)}" if kept else COLLECTION
    if not page or len(page) < limit:
        return first, None
    return first, f"{COLLECTION}?{urlencode([*kept, ('marker', page[-1].id)])}"


# -- filters ------------------------------------------------------------------------------


def _add_filter(query: ListQuery, key: str, value: str) -> None:
    filters = query.filters
    if key in _LISTED_FIELDS:
        filters.append(_listed_filter(key, value))
    elif key in _TIMESTAMP_FIELDS:
        filters.extend(_timestamp_filters(key, value))
    elif key in _INTEGER_FIELDS:
        filters.append(Filter(key, Op.EQ, _integer(key, value)))
    elif key.endswith(("_min", "_max")) and key[:-4] in _INTEGER_FIELDS:
        # Inclusive bounds; an unknown size (no data yet) is within none.
        field = key[:-4]
        bound = Op.GTE if key.endswith("_min") else Op.LTE
        filters += [Filter(field, Op.NEQ, None), Filter(field, bound, _integer(key, value))]
    elif key == "protected":
        if value not in _BOOLEANS:
            raise Invalid(f"Invalid value for protected: {value!r} (true or false)")
        filters.append(Filter(key, Op.EQ, _BOOLEANS[value]))
    elif key == "os_hidden":
        if value.lower() not in _BOOLEANS:
            raise Invalid(f"Invalid value for os_hidden: {value!r} (true or false)")
        filters.append(Filter(key, Op.EQ, _BOOLEANS[value.lower()]))
    elif key in _STRING_FIELDS:
        filters.append(Filter(key, Op.EQ, value))
    elif query.properties.get(key, value) != value:
        # The same property asked to have two values: nothing has both.
        filters.append(Filter("id", Op.IN, ()))
    else:
        query.properties[key] = value


def _listed_filter(field: str, value: str) -> Filter:
    op, sep, rest = value.partition(":")
    if not sep or op not in _ALL_OPERATORS:
        return Filter(field, Op.EQ, value)  # "foo:bar" is a value, not an operator
    if op not in _LIST_OPERATORS:
        raise Invalid(f"Unable to filter by operator '{op}' on {field} (in or eq; eq: "
                      f"before a {field} that starts with '{op}:')")
    if op == "eq":
        return Filter(field, Op.EQ, rest)
    return Filter(field, Op.IN, tuple(_split_list(field, rest)))


def _split_list(field: str, text: str) -> list[str]:
    """An in: list: values separated by commas, a value in double quotes when it holds a
    comma (a backslash in quotes escapes the next character)."""
    values: list[str] = []
    at = 0
    while True:
        if text.startswith('"', at):
            chars: list[str] = []
            at += 1
            while at < len(text) and text[at] != '"':
                if text[at] == "\\" and at + 1 < len(text):
                    at += 1
                chars.append(text[at])
                at += 1
            if at >= len(text):
                raise Invalid(f"Invalid {field} filter: a quote is not closed")
            at += 1
            if at < len(text) and text[at] != ",":
                raise Invalid(f"Invalid {field} filter: no comma after a closing quote")
            values.append("".join(chars))
        else:
            end = text.find(",", at)
            end = len(text) if end < 0 else end
            item = text[at:end]
            if '"' in item:
                raise Invalid(f"Invalid {field} filter: a quote must open a value")
            values.append(item)
            at = end
        if len(values) > MAX_LIST_VALUES:
            raise Invalid(f"Invalid {field} filter: at most {MAX_LIST_VALUES} values")
        if at >= len(text):
            return values
        at += 1  # the comma, before another value (empty at the end)


def _timestamp_filters(field: str, value: str) -> list[Filter]:
    """A comparison with an instant given to some precision (a day, an hour, ... a fraction
    of a second): the span it names, so that ``eq`` with a timestamp as v2 renders it (to the
    second) matches the image it was read from, stored with microseconds."""
    op, instant = "eq", value
    if _INSTANT.fullmatch(value) is None:
        op, _, instant = value.partition(":")
        if op not in _TIMESTAMP_OPERATORS:
            raise Invalid(f"Invalid operator for {field}: use gt, gte, lt, lte, eq or neq "
                          "before ':'")
    start, span = _instant(field, instant)
    try:
        end = start + span
    except OverflowError:
        end = dt.datetime.max
    return {
        "eq": [Filter(field, Op.GTE, start), Filter(field, Op.LT, end)],
        "neq": [Filter(field, Op.OUTSIDE, (start, end))],
        "gt": [Filter(field, Op.GTE, end)],
        "gte": [Filter(field, Op.GTE, start)],
        "lt": [Filter(field, Op.LT, start)],
        "lte": [Filter(field, Op.LT, end)],
    }[op]


def _instant(field: str, text: str) -> tuple[dt.datetime, dt.timedelta]:
    """Naive UTC, and the span the text names from there."""
    match = _INSTANT.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        parts = match.groupdict()
        fraction = parts["fraction"] or ""
        value = dt.datetime.fromisoformat(
            f"{parts['date']}T{parts['hour'] or '00'}:{parts['minute'] or '00'}:"
            f"{parts['second'] or '00'}.{fraction[:6].ljust(6, '0')}")
        zone = (parts["zone"] or "Z").replace(":", "")
        if zone not in ("Z", "z"):
            hours, minutes = int(zone[1:3]), int(zone[3:] or "0")
            if hours > 23 or minutes > 59:
                raise ValueError(zone)
            offset = dt.timedelta(hours=hours, minutes=minutes)
            value = value - offset if zone[0] == "+" else value + offset
    except (ValueError, OverflowError) as exc:
        raise Invalid(f'Bad "{field}" query filter format. Use ISO 8601 DateTime '
                      "notation.") from exc
    if value.year < 1900:
        raise Invalid(f'Bad "{field}" query filter format: a year before 1900.')
    if fraction:
        span = dt.timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    elif parts["second"]:
        span = dt.timedelta(seconds=1)
    elif parts["minute"]:
        span = dt.timedelta(minutes=1)
    elif parts["hour"]:
        span = dt.timedelta(hours=1)
    else:
        span = dt.timedelta(days=1)
    return value, span


def _integer(key: str, value: str) -> int:
    if _COUNT.fullmatch(value) is None or abs(int(value)) > MAX_BIGINT:
        raise Invalid(f"Invalid value for {key}: {value!r} is not an integer")
    return int(value)


# -- the list's own parameters -------------------------------------------------------------


def _limit(value: str) -> int:
    if re.fullmatch(r"-[0-9]+", value):
        raise Invalid("limit param must be positive")
    if re.fullmatch(r"[0-9]+", value) is None:
        raise Invalid("limit param must be an integer")
    # A long run of digits is some huge limit: clamped by the caller, never converted.
    return MAX_BIGINT if len(value) > 18 else int(value)


def _sort(params: list[tuple[str, str]]) -> list[SortKey]:
    """``sort=k[:dir],...`` (a missing direction is desc), or the legacy repeated
    ``sort_key``/``sort_dir`` (one direction applies to every key, else one per key)."""
    keys = [v for k, v in params if k != "sort"]
    if len(keys) < len(params):  # some sort=
        if keys:
            raise Invalid("Old and new sorting syntax cannot be combined")
        pairs = [item.partition(":") for _, text in params for item in text.strip().split(",")]
        return [SortKey(_sort_key(key), _sort_dir(direction or "desc"))
                for key, _, direction in pairs]
    names = [_sort_key(v) for k, v in params if k == "sort_key"] or ["created_at"]
    dirs = [_sort_dir(v) for k, v in params if k == "sort_dir"] or [True]
    if len(dirs) == 1:
        dirs *= len(names)
    elif len(dirs) != len(names):
        raise Invalid("Number of sort dirs does not match the number of sort keys")
    return [SortKey(name, descending) for name, descending in zip(names, dirs, strict=True)]


def _sort_key(value: str) -> str:
    key = value.strip()
    if key not in SORTABLE:
        raise Invalid(f"Invalid sort key: {key}. It must be one of the following: "
                      f"{', '.join(SORTABLE)}.")
    return key


def _sort_dir(value: str) -> bool:
    direction = value.strip()
    if direction not in _DIRECTIONS:
        raise Invalid(f"Invalid sort direction: {direction}")
    return _DIRECTIONS[direction]


def _scope(query: ListQuery, visibility: str | None, member_status: str | None) -> None:
    """Which images the list starts from. The service narrows Scope.ALL to what the caller
    sees (policy.list_scope); other owners' community images are listed only when the query
    asks for community images (visibility community or all), for admins too."""
    if visibility is not None and visibility != "all":
        if visibility not in tuple(Visibility):
            raise Invalid(f"Invalid visibility value: {visibility}")
        query.filters.append(Filter("visibility", Op.EQ, Visibility(visibility)))
    query.others_community = visibility in ("community", "all")
    if member_status is not None:
        if member_status != "all" and member_status not in tuple(MemberStatus):
            raise Invalid(f"Invalid status: {member_status}")
        query.member_status = None if member_status == "all" else MemberStatus(member_status)


# The field table is the one source of attribute names: every name this parser treats as an
# attribute must be one (a renamed field would otherwise become a property filter silently).
assert all(name in BY_NAME for name in (*_LISTED_FIELDS, *_TIMESTAMP_FIELDS, *_INTEGER_FIELDS,
                                        *_STRING_FIELDS, "protected", "os_hidden"))

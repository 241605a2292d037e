"""The v2 list query parser (spec v2 §2.3) and its page links: every filter, the operators,
both sort syntaxes, what is refused, and hostile input."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest

from glimpse.api.v2.query import (
    MAX_LIST_VALUES,
    MAX_PARAMETERS,
    V2List,
    decode_query,
    page_links,
    parse_list_query,
)
from glimpse.domain.model import Filter, Image, MemberStatus, Op, Scope, SortKey, Status, Visibility
from glimpse.errors import Invalid

NOT_HIDDEN = Filter("os_hidden", Op.EQ, False)


def parse(query: str, default_limit: int = 25, max_limit: int = 1000) -> V2List:
    return parse_list_query(decode_query(query.encode()), default_limit, max_limit)


def filters(query: str) -> list[Filter]:
    """The filters a query gives, without the default os_hidden=false."""
    return [f for f in parse(query).query.filters if f != NOT_HIDDEN]


def refused(query: str) -> str:
    with pytest.raises(Invalid) as caught:
        parse(query)
    return caught.value.message


# -- defaults -------------------------------------------------------------------------------


def test_defaults() -> None:
    parsed = parse("")
    q = parsed.query
    assert parsed.marker is None
    assert q.scope is Scope.ALL  # the service narrows it to what the caller sees
    assert q.limit == 25
    assert q.filters == [NOT_HIDDEN]
    assert q.properties == {} and q.tags == []
    assert q.member_status is MemberStatus.ACCEPTED
    assert q.others_community is False
    assert q.sort == [SortKey("created_at", descending=True)]
    assert q.changes_since is None


# -- limit and marker -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "limit"), [
    ("0", 0), ("7", 7), ("1000", 1000), ("1001", 1000), ("99999999999999999999999", 1000),
    ("0007", 7),
])
def test_limit_is_clamped(value: str, limit: int) -> None:
    assert parse(f"limit={value}").query.limit == limit


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "limit param must be positive"), ("-0", "limit param must be positive"),
    ("abc", "limit param must be an integer"), ("1.5", "limit param must be an integer"),
    ("", "limit param must be an integer"), ("+5", "limit param must be an integer"),
    (" 5", "limit param must be an integer"), ("1_000", "limit param must be an integer"),
    ("\u0661", "limit param must be an integer"),  # an Arabic-Indic digit one
])
def test_bad_limits(value: str, message: str) -> None:
    assert parse_list_query_error([("limit", value)]) == message


def parse_list_query_error(params: list[tuple[str, str]]) -> str:
    with pytest.raises(Invalid) as caught:
        parse_list_query(params, 25, 1000)
    return caught.value.message


def test_marker_is_passed_on_as_given() -> None:
    marker = str(uuid.uuid4())
    assert parse(f"marker={marker}").marker == marker
    assert parse("marker=").marker == ""  # the service finds no such image: 400 there


@pytest.mark.parametrize("key", ["limit", "marker", "member_status", "visibility"])
def test_the_lists_own_parameters_are_given_once(key: str) -> None:
    assert key in parse_list_query_error([(key, "1"), (key, "1")])


# -- attribute filters ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "id", "status", "container_format", "disk_format"])
def test_in_and_eq_operators(field: str) -> None:
    assert filters(f"{field}=x") == [Filter(field, Op.EQ, "x")]
    assert filters(f"{field}=eq:x") == [Filter(field, Op.EQ, "x")]
    assert filters(f"{field}=in:a,b") == [Filter(field, Op.IN, ("a", "b"))]
    for op in ("gt", "gte", "lt", "lte", "neq"):
        assert "Unable to filter by operator" in refused(f"{field}={op}:x")


def test_unknown_operator_words_are_part_of_the_value() -> None:
    """Glance gives 400 for name=foo:bar (bug §7.7): only operator words are operators, and
    eq: writes a value that starts with one."""
    assert filters("name=foo:bar") == [Filter("name", Op.EQ, "foo:bar")]
    assert filters("name=:x") == [Filter("name", Op.EQ, ":x")]
    assert filters("name=http://x/y") == [Filter("name", Op.EQ, "http://x/y")]
    assert filters("name=eq:in:x") == [Filter("name", Op.EQ, "in:x")]
    assert filters("name=eq:") == [Filter("name", Op.EQ, "")]
    assert filters("name=in:eq:x") == [Filter("name", Op.IN, ("eq:x",))]
    assert filters("name=IN:x") == [Filter("name", Op.EQ, "IN:x")]  # operators are lowercase


@pytest.mark.parametrize(("value", "items"), [
    ('in:"a,b",c', ("a,b", "c")),
    ('in:c,"a,b"', ("c", "a,b")),
    ('in:"a,b"', ("a,b",)),
    ('in:"say \\"hi\\"",x', ('say "hi"', "x")),
    ('in:"back\\\\slash"', ("back\\slash",)),
    ("in:a,,b", ("a", "", "b")),
    ("in:a,", ("a", "")),
    ("in:", ("",)),
    ('in:""', ("",)),
    ("in:\u00e9t\u00e9,\u2603", ("\u00e9t\u00e9", "\u2603")),
])
def test_in_lists(value: str, items: tuple[str, ...]) -> None:
    assert parse_list_query([("name", value)], 25, 1000).query.filters[0] == Filter(
        "name", Op.IN, items)


@pytest.mark.parametrize("value", ['in:"a', 'in:"a"b', 'in:a"b', 'in:x,"a,b', 'in:"a",b"'])
def test_bad_quotes(value: str) -> None:
    assert "name filter" in parse_list_query_error([("name", value)])


def test_in_list_length_is_bounded() -> None:
    ok = "in:" + ",".join(["x"] * MAX_LIST_VALUES)
    assert len(parse_list_query([("id", ok)], 25, 1000).query.filters[0].value) == \
        MAX_LIST_VALUES
    assert "at most" in parse_list_query_error([("id", ok + ",y")])


def test_exact_string_attributes() -> None:
    assert filters("owner=p1&checksum=abc&os_hash_value=f00&os_hash_algo=sha512") == [
        Filter("owner", Op.EQ, "p1"), Filter("checksum", Op.EQ, "abc"),
        Filter("os_hash_value", Op.EQ, "f00"), Filter("os_hash_algo", Op.EQ, "sha512")]
    assert filters("owner=a:b") == [Filter("owner", Op.EQ, "a:b")]  # no operators there


@pytest.mark.parametrize("field", ["size", "virtual_size", "min_ram", "min_disk"])
def test_integer_attributes_are_integers(field: str) -> None:
    """size reaches the database as an integer: Glance sends the string (500 on PostgreSQL,
    §7.12)."""
    assert filters(f"{field}=42") == [Filter(field, Op.EQ, 42)]
    for bad in ("abc", "4.2", "", "1e3", " 1", "9" * 20, "0x10"):
        assert "is not an integer" in parse_list_query_error([(field, bad)])


def test_size_bounds_are_inclusive_and_leave_out_unknown_sizes() -> None:
    assert filters("size_min=5&size_max=10") == [
        Filter("size", Op.NEQ, None), Filter("size", Op.GTE, 5),
        Filter("size", Op.NEQ, None), Filter("size", Op.LTE, 10)]
    assert filters("size_min=-1")[1] == Filter("size", Op.GTE, -1)
    assert filters("min_ram_max=512")[1] == Filter("min_ram", Op.LTE, 512)
    for bad in ("x", "", "1.0"):
        assert "size_min" in parse_list_query_error([("size_min", bad)])
        assert "size_max" in parse_list_query_error([("size_max", bad)])


def test_protected_is_exactly_true_or_false() -> None:
    assert filters("protected=true") == [Filter("protected", Op.EQ, True)]
    assert filters("protected=false") == [Filter("protected", Op.EQ, False)]
    for bad in ("True", "1", "yes", ""):
        assert "protected" in parse_list_query_error([("protected", bad)])


def test_os_hidden_any_case_and_false_by_default() -> None:
    assert parse("os_hidden=TRUE").query.filters == [Filter("os_hidden", Op.EQ, True)]
    assert parse("os_hidden=False").query.filters == [Filter("os_hidden", Op.EQ, False)]
    for bad in ("1", "yes", ""):
        assert "os_hidden" in parse_list_query_error([("os_hidden", bad)])


def test_repeated_filters_are_anded() -> None:
    assert filters("name=a&name=b") == [Filter("name", Op.EQ, "a"), Filter("name", Op.EQ, "b")]
    assert parse("os_hidden=true&os_hidden=false").query.filters == [
        Filter("os_hidden", Op.EQ, True), Filter("os_hidden", Op.EQ, False)]


def test_any_other_key_is_a_custom_property() -> None:
    q = parse("os_distro=ubuntu&hw_disk_bus=scsi&is_public=true&foo_min=1").query
    assert q.properties == {"os_distro": "ubuntu", "hw_disk_bus": "scsi", "is_public": "true",
                            "foo_min": "1"}
    assert q.filters == [NOT_HIDDEN]
    # The same property with two values: nothing has both.
    assert filters("a=1&a=1") == []
    assert filters("a=1&a=2") == [Filter("id", Op.IN, ())]


def test_tags_repeat_and_are_anded() -> None:
    assert parse("tag=x86&tag=64bit&tag=%E2%9C%93").query.tags == ["x86", "64bit", "\u2713"]


@pytest.mark.parametrize("key", ["changes-since", "deleted", "deleted_at"])
def test_refused_parameters(key: str) -> None:
    assert key in refused(f"{key}=2020-01-01T00:00:00Z")


# -- timestamps -------------------------------------------------------------------------------

T = dt.datetime(2024, 5, 6, 7, 8, 9)
SECOND = dt.timedelta(seconds=1)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-05-06T07:08:09Z", [Filter("created_at", Op.GTE, T),
                              Filter("created_at", Op.LT, T + SECOND)]),
    ("eq:2024-05-06T07:08:09Z", [Filter("created_at", Op.GTE, T),
                                 Filter("created_at", Op.LT, T + SECOND)]),
    ("neq:2024-05-06T07:08:09Z", [Filter("created_at", Op.OUTSIDE, (T, T + SECOND))]),
    ("gt:2024-05-06T07:08:09Z", [Filter("created_at", Op.GTE, T + SECOND)]),
    ("gte:2024-05-06T07:08:09Z", [Filter("created_at", Op.GTE, T)]),
    ("lt:2024-05-06T07:08:09Z", [Filter("created_at", Op.LT, T)]),
    ("lte:2024-05-06T07:08:09Z", [Filter("created_at", Op.LT, T + SECOND)]),
    # Zones are normalized to naive UTC.
    ("gte:2024-05-06T09:08:09+02:00", [Filter("created_at", Op.GTE, T)]),
    ("gte:2024-05-06T06:38:09-0030", [Filter("created_at", Op.GTE, T)]),
    ("gte:2024-05-06T09:08:09+02", [Filter("created_at", Op.GTE, T)]),
    ("gte:2024-05-06T07:08:09z", [Filter("created_at", Op.GTE, T)]),
    ("gte:2024-05-06 07:08:09", [Filter("created_at", Op.GTE, T)]),
    # The precision given is the span compared with.
    ("lte:2024-05-06", [Filter("created_at", Op.LT, dt.datetime(2024, 5, 7))]),
    ("lte:2024-05-06T07", [Filter("created_at", Op.LT, dt.datetime(2024, 5, 6, 8))]),
    ("lte:2024-05-06T07:08", [Filter("created_at", Op.LT, dt.datetime(2024, 5, 6, 7, 9))]),
    ("lte:2024-05-06T07:08:09.5Z",
     [Filter("created_at", Op.LT, T + dt.timedelta(microseconds=600_000))]),
    ("eq:2024-05-06T07:08:09.123456Z",
     [Filter("created_at", Op.GTE, T + dt.timedelta(microseconds=123456)),
      Filter("created_at", Op.LT, T + dt.timedelta(microseconds=123457))]),
    ("gte:2024-05-06T07:08:09.12345678Z",
     [Filter("created_at", Op.GTE, T + dt.timedelta(microseconds=123456))]),
    ("gt:9999-12-31", [Filter("created_at", Op.GTE, dt.datetime.max)]),
])
def test_timestamp_comparisons(value: str, expected: list[Filter]) -> None:
    assert parse_list_query([("created_at", value)], 25, 1000).query.filters[:-1] == expected
    updated = [Filter("updated_at", f.op, f.value) for f in expected]
    assert parse_list_query([("updated_at", value)], 25, 1000).query.filters[:-1] == updated


def test_a_timestamp_range_is_two_filters() -> None:
    assert filters("created_at=gte:2024-01-01&created_at=lt:2024-02-01") == [
        Filter("created_at", Op.GTE, dt.datetime(2024, 1, 1)),
        Filter("created_at", Op.LT, dt.datetime(2024, 2, 1))]


@pytest.mark.parametrize("value", [
    "foo:2024-05-06T07:08:09Z", "in:2024-05-06", "GT:2024-05-06", "2024-13-01", "gt:",
    "gt:yesterday", "gt:2024-05-06T25:00", "gt:0999-01-01", "gt:2024-05-06T07:08:09+25:00",
    "", "now", "gt:2024-05-06X", "gt:2024-05-06T07:08:09+02:60", "gt:0001-01-01T00:00-01",
])
def test_bad_timestamps(value: str) -> None:
    assert "created_at" in parse_list_query_error([("created_at", value)])


# -- visibility and member status ---------------------------------------------------------------


@pytest.mark.parametrize("visibility", ["public", "private", "shared", "community"])
def test_visibility_filters(visibility: str) -> None:
    q = parse(f"visibility={visibility}").query
    assert Filter("visibility", Op.EQ, Visibility(visibility)) in q.filters
    assert q.others_community is (visibility == "community")


def test_visibility_all_filters_nothing_but_asks_for_community_images() -> None:
    q = parse("visibility=all").query
    assert q.filters == [NOT_HIDDEN]
    assert q.others_community is True


@pytest.mark.parametrize("bad", ["Public", "", "everything", "all "])
def test_bad_visibility(bad: str) -> None:
    assert "Invalid visibility value" in parse_list_query_error([("visibility", bad)])


@pytest.mark.parametrize(("value", "status"), [
    ("pending", MemberStatus.PENDING), ("accepted", MemberStatus.ACCEPTED),
    ("rejected", MemberStatus.REJECTED), ("all", None),
])
def test_member_status(value: str, status: MemberStatus | None) -> None:
    assert parse(f"member_status={value}").query.member_status is status


@pytest.mark.parametrize("bad", ["Accepted", "", "any"])
def test_bad_member_status(bad: str) -> None:
    assert "Invalid status" in parse_list_query_error([("member_status", bad)])


# -- sorting -----------------------------------------------------------------------------------


def asc(key: str) -> SortKey:
    return SortKey(key, descending=False)


def desc(key: str) -> SortKey:
    return SortKey(key, descending=True)


@pytest.mark.parametrize(("query", "sort"), [
    ("sort=name", [desc("name")]),
    ("sort=name:asc", [asc("name")]),
    ("sort=name:asc,size:desc", [asc("name"), desc("size")]),
    ("sort=name:asc,size", [asc("name"), desc("size")]),
    ("sort=%20name%20:%20asc%20", [asc("name")]),
    ("sort=name:asc&sort=id:asc", [asc("name"), asc("id")]),
    ("sort_key=name", [desc("name")]),
    ("sort_key=name&sort_dir=asc", [asc("name")]),
    ("sort_dir=asc", [asc("created_at")]),
    ("sort_key=name&sort_key=size&sort_dir=asc", [asc("name"), asc("size")]),
    ("sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc", [asc("name"), desc("size")]),
    ("sort_key=name&sort_dir=asc&sort_key=size&sort_dir=desc", [asc("name"), desc("size")]),
])
def test_sorting(query: str, sort: list[SortKey]) -> None:
    assert parse(query).query.sort == sort


def test_every_v2_sort_key() -> None:
    for key in ("name", "status", "container_format", "disk_format", "size", "id",
                "created_at", "updated_at"):
        assert parse(f"sort={key}:asc").query.sort == [asc(key)]


@pytest.mark.parametrize(("query", "message"), [
    ("sort=name&sort_key=size", "cannot be combined"),
    ("sort=name&sort_dir=asc", "cannot be combined"),
    ("sort=owner", "Invalid sort key: owner"),
    ("sort=", "Invalid sort key"),
    ("sort=name,", "Invalid sort key"),
    ("sort=name:up", "Invalid sort direction: up"),
    ("sort=name:asc:desc", "Invalid sort direction"),
    ("sort=name:ASC", "Invalid sort direction"),
    ("sort_key=visibility", "Invalid sort key"),
    ("sort_dir=sideways", "Invalid sort direction"),
    ("sort_key=name&sort_key=size&sort_key=id&sort_dir=asc&sort_dir=desc", "does not match"),
    ("sort_dir=asc&sort_dir=desc", "does not match"),
])
def test_bad_sorting(query: str, message: str) -> None:
    assert message in refused(query)


# -- hostile input ------------------------------------------------------------------------------


def test_query_strings_must_be_utf8_without_nul() -> None:
    assert decode_query(b"name=caf%C3%A9&tag=\xe2\x9c\x93") == [("name", "caf\u00e9"),
                                                                 ("tag", "\u2713")]
    assert decode_query(b"name=a+b") == [("name", "a b")]
    for raw in (b"name=%FF", b"name=\xff", b"name=%C3", b"%FF=x"):
        with pytest.raises(Invalid, match="UTF-8"):
            decode_query(raw)
    for raw in (b"name=a%00b", b"a%00=b"):
        with pytest.raises(Invalid, match="NUL"):
            decode_query(raw)


def test_parameter_count_is_bounded() -> None:
    ok = [("tag", str(n)) for n in range(MAX_PARAMETERS)]
    assert len(parse_list_query(ok, 25, 1000).query.tags) == MAX_PARAMETERS
    assert "Too many" in parse_list_query_error([*ok, ("tag", "x")])


def test_huge_values_are_values() -> None:
    long = "x" * 100_000
    assert filters(f"name={long}") == [Filter("name", Op.EQ, long)]
    assert parse(f"{long}=1").query.properties == {long: "1"}


# -- page links ---------------------------------------------------------------------------------


def images(count: int) -> list[Image]:
    return [Image(id=str(uuid.UUID(int=n + 1)), status=Status.ACTIVE) for n in range(count)]


def query_of(link: str) -> list[tuple[str, str]]:
    parts = urlsplit(link)
    assert parts.path == "/v2/images" and not parts.scheme and not parts.netloc
    return parse_qsl(parts.query, keep_blank_values=True)


def test_links_without_parameters() -> None:
    assert page_links([], images(2), 25) == ("/v2/images", None)
    first, following = page_links([], images(25), 25)
    assert first == "/v2/images"
    assert following == f"/v2/images?marker={images(25)[-1].id}"


def test_links_keep_every_parameter_in_order_but_the_marker() -> None:
    """Glance's links keep only the last of a repeated parameter (bug §7.6)."""
    params = [("tag", "a"), ("sort_key", "name"), ("marker", "m"), ("tag", "b b"),
              ("sort_key", "size"), ("name", "in:\"x,y\",z"), ("tag", "\u2713"), ("limit", "2")]
    first, following = page_links(params, images(2), 2)
    kept = [p for p in params if p[0] != "marker"]
    assert query_of(first) == kept
    assert following is not None
    assert query_of(following) == [*kept, ("marker", images(2)[-1].id)]
    # What the links hold parses back to the same list.
    assert decode_query(urlsplit(following).query.encode()) == query_of(following)
    assert parse_list_query(query_of(first), 25, 1000) == parse_list_query(
        [p for p in params if p[0] != "marker"], 25, 1000)


def test_next_only_when_the_page_is_full() -> None:
    assert page_links([("limit", "3")], images(2), 3)[1] is None
    assert page_links([("limit", "3")], images(3), 3)[1] is not None
    assert page_links([("limit", "0")], [], 0)[1] is None
    # A clamped limit: the page is full at the clamp.
    assert page_links([("limit", "5000")], images(4), 4)[1] is not None

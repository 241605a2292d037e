"""Listing images: spec §9 (brief/detail lists, filters, changes-since, sorting, paging)."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.identity import tenant
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

BRIEF_KEYS = {"id", "name", "size", "disk_format", "container_format", "checksum"}
FULL_KEYS = {
    "id", "name", "status", "size", "virtual_size", "checksum", "disk_format",
    "container_format", "min_disk", "min_ram", "is_public", "protected", "owner",
    "created_at", "updated_at", "deleted_at", "deleted", "properties",
}
SORT_KEYS = [
    "name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at",
]
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
NO_PURGE = {"x-glance-registry-purge-props": "false"}


# --------------------------------------------------------------------------- helpers



def create(
    client: httpx.Client,
    ctx: dict[str, str],
    tag: str,
    *,
    name: str | None = "img",
    disk_format: str | None = "raw",
    container_format: str | None = "bare",
    data: bytes | None = None,
    props: dict[str, str] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    headers = dict(ctx)
    headers["x-image-meta-property-tag"] = tag
    if name is not None:
        headers["x-image-meta-name"] = name
    if disk_format is not None:
        headers["x-image-meta-disk_format"] = disk_format
    if container_format is not None:
        headers["x-image-meta-container_format"] = container_format
    for key, value in (props or {}).items():
        headers[f"x-image-meta-property-{key}"] = value
    for key, value in meta.items():
        headers[f"x-image-meta-{key}"] = str(value)
    if data is not None:
        headers["Content-Type"] = "application/octet-stream"
    r = client.post("/v1/images", headers=headers, content=data)
    assert r.status_code == 201, r.text
    image: dict[str, Any] = r.json()["image"]
    return image


def get_list(
    client: httpx.Client,
    ctx: dict[str, str],
    params: dict[str, Any] | None = None,
    *,
    detail: bool = True,
) -> list[dict[str, Any]]:
    path = "/v1/images/detail" if detail else "/v1/images"
    r = client.get(path, headers=ctx, params=params or {})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"images"}
    images: list[dict[str, Any]] = body["images"]
    return images


def ids_of(images: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in images]


def tagged_ids(
    client: httpx.Client, ctx: dict[str, str], tag: str, **params: Any
) -> set[str]:
    params["property-tag"] = tag
    return set(ids_of(get_list(client, ctx, params)))


def assert_400(r: httpx.Response, fragment: str | None = None) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    if fragment is not None:
        assert fragment in r.text, r.text


def parse_ts(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, TS_FORMAT)


def sort_value(image: dict[str, Any], key: str) -> Any:
    value = image[key]
    if key == "size":
        return value or 0
    return "" if value is None else value


def expected_order(images: list[dict[str, Any]], key: str, direction: str) -> list[str]:
    ordered = sorted(
        images,
        key=lambda i: (sort_value(i, key), i["created_at"], i["id"]),
        reverse=direction == "desc",
    )
    return ids_of(ordered)


def page_through(
    client: httpx.Client, ctx: dict[str, str], params: dict[str, Any], limit: int
) -> list[str]:
    seen: list[str] = []
    marker: str | None = None
    for _ in range(100):
        query = dict(params, limit=limit)
        if marker is not None:
            query["marker"] = marker
        page = ids_of(get_list(client, ctx, query))
        assert len(page) <= limit
        seen.extend(page)
        if len(page) < limit:
            return seen
        marker = page[-1]
    raise AssertionError("paging did not terminate")


# --------------------------------------------------------------------------- brief vs detail


def test_brief_and_detail_representations(client: httpx.Client, unique: str) -> None:
    ctx = tenant(f"t-{unique}")
    data = b"hello listing"
    active = create(client, ctx, unique, name="active-one", data=data, props={"color": "red"})
    time.sleep(0.005)
    queued = create(client, ctx, unique, name=None, disk_format="qcow2", container_format="ovf")

    brief = get_list(client, ctx, {"property-tag": unique}, detail=False)
    assert ids_of(brief) == [queued["id"], active["id"]]
    for entry in brief:
        assert set(entry) == BRIEF_KEYS
    b_queued, b_active = brief
    assert b_active == {
        "id": active["id"],
        "name": "active-one",
        "size": len(data),
        "disk_format": "raw",
        "container_format": "bare",
        "checksum": hashlib.md5(data).hexdigest(),
    }
    assert b_queued == {
        "id": queued["id"],
        "name": None,
        "size": 0,
        "disk_format": "qcow2",
        "container_format": "ovf",
        "checksum": None,
    }

    detail = get_list(client, ctx, {"property-tag": unique})
    assert ids_of(detail) == [queued["id"], active["id"]]
    for entry in detail:
        assert set(entry) == FULL_KEYS
    d_active = detail[1]
    assert d_active["status"] == "active"
    assert d_active["size"] == len(data)
    assert d_active["checksum"] == hashlib.md5(data).hexdigest()
    assert d_active["is_public"] is False
    assert d_active["protected"] is False
    assert d_active["deleted"] is False
    assert d_active["deleted_at"] is None
    assert d_active["min_ram"] == 0
    assert d_active["min_disk"] == 0
    assert d_active["owner"] == f"t-{unique}"
    assert d_active["properties"] == {"tag": unique, "color": "red"}
    assert d_active["created_at"] == active["created_at"]
    parse_ts(d_active["created_at"])
    parse_ts(d_active["updated_at"])
    assert detail[0]["status"] == "queued"
    assert detail[0]["name"] is None
    assert detail[0]["checksum"] is None


def test_v1_root_is_brief_list(client: httpx.Client, unique: str) -> None:
    ctx = tenant(f"t-{unique}")
    img = create(client, ctx, unique)
    r = client.get("/v1/", headers=ctx, params={"property-tag": unique})
    assert r.status_code == 200
    assert r.json() == {"images": [{k: img[k] for k in BRIEF_KEYS}]}


# --------------------------------------------------------------------------- filters


@pytest.fixture(scope="module")
def filter_set(server: GlimpseServer) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex
    ctx = tenant(f"f-{tag}")
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        i1 = create(
            c, ctx, tag, name="n1", data=b"abc", min_ram=512, min_disk=10,
            protected="True", props={"color": "red"},
        )
        i2 = create(
            c, ctx, tag, name="n2", disk_format="qcow2", container_format="ovf",
            data=b"0123456789", min_ram=1024, min_disk=20, props={"color": "blue"},
        )
        i3 = create(
            c, ctx, tag, name="n1", disk_format="vhd",
            props={"color": "red", "shape": "square"},
        )
        i4 = create(c, ctx, tag, name="n1-x", container_format="ova", size=0)
    assert [i["status"] for i in (i1, i2, i3, i4)] == ["active", "active", "queued", "active"]
    yield {"tag": tag, "ctx": ctx, "i1": i1["id"], "i2": i2["id"], "i3": i3["id"], "i4": i4["id"]}


FILTER_CASES: list[tuple[dict[str, str], set[str]]] = [
    ({}, {"i1", "i2", "i3", "i4"}),
    ({"name": "n1"}, {"i1", "i3"}),
    ({"name": "n"}, set()),
    ({"name": "n1-x"}, {"i4"}),
    ({"status": "queued"}, {"i3"}),
    ({"status": "active"}, {"i1", "i2", "i4"}),
    ({"status": "killed"}, set()),
    ({"disk_format": "raw"}, {"i1", "i4"}),
    ({"disk_format": "qcow2"}, {"i2"}),
    ({"disk_format": "vhd"}, {"i3"}),
    ({"container_format": "bare"}, {"i1", "i3"}),
    ({"container_format": "ova"}, {"i4"}),
    ({"size_min": "3"}, {"i1", "i2"}),
    ({"size_min": "4"}, {"i2"}),
    ({"size_min": "0"}, {"i1", "i2", "i3", "i4"}),
    ({"size_min": "11"}, set()),
    ({"size_max": "3"}, {"i1", "i3", "i4"}),
    ({"size_max": "2"}, {"i3", "i4"}),
    ({"size_max": "0"}, {"i3", "i4"}),
    ({"size_min": "3", "size_max": "3"}, {"i1"}),
    ({"size_min": "1", "size_max": "10"}, {"i1", "i2"}),
    ({"min_ram": "512"}, {"i1"}),
    ({"min_ram": "1024"}, {"i2"}),
    ({"min_ram": "0"}, {"i3", "i4"}),
    ({"min_ram": "600"}, set()),
    ({"min_disk": "10"}, {"i1"}),
    ({"min_disk": "20"}, {"i2"}),
    ({"min_disk": "0"}, {"i3", "i4"}),
    ({"min_disk": "15"}, set()),
    ({"protected": "true"}, {"i1"}),
    ({"protected": "TRUE"}, {"i1"}),
    ({"protected": "1"}, {"i1"}),
    ({"protected": "false"}, {"i2", "i3", "i4"}),
    ({"protected": "False"}, {"i2", "i3", "i4"}),
    ({"protected": "0"}, {"i2", "i3", "i4"}),
    ({"property-color": "red"}, {"i1", "i3"}),
    ({"property-color": "blue"}, {"i2"}),
    ({"property-color": "green"}, set()),
    ({"property-color": "red", "property-shape": "square"}, {"i3"}),
    ({"property-color": "blue", "property-shape": "square"}, set()),
    ({"property-shape": "square"}, {"i3"}),
    ({"property-nosuchkey": "x"}, set()),
    ({"name": "n1", "disk_format": "raw"}, {"i1"}),
    ({"name": "n1", "status": "active", "container_format": "bare"}, {"i1"}),
    ({"name": "n1", "status": "queued", "property-color": "red", "size_max": "0"}, {"i3"}),
    ({"disk_format": "raw", "min_ram": "512", "protected": "false"}, set()),
    ({"name": "n1", "foo": "bar", "sort": "whatever", "page": "2"}, {"i1", "i3"}),
]


@pytest.mark.parametrize(("params", "expected"), FILTER_CASES, ids=lambda x: str(x))
def test_filters(
    client: httpx.Client, filter_set: dict[str, Any], params: dict[str, str], expected: set[str]
) -> None:
    query = dict(params, **{"property-tag": filter_set["tag"]})
    want = {filter_set[k] for k in expected}
    assert set(ids_of(get_list(client, filter_set["ctx"], query))) == want
    assert set(ids_of(get_list(client, filter_set["ctx"], query, detail=False))) == want


def test_filter_results_keep_sort_order(client: httpx.Client, filter_set: dict[str, Any]) -> None:
    got = ids_of(get_list(client, filter_set["ctx"], {
        "property-tag": filter_set["tag"], "name": "n1", "sort_key": "created_at",
        "sort_dir": "asc",
    }))
    assert got == [filter_set["i1"], filter_set["i3"]]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("size_min", "-1"),
        ("size_min", "abc"),
        ("size_min", "1.5"),
        ("size_min", ""),
        ("size_max", "-1"),
        ("size_max", "big"),
        ("min_ram", "-1"),
        ("min_ram", "lots"),
        ("protected", "yes"),
        ("protected", "maybe"),
        ("protected", ""),
        ("is_public", "maybe"),
        ("is_public", ""),
    ],
)
def test_bad_filter_values(
    client: httpx.Client, filter_set: dict[str, Any], param: str, value: str
) -> None:
    for path in ("/v1/images", "/v1/images/detail"):
        r = client.get(path, headers=filter_set["ctx"], params={param: value})
        assert_400(r, "Bad value passed to filter")


def test_bad_filter_message_names_filter_and_value(client: httpx.Client) -> None:
    r = client.get("/v1/images/detail", params={"size_min": "-1"})
    assert_400(r, "Bad value passed to filter size_min got -1")


@pytest.mark.parametrize("value", ["true", "false", "1", "0", "none", "NONE", "True"])
def test_is_public_accepted_values(client: httpx.Client, value: str) -> None:
    r = client.get("/v1/images", params={"is_public": value, "limit": "1"})
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- changes-since
# Deleting an image removes its properties (§8.5), so deleted images cannot be found with a
# property filter: these tests list with changes-since and keep only this set's images.


def _fmt(ts: dt.datetime) -> str:
    return ts.strftime(TS_FORMAT)


@pytest.fixture(scope="module")
def changes_set(server: GlimpseServer) -> Iterator[dict[str, Any]]:
    """Images a (active), b (queued), k (killed), d (deleted), created in that order."""
    tag = uuid.uuid4().hex
    owner = f"c-{tag}"
    ctx = tenant(owner, roles="admin")
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        a = create(c, ctx, tag, name=f"a-{tag}", data=b"aaaa")
        time.sleep(0.01)
        b = create(c, ctx, tag, name=f"b-{tag}")
        time.sleep(0.01)
        k = create(c, ctx, tag, name=f"k-{tag}")
        r = c.put(
            f"/v1/images/{k['id']}",
            headers={
                **ctx, **NO_PURGE, "Content-Type": "application/octet-stream",
                "x-image-meta-checksum": "0" * 32,
            },
            content=b"some data",
        )
        assert r.status_code == 400, r.text
        r = c.head(f"/v1/images/{k['id']}", headers=ctx)
        assert r.headers["x-image-meta-status"] == "killed"
        time.sleep(0.01)
        d = create(c, ctx, tag, name=f"d-{tag}")
        r = c.delete(f"/v1/images/{d['id']}", headers=ctx)
        assert r.status_code == 200, r.text
    ours = {x["id"]: key for key, x in (("a", a), ("b", b), ("k", k), ("d", d))}
    yield {"tag": tag, "ctx": ctx, "owner": owner, "a": a, "b": b, "k": k, "d": d, "ours": ours}


def since(
    client: httpx.Client, s: dict[str, Any], value: str, headers: dict[str, str] | None = None,
    *, detail: bool = True, **params: Any,
) -> dict[str, dict[str, Any]]:
    """Images of the changes set listed with ``changes-since=value``, keyed a/b/k/d."""
    query = dict(params, limit=1000)
    query["changes-since"] = value
    got = get_list(client, s["ctx"] if headers is None else headers, query, detail=detail)
    return {s["ours"][i["id"]]: i for i in got if i["id"] in s["ours"]}


def test_killed_and_deleted_excluded_without_changes_since(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    want = {s["a"]["id"], s["b"]["id"]}
    assert tagged_ids(client, s["ctx"], s["tag"]) == want
    assert tagged_ids(client, {}, s["tag"], is_public="none") == want
    assert tagged_ids(client, {}, s["tag"], is_public="false") == want
    for status in ("killed", "deleted"):
        assert tagged_ids(client, {}, s["tag"], is_public="none", status=status) == set()
    # Non-admin owner: same.
    member_ctx = tenant(s["owner"])
    assert tagged_ids(client, member_ctx, s["tag"]) == want
    # The deleted image has lost its properties; look for it by name.
    for headers, params in ((s["ctx"], {}), ({}, {"is_public": "none"}), (member_ctx, {})):
        by_name = get_list(client, headers, dict(params, name=f"d-{s['tag']}"))
        assert by_name == []
        by_status = get_list(client, headers, dict(params, status="deleted", limit=1000))
        assert s["d"]["id"] not in ids_of(by_status)


def test_changes_since_after_first_image(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    value = s["a"]["updated_at"]
    r = client.get(
        "/v1/images/detail", headers=s["ctx"], params={"changes-since": value, "limit": 1000}
    )
    assert r.status_code == 200
    for image in r.json()["images"]:
        assert parse_ts(image["updated_at"]) > parse_ts(value), image
    got = since(client, s, value)
    assert set(got) == {"b", "k", "d"}
    deleted = got["d"]
    assert deleted["deleted"] is True
    assert deleted["status"] == "deleted"
    assert deleted["deleted_at"] is not None
    assert got["k"]["status"] == "killed"
    assert got["k"]["deleted"] is False
    assert got["b"]["status"] == "queued"
    assert got["b"]["deleted"] is False


def test_changes_since_is_strictly_after(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    a_updated = parse_ts(s["a"]["updated_at"])
    just_before = _fmt(a_updated - dt.timedelta(microseconds=1))
    assert set(since(client, s, just_before)) == {"a", "b", "k", "d"}
    got = set(since(client, s, s["b"]["updated_at"]))
    assert "a" not in got
    assert "b" not in got
    assert "d" in got


def test_changes_since_brief_list_includes_deleted(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    got = since(client, s, s["a"]["updated_at"], detail=False)
    assert set(got) == {"b", "k", "d"}
    assert set(got["d"]) == BRIEF_KEYS


def test_changes_since_with_property_filter(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    got = since(client, s, "2019-01-02", **{"property-tag": s["tag"]})
    assert set(got) == {"a", "b", "k"}


def test_changes_since_timezone_offsets(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    t = parse_ts(s["a"]["updated_at"])
    forms = [
        _fmt(t),
        _fmt(t) + "Z",
        _fmt(t + dt.timedelta(hours=1)) + "+01:00",
        _fmt(t - dt.timedelta(hours=1)) + "-01:00",
        _fmt(t + dt.timedelta(hours=5, minutes=30)) + "+05:30",
        _fmt(t) + "+00:00",
    ]
    for form in forms:
        assert set(since(client, s, form)) == {"b", "k", "d"}, form


def test_changes_since_offset_moves_the_instant(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    t = parse_ts(s["a"]["updated_at"])
    # The same wall-clock time with +01:00 is one hour earlier in UTC: everything matches.
    assert set(since(client, s, _fmt(t) + "+01:00")) == {"a", "b", "k", "d"}
    # With -01:00 it is one hour later in UTC: nothing matches.
    assert since(client, s, _fmt(t) + "-01:00") == {}


def test_changes_since_encoded_in_raw_query(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    t = parse_ts(s["a"]["updated_at"]) + dt.timedelta(hours=1)
    query = f"limit=1000&changes-since={_fmt(t)}%2B01:00"
    r = client.get(f"/v1/images/detail?{query}", headers=s["ctx"])
    assert r.status_code == 200, r.text
    got = {s["ours"][i["id"]] for i in r.json()["images"] if i["id"] in s["ours"]}
    assert got == {"b", "k", "d"}


@pytest.mark.parametrize(
    "value", ["2019-01-02", "20190102", "2019-0102", "2019-01-02T00:00:00"]
)
def test_changes_since_past_date_forms(
    client: httpx.Client, changes_set: dict[str, Any], value: str
) -> None:
    assert set(since(client, changes_set, value)) == {"a", "b", "k", "d"}


@pytest.mark.parametrize("value", ["2999-01-02", "29990102", "2999-0102"])
def test_changes_since_future_date_forms(
    client: httpx.Client, changes_set: dict[str, Any], value: str
) -> None:
    s = changes_set
    r = client.get("/v1/images/detail", headers=s["ctx"], params={"changes-since": value})
    assert r.status_code == 200
    assert r.json() == {"images": []}


def test_changes_since_with_other_filters(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    assert set(since(client, s, "2019-01-02", name=f"d-{s['tag']}")) == {"d"}
    assert set(since(client, s, "2019-01-02", status="killed")) == {"k"}
    assert set(since(client, s, "2019-01-02", status="deleted")) == {"d"}
    assert set(since(client, s, "2019-01-02", status="queued")) == {"b"}


def test_changes_since_owner_non_admin_sees_killed(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    got = since(client, s, "2019-01-02", tenant(s["owner"]))
    assert {"a", "b", "k"} <= set(got)


def test_changes_since_respects_visibility(
    client: httpx.Client, changes_set: dict[str, Any]
) -> None:
    s = changes_set
    stranger = tenant(f"stranger-{s['tag']}")
    assert since(client, s, "2019-01-02", stranger) == {}
    # The anonymous admin's plain list shows only public images; is_public=none shows all.
    assert since(client, s, "2019-01-02", {}) == {}
    assert set(since(client, s, "2019-01-02", {}, is_public="none")) == {"a", "b", "k", "d"}


@pytest.mark.parametrize("value", ["", "garbage", "yesterday", "2019-01-02Tnonsense"])
def test_changes_since_invalid(client: httpx.Client, value: str) -> None:
    for path in ("/v1/images", "/v1/images/detail"):
        r = client.get(path, params={"changes-since": value})
        assert_400(r, "Unrecognized changes-since value")


# --------------------------------------------------------------------------- sorting


@pytest.fixture(scope="module")
def sort_set(server: GlimpseServer) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex
    ctx = tenant(f"s-{tag}")
    specs: list[dict[str, Any]] = [
        {"name": "b", "data": b"12345"},
        {"name": "a", "disk_format": "qcow2", "container_format": "ovf"},
        {"name": "b", "disk_format": "vhd", "container_format": "ovf", "data": b"1"},
        {"name": None, "container_format": "ova"},
        {"name": "c", "disk_format": "iso", "size": 0},
        {"name": "a", "container_format": "docker", "data": b"0123456789"},
        {"name": "d", "disk_format": None, "container_format": None},
        {"name": "b", "disk_format": "vhd", "container_format": "ovf", "data": b"1"},
    ]
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        created = []
        for spec in specs:
            created.append(create(c, ctx, tag, **spec))
            time.sleep(0.002)
        # Make updated_at order differ from created_at order.
        r = c.put(
            f"/v1/images/{created[1]['id']}",
            headers={**ctx, **NO_PURGE, "x-image-meta-min_ram": "1"},
        )
        assert r.status_code == 200, r.text
        images = get_list(c, ctx, {"property-tag": tag})
    assert len(images) == len(specs)
    yield {"tag": tag, "ctx": ctx, "images": images}


def test_default_sort_is_created_at_desc(client: httpx.Client, sort_set: dict[str, Any]) -> None:
    s = sort_set
    want = expected_order(s["images"], "created_at", "desc")
    assert ids_of(get_list(client, s["ctx"], {"property-tag": s["tag"]})) == want
    brief = get_list(client, s["ctx"], {"property-tag": s["tag"]}, detail=False)
    assert ids_of(brief) == want
    only_dir = get_list(client, s["ctx"], {"property-tag": s["tag"], "sort_dir": "desc"})
    assert ids_of(only_dir) == want
    only_key = get_list(client, s["ctx"], {"property-tag": s["tag"], "sort_key": "created_at"})
    assert ids_of(only_key) == want


def test_sort_dir_asc_alone_uses_created_at(
    client: httpx.Client, sort_set: dict[str, Any]
) -> None:
    s = sort_set
    want = expected_order(s["images"], "created_at", "asc")
    got = get_list(client, s["ctx"], {"property-tag": s["tag"], "sort_dir": "asc"})
    assert ids_of(got) == want


def test_sort_key_alone_defaults_to_desc(client: httpx.Client, sort_set: dict[str, Any]) -> None:
    s = sort_set
    want = expected_order(s["images"], "name", "desc")
    got = get_list(client, s["ctx"], {"property-tag": s["tag"], "sort_key": "name"})
    assert ids_of(got) == want


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("key", SORT_KEYS)
def test_sort_every_key(
    client: httpx.Client, sort_set: dict[str, Any], key: str, direction: str
) -> None:
    s = sort_set
    want = expected_order(s["images"], key, direction)
    params = {"property-tag": s["tag"], "sort_key": key, "sort_dir": direction}
    assert ids_of(get_list(client, s["ctx"], params)) == want
    assert ids_of(get_list(client, s["ctx"], params, detail=False)) == want


def test_sort_orders_are_meaningful(sort_set: dict[str, Any]) -> None:
    """Sanity check of the data set: the keys really induce different orders."""
    s = sort_set
    orders = {key: tuple(expected_order(s["images"], key, "asc")) for key in SORT_KEYS}
    assert orders["created_at"] != orders["updated_at"]
    assert orders["name"] != orders["created_at"]
    assert orders["size"] != orders["created_at"]
    assert orders["disk_format"] != orders["container_format"]


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("key", SORT_KEYS)
@pytest.mark.parametrize("limit", [2, 3])
def test_paging_every_key(
    client: httpx.Client, sort_set: dict[str, Any], key: str, direction: str, limit: int
) -> None:
    s = sort_set
    want = expected_order(s["images"], key, direction)
    params = {"property-tag": s["tag"], "sort_key": key, "sort_dir": direction}
    got = page_through(client, s["ctx"], params, limit)
    assert got == want


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("key", SORT_KEYS)
def test_marker_strictly_after(
    client: httpx.Client, sort_set: dict[str, Any], key: str, direction: str
) -> None:
    s = sort_set
    want = expected_order(s["images"], key, direction)
    params = {"property-tag": s["tag"], "sort_key": key, "sort_dir": direction}
    for pos, marker in enumerate(want):
        got = ids_of(get_list(client, s["ctx"], dict(params, marker=marker)))
        assert got == want[pos + 1:], (key, direction, pos)


def test_marker_with_limit(client: httpx.Client, sort_set: dict[str, Any]) -> None:
    s = sort_set
    want = expected_order(s["images"], "created_at", "desc")
    got = get_list(client, s["ctx"], {"property-tag": s["tag"], "marker": want[2], "limit": 2})
    assert ids_of(got) == want[3:5]
    brief = get_list(
        client, s["ctx"], {"property-tag": s["tag"], "marker": want[2], "limit": 2},
        detail=False,
    )
    assert ids_of(brief) == want[3:5]
    last = get_list(client, s["ctx"], {"property-tag": s["tag"], "marker": want[-1]})
    assert last == []


def test_limit_values(client: httpx.Client, sort_set: dict[str, Any]) -> None:
    s = sort_set
    want = expected_order(s["images"], "created_at", "desc")
    for limit in (1, 2, 5, len(want), 100, 5000):
        got = get_list(client, s["ctx"], {"property-tag": s["tag"], "limit": limit})
        assert ids_of(got) == want[:limit]
    assert get_list(client, s["ctx"], {"property-tag": s["tag"], "limit": 0}) == []
    assert get_list(client, s["ctx"], {"property-tag": s["tag"], "limit": 0}, detail=False) == []


@pytest.mark.parametrize("value", ["bogus", "checksum", "min_ram", "owner", "is_public", ""])
def test_bad_sort_key(client: httpx.Client, value: str) -> None:
    r = client.get("/v1/images/detail", params={"sort_key": value})
    assert_400(r, "Unsupported sort_key")
    r = client.get("/v1/images", params={"sort_key": value})
    assert_400(r, "Unsupported sort_key")


@pytest.mark.parametrize("value", ["up", "ASCENDING", "", "descending"])
def test_bad_sort_dir(client: httpx.Client, value: str) -> None:
    r = client.get("/v1/images/detail", params={"sort_dir": value})
    assert_400(r, "Unsupported sort_dir")
    r = client.get("/v1/images", params={"sort_dir": value})
    assert_400(r, "Unsupported sort_dir")


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "", "-100"])
def test_bad_limit(client: httpx.Client, value: str) -> None:
    for path in ("/v1/images", "/v1/images/detail"):
        assert_400(client.get(path, params={"limit": value}))


@pytest.mark.parametrize("value", ["not-a-uuid", "12345", "x" * 36])
def test_marker_bad_format(client: httpx.Client, value: str) -> None:
    for path in ("/v1/images", "/v1/images/detail"):
        assert_400(client.get(path, params={"marker": value}), "Invalid marker format")


def test_marker_unknown_image(client: httpx.Client) -> None:
    for path in ("/v1/images", "/v1/images/detail"):
        assert_400(client.get(path, params={"marker": str(uuid.uuid4())}), "Invalid marker")


def test_marker_invisible_image(client: httpx.Client, unique: str) -> None:
    owner = tenant(f"o-{unique}")
    other = tenant(f"x-{unique}")
    private = create(client, owner, unique)
    r = client.get("/v1/images/detail", headers=other, params={"marker": private["id"]})
    assert_400(r, "Invalid marker")
    r = client.get("/v1/images", headers=other, params={"marker": private["id"]})
    assert_400(r, "Invalid marker")
    # The owner may use it.
    r = client.get("/v1/images/detail", headers=owner, params={"marker": private["id"]})
    assert r.status_code == 200, r.text


def test_marker_of_deleted_image_rejected_for_non_admin(
    client: httpx.Client, unique: str
) -> None:
    owner = tenant(f"o-{unique}")
    img = create(client, owner, unique)
    assert client.delete(f"/v1/images/{img['id']}", headers=owner).status_code == 200
    r = client.get("/v1/images/detail", headers=owner, params={"marker": img["id"]})
    assert_400(r, "Invalid marker")


def test_default_limit_is_25(client: httpx.Client, unique: str) -> None:
    ctx = tenant(f"l-{unique}")
    created = [create(client, ctx, unique, name=f"img{n:02d}") for n in range(26)]
    got = get_list(client, ctx, {"property-tag": unique})
    assert len(got) == 25
    assert len(get_list(client, ctx, {"property-tag": unique}, detail=False)) == 25
    assert len(get_list(client, ctx, {"property-tag": unique, "limit": 26})) == 26
    all_ids = {i["id"] for i in created}
    assert set(ids_of(get_list(client, ctx, {"property-tag": unique, "limit": 30}))) == all_ids
    assert page_through(client, ctx, {"property-tag": unique}, 25) == ids_of(
        get_list(client, ctx, {"property-tag": unique, "limit": 26})
    )


# --------------------------------------------------------------------------- small limits


@pytest.fixture(scope="module")
def small_limits() -> Iterator[tuple[GlimpseServer, dict[str, Any]]]:
    srv = GlimpseServer({"limit_param_default": "3", "api_limit_max": "5"})
    try:
        tag = uuid.uuid4().hex
        ctx = tenant(f"sl-{tag}")
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            for n in range(7):
                create(c, ctx, tag, name=f"s{n}")
                time.sleep(0.002)
            # Ask for everything via pages that fit under api_limit_max.
            images = page_through(c, ctx, {"property-tag": tag}, 5)
        assert len(images) == 7
        yield srv, {"tag": tag, "ctx": ctx, "ids": images}
    finally:
        srv.stop()


def test_limit_param_default_applies(small_limits: tuple[GlimpseServer, dict[str, Any]]) -> None:
    srv, s = small_limits
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        assert ids_of(get_list(c, s["ctx"], {"property-tag": s["tag"]})) == s["ids"][:3]
        brief = get_list(c, s["ctx"], {"property-tag": s["tag"]}, detail=False)
        assert ids_of(brief) == s["ids"][:3]
        # Paging with the default page size.
        page2 = get_list(c, s["ctx"], {"property-tag": s["tag"], "marker": s["ids"][2]})
        assert ids_of(page2) == s["ids"][3:6]


def test_limit_clamped_to_api_limit_max(
    small_limits: tuple[GlimpseServer, dict[str, Any]],
) -> None:
    srv, s = small_limits
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        for limit in (5, 6, 10, 1000, 100000):
            got = get_list(c, s["ctx"], {"property-tag": s["tag"], "limit": limit})
            assert ids_of(got) == s["ids"][:5], limit
            got = get_list(c, s["ctx"], {"property-tag": s["tag"], "limit": limit}, detail=False)
            assert ids_of(got) == s["ids"][:5], limit
        for limit in (1, 4):
            got = get_list(c, s["ctx"], {"property-tag": s["tag"], "limit": limit})
            assert ids_of(got) == s["ids"][:limit]
        assert get_list(c, s["ctx"], {"property-tag": s["tag"], "limit": 0}) == []
        assert_400(c.get("/v1/images", params={"limit": "-1"}))


def test_paging_with_clamped_limit_visits_everything(
    small_limits: tuple[GlimpseServer, dict[str, Any]],
) -> None:
    srv, s = small_limits
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        assert page_through(c, s["ctx"], {"property-tag": s["tag"]}, 3) == s["ids"]
        assert page_through(c, s["ctx"], {"property-tag": s["tag"]}, 2) == s["ids"]
        asc = page_through(c, s["ctx"], {"property-tag": s["tag"], "sort_dir": "asc"}, 3)
        assert asc == list(reversed(s["ids"]))

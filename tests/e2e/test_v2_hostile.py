"""Hostile input to v2 (issue 13, "Hostile input"; spec §2.2, §2.6, §2.11, §7): deep and huge
JSON, numbers and arrays where they do not belong, duplicate keys, non-UTF-8 and NUL bytes in
paths, queries and bodies, over-long ids and tags, bad and upper-cased UUIDs, abused size
headers. Each is answered 4xx within bounded time, never 500, never with a traceback, and the
server's log holds no traceback for any of them. A dedicated server: a crash here cannot take
other modules down.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.identity import ctx
from tests.e2e.server import GlimpseServer
from tests.e2e.store_objects import stored
from tests.e2e.test_hostile_input import RawResponse, assert_clean_4xx, build, chunk, exchange

# Every answer is timed against BOUND: the module runs in the serial pass, beside no other test.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

OWNER = ctx("hostile-v2")
JSON = {"Content-Type": "application/json"}
OCTETS = {"Content-Type": "application/octet-stream"}
# Every refusal must come well within this (seconds): no input may make the server grind.
BOUND = 5.0
# The server's peak resident memory after the whole module, MiB (it idles near 100 MiB; the
# bodies sent are at most a few MiB, and a request may buffer at most 1 MiB of JSON).
MEMORY_BOUND_MIB = 400


@pytest.fixture(scope="module")
def hs() -> Iterator[GlimpseServer]:
    srv = GlimpseServer()
    yield srv
    log = srv.log()
    srv.stop()
    # After the whole module: no request of it made the server log a traceback.
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def hc(hs: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hs.url, timeout=30.0) as c:
        yield c


@pytest.fixture(autouse=True)
def _still_serving(hs: GlimpseServer, hc: httpx.Client) -> Iterator[None]:
    yield
    assert hs.process.poll() is None, "server process died"
    assert hc.get("/versions").status_code == 200


def timed_4xx(send: object, *allowed: int) -> httpx.Response | RawResponse:
    """The answer to ``send()``, checked: 4xx (one of ``allowed`` if given), no traceback,
    within BOUND seconds."""
    start = time.monotonic()
    resp = send()  # type: ignore[operator]
    elapsed = time.monotonic() - start
    assert_clean_4xx(resp, allowed or None)
    assert elapsed < BOUND, f"took {elapsed:.1f} s"
    assert isinstance(resp, httpx.Response | RawResponse)
    return resp


def post_raw(hc: httpx.Client, body: bytes, *allowed: int) -> httpx.Response | RawResponse:
    return timed_4xx(lambda: hc.post("/v2/images", content=body, headers={**OWNER, **JSON}),
                     *allowed)


def create(hc: httpx.Client, **body: object) -> str:
    resp = hc.post("/v2/images", json=body, headers=OWNER)
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    return image_id


def owned_ids(hc: httpx.Client, name: str) -> list[str]:
    """Ids of the caller's images named ``name`` (the whole list, by pages)."""
    found: list[str] = []
    url: str | None = "/v2/images?limit=1000"
    while url:
        doc = hc.get(url, headers=OWNER).json()
        found += [i["id"] for i in doc["images"] if i["name"] == name]
        url = doc.get("next")
    return found


# --- JSON shape -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b'{"name": "x", "p": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b"[" * 100_000 + b"]" * 100_000,
], ids=["open-arrays", "open-objects", "deep-value", "closed-arrays"])
def test_deeply_nested_json_is_400(hc: httpx.Client, body: bytes) -> None:
    post_raw(hc, body, 400)


@pytest.mark.parametrize("size", [(1 << 20) + 1, 8 << 20])
def test_json_over_1_mib_is_refused(hc: httpx.Client, size: int) -> None:
    filler = "x" * (size - 20)
    body = json.dumps({"name": "big", "note": filler}).encode()
    post_raw(hc, body, 400, 413)


def test_a_huge_declared_json_length_is_refused_before_the_body(hs: GlimpseServer) -> None:
    """The server must not wait for (or buffer) a terabyte it was told is coming."""
    data = build("POST", "/v2/images", hs.port, [*OWNER.items(), *JSON.items(),
                                                  ("Content-Length", str(1 << 40))], b"{")
    timed_4xx(lambda: exchange(hs.port, data), 400, 413)


def test_many_keys_within_the_size_limit(hc: httpx.Client) -> None:
    body = json.dumps({f"k{i}": "v" for i in range(60_000)}).encode()
    assert len(body) < 1 << 20
    post_raw(hc, body, 400, 413)


@pytest.mark.parametrize("body", [
    b'{"min_ram": 1' + b"0" * 5000 + b"}",
    b'{"min_ram": 1e400}',
    b'{"min_ram": -1e400}',
    b'{"min_ram": 1e10}',
    b'{"min_ram": 99999999999999999999999}',
    b'{"min_disk": -1}',
    b'{"min_disk": 1.5}',
    b'{"min_ram": NaN}',
    b'{"min_ram": Infinity}',
    b'{"name": NaN}',
    b'{"hw_x": -Infinity}',
], ids=["5000-digits", "1e400", "-1e400", "1e10", "23-digits", "negative", "fraction", "NaN",
        "Infinity", "NaN-name", "-Infinity-property"])
def test_huge_and_odd_numbers_are_400(hc: httpx.Client, body: bytes) -> None:
    post_raw(hc, body, 400)


@pytest.mark.parametrize("document", [
    {"name": 5}, {"name": ["a"]}, {"name": {"a": "b"}}, {"hw_disk_bus": 5},
    {"hw_disk_bus": True}, {"hw_disk_bus": None}, {"hw_disk_bus": ["scsi"]},
    {"hw_disk_bus": {"a": "b"}}, {"disk_format": 5}, {"container_format": ["bare"]},
    {"visibility": 1}, {"visibility": ["public"]}, {"protected": "true"}, {"protected": 1},
    {"os_hidden": "false"}, {"min_ram": "512"}, {"min_disk": True}, {"tags": "abc"},
    {"tags": [1]}, {"tags": [["a"]]}, {"tags": {"a": "b"}}, {"tags": [None]}, {"id": 5},
    {"id": ["6b3ecfca-d445-4946-a8d1-c4938352b251"]}, {"owner": 5}, {"owner": ["x"]},
])
def test_wrong_types_are_400(hc: httpx.Client, document: dict[str, object]) -> None:
    timed_4xx(lambda: hc.post("/v2/images", json=document, headers=OWNER), 400)


@pytest.mark.parametrize("body", [
    b"[]", b'[{"name": "x"}]', b"null", b"true", b"5", b'"name"', b"", b"   ",
])
def test_a_body_that_is_not_an_object_is_400(hc: httpx.Client, body: bytes) -> None:
    post_raw(hc, body, 400)


@pytest.mark.parametrize("body", [
    b'{"name": "a", "name": "b"}',
    b'{"hw_x": "1", "hw_x": "1"}',
    b'{"name": "a", "tags": [], "tags": ["x"]}',
    b'{"name": "a", "nested": {"k": "1", "k": "2"}}',
])
def test_duplicate_keys_are_400(hc: httpx.Client, body: bytes) -> None:
    resp = post_raw(hc, body, 400)
    assert b"uplicate" in (resp.body if isinstance(resp, RawResponse) else resp.content)


# --- bytes that are not text ------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"name": "\xff\xfe"}',
    b'{"\xc3\x28": "x"}',
    b'{"name": "\xed\xa0\x80"}',  # an encoded surrogate: not UTF-8
    b'\xef\xbb\xbf{"name": "bom"}',
    '{"name": "latin"}'.encode("utf-16"),
    b'{"name": "\\ud800"}',  # a lone surrogate, escaped: no UTF-8 form exists
    b'{"hw_\\udfff": "x"}',
    b'{"tags": ["\\udbff"]}',
], ids=["ff-fe", "bad-continuation", "encoded-surrogate", "bom", "utf-16", "lone-surrogate",
        "surrogate-key", "surrogate-tag"])
def test_bodies_that_are_not_utf8_text_are_400(hc: httpx.Client, body: bytes) -> None:
    post_raw(hc, body, 400)


@pytest.mark.parametrize("document", [
    {"name": "a\x00b"}, {"hw_\x00": "x"}, {"hw_x": "\x00"}, {"tags": ["a\x00"]},
    {"disk_format": "raw\x00"}, {"id": "6b3ecfca-d445-4946-a8d1-c4938352b251\x00"},
])
def test_nul_characters_in_bodies_are_400(hc: httpx.Client, document: dict[str, object]) -> None:
    timed_4xx(lambda: hc.post("/v2/images", json=document, headers=OWNER), 400)


@pytest.mark.parametrize("path", [
    "/v2/images/%FF%FE", "/v2/images/%C3%28", "/v2/images/%ED%A0%80/file",
    "/v2/images/abc/tags/%FF", "/v2/%FF",
])
def test_non_utf8_percent_escapes_in_paths_are_4xx(hs: GlimpseServer, path: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        data = build(method, path, hs.port, [*OWNER.items(), ("Content-Length", "0")])
        timed_4xx(lambda data=data: exchange(hs.port, data), 400, 404, 405)


@pytest.mark.parametrize("raw", [b"/v2/images/\xff", b"/v2/images?name=\xff", b"/v2/\x80\x81"])
def test_raw_non_ascii_bytes_in_the_request_line_are_4xx(hs: GlimpseServer, raw: bytes) -> None:
    data = (b"GET " + raw + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Roles: member\r\n"
            b"X-Tenant-Id: hostile-v2\r\n\r\n")
    timed_4xx(lambda: exchange(hs.port, data), 400, 404)


@pytest.mark.parametrize("query", [
    "name=%FF", "%FF=x", "limit=%FF", "marker=%C3%28", "name=a%00b", "a%00=b", "tag=%ED%A0%80",
])
def test_bad_bytes_in_query_strings_are_400(hc: httpx.Client, query: str) -> None:
    timed_4xx(lambda: hc.get(f"/v2/images?{query}", headers=OWNER), 400)


def test_huge_list_parameters_are_clamped_or_400(hc: httpx.Client) -> None:
    resp = hc.get("/v2/images", params={"limit": "9" * 5000}, headers=OWNER)
    assert resp.status_code == 200, resp.text[:300]
    for params in ({"limit": "-" + "9" * 5000}, {"limit": "1e400"}, {"marker": "a" * 10_000},
                   {"marker": "6B3ECFCA-D445-4946-A8D1-C4938352B251"}):
        timed_4xx(lambda params=params: hc.get("/v2/images", params=params, headers=OWNER), 400)


@pytest.mark.parametrize("path", [
    "/v2/images/%00", "/v2/images/6b3ecfca-d445-4946-a8d1-c4938352b25%00",
    "/v2/images/%00/file", "/v2/images/%00/tags/x",
])
def test_nul_in_an_id_path_is_4xx(hs: GlimpseServer, path: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        data = build(method, path, hs.port, [*OWNER.items(), ("Content-Length", "0")])
        timed_4xx(lambda data=data: exchange(hs.port, data), 400, 404, 405)


def test_nul_in_a_tag_is_refused_and_nothing_is_tagged(hc: httpx.Client) -> None:
    image_id = create(hc, name="nul-tag")
    for tag in ("%00", "a%00b", "x%00"):
        # No route matches a path holding a NUL (the core's rule for every API): 404.
        timed_4xx(lambda tag=tag: hc.put(f"/v2/images/{image_id}/tags/{tag}", headers=OWNER),
                  400, 404)
    assert hc.get(f"/v2/images/{image_id}", headers=OWNER).json()["tags"] == []


# --- ids and tags -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    "not-a-uuid", "", "6b3ecfca-d445-4946-a8d1-c4938352b2510", "6b3ecfca-d445-4946-a8d1",
    "6b3ecfca-d445-4946-a8d1-c4938352b25g", "x" * 10_000, "../../etc/passwd",
    "6b3ecfcad4454946a8d1c4938352b251",  # no hyphens: v2's pattern wants them
    "{6b3ecfca-d445-4946-a8d1-c4938352b251}", "urn:uuid:6b3ecfca-d445-4946-a8d1-c4938352b251",
    " 6b3ecfca-d445-4946-a8d1-c4938352b251", "6b3ecfca-d445-4946-a8d1-c4938352b251\n",
])
def test_bad_uuids_on_create_are_400(hc: httpx.Client, bad: str) -> None:
    timed_4xx(lambda: hc.post("/v2/images", json={"id": bad, "name": "bad-id"},
                              headers=OWNER), 400)


@pytest.mark.parametrize("bad", [
    "not-a-uuid", "6b3ecfca-d445-4946-a8d1-c4938352b2510", "a" * 1000, "a" * 20_000,
    "..%2F..%2Fversions", "'%20OR%201=1--", "%2A", "6b3ecfca-d445-4946-a8d1-c4938352b25g",
])
def test_bad_uuids_in_paths_are_404(hc: httpx.Client, bad: str) -> None:
    for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/file"), ("PUT", "/file"),
                           ("PUT", "/tags/x"), ("DELETE", "/tags/x")]:
        headers = {**OWNER, **OCTETS} if suffix == "/file" and method == "PUT" else OWNER
        timed_4xx(lambda method=method, suffix=suffix, headers=headers: hc.request(
            method, f"/v2/images/{bad}{suffix}", headers=headers), 404)


def test_an_upper_case_copy_of_an_id_is_never_a_second_image(hc: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    name = f"case-{image_id}"
    assert create(hc, id=image_id, name=name) == image_id
    for copy in (image_id.upper(), image_id[:8].upper() + image_id[8:]):
        resp = timed_4xx(lambda copy=copy: hc.post(
            "/v2/images", json={"id": copy, "name": name}, headers=OWNER), 409)
        assert isinstance(resp, httpx.Response)
    assert owned_ids(hc, name) == [image_id]


def test_an_upper_case_new_id_is_stored_in_its_canonical_form(hc: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    assert create(hc, id=image_id.upper(), name="upper") == image_id
    assert hc.get(f"/v2/images/{image_id}", headers=OWNER).status_code == 200
    # And a lower-case copy of it is the same id: a conflict.
    timed_4xx(lambda: hc.post("/v2/images", json={"id": image_id}, headers=OWNER), 409)


def test_a_deleted_id_is_never_reused(hc: httpx.Client) -> None:
    image_id = create(hc, name="gone")
    assert hc.delete(f"/v2/images/{image_id}", headers=OWNER).status_code == 204
    for copy in (image_id, image_id.upper()):
        timed_4xx(lambda copy=copy: hc.post("/v2/images", json={"id": copy}, headers=OWNER),
                  409)


def test_over_long_tags_and_names_are_400(hc: httpx.Client) -> None:
    image_id = create(hc, name="long")
    for tag in ("x" * 256, "\u2713" * 256, "x" * 8000):
        timed_4xx(lambda tag=tag: hc.put(f"/v2/images/{image_id}/tags/{tag}", headers=OWNER),
                  400, 414)
    for document in ({"name": "x" * 256}, {"tags": ["x" * 256]}, {"x" * 256: "v"},
                     {"hw": "v" * 70_000}, {"owner": "x" * 256}):
        headers = ctx("hostile-v2", roles="admin") if "owner" in document else OWNER
        timed_4xx(lambda document=document, headers=headers: hc.post(
            "/v2/images", json=document, headers=headers), 400)
    assert hc.get(f"/v2/images/{image_id}", headers=OWNER).json()["tags"] == []


def test_a_request_line_far_over_the_limit_is_refused(hs: GlimpseServer) -> None:
    data = build("GET", "/v2/images/" + "a" * 100_000, hs.port, list(OWNER.items()))
    timed_4xx(lambda: exchange(hs.port, data), 400, 404, 414, 431)


# --- header abuse on upload -----------------------------------------------------------------


@pytest.mark.parametrize("size", [
    "-1", "abc", "1e3", "0x10", "4.0", "", " ", "1 2", "+4", "9" * 5000, "9" * 30,
    "\u00b2", "\u0664",
])
def test_bad_x_openstack_image_size_is_400_and_the_image_stays_queued(
    hs: GlimpseServer, hc: httpx.Client, size: str
) -> None:
    image_id = create(hc, name="size-header", disk_format="raw", container_format="bare")
    data = build("PUT", f"/v2/images/{image_id}/file", hs.port, [
        *OWNER.items(), *OCTETS.items(), ("x-openstack-image-size", size.encode()),
        ("Content-Length", "4")], b"abcd")
    timed_4xx(lambda: exchange(hs.port, data), 400, 413)
    shown = hc.get(f"/v2/images/{image_id}", headers=OWNER).json()
    assert shown["status"] == "queued" and shown["checksum"] is None
    assert stored(hs, image_id) == []


def test_a_huge_declared_size_is_413_before_any_data(hs: GlimpseServer, hc: httpx.Client) -> None:
    image_id = create(hc, name="huge-size", disk_format="raw", container_format="bare")
    for framing, refusal in (([("Transfer-Encoding", "chunked")], 413),
                             ([("Content-Length", str(1 << 60))], 413),
                             # Both over the cap and not the Content-Length: either is told.
                             ([("Content-Length", "4")], 400)):
        data = build("PUT", f"/v2/images/{image_id}/file", hs.port, [
            *OWNER.items(), *OCTETS.items(), ("x-openstack-image-size", str(1 << 60)),
            *framing], b"")
        # The body never comes: the answer must not wait for it.
        timed_4xx(lambda data=data: exchange(hs.port, data), refusal)
    assert hc.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "queued"


@pytest.mark.parametrize("length", [str(1 << 62), "9" * 40])
def test_a_huge_content_length_is_413_or_400(hs: GlimpseServer, hc: httpx.Client,
                                            length: str) -> None:
    image_id = create(hc, name="huge-length", disk_format="raw", container_format="bare")
    data = build("PUT", f"/v2/images/{image_id}/file", hs.port, [
        *OWNER.items(), *OCTETS.items(), ("Content-Length", length)], b"abcd")
    timed_4xx(lambda: exchange(hs.port, data), 400, 413)
    assert hc.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "queued"


@pytest.mark.parametrize("length", ["-1", "abc", "1, 2"])
def test_a_malformed_content_length_is_400(hs: GlimpseServer, hc: httpx.Client,
                                           length: str) -> None:
    image_id = create(hc, name="bad-length", disk_format="raw", container_format="bare")
    data = build("PUT", f"/v2/images/{image_id}/file", hs.port, [
        *OWNER.items(), *OCTETS.items(), ("Content-Length", length)], b"abcd")
    timed_4xx(lambda: exchange(hs.port, data), 400)
    assert hc.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "queued"


def test_a_malformed_chunked_upload_is_400_and_the_image_stays_queued(
    hs: GlimpseServer, hc: httpx.Client
) -> None:
    image_id = create(hc, name="bad-chunks", disk_format="raw", container_format="bare")
    data = build("PUT", f"/v2/images/{image_id}/file", hs.port, [
        *OWNER.items(), *OCTETS.items(), ("Transfer-Encoding", "chunked")],
        chunk(b"abc") + b"zz\r\nbroken\r\n0\r\n\r\n")
    resp = exchange(hs.port, data, shutdown=True)
    if resp is not None:  # the server may drop a connection it cannot frame
        assert_clean_4xx(resp, (400,))
    # The image was queued before the upload, so wait for its data to be gone as well.
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        shown = hc.get(f"/v2/images/{image_id}", headers=OWNER).json()
        left = stored(hs, image_id)
        if shown["status"] == "queued" and not left:
            break
        time.sleep(0.05)
    assert shown["status"] == "queued" and shown["checksum"] is None
    assert left == []


def test_a_json_body_on_upload_is_415_and_json_abuse_on_other_routes_is_400(
    hc: httpx.Client,
) -> None:
    image_id = create(hc, name="routes", disk_format="raw", container_format="bare")
    timed_4xx(lambda: hc.put(f"/v2/images/{image_id}/file", content=b"[" * 100_000,
                             headers={**OWNER, **JSON}), 415)
    for method, path in (("GET", f"/v2/images/{image_id}"), ("DELETE", f"/v2/images/{image_id}"),
                         ("PUT", f"/v2/images/{image_id}/tags/t"), ("GET", "/v2/images")):
        timed_4xx(lambda method=method, path=path: hc.request(
            method, path, content=b"[" * 100_000, headers={**OWNER, **JSON}), 400)
    assert hc.get(f"/v2/images/{image_id}", headers=OWNER).status_code == 200


# --- error bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("accept", ["*/*", "application/json", "text/plain", "image/png",
                                    "application/json;q=\xff"])
def test_refusals_quote_nothing_raw_in_any_form(hs: GlimpseServer, accept: str) -> None:
    data = build("POST", "/v2/images", hs.port, [
        *OWNER.items(), ("Accept", accept.encode("latin-1")), *JSON.items(),
        ("Content-Length", "41")], b'{"owner": "<script>alert(1)</script>xxx"}')
    resp = timed_4xx(lambda: exchange(hs.port, data), 403)
    assert isinstance(resp, RawResponse)
    if resp.headers["content-type"].startswith("text/html"):
        assert b"<script>" not in resp.body
    if resp.headers["content-type"].startswith("application/json"):
        assert json.loads(resp.body)["code"] == "403 Forbidden"


# --- PATCH (the v2-codec piece) ---------------------------------------------------------------

PATCH_21 = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def patch_raw(hc: httpx.Client, image_id: str, body: bytes, *allowed: int
              ) -> httpx.Response | RawResponse:
    return timed_4xx(lambda: hc.patch(f"/v2/images/{image_id}", content=body,
                                      headers={**OWNER, **PATCH_21}), *allowed)


@pytest.mark.parametrize("body", [
    b"[" * 100_000,
    b'[{"op": "add", "path": "/x", "value": ' + b"[" * 50_000 + b"]" * 50_000 + b"}]",
    b'[{"op": "add", "op": "remove", "path": "/name", "value": "x"}]',
    b'[{"op": "add", "path": "/name", "value": "\xff"}]',
    b'[{"op": "add", "path": "/name", "value": "a\\u0000b"}]',
    b'[{"op": "add", "path": "/name", "value": "\\ud800"}]',
    b'[{"op": "add", "path": "/min_ram", "value": 1e400}]',
    b'[{"op": "add", "path": "/min_ram", "value": NaN}]',
    b'[{"op": "add", "path": "/' + b"a" * 100_000 + b'", "value": "x"}]',
    b'[{"op": "add", "path": "/hw", "value": 5}]',
    b'{"op": "add", "path": "/name", "value": "x"}',
    b'[["add", "/name", "x"]]',
], ids=["deep", "deep-value", "duplicate-op", "not-utf8", "nul", "surrogate", "1e400", "NaN",
        "long-pointer", "number-value", "object-not-array", "array-op"])
def test_hostile_patch_bodies_are_400(hc: httpx.Client, body: bytes) -> None:
    image_id = create(hc, name="patched")
    patch_raw(hc, image_id, body, 400)
    shown = hc.get(f"/v2/images/{image_id}", headers=OWNER).json()
    assert shown["name"] == "patched" and "hw" not in shown and "x" not in shown


def test_a_huge_patch_is_refused_or_applied_in_bounded_time(hc: httpx.Client) -> None:
    image_id = create(hc, name="many-ops")
    distinct = json.dumps([{"op": "add", "path": f"/k{i}", "value": "v"}
                           for i in range(20_000)]).encode()
    patch_raw(hc, image_id, distinct, 400, 413)  # over the property quota, or too many ops
    assert "k0" not in hc.get(f"/v2/images/{image_id}", headers=OWNER).json()
    same = json.dumps([{"op": "add", "path": "/name", "value": str(i)}
                       for i in range(20_000)]).encode()
    assert len(same) < 1 << 20
    start = time.monotonic()
    resp = hc.patch(f"/v2/images/{image_id}", content=same, headers={**OWNER, **PATCH_21})
    assert time.monotonic() - start < BOUND
    assert resp.status_code in (200, 400, 413), resp.text[:300]
    assert b"Traceback" not in resp.content


def test_memory_stays_bounded(hs: GlimpseServer) -> None:
    """Runs last in the module: the peak resident size over every request above."""
    status = open(f"/proc/{hs.process.pid}/status").read()  # noqa: SIM115
    peak_kib = int(status.split("VmHWM:")[1].split()[0])
    assert peak_kib < MEMORY_BOUND_MIB * 1024, f"peak {peak_kib // 1024} MiB"

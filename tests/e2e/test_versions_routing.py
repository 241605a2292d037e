"""Version discovery, URL prefixes, the route table and request ids (spec §2.3, §3, §4)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.identity import tenant
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

REQ_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
BRIEF_KEYS = {"id", "name", "size", "disk_format", "container_format", "checksum"}
V1_ACCEPT = "application/vnd.openstack.images-v1"




def assert_versions_document(resp: httpx.Response, base: str) -> None:
    assert resp.headers["content-type"].split(";")[0].strip() == "application/json"
    doc = resp.json()
    assert list(doc) == ["versions"]
    versions = doc["versions"]
    assert isinstance(versions, list)
    ids = [v["id"] for v in versions]
    v1_ids = [i for i in ids if i.startswith("v1")]
    assert v1_ids == ["v1.1", "v1.0"], ids
    # v1 entries come last (v2 entries, if any, come before them)
    assert ids[-2:] == ["v1.1", "v1.0"]
    v2_ids = [i for i in ids if i.startswith("v2")]
    # v2's minors, highest first, the highest the one CURRENT entry of the whole document.
    assert v2_ids and ids[: len(v2_ids)] == v2_ids, ids
    assert sorted(v2_ids, key=lambda i: int(i.split(".")[1]), reverse=True) == v2_ids
    assert [v["id"] for v in versions if v["status"] == "CURRENT"] == [v2_ids[0]]
    for entry in versions:
        if not entry["id"].startswith("v1"):
            assert entry["id"].startswith("v2")
            assert entry["links"] == [{"rel": "self", "href": f"{base}/v2/"}]
            continue
        assert entry["status"] in ("DEPRECATED", "CURRENT", "SUPPORTED")
        assert entry["links"] == [{"rel": "self", "href": f"{base}/v1/"}]


# --- §3.1 / §3.2 versions document -------------------------------------------------------


def test_get_versions_returns_200_document(client: httpx.Client, server: GlimpseServer) -> None:
    resp = client.get("/versions")
    assert resp.status_code == 200
    assert_versions_document(resp, server.url)


@pytest.mark.parametrize(
    "accept",
    ["application/xml", "text/html", "*/*", V1_ACCEPT, "application/vnd.openstack.images-v9"],
)
def test_get_versions_any_accept(client: httpx.Client, server: GlimpseServer, accept: str) -> None:
    resp = client.get("/versions", headers={"Accept": accept})
    assert resp.status_code == 200
    assert_versions_document(resp, server.url)


def test_root_returns_300(client: httpx.Client, server: GlimpseServer) -> None:
    resp = client.get("/")
    assert resp.status_code == 300
    assert_versions_document(resp, server.url)


@pytest.mark.parametrize(
    "path", ["/images", "/v3/images", "/v1.2/images", "/va.1/images", "/v10", "/foo", "/v2.19",
             "/v2.99/images"]
)
def test_unknown_version_paths_return_300(
    client: httpx.Client, server: GlimpseServer, path: str
) -> None:
    resp = client.get(path)
    assert resp.status_code == 300, resp.text
    assert_versions_document(resp, server.url)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/images"), ("PUT", "/"), ("DELETE", "/foo"), ("PATCH", "/v3/images")],
)
def test_300_for_any_method(
    client: httpx.Client, server: GlimpseServer, method: str, path: str
) -> None:
    resp = client.request(method, path)
    assert resp.status_code == 300
    assert_versions_document(resp, server.url)


def test_head_on_unversioned_path_is_300(client: httpx.Client) -> None:
    resp = client.head("/images")
    assert resp.status_code == 300


def test_accept_header_routes_to_v1(client: httpx.Client, unique: str) -> None:
    project = f"t-{unique}"
    created = client.post(
        "/v1/images",
        headers={**tenant(project), "x-image-meta-name": f"acc-{unique}"},
    )
    assert created.status_code == 201
    image_id = created.json()["image"]["id"]
    headers = {**tenant(project), "Accept": V1_ACCEPT}
    resp = client.get("/images", params={"name": f"acc-{unique}"}, headers=headers)
    assert resp.status_code == 200
    images = resp.json()["images"]
    assert [i["id"] for i in images] == [image_id]
    assert set(images[0]) == BRIEF_KEYS
    detail = client.get("/images/detail", params={"name": f"acc-{unique}"}, headers=headers)
    assert detail.status_code == 200
    assert [i["id"] for i in detail.json()["images"]] == [image_id]
    head = client.head(f"/images/{image_id}", headers=headers)
    assert head.status_code == 200
    assert head.headers["x-image-meta-id"] == image_id


@pytest.mark.parametrize(
    "accept",
    ["application/vnd.openstack.images-v3", "application/vnd.openstack.images-v1.2"],
)
def test_unknown_accept_version_returns_300(
    client: httpx.Client, server: GlimpseServer, accept: str
) -> None:
    resp = client.get("/images", headers={"Accept": accept})
    assert resp.status_code == 300
    assert_versions_document(resp, server.url)


def test_v1_versions_is_404(client: httpx.Client) -> None:
    assert client.get("/v1/versions").status_code == 404


@pytest.mark.parametrize("prefix", ["/v1", "/v1.0", "/v1.1"])
def test_all_v1_prefixes_are_equivalent(client: httpx.Client, unique: str, prefix: str) -> None:
    project = f"t-{unique}"
    name = f"pfx-{unique}"
    created = client.post(
        f"{prefix}/images", headers={**tenant(project), "x-image-meta-name": name}
    )
    assert created.status_code == 201, created.text
    image_id = created.json()["image"]["id"]
    for p in ("/v1", "/v1.0", "/v1.1"):
        resp = client.get(f"{p}/images", params={"name": name}, headers=tenant(project))
        assert resp.status_code == 200
        assert [i["id"] for i in resp.json()["images"]] == [image_id]
        detail = client.get(
            f"{p}/images/detail", params={"name": name}, headers=tenant(project)
        )
        assert detail.status_code == 200
        assert [i["id"] for i in detail.json()["images"]] == [image_id]
        head = client.head(f"{p}/images/{image_id}", headers=tenant(project))
        assert head.status_code == 200
        assert head.headers["x-image-meta-name"] == name


def test_v1_root_is_brief_list_alias(client: httpx.Client, unique: str) -> None:
    project = f"t-{unique}"
    name = f"root-{unique}"
    created = client.post(
        "/v1/images", headers={**tenant(project), "x-image-meta-name": name}
    )
    assert created.status_code == 201
    image_id = created.json()["image"]["id"]
    resp = client.get("/v1/", params={"name": name}, headers=tenant(project))
    assert resp.status_code == 200
    assert resp.headers["content-type"].split(";")[0].strip() == "application/json"
    images = resp.json()["images"]
    assert [i["id"] for i in images] == [image_id]
    assert set(images[0]) == BRIEF_KEYS
    plain = client.get("/v1/", headers=tenant(project))
    assert plain.status_code == 200
    for entry in plain.json()["images"]:
        assert set(entry) == BRIEF_KEYS


def test_v1_without_slash_lists_or_redirects(client: httpx.Client) -> None:
    resp = client.get("/v1", follow_redirects=False)
    if resp.status_code in (301, 302, 303, 307, 308):
        assert resp.headers["location"].endswith("/v1/")
    else:
        assert resp.status_code == 200
        assert "images" in resp.json()


def test_public_endpoint_used_in_href(server_factory: Callable[..., GlimpseServer]) -> None:
    srv = server_factory(public_endpoint="https://images.example.com:9292")
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        resp = c.get("/versions")
        assert resp.status_code == 200
        assert_versions_document(resp, "https://images.example.com:9292")
        root = c.get("/")
        assert root.status_code == 300
        assert_versions_document(root, "https://images.example.com:9292")


# --- §4 route table ------------------------------------------------------------------------

IMAGE_ID = "6b3ecfca-d445-4946-a8d1-c4938352b251"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/images", "GET, POST"),
        ("DELETE", "/v1/images", "GET, POST"),
        ("PATCH", "/v1/images", "GET, POST"),
        ("POST", "/v1/images/detail", "GET, HEAD"),
        ("PUT", "/v1/images/detail", "GET, HEAD"),
        ("DELETE", "/v1/images/detail", "GET, HEAD"),
        ("PATCH", "/v1/images/detail", "GET, HEAD"),
        ("HEAD", "/v1/images/detail", "GET"),
        ("POST", f"/v1/images/{IMAGE_ID}", "GET, HEAD, PUT, DELETE"),
        ("PATCH", f"/v1/images/{IMAGE_ID}", "GET, HEAD, PUT, DELETE"),
        ("POST", f"/v1/images/{IMAGE_ID}/members", "GET, PUT"),
        ("DELETE", f"/v1/images/{IMAGE_ID}/members", "GET, PUT"),
        ("PATCH", f"/v1/images/{IMAGE_ID}/members", "GET, PUT"),
        ("POST", f"/v1/images/{IMAGE_ID}/members/tenant1", "GET, PUT, DELETE"),
        ("PATCH", f"/v1/images/{IMAGE_ID}/members/tenant1", "GET, PUT, DELETE"),
        ("PUT", "/v1.1/images", "GET, POST"),
        ("HEAD", "/v1.0/images/detail", "GET"),
    ],
)
def test_method_not_allowed_with_allow_header(
    client: httpx.Client, method: str, path: str, allow: str
) -> None:
    resp = client.request(method, path)
    assert resp.status_code == 405, resp.text
    assert resp.headers["allow"] == allow
    assert "Traceback" not in resp.text


def test_detail_route_beats_image_id(client: httpx.Client, unique: str) -> None:
    resp = client.get("/v1/images/detail", headers=tenant(f"t-{unique}"))
    assert resp.status_code == 200
    assert isinstance(resp.json()["images"], list)
    # `detail` is never an image id: PUT/DELETE answer 405, not 404
    assert client.delete("/v1/images/detail").status_code == 405
    assert client.put("/v1/images/detail").status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/v1/foo",
        "/v1/imagess",
        "/v1/images.json",
        "/v1/images/detail.xxx",
        "/v1/images/detail.json",
        f"/v1/images/{IMAGE_ID}/members.xxx",
        f"/v1/images/{IMAGE_ID}/members.json",
        f"/v1/images/{IMAGE_ID}/foo",
        f"/v1/images/{IMAGE_ID}/members/tenant1/extra",
    ],
)
def test_unknown_v1_paths_and_format_suffixes_404(client: httpx.Client, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404, resp.text
    assert "Traceback" not in resp.text


def test_format_suffix_on_existing_image_is_404(client: httpx.Client, unique: str) -> None:
    created = client.post("/v1/images", headers={"x-image-meta-name": f"sfx-{unique}"})
    assert created.status_code == 201
    image_id = created.json()["image"]["id"]
    assert client.get(f"/v1/images/{image_id}.json").status_code == 404
    assert client.head(f"/v1/images/{image_id}.json").status_code == 404
    assert client.get(f"/v1/images/{image_id}/members.json").status_code == 404
    assert client.get("/v1/images.json").status_code == 404


@pytest.mark.parametrize("method", ["OPTIONS", "PROPFIND", "TRACE"])
def test_unknown_method_on_unknown_path_is_501(client: httpx.Client, method: str) -> None:
    resp = client.request(method, f"/v1/no-such-thing-{uuid.uuid4().hex}")
    assert resp.status_code == 501, resp.text


# --- §2.3 request id -----------------------------------------------------------------------


def test_request_id_on_v1_responses(client: httpx.Client, unique: str) -> None:
    created = client.post("/v1/images", headers={"x-image-meta-name": f"rid-{unique}"})
    assert created.status_code == 201
    image_id = created.json()["image"]["id"]
    responses = [
        created,
        client.get("/v1/images"),
        client.get("/v1/images/detail"),
        client.head(f"/v1/images/{image_id}"),
        client.put(f"/v1/images/{image_id}", headers={"x-image-meta-name": f"rid2-{unique}"}),
        client.get(f"/v1/images/{image_id}/members"),
        client.head(f"/v1/images/{uuid.uuid4()}"),  # 404
        client.get(f"/v1/images/{uuid.uuid4()}"),  # 404
        client.post("/v1/images", headers={"x-image-meta-foo": "bar"}),  # 400
        client.delete("/v1/images"),  # 405
        client.delete(f"/v1/images/{image_id}"),
    ]
    seen: set[str] = set()
    for resp in responses:
        values = resp.headers.get_list("x-openstack-request-id")
        assert len(values) == 1, (resp.request.method, resp.request.url, resp.status_code)
        assert REQ_ID.match(values[0]), values[0]
        raw_names = [name for name, _ in resp.headers.raw]
        assert b"x-openstack-request-id" in [n.lower() for n in raw_names]
        seen.add(values[0])
    assert len(seen) == len(responses), "request ids must be unique per request"
    assert [r.status_code for r in responses] == [
        201, 200, 200, 200, 200, 200, 404, 404, 400, 405, 200
    ]

"""v2 PATCH in both media types and the schema documents, over HTTP (spec §2.1, §2.4)."""

from __future__ import annotations

import httpx
import jsonschema  # comes with python-glanceclient, which validates with it too
import pytest

pytestmark = pytest.mark.e2e
V21 = "application/openstack-images-v2.1-json-patch"
V20 = "application/openstack-images-v2.0-json-patch"
OWNER = {"X-Tenant-Id": "patcher", "X-User-Id": "u", "X-Roles": "member"}



@pytest.fixture
def image_url(client: httpx.Client) -> str:
    resp = client.post("/v2/images", json={"name": "before", "distro": "arch", "tags": ["t"]},
                       headers=OWNER)
    assert resp.status_code == 201
    return f"/v2/images/{resp.json()['id']}"


def patch(client: httpx.Client, url: str, ops: object, media: str | None = V21,
          headers: dict[str, str] = OWNER) -> httpx.Response:
    extra = {"Content-Type": media} if media else {}
    return client.patch(url, json=ops, headers={**headers, **extra})


def test_v21_add_replaces_and_every_op_applies(client: httpx.Client, image_url: str) -> None:
    before = client.get(image_url, headers=OWNER).json()
    resp = patch(client, image_url, [
        {"op": "add", "path": "/name", "value": "after"},
        {"op": "add", "path": "/distro", "value": "debian"},
        {"op": "add", "path": "/a~1b", "value": "slash"},
        {"op": "replace", "path": "/min_ram", "value": 512},
        {"op": "replace", "path": "/tags", "value": ["x", "y", "x"]},
        {"op": "remove", "path": "/distro"},
    ], media=f"{V21}; charset=UTF-8")
    assert resp.status_code == 200, resp.text
    image = resp.json()
    assert image["name"] == "after" and image["min_ram"] == 512
    assert "distro" not in image and image["a/b"] == "slash"
    assert sorted(image["tags"]) == ["x", "y"]
    assert image["updated_at"] >= before["updated_at"]
    assert client.get(image_url, headers=OWNER).json() == image


def test_v20_add_of_an_existing_key_is_409(client: httpx.Client, image_url: str) -> None:
    assert patch(client, image_url, [{"add": "/distro", "value": "x"}], V20).status_code == 409
    ok = patch(client, image_url, [{"add": "/new", "value": "v"},
                                   {"replace": "/distro", "value": "y"}], V20)
    assert ok.status_code == 200, ok.text
    assert ok.json()["new"] == "v" and ok.json()["distro"] == "y"


def test_a_failing_op_changes_nothing(client: httpx.Client, image_url: str) -> None:
    before = client.get(image_url, headers=OWNER).json()
    resp = patch(client, image_url, [{"op": "replace", "path": "/name", "value": "changed"},
                                     {"op": "remove", "path": "/missing"}])
    assert resp.status_code == 409
    assert client.get(image_url, headers=OWNER).json() == before


@pytest.mark.parametrize("media", [None, "application/json", "application/json-patch+json"])
def test_other_media_types_are_415_with_accept_patch(client: httpx.Client, image_url: str,
                                                     media: str | None) -> None:
    resp = patch(client, image_url, [], media)
    assert resp.status_code == 415
    assert V20 in resp.headers["accept-patch"] and V21 in resp.headers["accept-patch"]


@pytest.mark.parametrize(("ops", "status"), [
    ([{"op": "replace", "path": "/status", "value": "active"}], 403),
    ([{"op": "replace", "path": "/id", "value": "x"}], 403),
    ([{"op": "add", "path": "/os_glance_x", "value": "x"}], 403),
    ([{"op": "remove", "path": "/name"}], 403),
    ([{"op": "replace", "path": "/owner", "value": "other"}], 403),
    ([{"op": "replace", "path": "/visibility", "value": "public"}], 403),
    ([{"op": "add", "path": "/locations/-", "value": {"url": "http://x", "metadata": {}}}], 403),
    ([{"op": "replace", "path": "/min_ram", "value": "lots"}], 400),
    ([{"op": "add", "path": "/prop", "value": 5}], 400),
    ([{"op": "move", "path": "/name", "from": "/x"}], 400),
    ([{"op": "ADD", "path": "/name", "value": "x"}], 400),
    ([{"op": "add", "path": "name", "value": "x"}], 400),
    ([{"op": "add", "path": "/a//b", "value": "x"}], 400),
    ([{"op": "add", "path": "/tags/-", "value": "x"}], 400),
    ([{"op": "add", "path": "/name"}], 400),
    ({"op": "add"}, 400),
    ([["add"]], 400),
    ([{"op": "add", "path": "/" + "p" * 300, "value": "x"}], 400),
])
def test_refusals(client: httpx.Client, image_url: str, ops: object, status: int) -> None:
    before = client.get(image_url, headers=OWNER).json()
    resp = patch(client, image_url, ops)
    assert resp.status_code == status, resp.text
    assert client.get(image_url, headers=OWNER).json() == before


def test_empty_patch_is_a_no_op(client: httpx.Client, image_url: str) -> None:
    before = client.get(image_url, headers=OWNER).json()
    resp = patch(client, image_url, [])
    assert resp.status_code == 200
    assert resp.json()["name"] == before["name"]


def test_others_may_not_patch(client: httpx.Client, image_url: str) -> None:
    stranger = {"X-Tenant-Id": "stranger", "X-User-Id": "s", "X-Roles": "member"}
    resp = patch(client, image_url, [{"op": "add", "path": "/x", "value": "y"}],
                 headers=stranger)
    assert resp.status_code == 404


def test_duplicate_keys_and_deep_nesting_are_400(client: httpx.Client, image_url: str) -> None:
    dup = b'[{"op": "add", "op": "remove", "path": "/x", "value": "y"}]'
    resp = client.patch(image_url, content=dup, headers={**OWNER, "Content-Type": V21})
    assert resp.status_code == 400
    deep = b"[" * 100_000 + b"]" * 100_000
    resp = client.patch(image_url, content=deep, headers={**OWNER, "Content-Type": V21})
    assert resp.status_code == 400


@pytest.mark.parametrize("name", ["image", "images", "member", "members"])
def test_schemas(client: httpx.Client, name: str) -> None:
    resp = client.get(f"/v2/schemas/{name}")
    assert resp.status_code == 200
    assert resp.json()["name"] == name
    refused = client.post(f"/v2/schemas/{name}")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET"


def test_unknown_schema_is_404(client: httpx.Client) -> None:
    assert client.get("/v2/schemas/nothing").status_code == 404


def test_rendered_images_match_the_image_schema(client: httpx.Client, image_url: str) -> None:
    schema = client.get("/v2/schemas/image").json()
    jsonschema.validate(client.get(image_url, headers=OWNER).json(), schema)

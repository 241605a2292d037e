"""v2 over HTTP, the core of it: create, show, list, upload, download, tags, delete, routing and
the error forms (spec §1, §2.1-2.3, §2.5, §2.6, §2.8, §2.11)."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from tests.e2e.identity import tenant
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

BASE_KEYS = {
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
    "os_hash_value", "owner", "size", "virtual_size", "container_format", "disk_format",
    "min_ram", "min_disk", "tags", "created_at", "updated_at", "self", "file", "schema",
}
OCTETS = {"Content-Type": "application/octet-stream"}




def create(client: httpx.Client, headers: dict[str, str], **body: object) -> dict[str, object]:
    resp = client.post("/v2/images", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    image: dict[str, object] = resp.json()
    return image


def test_create_renders_every_base_key_with_null_for_unset(
    client: httpx.Client, server: GlimpseServer
) -> None:
    resp = client.post("/v2/images", json={"name": "plain", "distro": "debian"},
                       headers=tenant("t1"))
    assert resp.status_code == 201, resp.text
    image = resp.json()
    assert set(image) >= BASE_KEYS
    assert set(image) - BASE_KEYS == {"distro"}
    assert resp.headers["location"] == f"{server.url}/v2/images/{image['id']}"
    assert image["status"] == "queued"
    assert image["visibility"] == "shared"
    assert image["owner"] == "t1"
    assert image["size"] is None and image["checksum"] is None and image["disk_format"] is None
    assert image["tags"] == [] and image["protected"] is False and image["os_hidden"] is False
    assert image["self"] == f"/v2/images/{image['id']}"
    assert image["file"] == f"/v2/images/{image['id']}/file"
    assert image["schema"] == "/v2/schemas/image"
    assert image["created_at"].endswith("Z") and len(image["created_at"]) == 20
    shown = client.get(f"/v2/images/{image['id']}", headers=tenant("t1"))
    assert shown.status_code == 200
    assert shown.json() == image


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"3", b"{", b"\xff\xfe"])
def test_create_refuses_bodies_that_are_not_objects(client: httpx.Client, body: bytes) -> None:
    resp = client.post("/v2/images", content=body,
                       headers={**tenant("t1"), "Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text


@pytest.mark.parametrize("key", ["status", "checksum", "size", "os_hash_value", "self",
                                 "created_at"])
def test_create_refuses_read_only_attributes(client: httpx.Client, key: str) -> None:
    resp = client.post("/v2/images", json={key: "x"}, headers=tenant("t1"))
    assert resp.status_code == 403
    assert "read-only" in resp.text


@pytest.mark.parametrize("key", ["location", "locations", "deleted", "os_glance_foo"])
def test_create_refuses_reserved_attributes(client: httpx.Client, key: str) -> None:
    resp = client.post("/v2/images", json={key: "x"}, headers=tenant("t1"))
    assert resp.status_code == 403
    assert "reserved" in resp.text


def test_custom_values_must_be_strings(client: httpx.Client) -> None:
    resp = client.post("/v2/images", json={"hw_cpu": 4}, headers=tenant("t1"))
    assert resp.status_code == 400


def test_owner_of_another_project_is_403_for_members_and_allowed_for_admins(
    client: httpx.Client,
) -> None:
    resp = client.post("/v2/images", json={"owner": "other"}, headers=tenant("t1"))
    assert resp.status_code == 403
    image = create(client, tenant("t1", "admin"), owner="other")
    assert image["owner"] == "other"


def test_upload_then_download_with_hashes(client: httpx.Client) -> None:
    headers = tenant("t2")
    image = create(client, headers, name="data", disk_format="raw", container_format="bare")
    data = bytes(range(256)) * 4096 + b"tail"
    resp = client.put(f"/v2/images/{image['id']}/file", content=data,
                      headers={**headers, **OCTETS, "x-openstack-image-size": str(len(data))})
    assert resp.status_code == 204, resp.text
    shown = client.get(f"/v2/images/{image['id']}", headers=headers).json()
    assert shown["status"] == "active"
    assert shown["size"] == len(data) == shown["virtual_size"]
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    got = client.get(f"/v2/images/{image['id']}/file", headers=headers)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert got.headers["content-type"] == "application/octet-stream"
    # Chunked, as glanceclient sends it: a second upload is a conflict.
    again = client.put(f"/v2/images/{image['id']}/file", content=iter([b"x"]),
                       headers={**headers, **OCTETS})
    assert again.status_code == 409


def test_failed_upload_returns_the_image_to_queued(client: httpx.Client) -> None:
    headers = tenant("t2")
    image = create(client, headers, disk_format="raw", container_format="bare")
    url = f"/v2/images/{image['id']}/file"
    resp = client.put(url, content=b"abc", headers={**headers, **OCTETS,
                                                    "x-openstack-image-size": "4"})
    assert resp.status_code == 400
    shown = client.get(f"/v2/images/{image['id']}", headers=headers).json()
    assert shown["status"] == "queued"
    assert shown["size"] is None and shown["checksum"] is None
    # And it may be uploaded again.
    assert client.put(url, content=b"abcd", headers={**headers, **OCTETS}).status_code == 204


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_upload_needs_octet_stream(client: httpx.Client, content_type: str | None) -> None:
    headers = tenant("t2")
    image = create(client, headers, disk_format="raw", container_format="bare")
    extra = {"Content-Type": content_type} if content_type else {}
    resp = client.put(f"/v2/images/{image['id']}/file", content=b"abc",
                      headers={**headers, **extra})
    assert resp.status_code == 415


def test_upload_needs_formats(client: httpx.Client) -> None:
    headers = tenant("t2")
    image = create(client, headers)
    resp = client.put(f"/v2/images/{image['id']}/file", content=b"abc",
                      headers={**headers, **OCTETS})
    assert resp.status_code == 400


def test_download_of_an_image_without_data_is_204(client: httpx.Client) -> None:
    image = create(client, tenant("t2"))
    resp = client.get(f"/v2/images/{image['id']}/file", headers=tenant("t2"))
    assert resp.status_code == 204
    assert resp.content == b""


def test_tags_put_is_idempotent_and_delete_of_a_missing_tag_is_404(client: httpx.Client) -> None:
    headers = tenant("t3")
    image = create(client, headers, tags=["a", "a", "b"])
    assert image["tags"] == ["a", "b"]
    url = f"/v2/images/{image['id']}/tags"
    assert client.put(f"{url}/%E2%9C%93", headers=headers).status_code == 204
    assert client.put(f"{url}/%E2%9C%93", headers=headers).status_code == 204
    tags = client.get(f"/v2/images/{image['id']}", headers=headers).json()["tags"]
    assert sorted(tags) == ["a", "b", "\u2713"]
    assert client.delete(f"{url}/a", headers=headers).status_code == 204
    assert client.delete(f"{url}/a", headers=headers).status_code == 404
    assert client.put(f"{url}/{'x' * 256}", headers=headers).status_code == 400
    assert client.put(f"{url}/%FF", headers=headers).status_code == 400
    assert client.get(f"{url}/b", headers=headers).status_code == 405


def test_delete_then_404(client: httpx.Client) -> None:
    headers = tenant("t4")
    image = create(client, headers)
    url = f"/v2/images/{image['id']}"
    resp = client.delete(url, headers=headers)
    assert resp.status_code == 204 and resp.content == b""
    assert client.get(url, headers=headers).status_code == 404
    assert client.get(f"{url}/file", headers=headers).status_code == 404
    assert client.delete(url, headers=headers).status_code == 404


def test_list_pages_with_links(client: httpx.Client) -> None:
    owner = f"lister-{uuid.uuid4().hex[:8]}"
    headers = tenant(owner)
    ids = {create(client, headers, name=f"n{i}")["id"] for i in range(5)}
    seen: list[str] = []
    url: str | None = "/v2/images?limit=2"
    pages = 0
    while url is not None and pages < 10:
        resp = client.get(url, headers=headers)
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert doc["schema"] == "/v2/schemas/images"
        assert doc["first"].startswith("/v2/images")
        seen += [i["id"] for i in doc["images"] if i["owner"] == owner]
        url = doc.get("next")
        pages += 1
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))


def test_strangers_see_404_for_a_shared_image(client: httpx.Client) -> None:
    image = create(client, tenant("t5"))
    assert client.get(f"/v2/images/{image['id']}", headers=tenant("t6")).status_code == 404


@pytest.mark.parametrize("prefix", ["/v2", "/v2.0", "/v2.1", "/v2.5", "/v2.7"])
def test_every_listed_minor_routes(client: httpx.Client, prefix: str) -> None:
    assert client.get(f"{prefix}/images", headers=tenant("t1")).status_code == 200


def test_accept_selects_v2_for_an_unversioned_path(client: httpx.Client) -> None:
    resp = client.get("/images", headers={**tenant("t1"),
                                          "Accept": "application/vnd.openstack.images-v2.1"})
    assert resp.status_code == 200
    assert "images" in resp.json()


def test_error_forms_follow_accept(client: httpx.Client) -> None:
    missing = f"/v2/images/{uuid.uuid4()}"
    html = client.get(missing, headers={**tenant("t1"), "Accept": "*/*"})
    assert html.status_code == 404
    assert html.headers["content-type"].startswith("text/html")
    assert "<h1>404 Not Found</h1>" in html.text
    js = client.get(missing, headers={**tenant("t1"), "Accept": "application/json"})
    assert js.status_code == 404
    doc = js.json()
    assert doc["code"] == "404 Not Found" and doc["title"] == "Not Found"
    assert "not found" in doc["message"]
    assert js.headers["x-openstack-request-id"].startswith("req-")


def test_html_error_escapes_request_text(client: httpx.Client) -> None:
    resp = client.post("/v2/images", json={"owner": "<script>x</script>"}, headers=tenant("t1"))
    assert resp.status_code == 403
    assert "<script>" not in resp.text and "&lt;script&gt;" in resp.text


def test_405_carries_allow(client: httpx.Client) -> None:
    resp = client.put("/v2/images", headers=tenant("t1"))
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, POST"
    head = client.head(f"/v2/images/{uuid.uuid4()}", headers=tenant("t1"))
    assert head.status_code == 405


def test_a_body_on_get_or_delete_is_400(client: httpx.Client) -> None:
    image = create(client, tenant("t1"))
    url = f"/v2/images/{image['id']}"
    for method in ("GET", "DELETE"):
        resp = client.request(method, url, content=b"{}", headers=tenant("t1"))
        assert resp.status_code == 400, (method, resp.text)
        assert "body is not expected" in resp.text
    assert client.get(url, headers=tenant("t1")).status_code == 200


def test_one_image_both_apis(client: httpx.Client) -> None:
    headers = tenant("t7")
    created = client.post("/v1/images", content=b"v1 data", headers={
        **headers, **OCTETS, "x-image-meta-name": "from-v1", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare", "x-image-meta-property-distro": "arch",
    })
    assert created.status_code == 201, created.text
    image_id = created.json()["image"]["id"]
    v2 = client.get(f"/v2/images/{image_id}", headers=headers).json()
    assert v2["name"] == "from-v1" and v2["distro"] == "arch" and v2["status"] == "active"
    assert v2["visibility"] == "shared" and v2["size"] == 7
    assert client.get(f"/v2/images/{image_id}/file", headers=headers).content == b"v1 data"
    made = create(client, headers, name="from-v2", disk_format="raw", container_format="bare")
    head = client.head(f"/v1/images/{made['id']}", headers=headers)
    assert head.status_code == 200
    assert head.headers["x-image-meta-name"] == "from-v2"
    assert head.headers["x-image-meta-status"] == "queued"

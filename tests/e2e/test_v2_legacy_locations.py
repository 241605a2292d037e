"""v2's legacy ``locations`` attribute and ``direct_url`` (spec §2.1, §2.4, §2.10), over HTTP:
off by default (no keys, PATCH on /locations 403); with ``show_multiple_locations`` the owner
adds, replaces and removes locations with PATCH as glanceclient (``add_location``,
``delete_locations``, ``update_location``), Horizon and Tempest do; hostile URLs are refused
and never echoed; only owners, services and admins are shown locations."""

from __future__ import annotations

import functools
import http.server
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import GlimpseServer
from tests.http_remote import serving

pytestmark = pytest.mark.e2e

DATA = b"legacy location data " * 500
V20 = {"Content-Type": "application/openstack-images-v2.0-json-patch"}
V21 = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
OWNER = {"X-Tenant-Id": "legacy-owner", "X-User-Id": "u1", "X-Roles": "member"}
STRANGER = {"X-Tenant-Id": "legacy-stranger", "X-User-Id": "u2", "X-Roles": "member"}
ADMIN = {"X-Tenant-Id": "admin", "X-User-Id": "root", "X-Roles": "admin"}
SHA512_LEN = 128


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local HTTP server of files: its base URL."""
    root: Path = tmp_path_factory.mktemp("legacy-remote")
    (root / "data").write_bytes(DATA)
    (root / "other").write_bytes(DATA)
    (root / "short").write_bytes(b"short")
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with serving(httpd) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def legacy() -> Iterator[GlimpseServer]:
    srv = GlimpseServer({"show_multiple_locations": "true", "show_image_direct_url": "true",
                         "image_location_quota": "3"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(legacy: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=legacy.url, timeout=30.0) as c:
        yield c


def queued(client: httpx.Client, headers: dict[str, str] = OWNER, **extra: Any) -> str:
    resp = client.post("/v2/images", headers=headers, json={
        "name": "legacy", "disk_format": "raw", "container_format": "bare", **extra})
    assert resp.status_code == 201, resp.text
    assert resp.json()["locations"] == []
    assert "direct_url" not in resp.json()
    image_id: str = resp.json()["id"]
    return image_id


def uploaded(client: httpx.Client) -> str:
    image_id = queued(client)
    resp = client.put(f"/v2/images/{image_id}/file", content=DATA,
                      headers={**OWNER, "Content-Type": "application/octet-stream"})
    assert resp.status_code == 204, resp.text
    return image_id


def patch(client: httpx.Client, image_id: str, *ops: dict[str, Any],
          headers: dict[str, str] = OWNER, draft: dict[str, str] = V21) -> httpx.Response:
    return client.patch(f"/v2/images/{image_id}", json=list(ops), headers={**headers, **draft})


def add_op(url: str, position: str = "-", **extra: Any) -> dict[str, Any]:
    return {"op": "add", "path": f"/locations/{position}",
            "value": {"url": url, "metadata": {}, **extra}}


def show(client: httpx.Client, image_id: str, headers: dict[str, str] = OWNER) -> Any:
    resp = client.get(f"/v2/images/{image_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_add_location_activates_a_queued_image(client: httpx.Client, remote: str) -> None:
    """glanceclient's add_location (Horizon's "image location"): v2.1 add /locations/-."""
    image_id = queued(client)
    url = f"{remote}/data"
    resp = patch(client, image_id, add_op(url, metadata={"k": "v"}))
    assert resp.status_code == 200, resp.text
    image = resp.json()
    assert image["status"] == "active"
    assert image["size"] == len(DATA)
    assert image["locations"] == [{"url": url, "metadata": {"k": "v", "store": "http"}}]
    assert image["direct_url"] == url
    assert show(client, image_id) == image
    got = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert got.status_code == 200 and got.content == DATA


def test_tempest_draft_4_with_validation_data(client: httpx.Client, remote: str) -> None:
    """Tempest's manage_locations tests send v2.0 patches and validation_data."""
    image_id = queued(client)
    hashes = {"checksum": "1" * 32, "os_hash_algo": "sha512",
              "os_hash_value": "2" * SHA512_LEN}
    resp = patch(client, image_id, {"add": "/locations/-", "value": {
        "url": f"{remote}/data", "metadata": {}, "validation_data": hashes}}, draft=V20)
    assert resp.status_code == 200, resp.text
    image = resp.json()
    assert {k: image[k] for k in hashes} == hashes  # recorded as given, not verified
    # A hash already set must be given unchanged; a different one conflicts.
    again = patch(client, image_id, add_op(f"{remote}/other", validation_data={
        **hashes, "os_hash_value": "3" * SHA512_LEN}))
    assert again.status_code == 409, again.text
    # Tempest's second location is the first URL with a fragment ("#new").
    same = patch(client, image_id, {"add": "/locations/-", "value": {
        "url": f"{remote}/data#new", "metadata": {}, "validation_data": hashes}}, draft=V20)
    assert same.status_code == 200, same.text
    assert len(same.json()["locations"]) == 2


def test_uploaded_data_and_removing_glimpses_copy(client: httpx.Client, remote: str,
                                                  legacy: GlimpseServer) -> None:
    image_id = uploaded(client)
    image = show(client, image_id)
    assert image["locations"] == [{"url": image_id, "metadata": {"store": "file"}}]
    assert image["direct_url"] == image_id
    stored = [p for p in legacy.data_dir.rglob(image_id) if p.is_file()]
    assert stored, "the upload is in the filesystem store"
    resp = patch(client, image_id, add_op(f"{remote}/data"))
    assert resp.status_code == 200, resp.text
    # Removing is delete_image_location's, admin only by default (Glance's): the owner 403.
    resp = patch(client, image_id, {"op": "remove", "path": "/locations/0"})
    assert resp.status_code == 403 and "delete_image_location" in resp.text, resp.text
    # The last location stays: 403; a position past the end: 400.
    resp = patch(client, image_id, {"op": "remove", "path": "/locations/0"},
                 {"op": "remove", "path": "/locations/0"}, headers=ADMIN)
    assert resp.status_code == 403, resp.text
    assert patch(client, image_id, {"op": "remove", "path": "/locations/2"},
                 headers=ADMIN).status_code == 400
    resp = patch(client, image_id, {"op": "remove", "path": "/locations/0"}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert [x["url"] for x in resp.json()["locations"]] == [f"{remote}/data"]
    assert not any(p.exists() for p in stored), "glimpse's copy is deleted with its location"
    got = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert got.status_code == 200 and got.content == DATA


def test_replace(client: httpx.Client, remote: str) -> None:
    image_id = queued(client)
    url = f"{remote}/data"
    resp = patch(client, image_id, {"op": "replace", "path": "/locations",
                                    "value": [{"url": url, "metadata": {"a": 1}}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "active"
    original = resp.json()["locations"]
    # The same list back (glanceclient's update_location): only metadata changes.
    same = patch(client, image_id, {"op": "replace", "path": "/locations", "value": [
        {"url": url, "metadata": {"b": 2}}]})
    assert same.status_code == 200, same.text
    assert same.json()["locations"] == [{"url": url, "metadata": {"b": 2, "store": "http"}}]
    assert original != same.json()["locations"]
    other = patch(client, image_id, {"op": "replace", "path": "/locations", "value": [
        {"url": f"{remote}/other", "metadata": {}}]})
    assert other.status_code == 400, other.text
    empty = patch(client, image_id, {"op": "replace", "path": "/locations", "value": []})
    assert empty.status_code == 403, empty.text
    assert show(client, image_id)["locations"] == same.json()["locations"]


def test_statuses_positions_and_quota(client: httpx.Client, remote: str) -> None:
    image_id = queued(client)
    removed = patch(client, image_id, {"op": "remove", "path": "/locations/-"}, headers=ADMIN)
    assert removed.status_code == 409, removed.text
    for bad in ("x", "-1", "1.0", "99999999999999999999"):
        assert patch(client, image_id, add_op(f"{remote}/data", bad)).status_code == 400
    assert patch(client, image_id, add_op(f"{remote}/data", "1")).status_code == 400
    assert patch(client, image_id, add_op(f"{remote}/data", "0")).status_code == 200
    assert patch(client, image_id, add_op(f"{remote}/data")).status_code == 400  # duplicate
    # A remote whose size contradicts the image's: 409.
    assert patch(client, image_id, add_op(f"{remote}/short")).status_code == 409
    assert patch(client, image_id, add_op(f"{remote}/other", "0")).status_code == 200
    resp = patch(client, image_id, add_op(f"{remote}/data?copy=2"))
    assert resp.status_code == 200, resp.text
    assert [x["url"] for x in resp.json()["locations"]] == [
        f"{remote}/other", f"{remote}/data", f"{remote}/data?copy=2"]
    over = patch(client, image_id, add_op(f"{remote}/data?copy=3"))
    assert over.status_code == 413, over.text
    deact = client.post(f"/v2/images/{image_id}/actions/deactivate", headers=OWNER)
    assert deact.status_code == 204
    assert patch(client, image_id, add_op(f"{remote}/x")).status_code == 409
    # A deactivated image's locations are shown to admins only (as Glance).
    assert show(client, image_id)["locations"] == []
    assert len(show(client, image_id, ADMIN)["locations"]) == 3


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/data",
    "http://192.168.1.1/data", "http://[::1]:1/data", "http://0x7f000001/x",
    "file:///etc/passwd", "ftp://127.0.0.1/x", "swift+config:///image", "not a url",
])
def test_hostile_urls_are_refused(client: httpx.Client, url: str) -> None:
    image_id = queued(client)
    for ops in ([add_op(url)], [{"op": "replace", "path": "/locations",
                                 "value": [{"url": url, "metadata": {}}]}]):
        resp = patch(client, image_id, *ops)
        assert resp.status_code == 400, (url, resp.text)
    image = show(client, image_id)
    assert image["status"] == "queued" and image["locations"] == []


def test_credentials_in_urls_are_refused_and_never_echoed(client: httpx.Client,
                                                          remote: str) -> None:
    image_id = queued(client)
    authority = remote.removeprefix("http://")
    for url in (f"http://admin:hunter2@{authority}/data", f"http://hunter2@{authority}/data",
                f"http://admin:hunter2@{authority}/" + "x" * 300):
        resp = patch(client, image_id, add_op(url), headers={**OWNER, "Accept": "application/json"})
        assert resp.status_code == 400, resp.text
        assert "hunter2" not in resp.text
    assert show(client, image_id)["status"] == "queued"


@pytest.mark.parametrize("body", [
    b"\xff\xfe", b"[" * 10_000 + b"]" * 10_000,
    b'[{"op": "add", "path": "/locations/-", "value": {"url": "http://127.0.0.1/",'
    b' "metadata": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}}]",
    b'[{"op": "add", "path": "/locations/-", "value": {"url": ["x"], "metadata": {}}}]',
    b'[{"op": "add", "path": "/locations/-", "value": {"url": "http://127.0.0.1/",'
    b' "metadata": {"k": "' + b"x" * 500_000 + b'"}}}]',
])
def test_hostile_bodies_are_400(client: httpx.Client, body: bytes) -> None:
    image_id = queued(client)
    resp = client.patch(f"/v2/images/{image_id}", content=body, headers={**OWNER, **V21})
    assert resp.status_code == 400, resp.text


def test_only_owners_services_and_admins_see_locations(client: httpx.Client,
                                                       remote: str) -> None:
    image_id = queued(client, visibility="community")
    assert patch(client, image_id, add_op(f"{remote}/data")).status_code == 200
    seen = show(client, image_id, STRANGER)
    assert seen["locations"] == [] and "direct_url" not in seen
    assert patch(client, image_id, add_op(f"{remote}/other"),
                 headers=STRANGER).status_code == 403
    service = {**STRANGER, "X-Roles": "member,service"}
    assert show(client, image_id, service)["direct_url"] == f"{remote}/data"
    assert len(show(client, image_id, ADMIN)["locations"]) == 1
    listed = client.get("/v2/images", params={"visibility": "community"}, headers=OWNER)
    mine = [i for i in listed.json()["images"] if i["id"] == image_id]
    assert mine and mine[0]["locations"] == [{"url": f"{remote}/data",
                                              "metadata": {"store": "http"}}]
    assert mine[0]["direct_url"] == f"{remote}/data"


def test_off_by_default(server_factory: Callable[..., GlimpseServer], remote: str) -> None:
    srv = server_factory()
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        image_id = queued_without_keys(c)
        for op in (add_op(f"{remote}/data"),
                   {"op": "replace", "path": "/locations", "value": []},
                   {"op": "remove", "path": "/locations/0"}):
            resp = patch(c, image_id, op)
            assert resp.status_code == 403, resp.text
        c.put(f"/v2/images/{image_id}/file", content=DATA,
              headers={**OWNER, "Content-Type": "application/octet-stream"})
        image = show(c, image_id, ADMIN)
        assert image["status"] == "active"
        assert "locations" not in image and "direct_url" not in image
        listed = c.get("/v2/images", headers=ADMIN).json()["images"]
        assert all("locations" not in i and "direct_url" not in i for i in listed)


def test_direct_url_alone(server_factory: Callable[..., GlimpseServer], remote: str) -> None:
    srv = server_factory(show_image_direct_url="true")
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        image_id = queued_without_keys(c)
        assert patch(c, image_id, add_op(f"{remote}/data")).status_code == 403
        c.put(f"/v2/images/{image_id}/file", content=DATA,
              headers={**OWNER, "Content-Type": "application/octet-stream"})
        image = show(c, image_id)
        assert image["direct_url"] == image_id and "locations" not in image


def queued_without_keys(c: httpx.Client) -> str:
    resp = c.post("/v2/images", headers=OWNER, json={
        "name": "legacy", "disk_format": "raw", "container_format": "bare"})
    assert resp.status_code == 201, resp.text
    assert "locations" not in resp.json() and "direct_url" not in resp.json()
    image_id: str = resp.json()["id"]
    return image_id


def test_glanceclient_location_calls(legacy: GlimpseServer, remote: str) -> None:
    """python-glanceclient's add_location, update_location and delete_locations, the calls
    behind ``glance location-add/-update/-delete`` and Horizon's "image location"."""
    glanceclient = pytest.importorskip("glanceclient",
                                       reason="python-glanceclient is not installed")
    gc = glanceclient.Client("2", endpoint=legacy.url, timeout=30, identity_headers=OWNER)
    image = gc.images.create(name="gc-legacy", disk_format="raw", container_format="bare")
    first, second = f"{remote}/data", f"{remote}/data#new"
    gc.images.add_location(image["id"], first, {"via": "glanceclient"})
    gc.images.add_location(image["id"], second, {})
    shown = gc.images.get(image["id"])
    assert shown["status"] == "active" and shown["size"] == len(DATA)
    assert [x["url"] for x in shown["locations"]] == [first, second]
    gc.images.update_location(image["id"], second, {"speed": "88mph"})
    shown = gc.images.get(image["id"])
    assert shown["locations"][1]["metadata"] == {"speed": "88mph", "store": "http"}
    # delete_image_location is admin only by default, as in Glance.
    with pytest.raises(Exception, match="403"):
        gc.images.delete_locations(image["id"], {first})
    admin = glanceclient.Client("2", endpoint=legacy.url, timeout=30, identity_headers=ADMIN)
    admin.images.delete_locations(image["id"], {first})
    assert [x["url"] for x in gc.images.get(image["id"])["locations"]] == [second]
    assert b"".join(gc.images.data(image["id"])) == DATA

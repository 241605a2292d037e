"""The v2 locations API (spec §2.10, 2.17): a service adds an external location to a queued
image; glimpse verifies the data behind it (hashes, inspection, the given validation hash) in
the background and activates the image, or puts it back to queued. Only services and admins
read locations, and never the credentials in a URL."""

from __future__ import annotations

import functools
import hashlib
import http.server
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.disk_images import qcow2_header
from tests.e2e.server import GlimpseServer
from tests.http_remote import serving

pytestmark = pytest.mark.e2e

DATA = bytes(range(256)) * 1024 + b"location data"
OWNER = {"X-Tenant-Id": "loc-owner", "X-User-Id": "u1", "X-Roles": "member"}
# nova or cinder acting for the user: the user's project, with the service role its service
# token adds.
SERVICE = {"X-Tenant-Id": "loc-owner", "X-User-Id": "u1", "X-Roles": "member,service"}
ADMIN = {"X-Tenant-Id": "admin", "X-User-Id": "root", "X-Roles": "admin"}
STRANGER = {"X-Tenant-Id": "stranger", "X-User-Id": "u2", "X-Roles": "member"}


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local HTTP server of files: its base URL."""
    root: Path = tmp_path_factory.mktemp("remote")
    (root / "data").write_bytes(DATA)
    (root / "backed.qcow2").write_bytes(qcow2_header(b"/etc/passwd") + b"\0" * 4096)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[assignment,method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with serving(httpd) as port:
        yield f"http://127.0.0.1:{port}"



def queued(client: httpx.Client, disk_format: str = "raw", **extra: str) -> str:
    resp = client.post("/v2/images", headers=OWNER, json={
        "name": "loc", "disk_format": disk_format, "container_format": "bare", **extra})
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    return image_id


def settled(client: httpx.Client, image_id: str) -> dict[str, object]:
    """The image once its location import has ended (bounded wait)."""
    deadline = time.monotonic() + 20
    while True:
        image: dict[str, object] = client.get(f"/v2/images/{image_id}", headers=OWNER).json()
        if image["status"] != "importing" or time.monotonic() > deadline:
            return image
        time.sleep(0.05)


def add(client: httpx.Client, image_id: str, body: object,
        headers: dict[str, str] = SERVICE) -> httpx.Response:
    return client.post(f"/v2/images/{image_id}/locations", json=body, headers=headers)


@pytest.mark.parametrize("algo", ["sha256", "sha512", "md5", "sha1"])
def test_service_adds_a_verified_location(client: httpx.Client, remote: str, algo: str) -> None:
    image_id = queued(client)
    url = f"{remote}/data"
    digest = hashlib.new(algo, DATA).hexdigest()
    resp = add(client, image_id, {"url": url, "validation_data": {
        "os_hash_algo": algo, "os_hash_value": digest.upper()}})
    assert resp.status_code == 202, resp.text
    image = settled(client, image_id)
    assert image["status"] == "active"
    assert image["size"] == len(DATA)
    assert image["checksum"] == hashlib.md5(DATA).hexdigest()
    # As Glance (and Tempest's LocationImportTest checks): the multihash is of the algorithm
    # the validation data named; md5 names the checksum and leaves it the configured sha512.
    multihash = "sha512" if algo == "md5" else algo
    assert image["os_hash_algo"] == multihash
    assert image["os_hash_value"] == hashlib.new(multihash, DATA).hexdigest()
    got = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert got.status_code == 200 and got.content == DATA
    listed = client.get(f"/v2/images/{image_id}/locations", headers=SERVICE)
    assert listed.status_code == 200
    assert listed.json() == [{"url": url, "metadata": {"store": "http"}}]


@pytest.mark.parametrize("none", [{}, {"validation_data": None}, {"validation_data": {}}])
def test_owner_may_add_without_validation_data(client: httpx.Client, remote: str,
                                               none: dict[str, object]) -> None:
    image_id = queued(client)
    assert add(client, image_id, {"url": f"{remote}/data", **none}, OWNER).status_code == 202
    assert settled(client, image_id)["status"] == "active"


def test_a_hash_mismatch_puts_the_image_back_to_queued(client: httpx.Client, remote: str) -> None:
    image_id = queued(client)
    resp = add(client, image_id, {"url": f"{remote}/data", "validation_data": {
        "os_hash_algo": "sha256", "os_hash_value": "0" * 64}})
    assert resp.status_code == 202
    image = settled(client, image_id)
    assert image["status"] == "queued"
    assert image["checksum"] is None and image["size"] is None
    assert client.get(f"/v2/images/{image_id}/locations", headers=ADMIN).json() == []


def test_hostile_disk_image_behind_a_location_is_refused(client: httpx.Client,
                                                          remote: str) -> None:
    image_id = queued(client, disk_format="qcow2")
    assert add(client, image_id, {"url": f"{remote}/backed.qcow2"}).status_code == 202
    assert settled(client, image_id)["status"] == "queued"


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/data", "file:///etc/passwd",
    "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/x", "not a url",
])
def test_urls_into_the_servers_network_are_refused(client: httpx.Client, url: str) -> None:
    image_id = queued(client)
    resp = add(client, image_id, {"url": url})
    assert resp.status_code == 400, resp.text
    if url.startswith("http://1"):
        # Glance's words, which Tempest looks for to fall back to a URL it may use.
        assert "does not pass filtering" in resp.text
    assert settled(client, image_id)["status"] == "queued"


@pytest.mark.parametrize("body", [
    [], "x", {}, {"url": 5}, {"url": ""}, {"url": "http://127.0.0.1/x", "extra": 1},
    {"url": "http://127.0.0.1/x", "validation_data": {"os_hash_algo": "sha256"}},
    {"url": "http://127.0.0.1/x", "validation_data": {"os_hash_value": "00"}},
    {"url": "http://127.0.0.1/x", "validation_data": {"os_hash_algo": "crc32",
                                                      "os_hash_value": "00000000"}},
    {"url": "http://127.0.0.1/x", "validation_data": {"os_hash_algo": "sha256",
                                                      "os_hash_value": "zz" * 32}},
    {"url": "http://127.0.0.1/x", "validation_data": {"os_hash_algo": "sha256",
                                                      "os_hash_value": "00" * 31}},
    {"url": "http://127.0.0.1/x", "validation_data": []},
])
def test_malformed_requests_are_400(client: httpx.Client, body: object) -> None:
    image_id = queued(client)
    assert add(client, image_id, body).status_code == 400


def test_only_queued_images_take_a_location(client: httpx.Client, remote: str) -> None:
    image_id = queued(client)
    assert add(client, image_id, {"url": f"{remote}/data"}).status_code == 202
    assert settled(client, image_id)["status"] == "active"
    assert add(client, image_id, {"url": f"{remote}/data"}).status_code == 409


def test_who_may_add_and_read(client: httpx.Client, remote: str) -> None:
    image_id = queued(client)
    # A stranger cannot see the (shared) image at all.
    assert add(client, image_id, {"url": f"{remote}/data"}, STRANGER).status_code == 404
    assert client.get(f"/v2/images/{image_id}/locations", headers=STRANGER).status_code == 404
    # The owner may add but not read; services and admins read.
    assert client.get(f"/v2/images/{image_id}/locations", headers=OWNER).status_code == 403
    assert client.get(f"/v2/images/{image_id}/locations", headers=ADMIN).status_code == 200


def test_credentials_in_a_location_url_are_refused_and_never_echoed(
    client: httpx.Client, remote: str, server: GlimpseServer
) -> None:
    image_id = queued(client)
    secret = "s3cr3t-Zx9"
    url = remote.replace("http://", f"http://user:{secret}@") + "/data"
    resp = add(client, image_id, {"url": url})
    assert resp.status_code == 400
    assert "credentials" in resp.text and secret not in resp.text
    assert settled(client, image_id)["status"] == "queued"
    assert secret not in server.log()


def tasks_reaching(client: httpx.Client, image_id: str, status: str) -> list[dict[str, object]]:
    """The image's tasks once every one has ``status``, as Tempest's waiter polls them (an
    empty list counts as reached, so a task recorded late would be missed)."""
    deadline = time.monotonic() + 20
    while True:
        resp = client.get(f"/v2/images/{image_id}/tasks", headers=OWNER)
        assert resp.status_code == 200, resp.text
        tasks: list[dict[str, object]] = resp.json()["tasks"]
        if all(task["status"] == status for task in tasks) or time.monotonic() > deadline:
            return tasks
        time.sleep(0.05)


def test_each_location_added_records_a_location_import_task(client: httpx.Client,
                                                            remote: str) -> None:
    """Tempest's LocationImportTest: the task, recorded before the 202, ends once the image
    has: success with the image active, failure with it back in queued and the cause."""
    url = f"{remote}/data"
    verified = queued(client)
    assert add(client, verified, {"url": url, "validation_data": {
        "os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(DATA).hexdigest()}}
    ).status_code == 202
    (task,) = tasks_reaching(client, verified, "success")
    assert task["type"] == "location_import" and task["image_id"] == verified
    assert task["input"] == {"image_id": verified, "loc_url": url, "validation_data": {
        "os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(DATA).hexdigest()}}
    image = client.get(f"/v2/images/{verified}", headers=OWNER).json()
    assert image["status"] == "active"
    assert image["checksum"] == hashlib.md5(DATA).hexdigest()
    assert image["os_hash_algo"] == "sha256"
    assert image["os_hash_value"] == hashlib.sha256(DATA).hexdigest()

    mismatched = queued(client)
    assert add(client, mismatched, {"url": url, "validation_data": {
        "os_hash_algo": "sha512", "os_hash_value": "beefdead" * 16}}).status_code == 202
    (task,) = tasks_reaching(client, mismatched, "failure")
    assert "does not match" in str(task["message"]), task
    assert client.get(f"/v2/images/{mismatched}", headers=OWNER).json()["status"] == "queued"

    plain = queued(client)
    assert add(client, plain, {"url": url}).status_code == 202
    tasks = tasks_reaching(client, plain, "success")
    assert len(tasks) == 1 and tasks[0]["input"] == {
        "image_id": plain, "loc_url": url, "validation_data": {}}
    image = client.get(f"/v2/images/{plain}", headers=OWNER).json()
    assert image["status"] == "active"
    assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    # A refused request (the image is no longer queued) records nothing.
    assert add(client, plain, {"url": url}).status_code == 409
    assert len(tasks_reaching(client, plain, "success")) == 1

"""The node image cache through real ``glimpse serve`` processes (two workers sharing the
node's cache) with Swift from the all-in-one as the remote store (docs/cache.md): fills on the
first download, hits after, one fill for concurrent readers, ranges and v1 from the cache,
deleted and deactivated images leaving the cache on every node, a tampered entry refused, the
v2 cache API as Tempest's ImageCachingTest drives it, and hostile ids."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import swift_aio
from tests.e2e.server import GlimpseServer, free_port

pytestmark = pytest.mark.e2e

MiB = 1 << 20
ADMIN = {"x-tenant-id": "cache-admin", "x-roles": "admin"}
MEMBER = {"x-tenant-id": "cache-member", "x-roles": "member"}


def cache_settings(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**swift_aio.store_env("swift", segment_size="1MB"),
            "image_cache_dir": str(data_dir / "cache"), "image_cache_max_size": str(64 * MiB),
            "image_cache_sweep_interval": "1", "workers": "2", **extra}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlimpseServer]:
    swift_aio.require()
    data_dir = tmp_path_factory.mktemp("cache-node")
    server = GlimpseServer(cache_settings(data_dir, metrics_port=str(free_port())),
                           data_dir=data_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(node: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=60.0) as c:
        yield c


def make_image(client: httpx.Client, data: bytes, owner: dict[str, str] = MEMBER) -> str:
    created = client.post("/v2/images", headers=owner, json={
        "name": "cached", "disk_format": "raw", "container_format": "bare"})
    assert created.status_code == 201, created.text
    image_id: str = created.json()["id"]
    put = client.put(f"/v2/images/{image_id}/file", content=data,
                     headers={**owner, "content-type": "application/octet-stream"})
    assert put.status_code == 204, put.text
    return image_id


def cache_state(client: httpx.Client) -> dict[str, list[str]]:
    state = client.get("/v2/cache", headers=ADMIN)
    assert state.status_code == 200, state.text
    body = state.json()
    return {"cached": [c["image_id"] for c in body["cached_images"]],
            "queued": body["queued_images"]}


def cache_events(node: GlimpseServer) -> dict[str, float]:
    text = httpx.get(node.metrics_url + "/metrics", timeout=10).text
    return {s.labels["event"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "glimpse_cache_events_total"}


def entry(node: GlimpseServer, image_id: str) -> Path:
    return node.data_dir / "cache" / "entries" / image_id


def test_first_download_fills_then_hits(node: GlimpseServer, client: httpx.Client) -> None:
    data = os.urandom(3 * MiB + 17)
    image_id = make_image(client, data)
    before = cache_events(node)
    first = client.get(f"/v2/images/{image_id}/file", headers=MEMBER)
    assert first.status_code == 200 and first.content == data
    assert image_id in cache_state(client)["cached"]
    assert entry(node, image_id).read_bytes() == data
    second = client.get(f"/v2/images/{image_id}/file", headers=MEMBER)
    assert second.status_code == 200 and second.content == data
    assert second.headers["content-md5"] == hashlib.md5(data).hexdigest()
    after = cache_events(node)
    assert after.get("fill", 0) - before.get("fill", 0) == 1
    assert after.get("hit", 0) - before.get("hit", 0) == 1
    listed = client.get("/v2/cache", headers=ADMIN).json()["cached_images"]
    record = next(c for c in listed if c["image_id"] == image_id)
    assert (record["size"], record["hits"]) == (len(data), 1)
    assert isinstance(record["last_accessed"], float)
    # A range and a v1 download come from the cache too.
    part = client.get(f"/v2/images/{image_id}/file",
                      headers={**MEMBER, "range": "bytes=1000-2099999"})
    assert part.status_code == 206 and part.content == data[1000:2100000]
    v1 = client.get(f"/v1/images/{image_id}", headers=MEMBER)
    assert v1.status_code == 200 and v1.content == data
    final = cache_events(node)
    assert final.get("hit", 0) - after.get("hit", 0) == 2
    assert final.get("fill", 0) == after.get("fill", 0)


def test_concurrent_downloads_cause_one_fill(node: GlimpseServer,
                                             client: httpx.Client) -> None:
    data = os.urandom(8 * MiB + 3)
    image_id = make_image(client, data)
    before = cache_events(node)

    def download(_: int) -> str:
        with httpx.Client(base_url=node.url, timeout=120.0) as c:
            got = c.get(f"/v2/images/{image_id}/file", headers=MEMBER)
            assert got.status_code == 200
            return hashlib.sha256(got.content).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        digests = list(pool.map(download, range(6)))
    assert digests == [hashlib.sha256(data).hexdigest()] * 6
    after = cache_events(node)
    assert after.get("fill", 0) - before.get("fill", 0) == 1


def test_a_range_miss_reads_the_store_and_prefetches(node: GlimpseServer,
                                                     client: httpx.Client) -> None:
    data = os.urandom(2 * MiB)
    image_id = make_image(client, data)
    part = client.get(f"/v2/images/{image_id}/file", headers={**MEMBER, "range": "bytes=5-9"})
    assert part.status_code == 206 and part.content == data[5:10]
    wait_for(lambda: image_id in cache_state(client)["cached"])


def test_delete_and_deactivate_leave_the_cache(node: GlimpseServer,
                                               client: httpx.Client) -> None:
    data = os.urandom(MiB)
    image_id = make_image(client, data)
    assert client.get(f"/v2/images/{image_id}/file", headers=MEMBER).content == data
    assert entry(node, image_id).exists()
    assert client.post(f"/v2/images/{image_id}/actions/deactivate",
                       headers=ADMIN).status_code == 204
    assert not entry(node, image_id).exists()
    assert image_id not in cache_state(client)["cached"]
    assert client.get(f"/v2/images/{image_id}/file", headers=MEMBER).status_code == 403
    assert client.post(f"/v2/images/{image_id}/actions/reactivate",
                       headers=ADMIN).status_code == 204
    assert client.get(f"/v2/images/{image_id}/file", headers=MEMBER).content == data
    assert entry(node, image_id).exists()
    assert client.delete(f"/v2/images/{image_id}", headers=MEMBER).status_code == 204
    assert not entry(node, image_id).exists()
    assert image_id not in cache_state(client)["cached"]


def test_a_tampered_entry_is_not_served(node: GlimpseServer, client: httpx.Client) -> None:
    data = os.urandom(MiB + 1)
    image_id = make_image(client, data)
    client.get(f"/v2/images/{image_id}/file", headers=MEMBER)
    path = entry(node, image_id)
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"tampered")
    got = client.get(f"/v2/images/{image_id}/file", headers=MEMBER)
    assert got.status_code == 200 and got.content == data
    assert path.read_bytes() == data, "refilled from the store"


def test_damaged_store_data_fails_the_download_and_is_not_cached(
        node: GlimpseServer, client: httpx.Client) -> None:
    import swiftclient.client

    data = os.urandom(MiB - 1000)  # one object (below the segment size)
    image_id = make_image(client, data)
    conn = swiftclient.client.Connection(authurl=f"{swift_aio.ENDPOINT}/auth/v1.0",
                                         user=swift_aio.USER, key=swift_aio.KEY)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 1
    conn.put_object("glimpse-test", image_id, bytes(damaged))
    # The client gets all but the last byte and then a cut connection, or, when the fill
    # failed before the answer started, a 503: never a whole body.
    received = bytearray()
    try:
        with client.stream("GET", f"/v2/images/{image_id}/file", headers=MEMBER) as response:
            if response.status_code == 503:
                assert "does not match the image" in response.read().decode()
            else:
                assert response.status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):
                    for chunk in response.iter_bytes():
                        received += chunk
    except httpx.RemoteProtocolError:
        pass
    assert len(received) < len(data)
    assert not entry(node, image_id).exists()
    assert image_id not in cache_state(client)["cached"]
    assert "does not match the image" in node.log()


def test_versions_list_the_cache_minors(client: httpx.Client) -> None:
    versions = {v["id"]: v["status"]
                for v in client.get("/versions").json()["versions"]}
    assert versions["v2.14"] == versions["v2.16"] == "SUPPORTED"
    assert versions["v2.18"] == "CURRENT"


def test_cache_api_as_tempest_drives_it(client: httpx.Client) -> None:
    # Tempest's ImageCachingTest.test_image_caching_cycle, step by step.
    assert client.get("/v2/cache", headers=MEMBER).status_code == 403
    assert client.put("/v2/cache/non-existing-image-id", headers=ADMIN).status_code == 404
    queued = client.post("/v2/images", headers=MEMBER, json={"name": "queued"}).json()["id"]
    assert client.put(f"/v2/cache/{queued}", headers=ADMIN).status_code == 400
    data = os.urandom(1024)
    image_id = make_image(client, data)
    assert client.put(f"/v2/cache/{image_id}", headers=ADMIN).status_code == 202
    wait_for(lambda: image_id in cache_state(client)["cached"])
    assert image_id not in cache_state(client)["queued"]
    nodes = client.get(f"/v2/cache/nodes/{image_id}", headers=ADMIN)
    assert nodes.status_code == 200 and len(nodes.json()) == 1
    assert client.delete("/v2/cache", headers=ADMIN).status_code == 204
    assert cache_state(client) == {"cached": [], "queued": []}
    bad = client.delete("/v2/cache", headers={**ADMIN, "x-image-cache-clear-target": "invalid"})
    assert bad.status_code == 400 and "x-image-cache-clear-target" in bad.text


def test_cache_api_other_calls(client: httpx.Client) -> None:
    data = os.urandom(4096)
    image_id = make_image(client, data)
    client.get(f"/v2/images/{image_id}/file", headers=MEMBER)
    assert client.delete(f"/v2/cache/{image_id}", headers=MEMBER).status_code == 403
    assert client.delete(f"/v2/cache/{image_id}", headers=ADMIN).status_code == 204
    assert image_id not in cache_state(client)["cached"]
    assert client.get(f"/v2/cache/nodes/{image_id}", headers=ADMIN).json() == []
    client.get(f"/v2/images/{image_id}/file", headers=MEMBER)
    assert client.delete("/v2/cache", headers={**ADMIN, "x-image-cache-clear-target": "queue"}
                         ).status_code == 204
    assert image_id in cache_state(client)["cached"]
    pruned = client.post("/v2/cache/prune", headers=ADMIN)
    assert pruned.status_code == 200
    assert pruned.json() == {"total_files_pruned": 0, "total_bytes_pruned": 0}
    cleaned = client.post("/v2/cache/clean", headers=ADMIN)
    assert cleaned.status_code == 200 and cleaned.content == b""
    assert client.post("/v2/cache/prune", headers=MEMBER).status_code == 403
    # Refused callers learn nothing about which ids exist.
    missing = "00000000-0000-0000-0000-000000000000"
    for path in (f"/v2/cache/{image_id}", f"/v2/cache/{missing}"):
        assert client.put(path, headers=MEMBER).status_code == 403
        assert client.delete(path, headers=MEMBER).status_code == 403
    assert client.get(f"/v2/cache/nodes/{missing}", headers=MEMBER).status_code == 403


@pytest.mark.parametrize("bad", ["not-a-uuid", "..%2F..%2Fetc%2Fpasswd", "%00",
                                 "00000000-0000-0000-0000-000000000000", "x" * 300])
def test_cache_api_hostile_ids(client: httpx.Client, bad: str) -> None:
    for method in ("PUT", "DELETE"):
        got = client.request(method, f"/v2/cache/{bad}", headers=ADMIN)
        assert got.status_code == 404, (method, bad, got.text)
    assert client.get(f"/v2/cache/nodes/{bad}", headers=ADMIN).status_code == 404
    assert client.get("/v2/cache", headers=ADMIN).status_code == 200


def test_cache_api_refuses_bodies_and_unknown_methods(client: httpx.Client) -> None:
    image_id = make_image(client, b"body")
    with_body = client.put(f"/v2/cache/{image_id}", headers=ADMIN, content=b'{"x": 1}')
    assert with_body.status_code == 400
    assert client.post("/v2/cache", headers=ADMIN).status_code == 405
    assert client.get(f"/v2/cache/{image_id}", headers=ADMIN).status_code == 405
    huge = client.delete("/v2/cache", headers={**ADMIN, "x-image-cache-clear-target": "c" * 5000})
    assert huge.status_code == 400 and "c" * 100 not in huge.text


def test_every_node_drops_an_image_deleted_elsewhere(tmp_path: Path) -> None:
    swift_aio.require()
    shared = {"database_url": f"sqlite:///{tmp_path / 'shared.sqlite'}"}
    a = GlimpseServer(cache_settings(tmp_path / "a", workers="1", **shared),
                      data_dir=tmp_path / "a")
    b = GlimpseServer(cache_settings(tmp_path / "b", workers="1", **shared),
                      data_dir=tmp_path / "b")
    try:
        with httpx.Client(base_url=a.url, timeout=60) as ca, \
                httpx.Client(base_url=b.url, timeout=60) as cb:
            data = os.urandom(MiB)
            image_id = make_image(ca, data)
            assert cb.get(f"/v2/images/{image_id}/file", headers=MEMBER).content == data
            assert ca.get(f"/v2/images/{image_id}/file", headers=MEMBER).content == data
            assert len(ca.get(f"/v2/cache/nodes/{image_id}", headers=ADMIN).json()) == 2
            assert ca.delete(f"/v2/images/{image_id}", headers=MEMBER).status_code == 204
            # Node b never serves it again, and its sweep drops its copy.
            assert cb.get(f"/v2/images/{image_id}/file", headers=MEMBER).status_code == 404
            wait_for(lambda: not entry(b, image_id).exists())
            assert ca.get(f"/v2/cache/nodes/{image_id}", headers=ADMIN).status_code == 404
    finally:
        a.stop()
        b.stop()


def test_glanceclient_cache_calls(node: GlimpseServer, client: httpx.Client) -> None:
    import glanceclient
    import glanceclient.exc

    gc = glanceclient.Client("2", endpoint=node.url, timeout=30, identity_headers={
        "X-Tenant-Id": "cache-admin", "X-User-Id": "admin-user", "X-Roles": "admin"})
    data = os.urandom(50_000)
    image_id = make_image(client, data)
    gc.cache.queue(image_id)
    wait_for(lambda: image_id in [c["image_id"] for c in gc.cache.list()["cached_images"]])
    assert gc.cache.list_cached_nodes(image_id) == [node.url]
    gc.cache.delete(image_id)
    assert image_id not in [c["image_id"] for c in gc.cache.list()["cached_images"]]
    gc.cache.queue(image_id)
    wait_for(lambda: entry(node, image_id).exists())
    gc.cache.prune()
    gc.cache.clean()
    gc.cache.clear("both")
    assert gc.cache.list()["cached_images"] == []
    with pytest.raises(glanceclient.exc.HTTPNotFound):
        gc.cache.queue("not-an-image")


def glimpse_cache(node: GlimpseServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``glimpse cache ...`` on the node: the server's settings (its database too, on the
    PostgreSQL and MariaDB runs), as an operator's shell has."""
    return subprocess.run([sys.executable, "-m", "glimpse", "cache", *args], env=node.env,
                          capture_output=True, text=True, timeout=60)


def test_cli(node: GlimpseServer, client: httpx.Client) -> None:
    data = os.urandom(200_000)
    image_id = make_image(client, data)
    client.get(f"/v2/images/{image_id}/file", headers=MEMBER)
    listed = glimpse_cache(node, "list")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert image_id in [c["image_id"] for c in report["cached_images"]]
    assert report["max_size"] == 64 * MiB
    deleted = glimpse_cache(node, "delete", image_id)
    assert deleted.returncode == 0, deleted.stderr
    assert not entry(node, image_id).exists()
    # Queued from the command line, prefetched by the running server.
    assert glimpse_cache(node, "queue", image_id).returncode == 0
    wait_for(lambda: entry(node, image_id).exists())
    pruned = glimpse_cache(node, "prune")
    assert json.loads(pruned.stdout) == {"total_files_pruned": 0, "total_bytes_pruned": 0}
    cleared = glimpse_cache(node, "clear", "--target", "cache")
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["queue_deleted"] is None
    assert not entry(node, image_id).exists()
    for bad in ("not-an-id", "../../etc/passwd", "00000000-0000-0000-0000-000000000000"):
        refused = glimpse_cache(node, "queue", bad)
        assert refused.returncode == 1 and "not found" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert glimpse_cache(node, "clear", "--target", "bogus").returncode == 2
    off = subprocess.run([sys.executable, "-m", "glimpse", "cache", "list"],
                         env={**os.environ, "GLIMPSE_DATA_DIR": str(node.data_dir / "none")},
                         capture_output=True, text=True, timeout=60)
    assert off.returncode == 2 and "no image cache is configured" in off.stderr
    assert not (node.data_dir / "none").exists(), "nothing made for a cache that is off"


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")

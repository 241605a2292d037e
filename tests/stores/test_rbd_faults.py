"""Ceph faults seen through a real glimpse server with an RBD store: the OSD or the monitor
is stopped (``scripts/ceph stop osd|mon``) during an upload or a download, and started again.

The store's waits are bounded (op_timeout 5 s), so a stopped daemon is a clear 503 within
seconds; the image ends killed (v1) or queued again (v2); what reached the pool is removed once
Ceph is back (the leftover purge), and a broken download never ends as a complete one.

These tests stop daemons every other Ceph test depends on: they carry the ``ceph_faults`` mark,
and scripts/test runs them on their own, after the rest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests import ceph
from tests.cut_upload import upload_cut_by
from tests.e2e.server import GlimpseServer

pytestmark = [pytest.mark.e2e, pytest.mark.ceph_faults]

MiB = 1 << 20
V1_FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
OWNER = {"X-Tenant-Id": "faults", "X-User-Id": "u1", "X-Roles": "member"}


@pytest.fixture(scope="module")
def server() -> Iterator[GlimpseServer]:
    ceph.require()
    srv = GlimpseServer({**ceph.store_env(chunk_size="1MB", op_timeout=5, connect_timeout=5),
                         "store_cleanup_interval": "0.5"})
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def ceph_restored() -> Iterator[None]:
    """Whatever a test stopped runs again afterwards (start is idempotent)."""
    yield
    ceph.daemon("start")


def upload_with_fault(server: GlimpseServer, path: str, method: str, fault: str) -> tuple[int, str]:
    """Send 12 MiB over a socket: after 6 MiB (several objects are written) stop the Ceph
    daemon ``fault``, send the rest, then read the answer as a client would see it. (With the
    monitor stopped, the OSD still takes the data: what fails is the snapshot at the end.)"""
    return upload_cut_by(
        server.port, f"{method} {path} HTTP/1.1\r\nHost: glimpse\r\n"
        "X-Tenant-Id: faults\r\nX-User-Id: u1\r\nX-Roles: member\r\n"
        "Content-Type: application/octet-stream\r\n", lambda: ceph.daemon("stop", fault),
        timeout=120)


def wait_until_gone(image_id: str, seconds: float = 60) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := ceph.images(image_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.parametrize("fault", ["osd", "mon"])
def test_v1_upload_with_a_daemon_stopped_kills_the_image_and_leaves_nothing(
    server: GlimpseServer, fault: str
) -> None:
    image_id = str(uuid.uuid4())
    made = httpx.post(f"{server.url}/v1/images", headers={
        **OWNER, **V1_FORMATS, "x-image-meta-name": "fault", "x-image-meta-id": image_id})
    assert made.status_code == 201, made.text
    started = time.monotonic()
    status, body = upload_with_fault(server, f"/v1/images/{image_id}", "PUT", fault)
    assert status == 503, body
    assert "Store rbd" in body
    assert time.monotonic() - started < 60  # bounded: librados would wait forever
    meta = httpx.head(f"{server.url}/v1/images/{image_id}", headers=OWNER)
    assert meta.headers["x-image-meta-status"] == "killed"
    ceph.daemon("start")
    assert wait_until_gone(image_id) == []


@pytest.mark.parametrize("fault", ["osd", "mon"])
def test_v2_upload_with_a_daemon_stopped_requeues_the_image_and_leaves_nothing(
    server: GlimpseServer, fault: str
) -> None:
    made = httpx.post(f"{server.url}/v2/images", headers=OWNER, json={
        "name": "fault", "disk_format": "raw", "container_format": "bare"})
    image_id = made.json()["id"]
    status, body = upload_with_fault(server, f"/v2/images/{image_id}/file", "PUT", fault)
    assert status == 503, body
    assert "Store rbd" in body
    shown = httpx.get(f"{server.url}/v2/images/{image_id}", headers=OWNER).json()
    assert shown["status"] == "queued"
    ceph.daemon("start")
    assert wait_until_gone(image_id) == []
    # Once Ceph is back, the image takes its data.
    put = httpx.put(f"{server.url}/v2/images/{image_id}/file", content=b"again" * 1000,
                    headers={**OWNER, "Content-Type": "application/octet-stream"}, timeout=60)
    assert put.status_code == 204, put.text
    httpx.delete(f"{server.url}/v2/images/{image_id}", headers=OWNER)


def test_a_download_cut_by_a_stopped_osd_is_never_a_success(server: GlimpseServer) -> None:
    # Far more than the reads in flight (4 objects) and the sockets' buffers hold: the OSD
    # stops while most of the image is still to be read.
    data = bytes(range(256)) * (48 * MiB // 256)
    made = httpx.post(f"{server.url}/v1/images", content=data, timeout=60, headers={
        **OWNER, **V1_FORMATS, "content-type": "application/octet-stream"})
    assert made.status_code == 201, made.text
    url = f"{server.url}/v1/images/{made.json()['image']['id']}"
    received = b""
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, headers=OWNER,
                                                      timeout=60) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():  # reading the body is what must fail
            if not received:
                ceph.daemon("stop", "osd")
            received += chunk
    assert len(received) < len(data)
    ceph.daemon("start")
    assert httpx.get(url, headers=OWNER, timeout=60).content == data
    httpx.delete(url, headers=OWNER)

"""Object-store faults seen through a real glimpse server: the store goes down or answers 503
during an upload, or breaks off during a download. A fault proxy sits between glimpse and the
Swift all-in-one; the test looks at the store directly, past the proxy."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import boto3
import httpx
import pytest
import swiftclient.client

from tests import swift_aio
from tests.cut_upload import upload_cut_by
from tests.e2e.server import GlimpseServer
from tests.fault_proxy import FaultProxy

MiB = 1 << 20
FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}


@pytest.fixture(scope="module", params=["swift", "s3"])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[str, FaultProxy, GlimpseServer]]:
    swift_aio.require()
    driver: str = request.param
    proxy = FaultProxy(swift_aio.PORT)
    small = {"segment_size": "1MB"} if driver == "swift" else {"part_size": "5MB"}
    settings = swift_aio.store_env(driver, proxy.url, retries=0, timeout=10, **small,
                                   **swift_aio.probe_credentials(driver))
    server = GlimpseServer({**settings, "store_cleanup_interval": "0.5"})
    yield driver, proxy, server
    server.stop()
    proxy.close()


@pytest.fixture
def proxy(setup: tuple[str, FaultProxy, GlimpseServer]) -> Iterator[FaultProxy]:
    yield setup[1]
    setup[1].set_mode("pass")


def residue(driver: str, key: str) -> list[str]:
    """Everything the store holds for ``key``, asked directly (not through the proxy)."""
    if driver == "swift":
        conn = swiftclient.client.Connection(
            authurl=f"{swift_aio.ENDPOINT}/auth/v1.0", user=swift_aio.PROBE_USER,
            key=swift_aio.PROBE_KEY)
        found = []
        for container in ("glimpse-test", "glimpse-test_segments"):
            _, listing = conn.get_container(container, prefix=key, full_listing=True)
            found += [entry["name"] for entry in listing]
        return found
    client = boto3.client("s3", endpoint_url=swift_aio.ENDPOINT, region_name="us-east-1",
                          aws_access_key_id=swift_aio.PROBE_USER,
                          aws_secret_access_key=swift_aio.PROBE_KEY)
    objects = client.list_objects_v2(Bucket="glimpse-test", Prefix=key).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket="glimpse-test", Prefix=key)
    return [o["Key"] for o in objects] + [u["Key"] for u in uploads.get("Uploads", [])]


def upload_with_fault(server: GlimpseServer, proxy: FaultProxy, mode: str,
                      image_id: str) -> tuple[int, str]:
    """PUT 12 MiB raw over a socket: after 6 MiB (one S3 part, several Swift segments are
    stored) the proxy turns to ``mode``; 5 MiB more make glimpse write again; then read the
    answer without sending the rest, as a client would see it."""
    headers = {"x-image-meta-name": "fault", **FORMATS}
    r = httpx.post(f"{server.url}/v1/images", headers={**headers, "x-image-meta-id": image_id})
    assert r.status_code == 201, r.text
    return upload_cut_by(
        server.port, f"PUT /v1/images/{image_id} HTTP/1.1\r\nHost: glimpse\r\n"
        "Content-Type: application/octet-stream\r\n", lambda: proxy.set_mode(mode), after=5)


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_store_failing_during_upload_kills_the_image_and_leaves_nothing(
    setup: tuple[str, FaultProxy, GlimpseServer], proxy: FaultProxy, mode: str
) -> None:
    driver, _, server = setup
    image_id = str(uuid.uuid4())
    status, body = upload_with_fault(server, proxy, mode, image_id)
    assert status == 503
    assert "Store" in body and driver in body
    meta = httpx.head(f"{server.url}/v1/images/{image_id}")
    assert meta.headers["x-image-meta-status"] == "killed"
    # Part of the image reached the store before it failed, and could not be removed then.
    assert residue(driver, image_id)
    proxy.set_mode("pass")
    deadline = time.monotonic() + 20
    while residue(driver, image_id) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert residue(driver, image_id) == []
    assert swift_aio.PROBE_KEY not in server.log()


def test_a_download_cut_mid_stream_is_never_a_success(
    setup: tuple[str, FaultProxy, GlimpseServer], proxy: FaultProxy
) -> None:
    server = setup[2]
    data = bytes(range(256)) * (4 * MiB // 256)
    r = httpx.post(f"{server.url}/v1/images", content=data,
                   headers={**FORMATS, "content-type": "application/octet-stream"},
                   timeout=60)
    assert r.status_code == 201, r.text
    image_id = r.json()["image"]["id"]
    proxy.set_mode("cut", cut_after=MiB)
    received = b""
    url = f"{server.url}/v1/images/{image_id}"
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=30) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():  # reading the body is what must fail
            received += chunk
    assert len(received) < len(data)
    proxy.set_mode("pass")
    assert httpx.get(f"{server.url}/v1/images/{image_id}", timeout=60).content == data
    httpx.delete(f"{server.url}/v1/images/{image_id}")
    assert swift_aio.PROBE_KEY not in server.log()

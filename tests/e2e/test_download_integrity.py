"""Downloads never pass off damaged or short data as a whole image (spec §8.3)."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from tests.e2e.server import GlimpseServer

HEADERS = {
    "content-type": "application/octet-stream",
    "x-image-meta-disk_format": "raw",
    "x-image-meta-container_format": "bare",
}


def upload(client: httpx.Client, data: bytes) -> str:
    resp = client.post("/v1/images", content=data, headers=HEADERS)
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["image"]["id"]
    return image_id


@pytest.mark.parametrize("size", [1, 65536, 3 * 1024 * 1024 + 17])
def test_download_is_byte_exact(client: httpx.Client, size: int) -> None:
    data = os.urandom(size)
    image_id = upload(client, data)
    resp = client.get(f"/v1/images/{image_id}")
    assert resp.status_code == 200
    assert resp.headers["content-length"] == str(size)
    assert resp.content == data
    assert resp.headers["x-image-meta-checksum"] == hashlib.md5(data).hexdigest()


def test_range_is_ignored(client: httpx.Client) -> None:
    data = os.urandom(100_000)
    image_id = upload(client, data)
    resp = client.get(f"/v1/images/{image_id}", headers={"Range": "bytes=10-20"})
    assert resp.status_code == 200 and resp.content == data


@pytest.mark.filesystem_store
def test_truncated_store_file_aborts_the_download(
    server: GlimpseServer, client: httpx.Client
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    image_id = upload(client, data)
    path = server.data_dir / "images" / image_id
    with path.open("r+b") as fh:
        fh.truncate(1024 * 1024)
    with pytest.raises(httpx.HTTPError), client.stream("GET", f"/v1/images/{image_id}") as resp:
        assert resp.status_code == 200
        received = b"".join(resp.iter_bytes())
        # Reaching here with fewer bytes than announced would be a silent short read.
        assert len(received) == len(data), "short body completed as a success"
    assert client.get("/versions").status_code == 200


def test_many_downloads_on_one_connection(client: httpx.Client) -> None:
    blobs = [os.urandom(n) for n in (10, 200_000, 1_500_000)]
    ids = [upload(client, blob) for blob in blobs]
    for _ in range(3):
        for image_id, blob in zip(ids, blobs, strict=True):
            assert client.get(f"/v1/images/{image_id}").content == blob

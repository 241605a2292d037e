"""The RBD store through a real server (``scripts/ceph start`` first): the location nova and
cinder clone from, an image with clones refused deletion over both APIs while the clone still
reads, an inspector's refusal leaving nothing in the pool, and the store's credentials never in
an answer, the log or the database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import ceph
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

MiB = 1 << 20
ADMIN = {"X-Tenant-Id": "admin", "X-User-Id": "root", "X-Roles": "admin"}
OWNER = {"X-Tenant-Id": "rbd-owner", "X-User-Id": "u1", "X-Roles": "member"}
OCTETS = {"Content-Type": "application/octet-stream"}
V1_FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}


@pytest.fixture(scope="module")
def server() -> Iterator[GlimpseServer]:
    ceph.require()
    srv = GlimpseServer({**ceph.store_env(chunk_size="1MB"), "show_image_direct_url": "true",
                         "show_multiple_locations": "true"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def v2_image(client: httpx.Client, data: bytes, disk_format: str = "raw") -> str:
    resp = client.post("/v2/images", headers=OWNER, json={
        "name": "rbd", "disk_format": disk_format, "container_format": "bare"})
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    put = client.put(f"/v2/images/{image_id}/file", content=data, headers={**OWNER, **OCTETS})
    assert put.status_code == 204, put.text
    return image_id


def v1_image(client: httpx.Client, data: bytes) -> str:
    resp = client.post("/v1/images", content=data, headers={
        **OWNER, **OCTETS, **V1_FORMATS, "x-image-meta-name": "rbd"})
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["image"]["id"]
    return image_id


def test_the_location_is_glances_rbd_url(client: httpx.Client) -> None:
    data = os.urandom(3 * MiB + 1)
    image_id = v2_image(client, data)
    shown = client.get(f"/v2/images/{image_id}", headers=ADMIN).json()
    url = f"rbd://{ceph.fsid()}/{ceph.POOL}/{image_id}/snap"
    assert shown["direct_url"] == url
    assert [loc["url"] for loc in shown["locations"]] == [url]
    assert ceph.images(image_id) == [image_id]
    assert client.get(f"/v2/images/{image_id}/file", headers=OWNER).content == data
    assert client.delete(f"/v2/images/{image_id}", headers=OWNER).status_code == 204
    assert ceph.images(image_id) == []


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_an_image_with_a_clone_is_not_deleted_and_the_clone_still_reads(
    client: httpx.Client, api: str
) -> None:
    import rbd

    data = os.urandom(2 * MiB + 7)
    image_id = v1_image(client, data) if api == "v1" else v2_image(client, data)
    clone = f"volume-{uuid.uuid4()}"
    with ceph.admin_ioctx() as ioctx:
        # What nova and cinder do with the location: a copy-on-write clone of the snapshot.
        rbd.RBD().clone(ioctx, image_id, "snap", ioctx, clone)
        try:
            refused = client.delete(f"/{api}/images/{image_id}", headers=OWNER)
            assert refused.status_code == 409, refused.text
            assert "in use" in refused.text
            # The image stays as it was, its data downloads, and the clone reads it.
            status = client.head(f"/v1/images/{image_id}", headers=OWNER)
            assert status.headers["x-image-meta-status"] == "active"
            assert client.get(f"/v1/images/{image_id}", headers=OWNER).content == data
            with rbd.Image(ioctx, clone, read_only=True) as child:
                assert child.read(0, len(data)) == data
        finally:
            rbd.RBD().remove(ioctx, clone)
    assert client.delete(f"/{api}/images/{image_id}", headers=OWNER).status_code in (200, 204)
    assert ceph.images(image_id) == []


def test_an_inspector_refusal_leaves_nothing_in_the_pool(client: httpx.Client) -> None:
    resp = client.post("/v2/images", headers=OWNER, json={
        "name": "not qcow2", "disk_format": "qcow2", "container_format": "bare"})
    image_id = resp.json()["id"]
    put = client.put(f"/v2/images/{image_id}/file", content=os.urandom(3 * MiB),
                     headers={**OWNER, **OCTETS})
    assert put.status_code == 415, put.text  # v2's answer to content that is not qcow2
    assert "does not match disk_format" in put.text
    assert client.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "queued"
    assert ceph.images(image_id) == []


def test_sparse_data_stays_sparse_and_reads_back(client: httpx.Client) -> None:
    import rbd

    data = bytes(3 * MiB) + b"boot sector" + bytes(2 * MiB)
    image_id = v2_image(client, data)
    with ceph.admin_ioctx() as ioctx, rbd.Image(ioctx, image_id, snapshot="snap",
                                                read_only=True) as image:
        extents: list[int] = []
        image.diff_iterate(0, image.size(), None, lambda o, n, e: extents.append(n))
    assert sum(extents) <= 64 * 1024
    assert client.get(f"/v2/images/{image_id}/file", headers=OWNER).content == data
    ranged = client.get(f"/v2/images/{image_id}/file", headers={
        **OWNER, "Range": f"bytes={3 * MiB}-{3 * MiB + 10}"})
    assert ranged.status_code == 206 and ranged.content == b"boot sector"
    client.delete(f"/v2/images/{image_id}", headers=OWNER)


def test_credentials_are_never_in_answers_logs_or_the_database(
    client: httpx.Client, server: GlimpseServer
) -> None:
    secret = next(line.split("=", 1)[1].strip() for line in ceph.KEYRING.read_text().splitlines()
                  if line.strip().startswith("key"))
    image_id = v2_image(client, os.urandom(MiB))
    answers = [client.get(f"/v2/images/{image_id}", headers=ADMIN).text,
               client.get("/v2/images", headers=ADMIN).text,
               client.head(f"/v1/images/{image_id}", headers=ADMIN).headers.__repr__(),
               client.get("/v1/images/detail", headers=ADMIN).text]
    client.delete(f"/v2/images/{image_id}", headers=OWNER)
    places = [*answers, server.log()]
    places += [p.read_bytes().decode("latin-1") for p in Path(server.data_dir).rglob("*")
               if p.is_file()]
    for text in places:
        assert secret not in text
        assert str(ceph.KEYRING) not in text and str(ceph.CONF) not in text

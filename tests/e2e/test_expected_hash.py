"""The expected hash of an upload, end to end ("Beyond Glance", issue 14): the client names
the sha256 or sha512 it expects (v1 ``x-image-meta-expected-hash``, v2
``OpenStack-Image-Expected-Hash``), glimpse checks it as the data streams, and a mismatch
fails the upload (v1 killed, v2 back to queued) with nothing left in the store. A malformed
value is a 400 before any byte is stored. Raw HTTP for both APIs, and python-glanceclient."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.identity import ctx
from tests.e2e.server import GlimpseServer
from tests.e2e.store_objects import stored
from tests.e2e.test_v2_data import (
    OCTETS,
    assert_requeued_and_empty,
    create,
    pieces,
    show,
    wait_until,
)

pytestmark = pytest.mark.e2e

OWNER = ctx("expected-hash")
V1 = "x-image-meta-expected-hash"
V2 = "OpenStack-Image-Expected-Hash"
V1_FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
DATA = uuid.uuid4().bytes * 50_000 + b"tail"  # ~800 KB: chunks big enough to hash in threads
MALFORMED = [
    "sha256",
    "md5:" + hashlib.md5(DATA).hexdigest(),
    "sha256:" + hashlib.sha256(DATA).hexdigest()[:-2],
    "sha512:" + "z" * 128,
    "sha256:" + "0" * 10_000,
]


def expected(algorithm: str, data: bytes = DATA) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@pytest.fixture(scope="module")
def client(server: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def put_v2(client: httpx.Client, image_id: str, body: bytes | Iterator[bytes],
           hash_text: str) -> httpx.Response:
    return client.put(f"/v2/images/{image_id}/file", content=body,
                      headers={**OWNER, **OCTETS, V2: hash_text})


# -- v2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_v2_upload_with_the_right_hash_becomes_active(client: httpx.Client, algorithm: str,
                                                      chunked: bool) -> None:
    image_id = create(client, OWNER)
    resp = put_v2(client, image_id, pieces(DATA) if chunked else DATA, expected(algorithm))
    assert resp.status_code == 204, resp.text
    image = show(client, image_id, OWNER)
    assert image["status"] == "active"
    assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    assert client.get(f"/v2/images/{image_id}/file", headers=OWNER).content == DATA


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_v2_upload_with_another_hash_is_400_and_requeued_empty(
        server: GlimpseServer, client: httpx.Client, algorithm: str, chunked: bool) -> None:
    image_id = create(client, OWNER)
    wrong = expected(algorithm, b"what the client meant to send")
    resp = put_v2(client, image_id, pieces(DATA) if chunked else DATA, wrong)
    assert resp.status_code == 400, resp.text
    assert f"does not have the expected {algorithm} hash" in resp.text
    assert hashlib.new(algorithm, DATA).hexdigest() in resp.text
    assert_requeued_and_empty(server, client, image_id, OWNER)


@pytest.mark.parametrize("text", MALFORMED, ids=["no-value", "md5", "short", "non-hex", "huge"])
def test_v2_malformed_header_is_400_before_any_byte(server: GlimpseServer,
                                                    client: httpx.Client, text: str) -> None:
    image_id = create(client, OWNER)
    resp = put_v2(client, image_id, DATA, text)
    assert resp.status_code == 400, resp.text
    assert V2.lower() in resp.text.lower()
    assert "0" * 1000 not in resp.text
    image = show(client, image_id, OWNER)
    assert image["status"] == "queued" and image["size"] is None
    assert stored(server, image_id) == []


def test_v2_header_on_an_empty_upload_checks_the_empty_data(client: httpx.Client) -> None:
    image_id = create(client, OWNER)
    assert put_v2(client, image_id, b"", expected("sha256", b"x")).status_code == 400
    assert put_v2(client, image_id, b"", expected("sha256", b"")).status_code == 204
    assert show(client, image_id, OWNER)["status"] == "active"


# -- v1 -------------------------------------------------------------------------------------


def v1_status(client: httpx.Client, image_id: str) -> str | None:
    resp = client.head(f"/v1/images/{image_id}", headers=OWNER)
    return resp.headers.get("x-image-meta-status") if resp.status_code == 200 else None


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_v1_create_with_data_and_the_right_hash(client: httpx.Client, algorithm: str) -> None:
    resp = client.post("/v1/images", content=pieces(DATA), headers={
        **OWNER, **V1_FORMATS, **OCTETS, V1: expected(algorithm)})
    assert resp.status_code == 201, resp.text
    image = resp.json()["image"]
    assert image["status"] == "active" and image["size"] == len(DATA)
    assert "expected" not in str(image["properties"])  # the header is not a property


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_v1_create_with_another_hash_is_400_and_killed(server: GlimpseServer,
                                                       client: httpx.Client,
                                                       chunked: bool) -> None:
    image_id = str(uuid.uuid4())
    resp = client.post("/v1/images", content=pieces(DATA) if chunked else DATA, headers={
        **OWNER, **V1_FORMATS, **OCTETS, "x-image-meta-id": image_id,
        V1: expected("sha256", b"other")})
    assert resp.status_code == 400, resp.text
    assert "does not have the expected sha256 hash" in resp.text
    assert wait_until(lambda: stored(server, image_id) == [])
    assert v1_status(client, image_id) == "killed"


def test_v1_put_with_another_hash_is_400_and_killed(server: GlimpseServer,
                                                    client: httpx.Client) -> None:
    created = client.post("/v1/images", headers={**OWNER, **V1_FORMATS})
    assert created.status_code == 201, created.text
    image_id = created.json()["image"]["id"]
    resp = client.put(f"/v1/images/{image_id}", content=DATA, headers={
        **OWNER, **OCTETS, V1: expected("sha512", b"other")})
    assert resp.status_code == 400, resp.text
    assert "expected sha512 hash" in resp.text
    assert v1_status(client, image_id) == "killed"
    assert wait_until(lambda: stored(server, image_id) == [])


@pytest.mark.parametrize("text", MALFORMED, ids=["no-value", "md5", "short", "non-hex", "huge"])
def test_v1_malformed_header_creates_nothing(client: httpx.Client, text: str) -> None:
    image_id = str(uuid.uuid4())
    resp = client.post("/v1/images", content=DATA, headers={
        **OWNER, **V1_FORMATS, **OCTETS, "x-image-meta-id": image_id, V1: text})
    assert resp.status_code == 400, resp.text
    assert V1 in resp.text.lower()
    assert v1_status(client, image_id) is None


def test_v1_header_without_data_is_400(client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = client.post("/v1/images", headers={
        **OWNER, **V1_FORMATS, "x-image-meta-id": image_id, V1: expected("sha256")})
    assert resp.status_code == 400, resp.text
    assert "has none" in resp.text
    assert v1_status(client, image_id) is None


# -- python-glanceclient --------------------------------------------------------------------


def glance(server: GlimpseServer, hash_text: str) -> Any:
    glanceclient = pytest.importorskip("glanceclient", reason="python-glanceclient is missing")
    # Its identity_headers go with every request: the expected hash too (create ignores it).
    return glanceclient.Client("2", endpoint=server.url, timeout=30,
                               identity_headers={**OWNER, V2: hash_text})


def test_glanceclient_upload_checked(server: GlimpseServer, client: httpx.Client) -> None:
    from glanceclient import exc

    good = glance(server, expected("sha256"))
    image = good.images.create(name="expected-hash", disk_format="raw", container_format="bare")
    good.images.upload(image["id"], io.BytesIO(DATA), image_size=len(DATA))
    assert good.images.get(image["id"])["status"] == "active"

    bad = glance(server, expected("sha256", b"other"))
    image = bad.images.create(name="expected-hash", disk_format="raw", container_format="bare")
    with pytest.raises(exc.HTTPBadRequest, match="expected sha256 hash"):
        bad.images.upload(image["id"], io.BytesIO(DATA), image_size=len(DATA))
    assert_requeued_and_empty(server, client, image["id"], OWNER)

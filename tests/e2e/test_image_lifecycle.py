"""Status machine, create, upload, download, update, delete (spec §7, §8.1-§8.5)."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

OCTET = {"Content-Type": "application/octet-stream"}
FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
FULL_KEYS = {
    "id", "name", "status", "size", "virtual_size", "checksum", "disk_format",
    "container_format", "min_disk", "min_ram", "is_public", "protected", "owner",
    "created_at", "updated_at", "deleted_at", "deleted", "properties",
}


def who(tenant: str | None, roles: str = "member") -> dict[str, str]:
    headers = {"X-Roles": roles, "X-User-Id": f"user-{tenant or 'none'}"}
    if tenant is not None:
        headers["X-Tenant-Id"] = tenant
    return headers


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def chunked(data: bytes, size: int = 100) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def post(client: httpx.Client, headers: dict[str, str] | None = None,
         content: bytes | Iterator[bytes] | None = None) -> httpx.Response:
    hdrs = dict(headers or {})
    if content is not None and "Content-Type" not in hdrs:
        hdrs.update(OCTET)
    return client.post("/v1/images", headers=hdrs, content=content)


def make(client: httpx.Client, headers: dict[str, str] | None = None,
         content: bytes | Iterator[bytes] | None = None) -> dict[str, object]:
    resp = post(client, headers, content)
    assert resp.status_code == 201, resp.text
    image: dict[str, object] = resp.json()["image"]
    return image


def put(client: httpx.Client, image_id: object, headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None) -> httpx.Response:
    hdrs = dict(headers or {})
    if content is not None and "Content-Type" not in hdrs:
        hdrs.update(OCTET)
    return client.put(f"/v1/images/{image_id}", headers=hdrs, content=content)


def status_of(client: httpx.Client, image_id: object) -> str | None:
    """Status seen by the anonymous admin, None when the image does not exist."""
    resp = client.head(f"/v1/images/{image_id}")
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.status_code
    return resp.headers["x-image-meta-status"]


def meta_headers(resp: httpx.Response) -> dict[str, str]:
    return {
        n.decode("latin-1").lower(): v.decode("utf-8")
        for n, v in resp.headers.raw
        if n.decode("latin-1").lower().startswith("x-image-meta-")
    }


def listed_ids(client: httpx.Client, headers: dict[str, str], **params: str) -> list[str]:
    resp = client.get("/v1/images/detail", params=params, headers=headers)
    assert resp.status_code == 200
    return [i["id"] for i in resp.json()["images"]]


def expect(resp: httpx.Response, status: int, fragment: str | None = None) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert "Traceback" not in resp.text
    if fragment is not None:
        assert fragment in resp.text, resp.text


def _start(settings: dict[str, str]) -> Iterator[httpx.Client]:
    srv = GlimpseServer(settings)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            yield c
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tight_client() -> Iterator[httpx.Client]:
    """Small size cap, small property quota and delayed delete (these tests do not interact)."""
    yield from _start({
        "image_size_cap": "1024", "image_property_quota": "2", "delayed_delete": "true",
    })


@pytest.fixture(scope="module")
def cap_client(tight_client: httpx.Client) -> httpx.Client:
    return tight_client


@pytest.fixture(scope="module")
def prop_client(tight_client: httpx.Client) -> httpx.Client:
    return tight_client


@pytest.fixture(scope="module")
def delayed_client(tight_client: httpx.Client) -> httpx.Client:
    return tight_client


@pytest.fixture(scope="module")
def quota_client() -> Iterator[httpx.Client]:
    yield from _start({"user_storage_quota": "1KB"})


# --- §8.1 create ---------------------------------------------------------------------------


def test_reserve_only(client: httpx.Client, unique: str) -> None:
    resp = post(client, {**who(f"t-{unique}"), "x-image-meta-name": f"rsv-{unique}"})
    expect(resp, 201)
    image = resp.json()["image"]
    assert image["status"] == "queued"
    assert image["checksum"] is None and image["size"] == 0
    assert resp.headers["location"].endswith(f"/v1/images/{image['id']}")
    assert "etag" not in resp.headers
    assert status_of(client, image["id"]) == "queued"
    assert "x-image-meta-checksum" not in client.head(f"/v1/images/{image['id']}").headers


def test_reserve_with_declared_size_stays_queued(client: httpx.Client) -> None:
    image = make(client, {"x-image-meta-size": "100"})
    assert image["status"] == "queued"
    assert image["size"] == 100


def test_size_zero_is_active_without_data(client: httpx.Client) -> None:
    image = make(client, {**FORMATS, "x-image-meta-size": "0"})
    assert image["status"] == "active"
    assert image["size"] == 0
    assert image["checksum"] is None
    resp = client.get(f"/v1/images/{image['id']}")
    expect(resp, 200)
    assert resp.content == b""
    assert resp.headers["content-length"] == "0"
    assert "etag" not in resp.headers
    # size 0 active image: upload not allowed
    expect(put(client, image["id"], content=b"late"), 409)


def test_upload_in_post_body_with_content_length(client: httpx.Client, unique: str) -> None:
    data = b"some image data " * 100 + unique.encode()
    resp = post(client, {**FORMATS, "x-image-meta-name": f"up-{unique}"}, data)
    expect(resp, 201)
    image = resp.json()["image"]
    assert set(image) == FULL_KEYS
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["checksum"] == md5(data)
    assert resp.headers["etag"] == md5(data)
    assert resp.headers["location"].endswith(f"/v1/images/{image['id']}")
    assert resp.headers["content-type"].split(";")[0].strip() == "application/json"
    assert client.get(f"/v1/images/{image['id']}").content == data


@pytest.mark.parametrize("declare", [False, True])
def test_upload_in_post_body_chunked(client: httpx.Client, declare: bool) -> None:
    data = bytes(range(256)) * 20
    headers = dict(FORMATS)
    if declare:
        headers["x-image-meta-size"] = str(len(data))
    resp = post(client, headers, chunked(data, 333))
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    expect(resp, 201)
    image = resp.json()["image"]
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["checksum"] == md5(data)
    assert client.get(f"/v1/images/{image['id']}").content == data


def test_upload_with_matching_checksum(client: httpx.Client) -> None:
    data = b"checksummed"
    image = make(client, {**FORMATS, "x-image-meta-checksum": md5(data),
                          "x-image-meta-size": str(len(data))}, data)
    assert image["status"] == "active" and image["checksum"] == md5(data)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json",
                                          "application/x-www-form-urlencoded"])
def test_body_with_wrong_content_type(client: httpx.Client, content_type: str | None) -> None:
    image_id = str(uuid.uuid4())
    headers = {**FORMATS, "x-image-meta-id": image_id}
    if content_type is not None:
        headers["Content-Type"] = content_type
    resp = client.post("/v1/images", headers=headers, content=b"abcdef")
    expect(resp, 400, "Content-Type must be application/octet-stream")
    assert status_of(client, image_id) in (None, "killed")


def test_wrong_content_type_on_put_upload(client: httpx.Client) -> None:
    image = make(client, FORMATS)
    resp = put(client, image["id"], {"Content-Type": "text/plain"}, b"abcdef")
    expect(resp, 400, "Content-Type must be application/octet-stream")
    assert status_of(client, image["id"]) in ("queued", "killed")


def test_content_type_irrelevant_without_data(client: httpx.Client, unique: str) -> None:
    resp = client.post("/v1/images", headers={"Content-Type": "text/plain",
                                              "x-image-meta-name": f"ct-{unique}"})
    expect(resp, 201)
    image_id = resp.json()["image"]["id"]
    assert resp.json()["image"]["status"] == "queued"
    # glanceclient sends octet-stream on every request
    ct = dict(OCTET)
    expect(client.get("/v1/images", headers=ct), 200)
    expect(client.get("/v1/images/detail", headers=ct), 200)
    expect(client.head(f"/v1/images/{image_id}", headers=ct), 200)
    expect(client.put(f"/v1/images/{image_id}", headers={**ct, "x-image-meta-name": "n"}), 200)
    assert status_of(client, image_id) == "queued"
    expect(client.delete(f"/v1/images/{image_id}", headers=ct), 200)


def test_unknown_store_is_400_nothing_created(client: httpx.Client) -> None:
    for content in (None, b"data"):
        image_id = str(uuid.uuid4())
        resp = post(client, {**FORMATS, "x-image-meta-id": image_id,
                             "x-image-meta-store": "nosuchstore"}, content)
        expect(resp, 400)
        assert status_of(client, image_id) is None


@pytest.mark.parametrize("store", ["file", "filesystem"])
def test_writable_store_names(client: httpx.Client, store: str) -> None:
    image = make(client, {**FORMATS, "x-image-meta-store": store}, b"stored")
    assert image["status"] == "active"


@pytest.mark.parametrize("store", ["http", "https"])
def test_read_only_store_is_410(client: httpx.Client, store: str) -> None:
    image_id = str(uuid.uuid4())
    resp = post(client, {**FORMATS, "x-image-meta-id": image_id, "x-image-meta-store": store},
                b"data")
    expect(resp, 410)
    assert status_of(client, image_id) in (None, "killed")


def test_duplicate_id_is_409(client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    make(client, {"x-image-meta-id": image_id, "x-image-meta-name": "first"})
    resp = post(client, {"x-image-meta-id": image_id, "x-image-meta-name": "second"})
    expect(resp, 409)
    assert client.head(f"/v1/images/{image_id}").headers["x-image-meta-name"] == "first"


# --- §8.1.4 size cap -------------------------------------------------------------------------


def test_size_cap_content_length(cap_client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = post(cap_client, {**FORMATS, "x-image-meta-id": image_id}, b"x" * 1025)
    expect(resp, 400)
    assert status_of(cap_client, image_id) is None
    image = make(cap_client, FORMATS, b"y" * 1024)
    assert image["status"] == "active" and image["size"] == 1024


def test_size_cap_declared_size_chunked(cap_client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = post(cap_client, {**FORMATS, "x-image-meta-id": image_id,
                             "x-image-meta-size": "2000"}, chunked(b"x" * 2000))
    expect(resp, 400)
    assert status_of(cap_client, image_id) is None


def test_size_cap_declared_size_without_body(cap_client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = post(cap_client, {"x-image-meta-id": image_id, "x-image-meta-size": "1025"})
    expect(resp, 400)
    assert status_of(cap_client, image_id) is None
    assert make(cap_client, {"x-image-meta-size": "1024"})["status"] == "queued"


def test_size_cap_chunked_without_declared_size_is_413_killed(cap_client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = post(cap_client, {**FORMATS, "x-image-meta-id": image_id},
                chunked(b"z" * 4096, 512))
    expect(resp, 413)
    assert status_of(cap_client, image_id) == "killed"


def test_size_cap_on_put_upload(cap_client: httpx.Client) -> None:
    image = make(cap_client, FORMATS)
    expect(put(cap_client, image["id"], content=b"x" * 1025), 400)
    assert status_of(cap_client, image["id"]) != "active"
    image = make(cap_client, FORMATS)
    expect(put(cap_client, image["id"], content=chunked(b"x" * 4096, 512)), 413)
    assert status_of(cap_client, image["id"]) == "killed"


# --- §8.1.4 storage quota ----------------------------------------------------------------------


def test_storage_quota(quota_client: httpx.Client, unique: str) -> None:
    c = quota_client
    alice = who(f"a-{unique}")
    first = make(c, {**alice, **FORMATS}, b"a" * 600)
    assert first["status"] == "active"
    over_id = str(uuid.uuid4())
    resp = post(c, {**alice, **FORMATS, "x-image-meta-id": over_id}, b"b" * 600)
    expect(resp, 413)
    assert status_of(c, over_id) in (None, "killed")
    # chunked without declared size: must be stored and then killed
    over_id2 = str(uuid.uuid4())
    resp = post(c, {**alice, **FORMATS, "x-image-meta-id": over_id2}, chunked(b"c" * 600))
    expect(resp, 413)
    assert status_of(c, over_id2) == "killed"
    # killed images do not count: 600 + 400 = 1000 <= 1024
    assert make(c, {**alice, **FORMATS}, b"d" * 400)["status"] == "active"
    expect(post(c, {**alice, **FORMATS}, b"e" * 100), 413)
    # another owner has its own quota
    assert make(c, {**who(f"b-{unique}"), **FORMATS}, b"f" * 1000)["status"] == "active"
    # deleted images do not count
    expect(c.delete(f"/v1/images/{first['id']}", headers=alice), 200)
    assert make(c, {**alice, **FORMATS}, b"g" * 600)["status"] == "active"


def test_storage_quota_on_put_upload(quota_client: httpx.Client, unique: str) -> None:
    c = quota_client
    alice = who(f"a-{unique}")
    make(c, {**alice, **FORMATS}, b"a" * 1000)
    image = make(c, {**alice, **FORMATS})
    expect(put(c, image["id"], alice, chunked(b"b" * 100)), 413)
    assert status_of(c, image["id"]) == "killed"


# --- §8.1.4 verification ----------------------------------------------------------------------


def test_declared_size_larger_than_chunked_body(client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = post(client, {**FORMATS, "x-image-meta-id": image_id, "x-image-meta-size": "10"},
                chunked(b"12345"))
    expect(resp, 400)
    assert status_of(client, image_id) == "killed"


def test_declared_size_differs_from_content_length(client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = post(client, {**FORMATS, "x-image-meta-id": image_id, "x-image-meta-size": "10"},
                b"12345")
    expect(resp, 400)
    assert status_of(client, image_id) in (None, "killed")


@pytest.mark.parametrize("use_chunked", [False, True])
def test_checksum_mismatch_kills(client: httpx.Client, use_chunked: bool) -> None:
    image_id = str(uuid.uuid4())
    data = b"the real data"
    body: bytes | Iterator[bytes] = chunked(data, 4) if use_chunked else data
    resp = post(client, {**FORMATS, "x-image-meta-id": image_id,
                         "x-image-meta-checksum": md5(b"other")}, body)
    expect(resp, 400)
    assert status_of(client, image_id) == "killed"


def test_reserved_size_checked_at_put_upload(client: httpx.Client) -> None:
    image = make(client, {**FORMATS, "x-image-meta-size": "10"})
    expect(put(client, image["id"], content=chunked(b"123456789")), 400)
    assert status_of(client, image["id"]) == "killed"
    image = make(client, {**FORMATS, "x-image-meta-size": "10"})
    resp = put(client, image["id"], content=b"0123456789")
    expect(resp, 200)
    assert resp.json()["image"]["status"] == "active"


def test_reserved_checksum_checked_at_put_upload(client: httpx.Client) -> None:
    image = make(client, {**FORMATS, "x-image-meta-checksum": md5(b"expected")})
    expect(put(client, image["id"], content=b"unexpected"), 400)
    assert status_of(client, image["id"]) == "killed"
    image = make(client, {**FORMATS, "x-image-meta-checksum": md5(b"expected")})
    resp = put(client, image["id"], content=b"expected")
    expect(resp, 200)
    assert resp.json()["image"]["checksum"] == md5(b"expected")


def test_killed_image_behaviour(client: httpx.Client, unique: str) -> None:
    owner = who(f"t-{unique}")
    image_id = str(uuid.uuid4())
    resp = post(client, {**owner, **FORMATS, "x-image-meta-id": image_id,
                         "x-image-meta-name": f"kill-{unique}",
                         "x-image-meta-checksum": md5(b"nope")}, b"data")
    expect(resp, 400)
    assert status_of(client, image_id) == "killed"
    head = client.head(f"/v1/images/{image_id}", headers=owner)
    expect(head, 200)
    assert head.headers["x-image-meta-status"] == "killed"
    expect(client.get(f"/v1/images/{image_id}", headers=owner), 404)
    expect(put(client, image_id, owner, b"again"), 409)
    assert listed_ids(client, owner, name=f"kill-{unique}") == []
    assert listed_ids(client, {}, name=f"kill-{unique}", is_public="none") == []
    expect(client.delete(f"/v1/images/{image_id}", headers=owner), 200)
    assert status_of(client, image_id) == "deleted"


# --- §8.4.3 upload via PUT -------------------------------------------------------------------


@pytest.mark.parametrize("use_chunked", [False, True])
def test_upload_via_put(client: httpx.Client, unique: str, use_chunked: bool) -> None:
    owner = who(f"t-{unique}")
    image = make(client, {**owner, "x-image-meta-property-keep": "me"})
    data = b"put-data-" * 50
    body: bytes | Iterator[bytes] = chunked(data) if use_chunked else data
    resp = put(client, image["id"], {**owner, **FORMATS, "x-image-meta-name": f"p-{unique}"},
               body)
    expect(resp, 200)
    got = resp.json()["image"]
    assert set(got) == FULL_KEYS
    assert got["status"] == "active"
    assert got["size"] == len(data)
    assert got["checksum"] == md5(data)
    assert got["name"] == f"p-{unique}"
    assert got["disk_format"] == "raw"
    # an upload never purges properties
    assert got["properties"] == {"keep": "me"}
    assert resp.headers["etag"] == md5(data)
    assert client.get(f"/v1/images/{image['id']}", headers=owner).content == data


def test_upload_into_active_image_is_409(client: httpx.Client) -> None:
    image = make(client, FORMATS, b"first")
    expect(put(client, image["id"], content=b"second"), 409)
    expect(put(client, image["id"], content=chunked(b"second")), 409)
    assert client.get(f"/v1/images/{image['id']}").content == b"first"


# --- §8.3 download ----------------------------------------------------------------------------


def test_download(client: httpx.Client, unique: str) -> None:
    owner = who(f"t-{unique}")
    data = bytes(range(256)) * 40 + b"tail"
    image = make(client, {**owner, **FORMATS, "x-image-meta-name": f"dl-{unique}",
                          "x-image-meta-property-k": "v"}, data)
    resp = client.get(f"/v1/images/{image['id']}", headers=owner)
    expect(resp, 200)
    assert resp.content == data
    assert resp.headers["content-type"].split(";")[0].strip() == "application/octet-stream"
    assert resp.headers["content-length"] == str(len(data))
    assert resp.headers["etag"] == md5(data)
    assert "content-md5" not in resp.headers
    meta = meta_headers(resp)
    assert meta["x-image-meta-size"] == str(len(data))
    assert meta["x-image-meta-checksum"] == md5(data)
    assert meta["x-image-meta-property-k"] == "v"
    head = client.head(f"/v1/images/{image['id']}", headers=owner)
    assert meta_headers(head) == meta


def test_download_ignores_range(client: httpx.Client) -> None:
    data = b"0123456789" * 10
    image = make(client, FORMATS, data)
    resp = client.get(f"/v1/images/{image['id']}", headers={"Range": "bytes=0-9"})
    expect(resp, 200)
    assert resp.content == data
    assert resp.headers["content-length"] == "100"
    assert "content-range" not in resp.headers


def test_download_of_non_active_is_404(client: httpx.Client) -> None:
    queued = make(client, FORMATS)
    expect(client.get(f"/v1/images/{queued['id']}"), 404)
    expect(client.get(f"/v1/images/{uuid.uuid4()}"), 404)
    deleted = make(client, FORMATS, b"gone soon")
    expect(client.delete(f"/v1/images/{deleted['id']}"), 200)
    expect(client.get(f"/v1/images/{deleted['id']}"), 404)


def test_download_of_invisible_image_is_404(client: httpx.Client, unique: str) -> None:
    image = make(client, {**who(f"a-{unique}"), **FORMATS}, b"private")
    expect(client.get(f"/v1/images/{image['id']}", headers=who(f"b-{unique}")), 404)
    expect(client.head(f"/v1/images/{image['id']}", headers=who(f"b-{unique}")), 404)


# --- §8.4 update -----------------------------------------------------------------------------


def _props(resp: httpx.Response) -> dict[str, object]:
    expect(resp, 200)
    props: dict[str, object] = resp.json()["image"]["properties"]
    return props


def test_put_without_purge_header_purges(client: httpx.Client) -> None:
    image = make(client, {"x-image-meta-property-a": "1", "x-image-meta-property-b": "2"})
    assert _props(put(client, image["id"], {"x-image-meta-property-c": "3"})) == {"c": "3"}
    assert _props(put(client, image["id"], {"x-image-meta-name": "x"})) == {}
    head = client.head(f"/v1/images/{image['id']}")
    assert not [h for h in meta_headers(head) if h.startswith("x-image-meta-property-")]


@pytest.mark.parametrize("value", ["true", "True", "1", "yes", "on"])
def test_put_purge_true(client: httpx.Client, value: str) -> None:
    image = make(client, {"x-image-meta-property-a": "1", "x-image-meta-property-b": "2"})
    resp = put(client, image["id"], {"x-glance-registry-purge-props": value,
                                     "x-image-meta-property-b": "22"})
    assert _props(resp) == {"b": "22"}


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "whatever", ""])
def test_put_purge_false_merges(client: httpx.Client, value: str) -> None:
    image = make(client, {"x-image-meta-property-a": "1", "x-image-meta-property-b": "2"})
    resp = put(client, image["id"], {"x-glance-registry-purge-props": value,
                                     "x-image-meta-property-b": "22",
                                     "x-image-meta-property-c": "3"})
    assert _props(resp) == {"a": "1", "b": "22", "c": "3"}
    resp = put(client, image["id"], {"x-glance-registry-purge-props": value})
    assert _props(resp) == {"a": "1", "b": "22", "c": "3"}


def test_updated_at_refreshed(client: httpx.Client) -> None:
    image = make(client, {"x-image-meta-property-a": "1"})
    resp = put(client, image["id"], {"x-image-meta-name": "renamed"})
    expect(resp, 200)
    first = resp.json()["image"]
    assert first["updated_at"] > str(image["updated_at"])
    assert first["created_at"] == image["created_at"]
    assert resp.headers["content-type"].split(";")[0].strip() == "application/json"
    resp = put(client, image["id"], {"x-glance-registry-purge-props": "false",
                                     "x-image-meta-property-b": "2"})
    expect(resp, 200)
    assert resp.json()["image"]["updated_at"] > first["updated_at"]


def test_property_quota_on_create(prop_client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = post(prop_client, {"x-image-meta-id": image_id, "x-image-meta-property-a": "1",
                              "x-image-meta-property-b": "2", "x-image-meta-property-c": "3"})
    expect(resp, 413, "Attempted: 3, Maximum: 2")
    assert status_of(prop_client, image_id) is None
    image = make(prop_client, {"x-image-meta-property-a": "1", "x-image-meta-property-b": "2"})
    assert image["properties"] == {"a": "1", "b": "2"}


def test_property_quota_on_update(prop_client: httpx.Client) -> None:
    c = prop_client
    image = make(c, {"x-image-meta-property-a": "1", "x-image-meta-property-b": "2"})
    merge = {"x-glance-registry-purge-props": "false"}
    expect(put(c, image["id"], {**merge, "x-image-meta-property-c": "3"}), 413,
           "Attempted: 3, Maximum: 2")
    # overwriting an existing key does not count twice
    assert _props(put(c, image["id"], {**merge, "x-image-meta-property-a": "9"})) == {
        "a": "9", "b": "2"}
    # purging: counted on the request only
    assert _props(put(c, image["id"], {"x-image-meta-property-c": "3",
                                       "x-image-meta-property-d": "4"})) == {"c": "3", "d": "4"}
    expect(put(c, image["id"], {"x-image-meta-property-c": "3", "x-image-meta-property-d": "4",
                                "x-image-meta-property-e": "5"}), 413,
           "Attempted: 3, Maximum: 2")
    head = c.head(f"/v1/images/{image['id']}")
    props = {k for k in meta_headers(head) if k.startswith("x-image-meta-property-")}
    assert props == {"x-image-meta-property-c", "x-image-meta-property-d"}


def test_non_admin_size_checksum_of_active_image(client: httpx.Client, unique: str) -> None:
    owner = who(f"t-{unique}")
    data = b"active data"
    image = make(client, {**owner, **FORMATS}, data)
    expect(put(client, image["id"], {**owner, "x-image-meta-size": "999"}), 403)
    expect(put(client, image["id"], {**owner, "x-image-meta-checksum": md5(b"x")}), 403)
    resp = put(client, image["id"], {**owner, "x-image-meta-size": str(len(data)),
                                     "x-image-meta-checksum": md5(data)})
    expect(resp, 200)
    assert resp.headers["etag"] == md5(data)
    # admins may change them
    resp = put(client, image["id"], {"x-image-meta-size": "999",
                                     "x-image-meta-checksum": md5(b"x")})
    expect(resp, 200)
    assert resp.json()["image"]["size"] == 999
    assert resp.json()["image"]["checksum"] == md5(b"x")


def test_non_admin_may_set_size_of_queued_image(client: httpx.Client, unique: str) -> None:
    owner = who(f"t-{unique}")
    image = make(client, owner)
    resp = put(client, image["id"], {**owner, "x-image-meta-size": "5"})
    expect(resp, 200)
    assert resp.json()["image"]["size"] == 5


@pytest.mark.parametrize("admin", [True, False])
def test_id_and_status_changes_are_403(client: httpx.Client, unique: str, admin: bool) -> None:
    owner = who(f"t-{unique}")
    ctx = who(f"t-{unique}", roles="admin") if admin else owner
    image = make(client, {**owner, **FORMATS}, b"data")
    expect(put(client, image["id"], {**ctx, "x-image-meta-id": str(uuid.uuid4())}), 403)
    expect(put(client, image["id"], {**ctx, "x-image-meta-status": "queued"}), 403,
           "Forbidden to modify 'status'")
    expect(put(client, image["id"], {**ctx, "x-image-meta-status": "active"}), 200)
    expect(put(client, image["id"], {**ctx, "x-image-meta-id": str(image["id"])}), 200)


def test_update_of_deleted_image(client: httpx.Client, unique: str) -> None:
    owner = who(f"t-{unique}")
    image = make(client, owner)
    expect(client.delete(f"/v1/images/{image['id']}", headers=owner), 200)
    expect(put(client, image["id"], {"x-image-meta-name": "x"}), 403,
           "Forbidden to update deleted image")
    expect(put(client, image["id"], {**who(f"x-{unique}", "admin"), "x-image-meta-name": "x"}),
           403, "Forbidden to update deleted image")
    expect(put(client, image["id"], {**owner, "x-image-meta-name": "x"}), 404)


def test_update_unknown_or_invisible_is_404(client: httpx.Client, unique: str) -> None:
    expect(put(client, uuid.uuid4(), {"x-image-meta-name": "x"}), 404)
    image = make(client, who(f"a-{unique}"))
    expect(put(client, image["id"], {**who(f"b-{unique}"), "x-image-meta-name": "x"}), 404)
    expect(client.delete(f"/v1/images/{image['id']}", headers=who(f"b-{unique}")), 404)
    assert status_of(client, image["id"]) == "queued"


def test_non_owner_on_public_image_is_403(client: httpx.Client, unique: str) -> None:
    image = make(client, {"x-image-meta-owner": f"a-{unique}", "x-image-meta-is_public": "true",
                          "x-image-meta-name": f"pub-{unique}"})
    other = who(f"b-{unique}")
    expect(client.head(f"/v1/images/{image['id']}", headers=other), 200)
    expect(put(client, image["id"], {**other, "x-image-meta-name": "hijack"}), 403)
    expect(client.delete(f"/v1/images/{image['id']}", headers=other), 403)
    head = client.head(f"/v1/images/{image['id']}")
    assert head.headers["x-image-meta-name"] == f"pub-{unique}"
    assert head.headers["x-image-meta-status"] == "queued"
    # the owner may unpublish, then delete
    owner = who(f"a-{unique}")
    resp = put(client, image["id"], {**owner, "x-image-meta-is_public": "false"})
    expect(resp, 200)
    assert resp.json()["image"]["is_public"] is False
    expect(put(client, image["id"], {**owner, "x-image-meta-is_public": "true"}), 403)
    expect(client.delete(f"/v1/images/{image['id']}", headers=owner), 200)


def test_q9_non_owner_on_shared_private_image(client: httpx.Client, unique: str) -> None:
    owner = who(f"a-{unique}")
    member = who(f"b-{unique}")
    image = make(client, {**owner, "x-image-meta-name": f"shr-{unique}"})
    share = client.put(f"/v1/images/{image['id']}/members/b-{unique}", headers=owner)
    expect(share, 204)
    expect(client.head(f"/v1/images/{image['id']}", headers=member), 200)
    resp = put(client, image["id"], {**member, "x-image-meta-name": "hijack"})
    assert resp.status_code in (403, 404), resp.text
    resp = client.delete(f"/v1/images/{image['id']}", headers=member)
    assert resp.status_code in (403, 404), resp.text
    head = client.head(f"/v1/images/{image['id']}")
    assert head.headers["x-image-meta-name"] == f"shr-{unique}"
    assert head.headers["x-image-meta-status"] == "queued"


def test_q9_non_admin_on_owner_null_image(client: httpx.Client, unique: str) -> None:
    image = make(client, {"x-image-meta-name": f"nul-{unique}"})
    assert image["owner"] is None
    user = who(f"b-{unique}")
    expect(client.head(f"/v1/images/{image['id']}", headers=user), 200)
    resp = put(client, image["id"], {**user, "x-image-meta-name": "hijack"})
    assert resp.status_code in (403, 404), resp.text
    resp = client.delete(f"/v1/images/{image['id']}", headers=user)
    assert resp.status_code in (403, 404), resp.text
    head = client.head(f"/v1/images/{image['id']}")
    assert head.headers["x-image-meta-name"] == f"nul-{unique}"
    assert head.headers["x-image-meta-status"] == "queued"


# --- §8.5 delete ---------------------------------------------------------------------------


def test_delete_and_afterwards(client: httpx.Client, unique: str) -> None:
    owner = who(f"t-{unique}")
    name = f"del-{unique}"
    image = make(client, {**owner, **FORMATS, "x-image-meta-name": name,
                          "x-image-meta-property-p": "v"}, b"to be deleted")
    assert listed_ids(client, owner, name=name) == [image["id"]]
    resp = client.delete(f"/v1/images/{image['id']}", headers=owner)
    expect(resp, 200)
    assert resp.content == b""
    expect(client.get(f"/v1/images/{image['id']}", headers=owner), 404)
    expect(client.get(f"/v1/images/{image['id']}"), 404)
    expect(client.head(f"/v1/images/{image['id']}", headers=owner), 404)
    head = client.head(f"/v1/images/{image['id']}")
    expect(head, 200)
    meta = meta_headers(head)
    assert meta["x-image-meta-status"] == "deleted"
    assert meta["x-image-meta-deleted"] == "True"
    assert meta["x-image-meta-deleted_at"]
    head_admin = client.head(f"/v1/images/{image['id']}", headers=who(f"z-{unique}", "admin"))
    expect(head_admin, 200)
    assert head_admin.headers["x-image-meta-status"] == "deleted"
    expect(client.delete(f"/v1/images/{image['id']}", headers=owner), 404)
    expect(client.delete(f"/v1/images/{image['id']}"), 404)
    assert listed_ids(client, owner, name=name) == []
    assert listed_ids(client, {}, name=name, is_public="none") == []
    brief = client.get("/v1/images", params={"name": name}, headers=owner)
    assert brief.json()["images"] == []
    expect(client.get(f"/v1/images/{image['id']}/members"), 404, "has been deleted")
    expect(post(client, {"x-image-meta-id": str(image["id"])}), 409)


def test_delete_in_every_status(client: httpx.Client) -> None:
    queued = make(client, {})
    zero = make(client, {**FORMATS, "x-image-meta-size": "0"})
    active = make(client, FORMATS, b"abc")
    killed_id = str(uuid.uuid4())
    expect(post(client, {**FORMATS, "x-image-meta-id": killed_id,
                         "x-image-meta-checksum": md5(b"x")}, b"abc"), 400)
    for image_id in (queued["id"], zero["id"], active["id"], killed_id):
        resp = client.delete(f"/v1/images/{image_id}")
        expect(resp, 200)
        assert resp.content == b""
        assert status_of(client, image_id) == "deleted"


def test_delete_protected_is_403(client: httpx.Client, unique: str) -> None:
    owner = who(f"t-{unique}")
    image = make(client, {**owner, "x-image-meta-protected": "true"})
    expect(client.delete(f"/v1/images/{image['id']}", headers=owner), 403)
    expect(client.delete(f"/v1/images/{image['id']}"), 403)
    assert status_of(client, image["id"]) == "queued"
    expect(put(client, image["id"], {**owner, "x-image-meta-protected": "false"}), 200)
    expect(client.delete(f"/v1/images/{image['id']}", headers=owner), 200)


def test_delete_unknown_is_404(client: httpx.Client) -> None:
    expect(client.delete(f"/v1/images/{uuid.uuid4()}"), 404)


def test_delayed_delete(delayed_client: httpx.Client, unique: str) -> None:
    c = delayed_client
    owner = who(f"t-{unique}")
    name = f"dd-{unique}"
    image = make(c, {**owner, **FORMATS, "x-image-meta-name": name}, b"has data")
    expect(c.delete(f"/v1/images/{image['id']}", headers=owner), 200)
    assert status_of(c, image["id"]) == "pending_delete"
    expect(c.get(f"/v1/images/{image['id']}", headers=owner), 404)
    expect(c.get(f"/v1/images/{image['id']}"), 404)
    expect(c.delete(f"/v1/images/{image['id']}"), 403)
    # a pending_delete image is deleted: non-admins may not even see it (403 or 404)
    assert c.delete(f"/v1/images/{image['id']}", headers=owner).status_code in (403, 404)
    assert listed_ids(c, owner, name=name) == []
    assert listed_ids(c, {}, name=name, is_public="none") == []
    # an image without data is simply deleted
    queued = make(c, owner)
    expect(c.delete(f"/v1/images/{queued['id']}", headers=owner), 200)
    assert status_of(c, queued["id"]) == "deleted"


# --- §7 the saving state -----------------------------------------------------------------------


def _wait_saving(client: httpx.Client, image_id: str, timeout: float = 3.0) -> str | None:
    deadline = time.monotonic() + timeout
    status = status_of(client, image_id)
    while status != "saving" and time.monotonic() < deadline:
        time.sleep(0.02)
        status = status_of(client, image_id)
    return status


@pytest.mark.parametrize("via_post", [True, False])
def test_delete_while_uploading_is_412(server: GlimpseServer, client: httpx.Client,
                                       via_post: bool) -> None:
    image_id = str(uuid.uuid4()) if via_post else str(make(client, FORMATS)["id"])
    seen: list[str | None] = []
    deleted: list[int] = []

    def body() -> Iterator[bytes]:
        yield b"a" * 4096
        with httpx.Client(base_url=server.url, timeout=10) as other:
            seen.append(_wait_saving(other, image_id))
            deleted.append(other.delete(f"/v1/images/{image_id}").status_code)
        yield b"b" * 4096

    if via_post:
        resp = post(client, {**FORMATS, "x-image-meta-id": image_id}, body())
    else:
        resp = put(client, image_id, content=body())
    assert seen == ["saving"]
    assert deleted == [200]
    expect(resp, 412)
    assert status_of(client, image_id) == "deleted"
    expect(client.get(f"/v1/images/{image_id}"), 404)


def test_upload_into_saving_image_is_409(server: GlimpseServer, client: httpx.Client) -> None:
    image_id = str(make(client, FORMATS)["id"])
    seen: list[str | None] = []
    second: list[int] = []

    def body() -> Iterator[bytes]:
        yield b"a" * 4096
        with httpx.Client(base_url=server.url, timeout=10) as other:
            seen.append(_wait_saving(other, image_id))
            second.append(put(other, image_id, content=b"intruder").status_code)
        yield b"b" * 4096

    resp = put(client, image_id, content=body())
    assert seen == ["saving"]
    assert second == [409]
    expect(resp, 200)
    assert resp.json()["image"]["size"] == 8192
    assert client.get(f"/v1/images/{image_id}").content == b"a" * 4096 + b"b" * 4096

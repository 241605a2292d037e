"""End-to-end multi-store (spec §2.1, §2.2, §2.6, §3; docs/multi-store.md): a real ``glimpse
serve`` with two filesystem stores (the built-in ``file`` and ``fast``, of higher weight),
spoken to over HTTP and through python-glanceclient and openstacksdk.

An image gets a second copy the way copy-image leaves one (same key, one location per store):
its bytes are copied into the other store's directory and the location recorded in the
database, as other e2e tests make states that no API of theirs makes."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import openstack.connection
import pytest
import sqlalchemy as sa
from glanceclient import exc as gc_exc
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session

from glimpse.db.tables import image_locations
from tests.e2e.identity import tenant
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

ADMIN = tenant("ops", "admin,member,reader")
SERVICE = tenant("svc", "service")
OWNER = tenant("alice", "member,reader")
DATA = os.urandom(300_000)
CONFIG = '''
multi_store = true
default_store = "file"
store_cleanup_interval = 1

[stores.fast]
driver = "filesystem"
directory = "fast"
description = "Fast disks"
weight = 100
'''


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlimpseServer]:
    directory = tmp_path_factory.mktemp("multi-store")
    config = directory / "glimpse.toml"
    config.write_text(CONFIG)
    srv = GlimpseServer(data_dir=directory / "data", config=config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(multi: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=multi.url, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def db(multi: GlimpseServer) -> Iterator[sa.Engine]:
    url = os.environ.get("GLIMPSE_TEST_DATABASE_URL") or (
        f"sqlite:///{(multi.data_dir / 'glimpse.sqlite').resolve()}")
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def store_dir(server: GlimpseServer, store: str) -> Path:
    return server.data_dir / ("images" if store == "file" else store)


def new_image(http: httpx.Client, store: str | None = None, data: bytes = DATA) -> str:
    created = http.post("/v2/images", headers=OWNER, json={
        "name": "ms", "disk_format": "raw", "container_format": "bare"})
    assert created.status_code == 201, created.text
    image_id: str = created.json()["id"]
    headers = {**OWNER, "Content-Type": "application/octet-stream"}
    if store is not None:
        headers["X-Image-Meta-Store"] = store
    put = http.put(f"/v2/images/{image_id}/file", headers=headers, content=data)
    assert put.status_code == 204, put.text
    return image_id


def add_copy(server: GlimpseServer, db: sa.Engine, image_id: str, store: str,
             data: bytes = DATA) -> None:
    """The image's data in ``store`` too, as copy-image leaves it."""
    (store_dir(server, store) / image_id).write_bytes(data)
    with db.begin() as conn:
        position = conn.execute(sa.select(sa.func.count()).where(
            image_locations.c.image_id == image_id)).scalar_one()
        conn.execute(image_locations.insert().values(
            image_id=image_id, position=position, store=store, url=image_id, meta="{}",
            status="active"))


def show(http: httpx.Client, image_id: str) -> dict[str, Any]:
    found = http.get(f"/v2/images/{image_id}", headers=OWNER)
    assert found.status_code == 200, found.text
    document: dict[str, Any] = found.json()
    return document


def download(http: httpx.Client, image_id: str) -> bytes:
    got = http.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert got.status_code == 200, got.text
    return got.content


# -- discovery ---------------------------------------------------------------------------------


def test_versions_list_the_multi_store_minors(http: httpx.Client, client: httpx.Client) -> None:
    listed = {v["id"] for v in http.get("/versions").json()["versions"]}
    assert {"v2.8", "v2.9", "v2.15"} <= listed
    assert http.get("/v2.8/info/stores", headers=OWNER).status_code == 200
    # The shared server runs without multi-store: 2.15's route answers 404, as Glance's.
    plain = {v["id"] for v in client.get("/versions").json()["versions"]}
    assert "v2.8" not in plain and "v2.15" in plain
    assert client.get("/v2/info/stores", headers=OWNER).status_code == 404
    assert client.get("/v2/info/stores/detail", headers=ADMIN).status_code == 404
    assert client.delete(f"/v2/stores/file/{uuid.uuid4()}", headers=ADMIN).status_code == 404


def test_info_stores(http: httpx.Client) -> None:
    got = http.get("/v2/info/stores", headers=OWNER)
    assert got.status_code == 200
    assert got.json() == {"stores": [
        {"id": "file", "default": "true"},
        {"id": "fast", "description": "Fast disks"},
        {"id": "http", "read-only": "true"},
    ]}


def test_info_stores_detail_is_for_admins_and_services(
        http: httpx.Client, multi: GlimpseServer) -> None:
    assert http.get("/v2/info/stores/detail", headers=OWNER).status_code == 403
    for caller in (ADMIN, SERVICE):
        got = http.get("/v2/info/stores/detail", headers=caller)
        assert got.status_code == 200, got.text
        assert got.json() == {"stores": [
            {"id": "file", "default": "true", "type": "file", "weight": 0, "properties": {
                "data_dir": str(store_dir(multi, "file").resolve()), "chunk_size": 1 << 20,
                "thin_provisioning": False}},
            {"id": "fast", "description": "Fast disks", "type": "file", "weight": 100,
             "properties": {"data_dir": str(store_dir(multi, "fast").resolve()),
                            "chunk_size": 1 << 20, "thin_provisioning": False}},
            {"id": "http", "read-only": "true", "type": "http", "weight": 0,
             "properties": {}},
        ]}
    assert http.post("/v2/info/stores", headers=ADMIN).status_code == 405
    assert http.request("GET", "/v2/info/stores", headers=OWNER,
                        content=b"x").status_code == 400


def test_create_names_the_stores(http: httpx.Client) -> None:
    created = http.post("/v2/images", headers=OWNER, json={"name": "h"})
    assert created.status_code == 201
    assert created.headers["openstack-image-store-ids"] == "file,fast,http"
    # No data, no stores key; the schema calls it read-only.
    assert "stores" not in created.json()
    refused = http.post("/v2/images", headers=OWNER, json={"stores": "fast"})
    assert refused.status_code == 403


# -- uploads -----------------------------------------------------------------------------------


def test_upload_chooses_the_store(http: httpx.Client, multi: GlimpseServer) -> None:
    into_fast = new_image(http, "fast")
    assert show(http, into_fast)["stores"] == "fast"
    assert (store_dir(multi, "fast") / into_fast).read_bytes() == DATA
    assert not (store_dir(multi, "file") / into_fast).exists()
    by_default = new_image(http)
    assert show(http, by_default)["stores"] == "file"
    listed = http.get("/v2/images", headers=OWNER, params={"id": f"in:{into_fast},{by_default}"})
    assert {i["id"]: i["stores"] for i in listed.json()["images"]} == {
        into_fast: "fast", by_default: "file"}


@pytest.mark.parametrize(("store", "status"), [
    ("nowhere", 400), ("x" * 8000, 400), ("../../etc", 400), ("http", 410)])
def test_upload_to_a_store_that_cannot_take_it(http: httpx.Client, multi: GlimpseServer,
                                               store: str, status: int) -> None:
    created = http.post("/v2/images", headers=OWNER, json={
        "disk_format": "raw", "container_format": "bare"}).json()
    put = http.put(f"/v2/images/{created['id']}/file", content=DATA, headers={
        **OWNER, "Content-Type": "application/octet-stream", "X-Image-Meta-Store": store})
    assert put.status_code == status, put.text
    assert len(put.text) < 2000
    assert show(http, created["id"])["status"] == "queued"
    assert not any(created["id"] in p.name for p in multi.data_dir.rglob("*"))


def test_v1_upload_into_a_store_and_both_views(http: httpx.Client) -> None:
    made = http.post("/v1/images", content=DATA, headers={
        **OWNER, "Content-Type": "application/octet-stream", "x-image-meta-name": "v1",
        "x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
        "x-image-meta-store": "fast"})
    assert made.status_code == 201, made.text
    image_id = made.json()["image"]["id"]
    assert "stores" not in made.json()["image"]
    assert show(http, image_id)["stores"] == "fast"
    head = http.head(f"/v1/images/{image_id}", headers=OWNER)
    assert head.headers["x-image-meta-status"] == "active"
    assert not [h for h in head.headers if "store" in h.lower()]
    assert http.get(f"/v1/images/{image_id}", headers=OWNER).content == DATA


# -- several copies ----------------------------------------------------------------------------


def test_two_copies_weight_and_fallback(http: httpx.Client, multi: GlimpseServer,
                                        db: sa.Engine) -> None:
    image_id = new_image(http)
    other = bytes(reversed(DATA))
    add_copy(multi, db, image_id, "fast", other)
    # By weight, then name: fast (100) before file (0).
    assert show(http, image_id)["stores"] == "fast,file"
    # The copy of highest weight is the one read (its bytes differ here, to tell them apart).
    assert download(http, image_id) == other
    # Its data gone: the next copy serves, on v2 and v1, ranges included.
    (store_dir(multi, "fast") / image_id).unlink()
    assert download(http, image_id) == DATA
    assert http.get(f"/v1/images/{image_id}", headers=OWNER).content == DATA
    ranged = http.get(f"/v2/images/{image_id}/file", headers={**OWNER, "Range": "bytes=10-19"})
    assert (ranged.status_code, ranged.content) == (206, DATA[10:20])
    assert "trying the next copy" in multi.log()


def test_delete_from_store(http: httpx.Client, multi: GlimpseServer, db: sa.Engine) -> None:
    image_id = new_image(http)
    add_copy(multi, db, image_id, "fast")
    path = f"/v2/stores/fast/{image_id}"
    assert http.delete(path, headers=OWNER).status_code == 403
    assert http.delete(f"/v2/stores/cheap/{image_id}", headers=ADMIN).status_code == 409
    assert http.delete(f"/v2/stores/fast/{uuid.uuid4()}", headers=ADMIN).status_code == 404
    assert http.request("DELETE", path, headers=ADMIN, content=b"{}").status_code == 400
    assert http.get(path, headers=ADMIN).status_code == 405
    gone = http.delete(path, headers=ADMIN)
    assert gone.status_code == 204 and gone.content == b""
    assert not (store_dir(multi, "fast") / image_id).exists()
    assert (store_dir(multi, "file") / image_id).exists()
    assert show(http, image_id)["stores"] == "file"
    assert hashlib.md5(download(http, image_id)).hexdigest() == show(http, image_id)["checksum"]
    # Its last copy: Glance's 403; a store it is not in, 404 (once it has two again).
    assert http.delete(f"/v2/stores/file/{image_id}", headers=ADMIN).status_code == 403
    add_copy(multi, db, image_id, "fast")
    assert http.delete(f"/v2/stores/http/{image_id}", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("path", [
    "/v2/stores/{long}/{id}", "/v2/stores/..%2F..%2Fetc/{id}", "/v2/stores/%2e%2e/{id}",
    "/v2/stores/fast/not-a-uuid", "/v2/stores/fast/{id}%00", "/v2/stores/%00/{id}",
    "/v2/stores/fast/../images/{id}", "/v2/stores/f%C3%A4st/{id}", "/v2/stores/%FF/{id}"])
def test_hostile_delete_paths(http: httpx.Client, multi: GlimpseServer, path: str) -> None:
    image_id = new_image(http)
    url = path.format(long="s" * 6000, id=image_id)
    got = http.delete(url, headers=ADMIN)
    assert got.status_code in (400, 404, 405, 409), (url, got.status_code, got.text)
    assert "s" * 100 not in got.text
    assert show(http, image_id)["stores"] == "file"
    assert (store_dir(multi, "file") / image_id).exists()


# -- real clients ------------------------------------------------------------------------------


def test_glanceclient_stores(multi: GlimpseServer, db: sa.Engine, tmp_path: Path) -> None:
    def client(headers: dict[str, str]) -> Any:
        return glanceclient.Client("2", endpoint=multi.url, timeout=30,
                                   identity_headers={k: v for k, v in headers.items()})

    # glanceclient percent-encodes header values (a comma-separated X-Roles would reach the
    # server as "admin%2Cmember"): one role each.
    gc, admin = client(tenant("alice", "member")), client(tenant("ops", "admin"))
    assert [s["id"] for s in gc.images.get_stores_info()["stores"]] == ["file", "fast", "http"]
    with pytest.raises(gc_exc.HTTPForbidden):
        gc.images.get_stores_info_detail()
    detail = admin.images.get_stores_info_detail()["stores"]
    assert [(s["id"], s["type"], s["weight"]) for s in detail] == [
        ("file", "file", 0), ("fast", "file", 100), ("http", "http", 0)]
    image = gc.images.create(name="gc", disk_format="raw", container_format="bare")
    source = tmp_path / "data"
    source.write_bytes(DATA)
    with source.open("rb") as f:
        gc.images.upload(image["id"], f, image_size=len(DATA), backend="fast")
    assert gc.images.get(image["id"])["stores"] == "fast"
    add_copy(multi, db, image["id"], "file")
    assert gc.images.get(image["id"])["stores"] == "fast,file"
    admin.images.delete_from_store("fast", image["id"])
    assert gc.images.get(image["id"])["stores"] == "file"
    assert b"".join(gc.images.data(image["id"])) == DATA
    with pytest.raises(gc_exc.HTTPForbidden):
        admin.images.delete_from_store("file", image["id"])


def test_openstacksdk_stores(multi: GlimpseServer) -> None:
    session = ks_session.Session(auth=noauth.NoAuth(endpoint=multi.url),
                                 additional_headers=OWNER)
    conn = openstack.connection.Connection(session=session, image_endpoint_override=multi.url)
    stores = list(conn.image.stores())
    assert [(s.id, s.is_default) for s in stores] == [
        ("file", True), ("fast", None), ("http", None)]
    assert stores[1].description == "Fast disks"

"""Upgrading a database the current release made: every image reads the same through v1.

On each engine a fresh database is brought to the release's schema (revision 0003) and filled
with rows exactly as the release writes them (public, private, shared, queued, killed, deleted,
pending_delete, filesystem-held, external and owner-less images, members as v1 adds them), the
filesystem store's files beside it. The rows go through tables reflected from that database,
never through glimpse.db.tables, which describes the newest schema. ``glimpse db upgrade`` then
brings it to the newest revision and a real server is asked, through v1, about every image; the
answers are written out below, not read back from the database. Runs once per suite run
(own_databases); a missing database server skips its engine with the reason (CI fails on skips).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from glimpse.db import engine as db_engine
from tests import databases
from tests.e2e.identity import ctx
from tests.e2e.server import GlimpseServer
from tests.e2e.test_image_headers import raw_meta
from tests.e2e.test_operator import glimpse

pytestmark = [pytest.mark.e2e, pytest.mark.own_databases]

RELEASE_REVISION = "0003"  # the schema of the release whose databases must upgrade

OWNER = "tenant-owner"
OTHER = "tenant-other"  # owns the external image
SHARER = "tenant-sharer"  # member with can_share, added first
READER = "tenant-reader"  # member without, added second (so not in alphabetical order)
STRANGER = "tenant-stranger"
ADMIN = ctx("tenant-admin", roles="admin")

PUBLIC = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a01"
PRIVATE = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a02"
SHARED = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a03"
QUEUED = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a04"
KILLED = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a05"
DELETED = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a06"
PENDING_DELETE = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a07"
EXTERNAL = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a08"
OWNERLESS = "4f0c3b56-9a4e-4b43-9d3e-0f4c3a6e1a09"
EXTERNAL_URL = "http://images.example.test/cirros-0.6.2-x86_64-disk.img"

# More than one 1 MiB read chunk of the filesystem store, and every byte value.
PUBLIC_DATA = bytes(range(256)) * 4096 + b"tail"
PRIVATE_DATA = b"private image bytes\x00\xff"
SHARED_DATA = b"shared image bytes " * 100
PENDING_DATA = b"bytes awaiting the scrubber"
DELETED_DATA = bytes(4096)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclasses.dataclass(frozen=True)
class ReleaseImage:
    """One image: as v1 must show it (its detail entry, spec §5.2) and, beyond that, what the
    release keeps of it internally. The rows these make were compared, column by column, with
    those a server of the release wrote for the same v1 requests."""

    v1: dict[str, Any]
    upload: bytes | None = None  # the data uploaded, whose SHA-512 the release recorded
    store: str | None = None  # where the data still is (none once deleted)
    location: str | None = None

    @property
    def file(self) -> bytes | None:
        """The bytes the filesystem store holds under the image id."""
        return self.upload if self.store == "file" else None


def view(image_id: str, name: str | None, status: str, created_at: str, updated_at: str, *,
         owner: str | None = OWNER, deleted_at: str | None = None, **fields: Any,
         ) -> dict[str, Any]:
    """A v1 detail entry; ``fields`` overrides what v1 shows for an image nobody set it on."""
    entry: dict[str, Any] = {
        "id": image_id, "name": name, "status": status, "size": 0, "virtual_size": None,
        "checksum": None, "disk_format": None, "container_format": None, "min_disk": 0,
        "min_ram": 0, "is_public": False, "protected": False, "owner": owner,
        "created_at": created_at, "updated_at": updated_at, "deleted_at": deleted_at,
        "deleted": deleted_at is not None, "properties": {},
    }
    assert set(fields) <= set(entry), fields
    entry.update(fields)
    return entry


def held(image_id: str, data: bytes) -> dict[str, Any]:
    """What the release records of data it wrote to the filesystem store: the key is the id."""
    return {"upload": data, "store": "file", "location": image_id}


def uploaded(data: bytes) -> dict[str, Any]:
    """v1 fields of a raw image whose data was uploaded (the release inspects raw data, so its
    virtual size is its size)."""
    return {"size": len(data), "virtual_size": len(data), "checksum": md5(data),
            "disk_format": "raw", "container_format": "bare"}


# In creation order. Lists are newest first.
IMAGES = {
    PUBLIC: ReleaseImage(view(
        PUBLIC, "Ubuntu \U0001f427 22.04", "active",
        "2024-03-01T10:00:00.000000", "2024-03-01T10:00:01.250000",
        is_public=True, protected=True, min_ram=512, min_disk=10,
        properties={"distro": "ubuntu", "emoji": "\U0001f680 rocket", "os_version": "22.04"},
        **uploaded(PUBLIC_DATA)), **held(PUBLIC, PUBLIC_DATA)),
    PRIVATE: ReleaseImage(view(
        PRIVATE, "private", "active", "2024-03-01T10:01:00.000001", "2024-03-01T10:01:00.500000",
        properties={"purpose": "private"}, **uploaded(PRIVATE_DATA)),
        **held(PRIVATE, PRIVATE_DATA)),
    SHARED: ReleaseImage(view(
        SHARED, "shared", "active", "2024-03-01T10:02:00.123456", "2024-03-01T10:02:30.654321",
        min_disk=1, **uploaded(SHARED_DATA)), **held(SHARED, SHARED_DATA)),
    QUEUED: ReleaseImage(view(
        QUEUED, "queued", "queued", "2024-03-01T10:03:00.000003", "2024-03-01T10:03:00.000003")),
    # An upload whose data did not match the declared checksum: the checksum stays, no data.
    KILLED: ReleaseImage(view(
        KILLED, "killed", "killed", "2024-03-01T10:04:00.000004", "2024-03-01T10:04:00.900000",
        checksum="0" * 32, disk_format="raw", container_format="bare")),
    # Deleted after its upload: data and properties removed, the rest kept.
    DELETED: ReleaseImage(view(
        DELETED, "deleted", "deleted", "2024-03-01T10:05:00.000005", "2024-03-02T08:00:00.000000",
        deleted_at="2024-03-02T08:00:00.000000", **uploaded(DELETED_DATA)),
        upload=DELETED_DATA),
    # Deleted with delayed_delete: the data stays until the scrubber removes it.
    PENDING_DELETE: ReleaseImage(view(
        PENDING_DELETE, "pending", "pending_delete",
        "2024-03-01T10:06:00.000006", "2024-03-02T09:00:00.000009",
        deleted_at="2024-03-02T09:00:00.000009", **uploaded(PENDING_DATA)),
        **held(PENDING_DELETE, PENDING_DATA)),
    # Registered by location: the size the remote server gave, no checksum.
    EXTERNAL: ReleaseImage(view(
        EXTERNAL, "cirros", "active", "2024-03-01T10:07:00.000007", "2024-03-01T10:07:00.100007",
        owner=OTHER, size=21692416, disk_format="qcow2", container_format="bare", min_ram=64,
        min_disk=1, protected=True, properties={"os_distro": "cirros"}),
        store="http", location=EXTERNAL_URL),
    # Made by the anonymous administrator: no owner, readable by all, listed for none but admins.
    OWNERLESS: ReleaseImage(view(
        OWNERLESS, None, "queued", "2024-03-01T10:08:00.000008", "2024-03-01T10:08:00.000008",
        owner=None, virtual_size=1 << 30, disk_format="qcow2", container_format="ovf")),
}
LIVE = [i for i, image in IMAGES.items() if not image.v1["deleted"]]
GONE = [DELETED, PENDING_DELETE]
# (image, member, can_share, position) in the order v1 added them; positions count from 1.
MEMBERS = [(SHARED, SHARER, True, 1), (SHARED, READER, False, 2)]

# Who lists what, newest first: public, own and shared-with-me for tenants; killed and deleted
# images for nobody.
LISTED: list[tuple[str, dict[str, str], dict[str, str], list[str]]] = [
    ("admin, is_public=none", ADMIN, {"is_public": "none"},
     [OWNERLESS, EXTERNAL, QUEUED, SHARED, PRIVATE, PUBLIC]),
    ("admin, is_public=false", ADMIN, {"is_public": "false"},
     [OWNERLESS, EXTERNAL, QUEUED, SHARED, PRIVATE]),
    ("admin's own tenant", ADMIN, {}, [PUBLIC]),
    ("owner", ctx(OWNER), {}, [QUEUED, SHARED, PRIVATE, PUBLIC]),
    ("owner, is_public=none is ignored", ctx(OWNER), {"is_public": "none"},
     [QUEUED, SHARED, PRIVATE, PUBLIC]),
    ("other owner", ctx(OTHER), {}, [EXTERNAL, PUBLIC]),
    ("member with can_share", ctx(SHARER), {}, [SHARED, PUBLIC]),
    ("member without", ctx(READER), {}, [SHARED, PUBLIC]),
    ("stranger", ctx(STRANGER), {}, [PUBLIC]),
]


def as_headers(entry: dict[str, Any]) -> dict[str, str]:
    """The x-image-meta-* headers v1 renders for a detail entry (spec §5.3): non-null
    attributes, booleans as True/False, non-null properties."""
    headers = {f"x-image-meta-{k}": str(v) for k, v in entry.items()
               if v is not None and k != "properties"}
    headers.update({f"x-image-meta-property-{k}": v for k, v in entry["properties"].items()
                    if v is not None})
    return headers


def timestamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")


def release_row(image: ReleaseImage) -> dict[str, Any]:
    """The images row as the release writes it (repository.create and its updates)."""
    v1 = image.v1
    row = {k: v1[k] for k in ("id", "name", "status", "size", "virtual_size", "checksum",
                              "disk_format", "container_format", "min_disk", "min_ram",
                              "is_public", "protected", "owner", "deleted")}
    for key in ("created_at", "updated_at", "deleted_at"):
        row[key] = None if v1[key] is None else timestamp(v1[key])
    data = image.upload
    row.update(store=image.store, location=image.location,
               os_hash_algo=None if data is None else "sha512",
               os_hash_value=None if data is None else hashlib.sha512(data).hexdigest())
    return row


def make_release_database(url: str, images_dir: Path) -> None:
    engine = db_engine.create_engine(url)
    try:
        db_engine.upgrade(engine, RELEASE_REVISION)
        assert db_engine.current_revision(engine) == RELEASE_REVISION
        schema = sa.MetaData()
        schema.reflect(engine, only=["images", "image_properties", "image_members"])
        images, properties, members = (schema.tables[n] for n in (
            "images", "image_properties", "image_members"))
        with engine.begin() as conn:
            for image_id, image in IMAGES.items():
                conn.execute(images.insert().values(**release_row(image)))
                props = image.v1["properties"]
                if props:
                    conn.execute(properties.insert(), [
                        {"image_id": image_id, "name": k, "value": v} for k, v in props.items()])
            conn.execute(members.insert(), [
                {"image_id": i, "member": m, "can_share": c, "position": p}
                for i, m, c, p in MEMBERS])
    finally:
        engine.dispose()
    images_dir.mkdir(parents=True)
    for image_id, image in IMAGES.items():
        if image.file is not None:
            (images_dir / image_id).write_bytes(image.file)


@dataclasses.dataclass(frozen=True)
class Upgraded:
    server: GlimpseServer
    env: dict[str, str]  # how glimpse commands find its database and data


@pytest.fixture(scope="module", params=databases.ENGINES)
def upgraded(request: pytest.FixtureRequest) -> Iterator[Upgraded]:
    """A server on a release database of the engine, upgraded by ``glimpse db upgrade``."""
    for url in databases.or_skip(request.param):
        with tempfile.TemporaryDirectory(prefix="glimpse-upgrade-") as tmp:
            data_dir = Path(tmp)
            make_release_database(url, data_dir / "images")
            env = {"GLIMPSE_DATA_DIR": str(data_dir), "GLIMPSE_DATABASE_URL": url}
            result = glimpse("db", "upgrade", env=env, timeout=300)
            assert result.returncode == 0, result.stderr
            engine = db_engine.create_engine(url)
            try:
                assert db_engine.current_revision(engine) == db_engine.HEAD_REVISION
            finally:
                engine.dispose()
            srv = GlimpseServer({"database_url": url, "default_store": "file"}, data_dir)
            try:
                yield Upgraded(srv, env)
            finally:
                srv.stop()


@pytest.fixture
def api(upgraded: Upgraded) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upgraded.server.url, timeout=60) as client:
        yield client


def expect_head(api: httpx.Client, image_id: str, who: dict[str, str]) -> None:
    resp = api.head(f"/v1/images/{image_id}", headers=who)
    assert resp.status_code == 200, (image_id, who, resp.status_code)
    assert raw_meta(resp) == as_headers(IMAGES[image_id].v1), (image_id, who)
    assert resp.headers.get("etag") == IMAGES[image_id].v1["checksum"]


def test_every_image_heads_as_the_release_stored_it(api: httpx.Client) -> None:
    for image_id in IMAGES:
        expect_head(api, image_id, ADMIN)
        expect_head(api, image_id, {})  # the anonymous administrator
    for image_id in LIVE:
        if (owner := IMAGES[image_id].v1["owner"]) is not None:
            expect_head(api, image_id, ctx(owner))
    for member in (SHARER, READER):
        expect_head(api, SHARED, ctx(member))
    for image_id in (PUBLIC, OWNERLESS):
        expect_head(api, image_id, ctx(STRANGER))
    for image_id in (PRIVATE, SHARED, QUEUED, KILLED, EXTERNAL):
        assert api.head(f"/v1/images/{image_id}", headers=ctx(STRANGER)).status_code == 404
    for image_id in GONE:  # deleted: only administrators still see them
        assert api.head(f"/v1/images/{image_id}", headers=ctx(OWNER)).status_code == 404


@pytest.mark.parametrize(("who", "params", "expected"), [row[1:] for row in LISTED],
                         ids=[row[0] for row in LISTED])
def test_each_caller_lists_the_images_it_listed_before(
    api: httpx.Client, who: dict[str, str], params: dict[str, str], expected: list[str],
) -> None:
    detail = api.get("/v1/images/detail", headers=who, params=params)
    assert detail.status_code == 200, detail.text
    entries = detail.json()["images"]
    assert [e["id"] for e in entries] == expected
    for entry in entries:
        assert entry == IMAGES[entry["id"]].v1
    brief = api.get("/v1/images", headers=who, params=params)
    assert brief.status_code == 200, brief.text
    assert brief.json()["images"] == [
        {k: IMAGES[i].v1[k] for k in ("id", "name", "size", "disk_format", "container_format",
                                      "checksum")} for i in expected]


def members_of(api: httpx.Client, image_id: str, who: dict[str, str]) -> list[dict[str, Any]]:
    resp = api.get(f"/v1/images/{image_id}/members", headers=who)
    assert resp.status_code == 200, (image_id, who, resp.text)
    found: list[dict[str, Any]] = resp.json()["members"]
    return found


def shared_with(api: httpx.Client, member: str, who: dict[str, str]) -> list[dict[str, Any]]:
    resp = api.get(f"/v1/shared-images/{member}", headers=who)
    assert resp.status_code == 200, (member, who, resp.text)
    found: list[dict[str, Any]] = resp.json()["shared_images"]
    return found


def test_members_and_their_can_share_survive(api: httpx.Client) -> None:
    both = [{"member_id": SHARER, "can_share": True}, {"member_id": READER, "can_share": False}]
    assert members_of(api, SHARED, ctx(OWNER)) == both  # in the order they were added
    assert members_of(api, SHARED, ADMIN) == both
    assert members_of(api, SHARED, ctx(READER)) == [both[1]]  # a member sees its own row
    for image_id in (PUBLIC, PRIVATE, QUEUED, KILLED, OWNERLESS):
        assert members_of(api, image_id, ADMIN) == []
    for image_id in GONE:
        assert api.get(f"/v1/images/{image_id}/members", headers=ADMIN).status_code == 404
    for who in (ADMIN, ctx(SHARER)):
        assert shared_with(api, SHARER, who) == [{"image_id": SHARED, "can_share": True}]
    for who in (ADMIN, ctx(READER)):
        assert shared_with(api, READER, who) == [{"image_id": SHARED, "can_share": False}]
    assert shared_with(api, READER, ctx(OWNER)) == [{"image_id": SHARED, "can_share": False}]
    assert shared_with(api, STRANGER, ADMIN) == []
    # can_share still decides who may share further: the sharer may, the reader may not.
    newcomer = "tenant-newcomer"
    added = api.put(f"/v1/images/{SHARED}/members/{newcomer}", headers=ctx(SHARER))
    assert added.status_code == 204, added.text
    refused = api.put(f"/v1/images/{SHARED}/members/{STRANGER}", headers=ctx(READER))
    assert refused.status_code in (403, 404), refused.text
    assert members_of(api, SHARED, ctx(OWNER)) == [
        *both, {"member_id": newcomer, "can_share": False}]
    assert [e["id"] for e in api.get("/v1/images/detail", headers=ctx(newcomer)).json()[
        "images"]] == [SHARED, PUBLIC]
    removed = api.delete(f"/v1/images/{SHARED}/members/{newcomer}", headers=ctx(OWNER))
    assert removed.status_code == 204, removed.text


def test_filesystem_images_download_their_original_bytes(api: httpx.Client) -> None:
    readers = {PUBLIC: [ctx(STRANGER)], PRIVATE: [ctx(OWNER)],
               SHARED: [ctx(OWNER), ctx(SHARER), ctx(READER)]}
    for image_id, callers in readers.items():
        original = IMAGES[image_id].file
        assert original is not None
        for who in callers:
            resp = api.get(f"/v1/images/{image_id}", headers=who)
            assert resp.status_code == 200, (image_id, who, resp.text)
            assert resp.content == original, (image_id, who)
            assert resp.headers["content-length"] == str(len(original))
            assert resp.headers["etag"] == md5(original)
            assert raw_meta(resp) == as_headers(IMAGES[image_id].v1)
    # Only active images have data to give; deleted ones are gone for their owner too.
    for image_id in (QUEUED, KILLED, *GONE):
        assert api.get(f"/v1/images/{image_id}", headers=ADMIN).status_code == 404, image_id
        assert api.get(f"/v1/images/{image_id}", headers=ctx(OWNER)).status_code == 404, image_id


def test_store_check_finds_every_image_its_data(upgraded: Upgraded) -> None:
    """The data locations moved with the images: no data is missing, damaged or orphaned
    (pending_delete data is still owned by its image)."""
    result = glimpse("store", "check", "--verify", env=upgraded.env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["missing"], report["corrupt"], report["orphans"]) == ([], [], [])
    assert report["objects"] == 4
    assert report["images_checked"] == 3  # the active ones held by the filesystem store

"""End-to-end tests: glimpse driven by the real python-glanceclient (spec §14.1).

Two clients are exercised against a live server:

* the Python library ``glanceclient.v1`` (``glanceclient.Client('1', endpoint=...)``), as the
  anonymous administrator (no identity headers) and as tenants, using the v1 HTTP client's
  ``identity_headers`` option to send the trusted ``X-Tenant-Id``/``X-Roles`` headers (§2.1);
* the ``glance`` command line with ``--os-image-api-version 1``. Despite §14.1 saying the v1
  shell commands were dropped, python-glanceclient 4.13.0 still ships ``glanceclient/v1/shell.py``
  and ``glance --os-image-api-version 1`` offers image-create/-show/-list/-download/-update/
  -delete and member-create/-list/-delete. ``--os-auth-token <anything>`` together with
  ``--os-image-url`` makes the CLI skip Keystone and talk to the URL directly.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "glanceclient.v1", reason="python-glanceclient (with its v1 module) is not installed"
)

import glanceclient
from glanceclient import exc as gc_exc

from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

GLANCE_CLI = Path(sys.executable).with_name("glance")

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")
REQUEST_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)

# §5.2: exactly these keys in a full image representation.
FULL_KEYS = {
    "id", "name", "status", "size", "virtual_size", "checksum", "disk_format",
    "container_format", "min_disk", "min_ram", "is_public", "protected", "owner",
    "created_at", "updated_at", "deleted_at", "deleted", "properties",
}  # fmt: skip


# ---------------------------------------------------------------------------- helpers


def make_client(server: GlimpseServer, tenant: str | None = None, roles: str = "member") -> Any:
    """A v1 client; without ``tenant`` it is the anonymous administrator (no identity headers)."""
    kwargs: dict[str, Any] = {"timeout": 30}
    if tenant is not None:
        kwargs["identity_headers"] = {
            "X-Tenant-Id": tenant,
            "X-Project-Id": tenant,
            "X-User-Id": f"user-of-{tenant}",
            "X-Roles": roles,
        }
    with warnings.catch_warnings():
        # Client('1', ...) warns that the version keyword is deprecated; it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        return glanceclient.Client("1", endpoint=server.url, **kwargs)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def from_header(value: str) -> str:
    """Undo http.client's latin-1 decoding of a UTF-8 response header (what HEAD gives us)."""
    return value.encode("latin-1").decode("utf-8")


def download(gc: Any, image_id: str) -> bytes:
    body = gc.images.data(image_id)  # verifies the MD5 against x-image-meta-checksum
    data = b"".join(body)
    assert len(body) == len(data)  # Content-Length
    return data


def listed_ids(gc: Any, **kwargs: Any) -> list[str]:
    return [img.id for img in gc.images.list(**kwargs)]


class UnsizedReader:
    """A file-like object whose size the client cannot determine (no seek/tell)."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


@pytest.fixture
def admin(server: GlimpseServer) -> Any:
    return make_client(server)


# ---------------------------------------------------------------------------- library: create


def test_create_from_file_streams_and_show_roundtrips(
    server: GlimpseServer, admin: Any, unique: str, tmp_path: Path
) -> None:
    data = os.urandom(300_000) + unique.encode()
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    props = {"e2e_tag": unique, "distro": "ubuntu", "owner_specified.openstack.md5": md5(data)}
    with path.open("rb") as f:
        created = admin.images.create(
            name=f"from file {unique}",
            disk_format="raw",  # random bytes: inspection refuses them as anything else
            container_format="bare",
            min_ram=512,
            min_disk=3,
            properties=props,
            data=f,
        )
    info = created.to_dict()
    assert set(info) == FULL_KEYS
    assert uuid.UUID(info["id"])
    assert info["name"] == f"from file {unique}"
    assert info["status"] == "active"
    assert info["size"] == len(data)
    assert info["checksum"] == md5(data)
    assert info["disk_format"] == "raw"
    assert info["container_format"] == "bare"
    assert info["min_ram"] == 512
    assert info["min_disk"] == 3
    assert info["is_public"] is False
    assert info["protected"] is False
    assert info["owner"] is None  # anonymous admin
    assert info["deleted"] is False
    assert info["deleted_at"] is None
    assert info["virtual_size"] == len(data)  # inspected: raw bytes
    assert info["properties"] == props
    assert TIMESTAMP.match(info["created_at"])
    assert TIMESTAMP.match(info["updated_at"])

    req_ids: list[str] = []
    shown = admin.images.get(created.id, return_req_id=req_ids).to_dict()
    assert len(req_ids) == 1 and REQUEST_ID.match(req_ids[0] or ""), req_ids
    # HEAD: null attributes (here owner and deleted_at) are omitted (§5.3).
    assert set(shown) == FULL_KEYS - {"owner", "deleted_at"}  # virtual_size: inspected
    assert shown["virtual_size"] == str(len(data))  # glanceclient leaves it a header string
    assert shown["id"] == created.id
    assert shown["name"] == f"from file {unique}"
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["checksum"] == md5(data)
    assert shown["disk_format"] == "raw"
    assert shown["container_format"] == "bare"
    assert shown["min_ram"] == 512
    assert shown["min_disk"] == 3
    assert shown["is_public"] is False
    assert shown["protected"] is False
    assert shown["deleted"] is False
    assert shown["properties"] == props
    assert shown["created_at"] == info["created_at"]
    assert shown["updated_at"] == info["updated_at"]

    assert download(admin, created.id) == data


def test_create_from_stream_of_unknown_size(admin: Any, unique: str) -> None:
    # No x-image-meta-size is sent; the body is chunked in several 1 MiB chunks.
    data = os.urandom(2 * 1024 * 1024 + 12345)
    created = admin.images.create(
        name=f"unsized {unique}",
        disk_format="raw",
        container_format="bare",
        properties={"e2e_tag": unique},
        data=UnsizedReader(data),
    )
    assert created.status == "active"
    assert created.size == len(data)
    assert created.checksum == md5(data)
    shown = admin.images.get(created.id)
    assert (shown.status, shown.size, shown.checksum) == ("active", len(data), md5(data))
    assert download(admin, created.id) == data


def test_names_and_property_values_are_stored_decoded(admin: Any, unique: str) -> None:
    # The client percent-encodes every header value (Q14); the server must store the decoded text.
    cases = [
        f"My Image! 100% (v1) {unique}",
        f"Ünïcødé 名前 ✓ {unique}",
    ]
    prop_value = "a b/c:d é 50%"
    for name in cases:
        created = admin.images.create(
            name=name,
            is_public=True,
            properties={"e2e_tag": unique, "description": prop_value},
        )
        assert created.name == name
        assert created.properties == {"e2e_tag": unique, "description": prop_value}
        assert created.status == "queued"
        assert created.size == 0
        assert created.checksum is None

        shown = admin.images.get(created.id)
        assert from_header(shown.name) == name
        assert from_header(shown.properties["description"]) == prop_value

        found = list(admin.images.list(filters={"name": name, "properties": {"e2e_tag": unique}}))
        assert [img.id for img in found] == [created.id]
        assert found[0].name == name
        assert found[0].properties == {"e2e_tag": unique, "description": prop_value}

    # Rename through update as well.
    new_name = f"renamed — {unique} & more"
    updated = admin.images.update(created.id, name=new_name)
    assert updated.name == new_name
    assert from_header(admin.images.get(created.id).name) == new_name


# ---------------------------------------------------------------------------- library: listing


def test_list_filters(server: GlimpseServer, admin: Any, unique: str) -> None:
    a = admin.images.create(
        name=f"alpha {unique}", disk_format="raw", container_format="bare", is_public=True,
        properties={"e2e_tag": unique, "kind": "alpha"}, data=io.BytesIO(b"a" * 10),
    )  # fmt: skip
    b = admin.images.create(
        name=f"beta {unique}", disk_format="qcow2", container_format="ovf",
        properties={"e2e_tag": unique, "kind": "beta"}, data=io.BytesIO(b"b" * 20),
    )  # fmt: skip
    c = admin.images.create(name=f"gamma {unique}", properties={"e2e_tag": unique, "kind": "alpha"})
    assert (a.status, b.status, c.status) == ("active", "active", "queued")

    def ids(is_public: Any, **filters: Any) -> set[str]:
        filters.setdefault("properties", {})["e2e_tag"] = unique
        kwargs: dict[str, Any] = {"filters": filters}
        if is_public != "default":
            kwargs["is_public"] = is_public  # None is sent as is_public=None (all images)
        return set(listed_ids(admin, **kwargs))

    assert ids(is_public=None) == {a.id, b.id, c.id}
    assert ids(is_public=None, properties={"kind": "alpha"}) == {a.id, c.id}
    assert ids(is_public=None, properties={"kind": "nope"}) == set()
    assert ids(is_public=None, name=f"alpha {unique}") == {a.id}
    assert ids(is_public=None, disk_format="qcow2") == {b.id}
    assert ids(is_public=None, container_format="bare") == {a.id}
    assert ids(is_public=None, status="queued") == {c.id}
    assert ids(is_public=None, status="active") == {a.id, b.id}
    assert ids(is_public=None, size_min=15) == {b.id}
    assert ids(is_public=None, size_max=15) == {a.id, c.id}
    assert ids(is_public=None, size_min=10, size_max=20) == {a.id, b.id}
    # The anonymous admin's default list shows public images only (§9.4).
    assert ids(is_public="default") == {a.id}
    assert ids(is_public=False) == {b.id, c.id}

    # Detailed entries carry full, correctly typed values.
    (entry,) = admin.images.list(filters={"properties": {"e2e_tag": unique, "kind": "beta"}},
                                 is_public=None)  # fmt: skip
    info = entry.to_dict()
    assert set(info) == FULL_KEYS
    assert info["id"] == b.id
    assert info["name"] == f"beta {unique}"
    assert info["size"] == 20
    assert info["checksum"] == md5(b"b" * 20)
    assert info["disk_format"] == "qcow2"
    assert info["container_format"] == "ovf"
    assert info["is_public"] is False
    assert info["status"] == "active"
    assert info["properties"] == {"e2e_tag": unique, "kind": "beta"}

    # A tenant lists public images, not the anonymous admin's private ones.
    tenant = make_client(server, f"lister-{unique}")
    assert set(listed_ids(tenant, filters={"properties": {"e2e_tag": unique}})) == {a.id}


def test_paging_with_small_page_size(admin: Any, unique: str) -> None:
    names = [f"page {i} {unique}" for i in range(5)]
    created = {}
    for name in reversed(names):  # creation order differs from name order
        created[name] = admin.images.create(name=name, properties={"e2e_tag": unique}).id
    expected_asc = [created[n] for n in names]

    def run(**kwargs: Any) -> tuple[list[str], int]:
        req_ids: list[str] = []
        got = listed_ids(
            admin,
            filters={"properties": {"e2e_tag": unique}},
            is_public=None,
            sort_key="name",
            return_req_id=req_ids,
            **kwargs,
        )
        return got, len(req_ids)

    got, requests = run(page_size=2, sort_dir="asc")
    assert got == expected_asc
    assert requests == 3  # pages of 2, 2, 1

    got, requests = run(page_size=2, sort_dir="desc")
    assert got == expected_asc[::-1]
    assert requests == 3

    got, requests = run(page_size=5, sort_dir="asc")
    assert got == expected_asc
    assert requests == 2  # a full page, then an empty one

    got, _ = run(page_size=2, sort_dir="asc", limit=3)
    assert got == expected_asc[:3]

    # Explicit marker: everything strictly after the second image.
    got, _ = run(page_size=2, sort_dir="asc", marker=expected_asc[1])
    assert got == expected_asc[2:]

    # Default sort is created_at desc: newest first.
    got = listed_ids(admin, filters={"properties": {"e2e_tag": unique}}, is_public=None,
                     page_size=2)  # fmt: skip
    assert got == [created[n] for n in names]


# ---------------------------------------------------------------------------- library: download


def test_download_zero_size_and_non_active(admin: Any, unique: str) -> None:
    empty = admin.images.create(name=f"empty {unique}", size=0, properties={"e2e_tag": unique})
    assert empty.status == "active"
    assert empty.size == 0
    assert empty.checksum is None
    assert download(admin, empty.id) == b""

    queued = admin.images.create(name=f"queued {unique}", properties={"e2e_tag": unique})
    assert queued.status == "queued"
    with pytest.raises(gc_exc.HTTPNotFound):
        admin.images.data(queued.id)
    with pytest.raises(gc_exc.HTTPNotFound):
        admin.images.get(str(uuid.uuid4()))


# ---------------------------------------------------------------------------- library: update


def test_update_merges_or_purges_properties(admin: Any, unique: str, tmp_path: Path) -> None:
    img = admin.images.create(
        name=f"props {unique}", properties={"e2e_tag": unique, "a": "1", "b": "2"}
    )
    assert img.properties == {"e2e_tag": unique, "a": "1", "b": "2"}

    # purge_props=False (the client's default): merge.
    merged = admin.images.update(img.id, properties={"b": "20", "c": "3"}, min_ram=256)
    assert merged.properties == {"e2e_tag": unique, "a": "1", "b": "20", "c": "3"}
    assert merged.min_ram == 256
    assert merged.name == f"props {unique}"
    shown = admin.images.get(img.id)
    assert shown.properties == {"e2e_tag": unique, "a": "1", "b": "20", "c": "3"}
    assert shown.min_ram == 256

    # purge_props=True: the request's properties become the full set.
    purged = admin.images.update(
        img.id, name=f"purged {unique}", properties={"e2e_tag": unique, "d": "4"}, purge_props=True
    )
    assert purged.properties == {"e2e_tag": unique, "d": "4"}
    assert purged.name == f"purged {unique}"
    assert purged.min_ram == 256
    assert admin.images.get(img.id).properties == {"e2e_tag": unique, "d": "4"}
    assert purged.status == "queued"

    # Upload data to the queued image with PUT (chunked body; upload never purges).
    data = os.urandom(70_000)
    path = tmp_path / "upload.img"
    path.write_bytes(data)
    with path.open("rb") as f:
        uploaded = admin.images.update(
            img.id, disk_format="vhd", container_format="ovf", properties={"e": "5"}, data=f
        )
    assert uploaded.status == "active"
    assert uploaded.size == len(data)
    assert uploaded.checksum == md5(data)
    assert uploaded.disk_format == "vhd"
    assert uploaded.container_format == "ovf"
    assert uploaded.properties == {"e2e_tag": unique, "d": "4", "e": "5"}
    assert download(admin, img.id) == data

    # A second upload is refused: the image is no longer queued.
    with pytest.raises(gc_exc.HTTPConflict):
        admin.images.update(img.id, data=io.BytesIO(b"again"))
    assert admin.images.get(img.id).checksum == md5(data)


# ---------------------------------------------------------------------------- library: members


def test_members_and_shared_images(server: GlimpseServer, admin: Any, unique: str) -> None:
    owner_t, t1, t2, t3, t4 = (f"{p}-{unique}" for p in ("owner", "t1", "t2", "t3", "t4"))
    owner = make_client(server, owner_t)
    img = owner.images.create(
        name=f"shared {unique}", disk_format="raw", container_format="bare",
        properties={"e2e_tag": unique}, data=io.BytesIO(b"shared data"),
    )  # fmt: skip
    assert img.owner == owner_t
    assert img.is_public is False

    # Not shared yet: other tenants cannot see it.
    with pytest.raises(gc_exc.HTTPNotFound):
        make_client(server, t1).images.get(img.id)

    owner.image_members.create(img.id, t1)
    owner.image_members.create(img.id, t2, can_share=True)
    members = owner.image_members.list(image=img.id)
    assert [(m.member_id, m.can_share, m.image_id) for m in members] == [
        (t1, False, img.id),
        (t2, True, img.id),
    ]

    shared = owner.image_members.list(member=t2)
    assert [(s.image_id, s.can_share, s.member_id) for s in shared] == [(img.id, True, t2)]

    # Members can now see, download and list the image.
    c1 = make_client(server, t1)
    assert c1.images.get(img.id).name == f"shared {unique}"
    assert download(c1, img.id) == b"shared data"
    assert listed_ids(c1, filters={"properties": {"e2e_tag": unique}}) == [img.id]
    assert [(s.image_id, s.can_share) for s in c1.image_members.list(member=t1)] == [
        (img.id, False)
    ]
    # A non-member still cannot.
    with pytest.raises(gc_exc.HTTPNotFound):
        make_client(server, t3).images.get(img.id)

    # Replace all memberships: t2 dropped, t1 gets can_share, t3 added.
    owner.image_members.replace(img.id, [{"member_id": t1, "can_share": True}, {"member_id": t3}])
    after = {m.member_id: m.can_share for m in owner.image_members.list(image=img.id)}
    assert after == {t1: True, t3: False}
    with pytest.raises(gc_exc.HTTPNotFound):
        make_client(server, t2).images.get(img.id)
    assert owner.image_members.list(member=t2) == []
    assert make_client(server, t3).images.get(img.id).id == img.id

    # t1 may now share the image further (can_share delegation, §11.6).
    c1.image_members.create(img.id, t4)
    after = {m.member_id: m.can_share for m in admin.image_members.list(image=img.id)}
    assert after == {t1: True, t3: False, t4: False}

    # Remove one membership; removing it again is a 404.
    owner.image_members.delete(img.id, t3)
    after = {m.member_id: m.can_share for m in owner.image_members.list(image=img.id)}
    assert after == {t1: True, t4: False}
    with pytest.raises(gc_exc.HTTPNotFound):
        make_client(server, t3).images.get(img.id)
    with pytest.raises(gc_exc.HTTPNotFound):
        owner.image_members.delete(img.id, t3)

    # An empty replacement removes everything.
    owner.image_members.replace(img.id, [])
    assert owner.image_members.list(image=img.id) == []
    assert admin.image_members.list(member=t1) == []


# ---------------------------------------------------------------------------- library: delete


def test_delete(server: GlimpseServer, admin: Any, unique: str) -> None:
    img = admin.images.create(
        name=f"doomed {unique}", disk_format="raw", container_format="bare", protected=True,
        properties={"e2e_tag": unique}, data=io.BytesIO(b"doomed"),
    )  # fmt: skip
    assert img.protected is True
    with pytest.raises(gc_exc.HTTPForbidden):
        admin.images.delete(img.id)
    assert admin.images.get(img.id).status == "active"

    assert admin.images.update(img.id, protected=False).protected is False
    admin.images.delete(img.id)

    gone = admin.images.get(img.id)  # admins still see deleted images with HEAD
    assert gone.status == "deleted"
    assert gone.deleted is True
    assert TIMESTAMP.match(gone.to_dict()["deleted_at"])
    with pytest.raises(gc_exc.HTTPNotFound):
        admin.images.data(img.id)
    with pytest.raises(gc_exc.HTTPNotFound):
        admin.images.delete(img.id)
    with pytest.raises(gc_exc.HTTPNotFound):
        make_client(server, f"other-{unique}").images.get(img.id)
    assert listed_ids(admin, filters={"properties": {"e2e_tag": unique}}, is_public=None) == []
    # Its id can never be reused.
    with pytest.raises(gc_exc.HTTPConflict):
        admin.images.create(id=img.id, name="reuse")


def test_tenant_permissions(server: GlimpseServer, admin: Any, unique: str) -> None:
    mine_t, other_t = f"mine-{unique}", f"other-{unique}"
    mine, other = make_client(server, mine_t), make_client(server, other_t)

    with pytest.raises(gc_exc.HTTPForbidden):  # only admins may publicize
        mine.images.create(name=f"public? {unique}", is_public=True)

    img = mine.images.create(name=f"mine {unique}", properties={"e2e_tag": unique})
    assert img.owner == mine_t
    # A non-admin's owner header is silently ignored.
    assert mine.images.update(img.id, owner="someone-else").owner == mine_t

    with pytest.raises(gc_exc.HTTPNotFound):
        other.images.get(img.id)
    assert listed_ids(other, filters={"properties": {"e2e_tag": unique}}) == []
    assert listed_ids(mine, filters={"properties": {"e2e_tag": unique}}) == [img.id]

    # The admin makes it public: everybody sees it, but only the owner may change it.
    assert admin.images.update(img.id, is_public=True).is_public is True
    assert other.images.get(img.id).is_public is True
    with pytest.raises(gc_exc.HTTPForbidden):
        other.images.update(img.id, name="hijacked")
    with pytest.raises(gc_exc.HTTPForbidden):
        other.images.delete(img.id)
    assert mine.images.update(img.id, name=f"still mine {unique}").name == f"still mine {unique}"
    mine.images.delete(img.id)
    with pytest.raises(gc_exc.HTTPNotFound):
        mine.images.get(img.id)


# ---------------------------------------------------------------------------- the glance CLI


def run_glance(server: GlimpseServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``glance --os-image-api-version 1`` against ``server``.

    stdin is a pseudo-terminal: the v1 shell treats a non-tty stdin as image data (and then
    refuses metadata-only updates of active images), exactly as when typed interactively.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONIOENCODING"] = "utf-8"
    cmd = [
        str(GLANCE_CLI),
        "--os-image-api-version", "1",
        "--os-image-url", server.url,
        "--os-auth-token", "noauth-dummy-token",
        *args,
    ]  # fmt: skip
    master, slave = os.openpty()
    try:
        result = subprocess.run(
            cmd, stdin=slave, capture_output=True, text=True, env=env, timeout=60, check=False
        )
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 0, f"{cmd}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def table_rows(output: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip()[1:-1].split("|")]
        for line in output.splitlines()
        if line.startswith("|")
    ]


def show_table(output: str) -> dict[str, str]:
    rows = table_rows(output)
    assert rows[0] == ["Property", "Value"], output
    return {k: v for k, v in rows[1:]}


def props_of(shown: dict[str, str]) -> dict[str, str]:
    return {k[len("Property '") : -1]: v for k, v in shown.items() if k.startswith("Property '")}


@pytest.fixture(scope="module")
def cli_available() -> None:
    if not GLANCE_CLI.exists():
        pytest.fail(f"the glance CLI is not installed at {GLANCE_CLI}")


def test_cli_image_lifecycle(
    server: GlimpseServer, admin: Any, cli_available: None, unique: str, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    src = tmp_path / "cli.img"
    src.write_bytes(data)
    name = f"cli image {unique}"

    out = run_glance(
        server, "image-create", "--name", name, "--disk-format", "raw",
        "--container-format", "bare", "--is-public", "True", "--min-ram", "64",
        "--property", f"e2e_tag={unique}", "--property", "os_distro=cirros", "--file", str(src),
    ).stdout  # fmt: skip
    created = show_table(out)
    image_id = created["id"]
    assert uuid.UUID(image_id)
    assert created["name"] == name
    assert created["status"] == "active"
    assert created["size"] == str(len(data))
    assert created["checksum"] == md5(data)
    assert created["disk_format"] == "raw"
    assert created["container_format"] == "bare"
    assert created["is_public"] == "True"
    assert created["min_ram"] == "64"
    assert props_of(created) == {"e2e_tag": unique, "os_distro": "cirros"}

    # Show by name (the CLI resolves names with a list call, then HEADs the id).
    shown = show_table(run_glance(server, "image-show", name).stdout)
    assert shown["id"] == image_id
    assert shown["name"] == name
    assert shown["status"] == "active"
    assert shown["size"] == str(len(data))
    assert shown["checksum"] == md5(data)
    assert shown["is_public"] == "True"
    assert shown["min_ram"] == "64"
    assert props_of(shown) == {"e2e_tag": unique, "os_distro": "cirros"}

    rows = table_rows(
        run_glance(server, "image-list", "--property-filter", f"e2e_tag={unique}").stdout
    )
    assert rows == [
        ["ID", "Name", "Disk Format", "Container Format", "Size", "Status"],
        [image_id, name, "raw", "bare", str(len(data)), "active"],
    ]

    dest = tmp_path / "downloaded.img"
    run_glance(server, "image-download", image_id, "--file", str(dest))
    assert dest.read_bytes() == data

    updated = show_table(
        run_glance(
            server, "image-update", image_id, "--name", f"cli renamed {unique}",
            "--property", "extra=1", "--min-disk", "2",
        ).stdout
    )  # fmt: skip
    assert updated["name"] == f"cli renamed {unique}"
    assert updated["min_disk"] == "2"
    assert updated["status"] == "active"
    assert props_of(updated) == {"e2e_tag": unique, "os_distro": "cirros", "extra": "1"}

    purged = show_table(
        run_glance(
            server, "image-update", image_id, "--property", f"e2e_tag={unique}", "--purge-props"
        ).stdout
    )
    assert props_of(purged) == {"e2e_tag": unique}
    assert admin.images.get(image_id).properties == {"e2e_tag": unique}

    t1, t2 = f"cli-t1-{unique}", f"cli-t2-{unique}"
    run_glance(server, "member-create", image_id, t1, "--can-share")
    admin.image_members.create(image_id, t2)  # (library; saves a CLI start-up)
    rows = table_rows(run_glance(server, "member-list", "--image-id", image_id).stdout)
    assert rows == [
        ["Image ID", "Member ID", "Can Share"],
        [image_id, t1, "True"],
        [image_id, t2, ""],
    ]
    rows = table_rows(run_glance(server, "member-list", "--tenant-id", t1).stdout)
    assert rows == [["Image ID", "Member ID", "Can Share"], [image_id, t1, "True"]]
    run_glance(server, "member-delete", image_id, t2)
    assert {(m.member_id, m.can_share) for m in admin.image_members.list(image=image_id)} == {
        (t1, True)
    }

    result = run_glance(server, "image-delete", image_id)
    assert "Unable to delete" not in result.stdout + result.stderr
    gone = admin.images.get(image_id)
    assert (gone.status, gone.deleted) == ("deleted", True)


def test_cli_reserve_then_upload(
    server: GlimpseServer, admin: Any, cli_available: None, unique: str, tmp_path: Path
) -> None:
    reserved = show_table(
        run_glance(
            server, "image-create", "--name", f"cli reserved {unique}",
            "--property", f"e2e_tag={unique}",
        ).stdout
    )  # fmt: skip
    image_id = reserved["id"]
    assert reserved["status"] == "queued"
    assert reserved["size"] == "0"
    assert reserved["checksum"] == "None"
    assert reserved["disk_format"] == "None"

    data = os.urandom(40_000)
    src = tmp_path / "later.img"
    src.write_bytes(data)
    uploaded = show_table(
        run_glance(
            server, "image-update", image_id, "--disk-format", "raw",
            "--container-format", "bare", "--file", str(src),
        ).stdout
    )  # fmt: skip
    assert uploaded["status"] == "active"
    assert uploaded["size"] == str(len(data))
    assert uploaded["checksum"] == md5(data)
    assert uploaded["disk_format"] == "raw"
    assert props_of(uploaded) == {"e2e_tag": unique}
    assert download(admin, image_id) == data

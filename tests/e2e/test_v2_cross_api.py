"""One image, both APIs (issue 13): an image created, changed, shared or deleted through either
API looks right through the other: visibility, members and their status, properties (strings
in v2), tags (invisible to v1, kept by its updates), data and hashes.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.identity import ctx
from tests.e2e.test_visibility import listed

pytestmark = pytest.mark.e2e

OWNER, MEMBER, STRANGER = ctx("alice-x"), ctx("bob-x"), ctx("carol-x")
ADMIN = ctx("admin-x", roles="admin")
OCTETS = {"Content-Type": "application/octet-stream"}
DATA = b"one image, both APIs\n" * 1000



@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def v1_create(client: httpx.Client, headers: dict[str, str], tag: str, data: bytes | None = DATA,
              **meta: str) -> str:
    h = {**headers, "x-image-meta-name": f"v1-{tag}", "x-image-meta-disk_format": "raw",
         "x-image-meta-container_format": "bare", "x-image-meta-property-tag": tag}
    h.update({f"x-image-meta-{k}": v for k, v in meta.items()})
    if data is not None:
        h.update(OCTETS)
    resp = client.post("/v1/images", headers=h, content=data)
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["image"]["id"]
    return image_id


def v2_create(client: httpx.Client, headers: dict[str, str], tag: str, **body: Any) -> str:
    resp = client.post("/v2/images", headers=headers, json={
        "name": f"v2-{tag}", "disk_format": "raw", "container_format": "bare", "tag": tag,
        **body})
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    return image_id


def v2_show(client: httpx.Client, image_id: str, headers: dict[str, str] = OWNER
            ) -> dict[str, Any]:
    resp = client.get(f"/v2/images/{image_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    image: dict[str, Any] = resp.json()
    return image


def v2_listed(client: httpx.Client, headers: dict[str, str], **params: str) -> set[str]:
    """Every id in the caller's v2 list (all pages)."""
    found: set[str] = set()
    resp = client.get("/v2/images", headers=headers, params={"limit": "1000", **params})
    while True:
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        found |= {i["id"] for i in doc["images"]}
        if "next" not in doc:
            return found
        resp = client.get(doc["next"], headers=headers)


def v1_head(client: httpx.Client, image_id: str, headers: dict[str, str] = OWNER
            ) -> httpx.Response:
    return client.head(f"/v1/images/{image_id}", headers=headers)


# --- made through v1, seen through v2 -----------------------------------------------------------


def test_a_v1_image_through_v2(client: httpx.Client, tag: str) -> None:
    image_id = v1_create(client, OWNER, tag, **{
        "min_ram": "512", "min_disk": "3", "protected": "true", "property-distro": "arch",
        "property-cores": "4", "property-flag": "true", "property-empty": "",
    })
    image = v2_show(client, image_id)
    assert image["name"] == f"v1-{tag}" and image["status"] == "active"
    assert image["visibility"] == "shared" and image["owner"] == "alice-x"
    assert image["min_ram"] == 512 and image["min_disk"] == 3 and image["protected"] is True
    assert image["disk_format"] == "raw" and image["container_format"] == "bare"
    # Custom properties are strings, whatever they look like.
    assert image["distro"] == "arch" and image["cores"] == "4" and image["flag"] == "true"
    assert image["empty"] == "" and image["tag"] == tag
    assert image["tags"] == []
    assert image["size"] == len(DATA) == image["virtual_size"]
    assert image["checksum"] == hashlib.md5(DATA).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    got = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert got.status_code == 200 and got.content == DATA
    assert got.headers["content-md5"] == image["checksum"]
    # v1's view of the same facts agrees.
    head = v1_head(client, image_id)
    assert head.headers["x-image-meta-checksum"] == image["checksum"]
    assert head.headers["x-image-meta-size"] == str(len(DATA))
    assert image_id in v2_listed(client, OWNER)
    # Protected through v1, protected through v2.
    assert client.delete(f"/v2/images/{image_id}", headers=OWNER).status_code == 403


def test_a_public_v1_image_is_public_through_v2(client: httpx.Client, tag: str) -> None:
    image_id = v1_create(client, ADMIN, tag, is_public="true")
    assert v2_show(client, image_id, STRANGER)["visibility"] == "public"
    assert client.get(f"/v2/images/{image_id}/file", headers=STRANGER).content == DATA
    assert image_id in v2_listed(client, STRANGER)


def test_a_private_v1_image_is_the_owners_through_v2(client: httpx.Client, tag: str) -> None:
    image_id = v1_create(client, OWNER, tag, is_public="false")
    assert v2_show(client, image_id)["visibility"] == "shared"
    assert client.get(f"/v2/images/{image_id}", headers=STRANGER).status_code == 404
    assert client.get(f"/v2/images/{image_id}/file", headers=STRANGER).status_code == 404
    assert image_id not in v2_listed(client, STRANGER)


def test_v1_members_through_v2_reads_and_lists(client: httpx.Client, tag: str) -> None:
    image_id = v1_create(client, OWNER, tag, is_public="false")
    assert client.put(f"/v1/images/{image_id}/members/bob-x", headers=OWNER).status_code == 204
    # v1's members are accepted: bob reads, downloads and lists the image through v2.
    assert v2_show(client, image_id, MEMBER)["visibility"] == "shared"
    assert client.get(f"/v2/images/{image_id}/file", headers=MEMBER).content == DATA
    assert image_id in v2_listed(client, MEMBER)
    assert image_id not in v2_listed(client, STRANGER)
    # Removed through v1: gone for bob through v2.
    assert client.delete(f"/v1/images/{image_id}/members/bob-x",
                         headers=OWNER).status_code == 204
    assert client.get(f"/v2/images/{image_id}", headers=MEMBER).status_code == 404


def test_v1_members_through_v2_members_api(client: httpx.Client, tag: str) -> None:
    """Needs v2's members routes (the v2-domain piece)."""
    image_id = v1_create(client, OWNER, tag, is_public="false")
    assert client.put(f"/v1/images/{image_id}/members/bob-x", headers=OWNER).status_code == 204
    resp = client.get(f"/v2/images/{image_id}/members", headers=OWNER)
    assert resp.status_code == 200, resp.text
    members = resp.json()["members"]
    assert [(m["member_id"], m["status"]) for m in members] == [("bob-x", "accepted")]
    own = client.get(f"/v2/images/{image_id}/members/bob-x", headers=MEMBER)
    assert own.status_code == 200 and own.json()["status"] == "accepted"


# --- made through v2, seen through v1 -----------------------------------------------------------


def test_a_v2_image_through_v1(client: httpx.Client, tag: str) -> None:
    image_id = v2_create(client, OWNER, tag, min_ram=256, tags=["blue", "green"],
                         hw_disk_bus="scsi")
    head = v1_head(client, image_id)
    assert head.status_code == 200
    assert head.headers["x-image-meta-name"] == f"v2-{tag}"
    assert head.headers["x-image-meta-status"] == "queued"
    assert head.headers["x-image-meta-is_public"] == "False"
    assert head.headers["x-image-meta-min_ram"] == "256"
    assert head.headers["x-image-meta-owner"] == "alice-x"
    assert head.headers["x-image-meta-property-hw_disk_bus"] == "scsi"
    # Tags are invisible to v1.
    assert not [k for k, v in head.headers.items() if "blue" in v or "green" in v]
    data = b"uploaded through v2"
    assert client.put(f"/v2/images/{image_id}/file", content=data,
                      headers={**OWNER, **OCTETS}).status_code == 204
    head = v1_head(client, image_id)
    assert head.headers["x-image-meta-status"] == "active"
    assert head.headers["x-image-meta-checksum"] == hashlib.md5(data).hexdigest()
    assert head.headers["x-image-meta-size"] == str(len(data))
    got = client.get(f"/v1/images/{image_id}", headers=OWNER)
    assert got.status_code == 200 and got.content == data
    assert image_id in listed(client, OWNER, tag)
    detail = client.get("/v1/images/detail", headers=OWNER, params={"property-tag": tag})
    [entry] = detail.json()["images"]
    assert entry["properties"]["hw_disk_bus"] == "scsi" and "tags" not in entry


def test_tags_survive_a_v1_update(client: httpx.Client, tag: str) -> None:
    image_id = v2_create(client, OWNER, tag, tags=["keep-me"], hw_a="1", hw_b="2")
    # A v1 update purges the properties it does not resend (its default); tags are not
    # properties: they stay.
    resp = client.put(f"/v1/images/{image_id}", headers={
        **OWNER, "x-image-meta-name": "renamed", "x-image-meta-property-hw_a": "10",
        "x-image-meta-property-tag": tag})
    assert resp.status_code == 200, resp.text
    image = v2_show(client, image_id)
    assert image["name"] == "renamed" and image["tags"] == ["keep-me"]
    assert image["hw_a"] == "10" and "hw_b" not in image
    assert client.put(f"/v2/images/{image_id}/tags/second", headers=OWNER).status_code == 204
    resp = client.put(f"/v1/images/{image_id}", headers={
        **OWNER, "x-glance-registry-purge-props": "false", "x-image-meta-min_disk": "1"})
    assert resp.status_code == 200
    assert sorted(v2_show(client, image_id)["tags"]) == ["keep-me", "second"]


@pytest.mark.parametrize("visibility", ["community", "private", "shared", "public"])
def test_each_v2_visibility_through_v1(client: httpx.Client, tag: str, visibility: str) -> None:
    creator = ADMIN if visibility == "public" else OWNER
    image_id = v2_create(client, creator, tag, visibility=visibility)
    owner_headers = creator
    assert client.put(f"/v2/images/{image_id}/file", content=DATA,
                      headers={**owner_headers, **OCTETS}).status_code == 204
    head = v1_head(client, image_id, owner_headers)
    assert head.status_code == 200
    assert head.headers["x-image-meta-is_public"] == str(visibility == "public")
    # Strangers read community and public images, and list only public ones (v1 has no
    # community filter; v2 lists community images only when asked).
    readable = visibility in ("community", "public")
    assert v1_head(client, image_id, STRANGER).status_code == (200 if readable else 404)
    assert (client.get(f"/v2/images/{image_id}", headers=STRANGER).status_code
            == (200 if readable else 404))
    assert (image_id in listed(client, STRANGER, tag)) is (visibility == "public")
    assert (image_id in v2_listed(client, STRANGER)) is (visibility == "public")
    # The owner lists it through both.
    assert image_id in listed(client, owner_headers, tag)
    assert image_id in v2_listed(client, owner_headers)
    # And v2's visibility is not lost by a v1 update that does not name is_public.
    resp = client.put(f"/v1/images/{image_id}", headers={
        **owner_headers, "x-glance-registry-purge-props": "false", "x-image-meta-min_ram": "1"})
    assert resp.status_code == 200, resp.text
    assert v2_show(client, image_id, owner_headers)["visibility"] == visibility


def test_v2_members_through_v1(client: httpx.Client, tag: str) -> None:
    """Needs v2's members routes (the v2-domain piece): a pending member reads through v1
    but does not list the image; accepted, it does."""
    image_id = v2_create(client, OWNER, tag)
    assert client.put(f"/v2/images/{image_id}/file", content=DATA,
                      headers={**OWNER, **OCTETS}).status_code == 204
    added = client.post(f"/v2/images/{image_id}/members", json={"member": "bob-x"},
                        headers=OWNER)
    assert added.status_code == 200, added.text
    assert added.json()["status"] == "pending"
    members = client.get(f"/v1/images/{image_id}/members", headers=OWNER).json()["members"]
    assert [m["member_id"] for m in members] == ["bob-x"]
    assert v1_head(client, image_id, MEMBER).status_code == 200
    assert image_id not in listed(client, MEMBER, tag)
    accepted = client.put(f"/v2/images/{image_id}/members/bob-x", json={"status": "accepted"},
                          headers=MEMBER)
    assert accepted.status_code == 200, accepted.text
    assert image_id in listed(client, MEMBER, tag)
    assert client.get(f"/v1/images/{image_id}", headers=MEMBER).content == DATA


# --- deleted through either, gone through both --------------------------------------------------


@pytest.mark.parametrize("made_by", ["v1", "v2"])
@pytest.mark.parametrize("deleted_by", ["v1", "v2"])
def test_deleted_through_either_is_404_through_both(client: httpx.Client, tag: str,
                                                    made_by: str, deleted_by: str) -> None:
    if made_by == "v1":
        image_id = v1_create(client, OWNER, tag)
    else:
        image_id = v2_create(client, OWNER, tag)
        assert client.put(f"/v2/images/{image_id}/file", content=DATA,
                          headers={**OWNER, **OCTETS}).status_code == 204
    if deleted_by == "v1":
        assert client.delete(f"/v1/images/{image_id}", headers=OWNER).status_code == 200
    else:
        assert client.delete(f"/v2/images/{image_id}", headers=OWNER).status_code == 204
    assert client.get(f"/v2/images/{image_id}", headers=OWNER).status_code == 404
    assert client.get(f"/v2/images/{image_id}/file", headers=OWNER).status_code == 404
    assert client.delete(f"/v2/images/{image_id}", headers=OWNER).status_code == 404
    assert v1_head(client, image_id).status_code == 404
    assert client.get(f"/v1/images/{image_id}", headers=OWNER).status_code == 404
    assert client.delete(f"/v1/images/{image_id}", headers=OWNER).status_code == 404
    assert image_id not in v2_listed(client, OWNER)
    assert image_id not in listed(client, OWNER, tag)
    # Its id is never reused, through either API.
    assert client.post("/v2/images", json={"id": image_id},
                       headers=OWNER).status_code == 409
    assert client.post("/v1/images", headers={**OWNER, "x-image-meta-id": image_id}
                       ).status_code == 409

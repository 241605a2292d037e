"""Glance's default rules with real Keystone tokens (spec identity.md §7 case 7; docs/identity.md,
Policy): the owner's project, another project (alt), a reader-only user of the owner's project,
the cloud admin, and the admin of a third project, on v1 and v2.

A keystone-mode ``glimpse serve`` at log level debug; its log must hold no token and no password
(the identity module's autouse check).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.server import GlimpseServer
from tests.e2e.test_keystone_identity import (  # noqa: F401  (fixtures)
    Account,
    Accounts,
    Servers,
    _account,
    accounts,
    call,
    no_secrets_in_logs,
    server,
    servers,
)

pytestmark = pytest.mark.e2e

DATA = b"keystone-policy" * 64
OCTETS = {"Content-Type": "application/octet-stream"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


@dataclasses.dataclass(frozen=True)
class Cast:
    owner: Account  # member of project a
    alt: Account  # member of project b
    reader: Account  # reader only, of project a
    admin: Account  # admin of the admin project
    other_admin: Account  # admin of a third project


@pytest.fixture(scope="module")
def cast(accounts: Accounts) -> Cast:  # noqa: F811
    owner = accounts.alice
    reader = _account("glimpse-e2e-reader", owner.project, "reader")
    other_admin = _account("glimpse-e2e-c-admin", "glimpse-e2e-c", "admin")
    return Cast(owner, accounts.bob, reader, accounts.admin, other_admin)


def v2_image(server: GlimpseServer, token: str, **fields: Any) -> str:  # noqa: F811
    made = httpx.post(server.url + "/v2/images", timeout=30, headers={"X-Auth-Token": token},
                      json={"name": f"ksp-{uuid.uuid4().hex[:8]}", "disk_format": "raw",
                            "container_format": "bare", **fields})
    assert made.status_code == 201, made.text
    image_id: str = made.json()["id"]
    put = httpx.put(f"{server.url}/v2/images/{image_id}/file", content=DATA, timeout=30,
                    headers={"X-Auth-Token": token, **OCTETS})
    assert put.status_code == 204, put.text
    return image_id


def send(server: GlimpseServer, method: str, path: str, token: str,  # noqa: F811
         **kwargs: Any) -> httpx.Response:
    headers = {"X-Auth-Token": token, **kwargs.pop("headers", {})}
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **kwargs)


def test_alt_sees_a_private_image_only_while_shared_v2(
        server: GlimpseServer, cast: Cast) -> None:  # noqa: F811
    owner, alt = cast.owner.token(), cast.alt.token()
    image_id = v2_image(server, owner, visibility="shared")
    path = f"/v2/images/{image_id}"
    assert call(server, "GET", path, alt).status_code == 404
    assert call(server, "GET", f"{path}/file", alt).status_code == 404
    shared = send(server, "POST", f"{path}/members", owner,
                  json={"member": cast.alt.project_id})
    assert shared.status_code == 200, shared.text
    assert call(server, "GET", path, alt).status_code == 200
    got = call(server, "GET", f"{path}/file", alt)
    assert got.status_code == 200 and got.content == DATA
    # alt answers for its membership; it may not share the image on, nor change it.
    member_path = f"{path}/members/{cast.alt.project_id}"
    accepted = send(server, "PUT", member_path, alt, json={"status": "accepted"})
    assert accepted.status_code == 200, accepted.text
    assert send(server, "PUT", member_path, owner,
                json={"status": "rejected"}).status_code == 403
    assert send(server, "POST", f"{path}/members", alt,
                json={"member": cast.reader.project_id}).status_code == 403
    rename = [{"op": "replace", "path": "/name", "value": "alt-was-here"}]
    assert send(server, "PATCH", path, alt, json=rename, headers=PATCH).status_code == 403
    assert call(server, "DELETE", member_path, owner).status_code == 204
    assert call(server, "GET", path, alt).status_code == 404
    assert call(server, "DELETE", path, owner).status_code == 204


def test_alt_sees_a_private_image_only_while_shared_v1(
        server: GlimpseServer, cast: Cast) -> None:  # noqa: F811
    owner, alt = cast.owner.token(), cast.alt.token()
    made = send(server, "POST", "/v1/images", owner, content=DATA, headers={
        **OCTETS, "x-image-meta-name": "ksp-v1", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare"})
    assert made.status_code == 201, made.text
    path = f"/v1/images/{made.json()['image']['id']}"
    assert call(server, "HEAD", path, alt).status_code == 404
    member_path = f"{path}/members/{cast.alt.project_id}"
    assert call(server, "PUT", member_path, owner).status_code == 204
    assert call(server, "HEAD", path, alt).status_code == 200
    assert call(server, "GET", path, alt).content == DATA
    assert call(server, "DELETE", member_path, owner).status_code == 204
    assert call(server, "HEAD", path, alt).status_code == 404
    assert call(server, "DELETE", path, owner).status_code == 200


def test_a_reader_reads_and_neither_writes_nor_downloads(
        server: GlimpseServer, cast: Cast) -> None:  # noqa: F811
    owner, reader = cast.owner.token(), cast.reader.token()
    image_id = v2_image(server, owner)
    path = f"/v2/images/{image_id}"
    # Reads: 200.
    assert call(server, "GET", path, reader).status_code == 200
    listed = call(server, "GET", "/v2/images", reader).json()["images"]
    assert image_id in {i["id"] for i in listed}
    assert call(server, "GET", f"{path}/members", reader).status_code == 200
    assert call(server, "HEAD", f"/v1/images/{image_id}", reader).status_code == 200
    v1_listed = call(server, "GET", "/v1/images/detail", reader).json()["images"]
    assert image_id in {i["id"] for i in v1_listed}
    # Writes and downloads: 403.
    rename = [{"op": "replace", "path": "/name", "value": "by-reader"}]
    refused = {
        "v2 download": call(server, "GET", f"{path}/file", reader),
        "v2 create": send(server, "POST", "/v2/images", reader, json={"name": "r"}),
        "v2 patch": send(server, "PATCH", path, reader, json=rename, headers=PATCH),
        "v2 tag": call(server, "PUT", f"{path}/tags/t", reader),
        "v2 deactivate": call(server, "POST", f"{path}/actions/deactivate", reader),
        "v2 share": send(server, "POST", f"{path}/members", reader,
                         json={"member": cast.alt.project_id}),
        "v2 delete": call(server, "DELETE", path, reader),
        "v1 download": call(server, "GET", f"/v1/images/{image_id}", reader),
        "v1 create": call(server, "POST", "/v1/images", reader, **{"x-image-meta-name": "r"}),
        "v1 update": call(server, "PUT", f"/v1/images/{image_id}", reader,
                          **{"x-image-meta-name": "r"}),
        "v1 share": call(server, "PUT", f"/v1/images/{image_id}/members/x", reader),
        "v1 delete": call(server, "DELETE", f"/v1/images/{image_id}", reader),
    }
    for what, answer in refused.items():
        assert answer.status_code == 403, (what, answer.text)
    assert call(server, "GET", path, owner).json()["name"] != "by-reader"
    assert call(server, "DELETE", path, owner).status_code == 204


def test_any_projects_admin_is_admin(server: GlimpseServer, cast: Cast) -> None:  # noqa: F811
    owner = cast.owner.token()
    image_id = v2_image(server, owner)
    path = f"/v2/images/{image_id}"
    publicize = [{"op": "replace", "path": "/visibility", "value": "public"}]
    assert send(server, "PATCH", path, owner, json=publicize,
                headers=PATCH).status_code == 403
    for admin in (cast.other_admin.token(), cast.admin.token()):
        assert call(server, "GET", path, admin).status_code == 200
        got = call(server, "GET", f"{path}/file", admin)
        assert got.status_code == 200 and got.content == DATA
        rename = [{"op": "replace", "path": "/name", "value": "by-admin"}]
        assert send(server, "PATCH", path, admin, json=rename,
                    headers=PATCH).status_code == 200
    answer = send(server, "PATCH", path, cast.other_admin.token(), json=publicize,
                  headers=PATCH)
    assert answer.status_code == 200 and answer.json()["visibility"] == "public"
    # Now public: alt reads and downloads it, and still may not change it.
    alt = cast.alt.token()
    assert call(server, "GET", f"{path}/file", alt).status_code == 200
    assert send(server, "PATCH", path, alt, json=[
        {"op": "replace", "path": "/name", "value": "x"}], headers=PATCH).status_code == 403
    assert call(server, "DELETE", path, cast.other_admin.token()).status_code == 204

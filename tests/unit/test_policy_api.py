"""The policy rules through both APIs, in process (noauth headers): a project's reader, its
member, another project's member, and another project's admin, on v1 and v2.

A reader may read and not write, and may not download; a member writes its project's images;
whoever may not see an image gets 404; any project's admin is an admin.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpse.app import build_app
from glimpse.settings import Settings

pytestmark = pytest.mark.anyio

READER = {"X-Tenant-Id": "proj-a", "X-User-Id": "r", "X-Roles": "reader"}
MEMBER = {"X-Tenant-Id": "proj-a", "X-User-Id": "m", "X-Roles": "member"}
OTHER = {"X-Tenant-Id": "proj-b", "X-User-Id": "o", "X-Roles": "member"}
ADMIN = {"X-Tenant-Id": "proj-z", "X-User-Id": "z", "X-Roles": "admin"}
NO_ROLES = {"X-Tenant-Id": "proj-a", "X-User-Id": "n"}
V2_PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
OCTETS = {"Content-Type": "application/octet-stream"}
DATA = b"policy" * 100


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data_dir: Path = tmp_path_factory.mktemp("policy-api")
    return build_app(Settings(data_dir=data_dir))


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://testserver") as c:
        yield c


async def v2_image(client: httpx.AsyncClient, headers: dict[str, str] = MEMBER,
                   **fields: Any) -> str:
    body = {"name": f"p-{uuid.uuid4().hex[:8]}", "disk_format": "raw",
            "container_format": "bare", **fields}
    made = await client.post("/v2/images", json=body, headers=headers)
    assert made.status_code == 201, made.text
    image_id: str = made.json()["id"]
    put = await client.put(f"/v2/images/{image_id}/file", content=DATA,
                           headers={**headers, **OCTETS})
    assert put.status_code == 204, put.text
    return image_id


async def v1_image(client: httpx.AsyncClient, headers: dict[str, str] = MEMBER) -> str:
    made = await client.post("/v1/images", content=DATA, headers={
        **headers, **OCTETS, "x-image-meta-name": "v1", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare"})
    assert made.status_code == 201, made.text
    return str(made.json()["image"]["id"])


async def test_v2_reader_reads_and_neither_writes_nor_downloads(
        client: httpx.AsyncClient) -> None:
    image_id = await v2_image(client)
    path = f"/v2/images/{image_id}"
    assert (await client.get(path, headers=READER)).status_code == 200
    listed = (await client.get("/v2/images", headers=READER)).json()["images"]
    assert image_id in {i["id"] for i in listed}
    assert (await client.get(f"{path}/members", headers=READER)).status_code == 200
    refused = {
        "download": await client.get(f"{path}/file", headers=READER),
        "create": await client.post("/v2/images", json={"name": "x"}, headers=READER),
        "patch": await client.patch(path, json=[{"op": "replace", "path": "/name",
                                                 "value": "x"}], headers={**READER, **V2_PATCH}),
        "tag": await client.put(f"{path}/tags/t", headers=READER),
        "deactivate": await client.post(f"{path}/actions/deactivate", headers=READER),
        "share": await client.post(f"{path}/members", json={"member": "proj-b"},
                                   headers=READER),
        "delete": await client.delete(path, headers=READER),
    }
    for what, answer in refused.items():
        assert answer.status_code == 403, (what, answer.text)
    made = await client.post("/v2/images", json={"name": "q"}, headers=MEMBER)
    upload = await client.put(f"/v2/images/{made.json()['id']}/file", content=DATA,
                              headers={**READER, **OCTETS})
    assert upload.status_code == 403
    assert (await client.get(path, headers=READER)).json()["name"] != "x"


async def test_v2_member_owner_other_and_admin(client: httpx.AsyncClient) -> None:
    image_id = await v2_image(client)
    path = f"/v2/images/{image_id}"
    got = await client.get(f"{path}/file", headers=MEMBER)
    assert got.status_code == 200 and got.content == DATA
    rename = [{"op": "replace", "path": "/name", "value": "renamed"}]
    assert (await client.patch(path, json=rename, headers={**MEMBER, **V2_PATCH})).status_code \
        == 200
    # Another project does not see a private image: 404 for every operation.
    for answer in (await client.get(path, headers=OTHER),
                   await client.get(f"{path}/file", headers=OTHER),
                   await client.patch(path, json=rename, headers={**OTHER, **V2_PATCH}),
                   await client.delete(path, headers=OTHER)):
        assert answer.status_code == 404, answer.text
    # A caller without a role sees nothing, not even its project's images.
    assert (await client.get(path, headers=NO_ROLES)).status_code == 404
    assert (await client.get("/v2/images", headers=NO_ROLES)).status_code == 403
    # Publicizing is the admin's; communitizing the member's.
    public = [{"op": "replace", "path": "/visibility", "value": "public"}]
    assert (await client.patch(path, json=public, headers={**MEMBER, **V2_PATCH})).status_code \
        == 403
    community = [{"op": "replace", "path": "/visibility", "value": "community"}]
    assert (await client.patch(path, json=community,
                               headers={**MEMBER, **V2_PATCH})).status_code == 200
    # Another project's admin is an admin.
    assert (await client.patch(path, json=public, headers={**ADMIN, **V2_PATCH})).status_code \
        == 200
    assert (await client.get(f"{path}/file", headers=OTHER)).status_code == 200
    assert (await client.patch(path, json=rename, headers={**OTHER, **V2_PATCH})).status_code \
        == 403
    assert (await client.delete(path, headers=ADMIN)).status_code == 204


async def test_v2_sharing(client: httpx.AsyncClient) -> None:
    image_id = await v2_image(client, visibility="shared")
    path = f"/v2/images/{image_id}"
    assert (await client.get(path, headers=OTHER)).status_code == 404
    shared = await client.post(f"{path}/members", json={"member": "proj-b"}, headers=MEMBER)
    assert shared.status_code == 200, shared.text
    assert (await client.get(path, headers=OTHER)).status_code == 200
    # The member answers for itself; the owner may not.
    accept = {"status": "accepted"}
    member_path = f"{path}/members/proj-b"
    assert (await client.put(member_path, json=accept, headers=MEMBER)).status_code == 403
    assert (await client.put(member_path, json=accept, headers=OTHER)).status_code == 200
    assert (await client.delete(member_path, headers=OTHER)).status_code == 403
    assert (await client.delete(member_path, headers=MEMBER)).status_code == 204
    assert (await client.get(path, headers=OTHER)).status_code == 404


async def test_v1_reader_reads_and_neither_writes_nor_downloads(
        client: httpx.AsyncClient) -> None:
    image_id = await v1_image(client)
    path = f"/v1/images/{image_id}"
    assert (await client.head(path, headers=READER)).status_code == 200
    listed = (await client.get("/v1/images/detail", headers=READER)).json()["images"]
    assert image_id in {i["id"] for i in listed}
    assert (await client.get(f"{path}/members", headers=READER)).status_code == 200
    refused = {
        "download": await client.get(path, headers=READER),
        "create": await client.post("/v1/images", headers={**READER,
                                                           "x-image-meta-name": "x"}),
        "update": await client.put(path, headers={**READER, "x-image-meta-name": "x"}),
        "share": await client.put(f"{path}/members/proj-b", headers=READER),
        "unshare": await client.delete(f"{path}/members/proj-b", headers=READER),
        "delete": await client.delete(path, headers=READER),
        "copy_from": await client.post("/v1/images", headers={
            **READER, "x-image-meta-name": "c", "x-image-meta-disk_format": "raw",
            "x-image-meta-container_format": "bare",
            "x-glance-api-copy-from": "http://example.test/x"}),
    }
    for what, answer in refused.items():
        assert answer.status_code == 403, (what, answer.text)


async def test_v1_member_owner_other_and_admin(client: httpx.AsyncClient) -> None:
    image_id = await v1_image(client)
    path = f"/v1/images/{image_id}"
    got = await client.get(path, headers=MEMBER)
    assert got.status_code == 200 and got.content == DATA
    assert (await client.head(path, headers=OTHER)).status_code == 404
    assert (await client.put(path, headers={**OTHER, "x-image-meta-name": "x"})).status_code \
        == 404
    publicize = {**MEMBER, "x-image-meta-is_public": "true"}
    assert (await client.put(path, headers=publicize)).status_code == 403
    assert (await client.put(f"{path}/members/proj-b", headers=MEMBER)).status_code == 204
    assert (await client.head(path, headers=OTHER)).status_code == 200
    assert (await client.get(path, headers=OTHER)).status_code == 200  # a member downloads
    admin = {**ADMIN, "x-image-meta-name": "by-admin"}
    assert (await client.put(path, headers=admin)).status_code == 200
    assert (await client.delete(f"{path}/members/proj-b", headers=MEMBER)).status_code == 204
    assert (await client.head(path, headers=OTHER)).status_code == 404
    assert (await client.delete(path, headers=ADMIN)).status_code == 200


async def test_noauth_without_headers_is_an_admin(client: httpx.AsyncClient) -> None:
    image_id = await v2_image(client)
    assert (await client.get(f"/v2/images/{image_id}")).status_code == 200
    public = [{"op": "replace", "path": "/visibility", "value": "public"}]
    assert (await client.patch(f"/v2/images/{image_id}", json=public,
                               headers=V2_PATCH)).status_code == 200


async def principal_of(headers: dict[str, str], policy: Any = None) -> Any:
    from starlette.requests import Request

    from glimpse.api.auth import TrustedHeaders
    from glimpse.domain.policy import DEFAULT_POLICY

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    return await TrustedHeaders(policy=policy or DEFAULT_POLICY).principal(Request(scope))


async def test_noauth_roles_are_completed_as_keystone_implies_them() -> None:
    member = await principal_of({"X-Tenant-Id": "p", "X-Roles": "Member"})
    assert member.roles == ("member", "reader") and not member.is_admin
    admin = await principal_of({"X-Tenant-Id": "p", "X-Roles": "admin"})
    assert set(admin.roles) == {"admin", "manager", "member", "reader"} and admin.is_admin
    nobody = await principal_of({"X-Tenant-Id": "p"})
    assert nobody.roles == () and not nobody.is_admin
    anonymous = await principal_of({})
    assert anonymous.is_admin and anonymous.tenant is None and "admin" in anonymous.roles


async def test_noauth_admin_follows_context_is_admin() -> None:
    from glimpse.domain.policy import Policy

    class CloudAdmin:
        def check(self, rule: str, principal: Any, target: Any) -> bool | None:
            return "cloud_admin" in principal.roles if rule == "context_is_admin" else None

    custom = Policy(CloudAdmin())
    assert not (await principal_of({"X-Tenant-Id": "p", "X-Roles": "admin"}, custom)).is_admin
    assert (await principal_of({"X-Tenant-Id": "p", "X-Roles": "cloud_admin"}, custom)).is_admin
    # No headers: the admin role, which this operator's rule does not make an admin.
    assert not (await principal_of({}, custom)).is_admin

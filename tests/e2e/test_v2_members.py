"""v2 members and actions over HTTP (spec §2.7, §2.9): who may invite, accept and remove, what
each sees, and deactivate/reactivate."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.identity import tenant

pytestmark = pytest.mark.e2e
OCTETS = {"Content-Type": "application/octet-stream"}




@pytest.fixture
def names() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"owner-{tag}", f"member-{tag}", f"stranger-{tag}"


def image(client: httpx.Client, owner: str, **body: object) -> str:
    resp = client.post("/v2/images", json={"disk_format": "raw", "container_format": "bare",
                                           **body}, headers=tenant(owner))
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    return image_id


def listed(client: httpx.Client, who: str, image_id: str, query: str = "") -> bool:
    resp = client.get(f"/v2/images?limit=1000{query}", headers=tenant(who))
    assert resp.status_code == 200
    return image_id in {i["id"] for i in resp.json()["images"]}


def test_member_lifecycle(client: httpx.Client, names: tuple[str, str, str]) -> None:
    owner, member, stranger = names
    image_id = image(client, owner)
    url = f"/v2/images/{image_id}/members"
    added = client.post(url, json={"member": member, "status": "accepted"},
                        headers=tenant(owner))
    assert added.status_code == 200, added.text
    doc = added.json()
    assert doc["status"] == "pending" and doc["member_id"] == member
    assert doc["image_id"] == image_id and doc["schema"] == "/v2/schemas/member"
    assert doc["created_at"].endswith("Z") and doc["updated_at"].endswith("Z")
    assert client.post(url, json={"member": member}, headers=tenant(owner)).status_code == 409
    # Pending: the member may read the image, but its list shows it only once accepted.
    assert client.get(f"/v2/images/{image_id}", headers=tenant(member)).status_code == 200
    assert not listed(client, member, image_id)
    assert listed(client, member, image_id, "&member_status=pending")
    # Only the member itself changes its status; the owner gets 403.
    assert client.put(f"{url}/{member}", json={"status": "accepted"},
                      headers=tenant(owner)).status_code == 403
    accepted = client.put(f"{url}/{member}", json={"status": "accepted", "member": member},
                          headers=tenant(member))
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert listed(client, member, image_id)
    for bad in ("ACCEPTED", "yes", 5, None):
        assert client.put(f"{url}/{member}", json={"status": bad},
                          headers=tenant(member)).status_code == 400
    # Lists: the owner sees all, the member its own entry, a stranger nothing.
    assert [m["member_id"] for m in client.get(url, headers=tenant(owner)).json()["members"]] \
        == [member]
    mine = client.get(url, headers=tenant(member))
    assert mine.status_code == 200 and mine.json()["schema"] == "/v2/schemas/members"
    assert client.get(url, headers=tenant(stranger)).status_code == 404
    assert client.get(f"{url}/{member}", headers=tenant(member)).status_code == 200
    # Members do not remove; the owner does, and a re-invited member starts pending again.
    assert client.delete(f"{url}/{member}", headers=tenant(member)).status_code == 403
    assert client.delete(f"{url}/{member}", headers=tenant(owner)).status_code == 204
    assert client.delete(f"{url}/{member}", headers=tenant(owner)).status_code == 404
    assert client.get(f"/v2/images/{image_id}", headers=tenant(member)).status_code == 404
    again = client.post(url, json={"member": member}, headers=tenant(owner))
    assert again.json()["status"] == "pending"


@pytest.mark.parametrize("body", [{}, {"member": ""}, {"member": None}, {"member": 5},
                                  [], "x", {"member": ["a"]}])
def test_invite_needs_a_member_string(client: httpx.Client, names: tuple[str, str, str],
                                      body: object) -> None:
    owner, _, _ = names
    image_id = image(client, owner)
    resp = client.post(f"/v2/images/{image_id}/members", json=body, headers=tenant(owner))
    assert resp.status_code == 400


@pytest.mark.parametrize("visibility", ["private", "public", "community"])
def test_only_shared_images_have_members(client: httpx.Client, names: tuple[str, str, str],
                                         visibility: str) -> None:
    owner, member, _ = names
    roles = "admin" if visibility == "public" else "member"
    resp = client.post("/v2/images", json={"visibility": visibility},
                       headers=tenant(owner, roles))
    assert resp.status_code == 201, resp.text
    url = f"/v2/images/{resp.json()['id']}/members"
    refused = client.post(url, json={"member": member}, headers=tenant(owner))
    assert refused.status_code == 403
    assert "Only shared images have members" in refused.text
    assert client.get(url, headers=tenant(owner)).status_code == 403


def test_deactivate_and_reactivate(client: httpx.Client, names: tuple[str, str, str]) -> None:
    owner, _, stranger = names
    image_id = image(client, owner, visibility="community")
    url = f"/v2/images/{image_id}"
    # Not active yet: 403.
    assert client.post(f"{url}/actions/deactivate", headers=tenant(owner)).status_code == 403
    assert client.put(f"{url}/file", content=b"data", headers={**tenant(owner), **OCTETS}) \
        .status_code == 204
    # Others may see a community image but not change it.
    assert client.post(f"{url}/actions/deactivate", headers=tenant(stranger)).status_code == 403
    for _ in range(2):  # idempotent
        assert client.post(f"{url}/actions/deactivate", headers=tenant(owner)).status_code == 204
    assert client.get(url, headers=tenant(owner)).json()["status"] == "deactivated"
    assert client.get(f"{url}/file", headers=tenant(owner)).status_code == 403
    assert client.get(f"{url}/file", headers=tenant("root", "admin")).content == b"data"
    assert client.post(f"{url}/actions/deactivate", content=b"{}",
                       headers=tenant(owner)).status_code == 400
    assert client.get(f"{url}/actions/deactivate", headers=tenant(owner)).status_code == 405
    assert client.post(f"{url}/actions/explode", headers=tenant(owner)).status_code == 404
    for _ in range(2):
        assert client.post(f"{url}/actions/reactivate", headers=tenant(owner)).status_code == 204
    assert client.get(f"{url}/file", headers=tenant(owner)).content == b"data"
    missing = f"/v2/images/{uuid.uuid4()}/actions/reactivate"
    assert client.post(missing, headers=tenant(owner)).status_code == 404


def test_members_added_through_v1_show_through_v2(client: httpx.Client,
                                                  names: tuple[str, str, str]) -> None:
    owner, member, _ = names
    image_id = image(client, owner)
    assert client.put(f"/v1/images/{image_id}/members/{member}",
                      headers=tenant(owner)).status_code == 204
    shown = client.get(f"/v2/images/{image_id}/members/{member}", headers=tenant(member))
    assert shown.status_code == 200 and shown.json()["status"] == "accepted"
    assert listed(client, member, image_id)

"""How v1 shows what only the domain (and v2, to come) can make: community and private images,
pending and rejected members (docs/v1-choices.md, "Visibility and members seen through v1").

No API of glimpse sets these yet, so each test makes its images through v1, then moves them
in the server's own database, as a v2 request will, and looks at them through v1 again.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.identity import ctx
from tests.e2e.test_visibility import listed, make

pytestmark = pytest.mark.e2e

ADMIN = ctx(None, roles="admin")
OWNER, MEMBER, STRANGER = ctx("alice-v"), ctx("bob-v"), ctx("carol-v")
VISIBILITIES = ("public", "community", "shared", "private")




def set_visibility(database: sa.Engine, image_id: str, visibility: str) -> None:
    with database.begin() as conn:
        moved = conn.execute(sa.text("UPDATE images SET visibility = :v WHERE id = :id"),
                             {"v": visibility, "id": image_id})
        assert moved.rowcount == 1


def set_member_status(database: sa.Engine, image_id: str, member: str, status: str) -> None:
    with database.begin() as conn:
        moved = conn.execute(sa.text("UPDATE image_members SET status = :s "
                                     "WHERE image_id = :id AND member = :m"),
                             {"s": status, "id": image_id, "m": member})
        assert moved.rowcount == 1


def shared_with_member(client: httpx.Client, image_id: str) -> bool:
    resp = client.get("/v1/shared-images/bob-v", headers=MEMBER)
    assert resp.status_code == 200, resp.text
    return image_id in {s["image_id"] for s in resp.json()["shared_images"]}


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def image(client: httpx.Client, tag: str) -> str:
    """alice's image with data, shared with bob through v1 (so bob is accepted)."""
    image_id = str(make(client, OWNER, tag)["id"])
    resp = client.put(f"/v1/images/{image_id}/members/bob-v", headers=OWNER)
    assert resp.status_code == 204, resp.text
    return image_id


@pytest.mark.parametrize("visibility", VISIBILITIES)
def test_each_visibility_through_v1(client: httpx.Client, database: sa.Engine, tag: str,
                                    image: str, visibility: str) -> None:
    set_visibility(database, image, visibility)
    readers = {"public": {"owner", "member", "stranger"},
               "community": {"owner", "member", "stranger"},
               "shared": {"owner", "member"}, "private": {"owner"}}[visibility]
    listers = {"public": {"owner", "member", "stranger"}, "community": {"owner"},
               "shared": {"owner", "member"}, "private": {"owner"}}[visibility]
    for who, headers in (("owner", OWNER), ("member", MEMBER), ("stranger", STRANGER)):
        head = client.head(f"/v1/images/{image}", headers=headers)
        assert head.status_code == (200 if who in readers else 404), (who, head.status_code)
        if who in readers:
            assert head.headers["x-image-meta-is_public"] == str(visibility == "public")
            data = client.get(f"/v1/images/{image}", headers=headers)
            assert data.status_code == 200 and data.content == b"visible bytes"
        assert (image in listed(client, headers, tag)) is (who in listers), who
    assert image in listed(client, ADMIN, tag, is_public="none")
    assert (image in listed(client, ADMIN, tag, is_public="false")) is (visibility != "public")
    # A private image's membership has no effect: it is not among bob's shared images.
    assert shared_with_member(client, image) is (visibility != "private")


@pytest.mark.parametrize("status", ["pending", "rejected", "accepted"])
def test_member_status_through_v1(client: httpx.Client, database: sa.Engine, tag: str,
                                  image: str, status: str) -> None:
    set_member_status(database, image, "bob-v", status)
    assert client.head(f"/v1/images/{image}", headers=MEMBER).status_code == 200
    assert (image in listed(client, MEMBER, tag)) is (status == "accepted")
    members = client.get(f"/v1/images/{image}/members", headers=OWNER)
    assert members.status_code == 200
    assert members.json()["members"] == [{"member_id": "bob-v", "can_share": False}]
    assert shared_with_member(client, image)
    # Re-adding through v1 keeps the status the member has.
    assert client.put(f"/v1/images/{image}/members/bob-v", headers=OWNER).status_code == 204
    assert (image in listed(client, MEMBER, tag)) is (status == "accepted")


def test_v1_is_public_false_shares_a_private_image(client: httpx.Client, database: sa.Engine,
                                                   image: str) -> None:
    set_visibility(database, image, "private")
    untouched = client.put(f"/v1/images/{image}", headers={
        **OWNER, "x-glance-registry-purge-props": "false", "x-image-meta-min_ram": "64"})
    assert untouched.status_code == 200
    assert client.head(f"/v1/images/{image}", headers=MEMBER).status_code == 404
    shared = client.put(f"/v1/images/{image}", headers={
        **OWNER, "x-glance-registry-purge-props": "false", "x-image-meta-is_public": "false"})
    assert shared.status_code == 200 and shared.json()["image"]["is_public"] is False
    with database.connect() as conn:
        visibility = conn.execute(sa.text("SELECT visibility FROM images WHERE id = :id"),
                                  {"id": image}).scalar_one()
    assert visibility == "shared"
    assert client.head(f"/v1/images/{image}", headers=MEMBER).status_code == 200

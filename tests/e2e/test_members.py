"""Image members and shared images: spec §11 (plus quirks Q5, Q11, Q12, Q13, Q15, Q18, Q21)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.identity import ctx
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

ANON: dict[str, str] = {}
JSON = {"Content-Type": "application/json"}


def make(
    client: httpx.Client, headers: dict[str, str], tag: str, **meta: Any
) -> dict[str, Any]:
    h = dict(headers)
    h.update({
        "x-image-meta-name": "member-test",
        "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare",
        "x-image-meta-property-tag": tag,
        "Content-Type": "application/octet-stream",
    })
    for key, value in meta.items():
        h[f"x-image-meta-{key}"] = str(value)
    r = client.post("/v1/images", headers=h, content=b"member data")
    assert r.status_code == 201, r.text
    image: dict[str, Any] = r.json()["image"]
    return image


def members(
    client: httpx.Client, image_id: str, headers: dict[str, str] = ANON
) -> list[dict[str, Any]]:
    r = client.get(f"/v1/images/{image_id}/members", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"members"}
    for entry in body["members"]:
        assert set(entry) == {"member_id", "can_share"}
        assert isinstance(entry["can_share"], bool)
    result: list[dict[str, Any]] = body["members"]
    return result


def put_member(
    client: httpx.Client,
    image_id: str,
    member: str,
    headers: dict[str, str] = ANON,
    body: Any = None,
    *,
    raw: str | None = None,
) -> httpx.Response:
    url = f"/v1/images/{image_id}/members/{member}"
    if raw is not None:
        return client.put(url, headers={**headers, **JSON}, content=raw)
    if body is None:
        return client.put(url, headers=headers)
    return client.put(url, headers={**headers, **JSON}, content=json.dumps(body))


def put_all(
    client: httpx.Client,
    image_id: str,
    body: Any = None,
    headers: dict[str, str] = ANON,
    *,
    raw: str | None = None,
) -> httpx.Response:
    url = f"/v1/images/{image_id}/members"
    if raw is not None:
        return client.put(url, headers={**headers, **JSON}, content=raw)
    if body is None:
        return client.put(url, headers={**headers, **JSON})
    return client.put(url, headers={**headers, **JSON}, content=json.dumps(body))


def delete_member(
    client: httpx.Client, image_id: str, member: str, headers: dict[str, str] = ANON
) -> httpx.Response:
    return client.delete(f"/v1/images/{image_id}/members/{member}", headers=headers)


def shared_images(
    client: httpx.Client, member: str, headers: dict[str, str] = ANON
) -> dict[str, bool]:
    r = client.get(f"/v1/shared-images/{member}", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"shared_images"}
    result: dict[str, bool] = {}
    for entry in body["shared_images"]:
        assert set(entry) == {"image_id", "can_share"}
        assert isinstance(entry["can_share"], bool)
        assert entry["image_id"] not in result
        result[entry["image_id"]] = entry["can_share"]
    return result


def row(member: str, can_share: bool = False) -> dict[str, Any]:
    return {"member_id": member, "can_share": can_share}


def listed(client: httpx.Client, headers: dict[str, str], tag: str) -> set[str]:
    r = client.get("/v1/images/detail", headers=headers, params={"property-tag": tag})
    assert r.status_code == 200, r.text
    return {i["id"] for i in r.json()["images"]}


def head_status(client: httpx.Client, image_id: str, headers: dict[str, str]) -> int:
    return client.head(f"/v1/images/{image_id}", headers=headers).status_code


@pytest.fixture
def setup(client: httpx.Client, unique: str) -> dict[str, Any]:
    """Owner tenant A with a private image; B, C, D, E are other tenants."""
    s: dict[str, Any] = {"tag": unique}
    for x in "ABCDE":
        s[x] = f"{x.lower()}-{unique}"
    s["owner"] = ctx(s["A"])
    s["img"] = make(client, s["owner"], unique)["id"]
    return s


# --------------------------------------------------------------------------- GET members


def test_members_initially_empty(client: httpx.Client, setup: dict[str, Any]) -> None:
    r = client.get(f"/v1/images/{setup['img']}/members", headers=setup["owner"])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"members": []}


def test_put_member_without_body(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    r = put_member(client, s["img"], s["B"], s["owner"])
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert members(client, s["img"], s["owner"]) == [row(s["B"])]


def test_members_in_insertion_order(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    order = [s["D"], s["B"], s["E"], s["C"]]
    for m in order:
        assert put_member(client, s["img"], m, s["owner"]).status_code == 204
    assert [e["member_id"] for e in members(client, s["img"], s["owner"])] == order
    # Updating an existing member does not move it.
    r = put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == [
        row(s["D"]), row(s["B"], True), row(s["E"]), row(s["C"]),
    ]


def test_admin_and_owner_see_all_members_others_only_their_row(
    client: httpx.Client, setup: dict[str, Any]
) -> None:
    s = setup
    assert put_member(client, s["img"], s["B"], s["owner"]).status_code == 204
    r = put_member(client, s["img"], s["C"], s["owner"], {"member": {"can_share": True}})
    assert r.status_code == 204
    full = [row(s["B"]), row(s["C"], True)]
    assert members(client, s["img"], s["owner"]) == full
    assert members(client, s["img"], ANON) == full
    assert members(client, s["img"], ctx(s["E"], roles="admin")) == full
    assert members(client, s["img"], ctx(s["B"])) == [row(s["B"])]
    assert members(client, s["img"], ctx(s["C"])) == [row(s["C"], True)]


def test_members_of_public_image_seen_by_stranger(client: httpx.Client, unique: str) -> None:
    a, b, c = f"a-{unique}", f"b-{unique}", f"c-{unique}"
    img = make(client, ANON, unique, is_public="True", owner=a)["id"]
    assert put_member(client, img, b, ctx(a)).status_code == 204
    # get_members needs the owner's project or the image shared with the caller (Glance's
    # target names a member only on a shared image): others who see a public image 403.
    for headers in (ctx(c), ctx(b)):
        r = client.get(f"/v1/images/{img}/members", headers=headers)
        assert r.status_code == 403, r.text
    assert members(client, img, ctx(a)) == [row(b)]


def test_members_of_invisible_or_unknown_image_404(
    client: httpx.Client, setup: dict[str, Any]
) -> None:
    s = setup
    r = client.get(f"/v1/images/{s['img']}/members", headers=ctx(s["C"]))
    assert r.status_code == 404
    for bad in (str(uuid.uuid4()), "not-a-uuid"):
        assert client.get(f"/v1/images/{bad}/members").status_code == 404
        assert put_member(client, bad, s["B"]).status_code == 404
        assert put_all(client, bad, {"memberships": []}).status_code == 404
        assert delete_member(client, bad, s["B"]).status_code == 404


# --------------------------------------------------------------------------- PUT one member


def test_put_member_with_body(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    r = put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    assert r.status_code == 204, r.text
    assert r.content == b""
    r = put_member(client, s["img"], s["C"], s["owner"], {"member": {"can_share": False}})
    assert r.status_code == 204, r.text
    assert members(client, s["img"], s["owner"]) == [row(s["B"], True), row(s["C"])]


def test_existing_member_keeps_can_share_without_body(
    client: httpx.Client, setup: dict[str, Any]
) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    assert put_member(client, s["img"], s["B"], s["owner"]).status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["B"], True)]
    r = put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": False}})
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["B"])]
    r = put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["B"], True)]


def test_revive_removed_membership_without_body_q21(
    client: httpx.Client, setup: dict[str, Any]
) -> None:
    s = setup
    b = ctx(s["B"])
    put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    assert delete_member(client, s["img"], s["B"], s["owner"]).status_code == 204
    assert members(client, s["img"], s["owner"]) == []
    assert head_status(client, s["img"], b) == 404
    r = put_member(client, s["img"], s["B"], s["owner"])
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["B"])]
    assert head_status(client, s["img"], b) == 200
    assert s["img"] in listed(client, b, s["tag"])


def test_revive_removed_membership_with_body(
    client: httpx.Client, setup: dict[str, Any]
) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"])
    assert delete_member(client, s["img"], s["B"], s["owner"]).status_code == 204
    r = put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["B"], True)]
    assert head_status(client, s["img"], ctx(s["B"])) == 200


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), (1, True), (0, False), (2, True), (None, False),
     ("true", True), ("yes", True)],
)
def test_can_share_truthiness_q13(
    client: httpx.Client, setup: dict[str, Any], value: Any, expected: bool
) -> None:
    s = setup
    r = put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": value}})
    assert r.status_code == 204, r.text
    assert members(client, s["img"], s["owner"]) == [row(s["B"], expected)]
    # Same through replace-all.
    r = put_all(client, s["img"], {"memberships": [{"member_id": s["C"], "can_share": value}]})
    assert r.status_code == 204, r.text
    assert members(client, s["img"], s["owner"]) == [row(s["C"], expected)]


def test_can_share_string_false_q13(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    r = put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": "false"}})
    assert r.status_code == 204, r.text
    got = members(client, s["img"], s["owner"])
    assert got in ([row(s["B"], True)], [row(s["B"], False)])


# --------------------------------------------------------------------------- PUT replace-all


def test_replace_all(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    put_member(client, s["img"], s["C"], s["owner"])
    body = {"memberships": [{"member_id": s["C"], "can_share": True}, {"member_id": s["D"]}]}
    r = put_all(client, s["img"], body, s["owner"])
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert members(client, s["img"], s["owner"]) == [row(s["C"], True), row(s["D"])]
    assert head_status(client, s["img"], ctx(s["B"])) == 404
    assert head_status(client, s["img"], ctx(s["D"])) == 200
    # Listed existing member without can_share keeps it; unlisted ones go away.
    r = put_all(client, s["img"], {"memberships": [{"member_id": s["C"]}]}, s["owner"])
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["C"], True)]
    r = put_all(client, s["img"], {"memberships": [{"member_id": s["C"], "can_share": False}]},
                s["owner"])
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["C"])]
    # Empty list clears.
    r = put_all(client, s["img"], {"memberships": []}, s["owner"])
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == []
    assert head_status(client, s["img"], ctx(s["C"])) == 404


def test_replace_all_revives_removed_membership(
    client: httpx.Client, setup: dict[str, Any]
) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"])
    assert delete_member(client, s["img"], s["B"], s["owner"]).status_code == 204
    r = put_all(client, s["img"], {"memberships": [{"member_id": s["B"]}]}, s["owner"])
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["B"])]
    assert head_status(client, s["img"], ctx(s["B"])) == 200


def test_replace_all_by_admin(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    body = {"memberships": [{"member_id": s["B"]}, {"member_id": s["C"], "can_share": True}]}
    for headers in (ANON, ctx(s["E"], roles="admin")):
        r = put_all(client, s["img"], body, headers)
        assert r.status_code == 204, r.text
        assert members(client, s["img"], s["owner"]) == [row(s["B"]), row(s["C"], True)]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "[]",
        '"memberships"',
        "null",
        "42",
        "{}",
        '{"members": []}',
        '{"memberships": [{"can_share": true}]}',
        '{"memberships": [{"member_id": "new-ok"}, {"can_share": false}]}',
    ],
)
def test_replace_all_bad_bodies_q15(
    client: httpx.Client, setup: dict[str, Any], raw: str | None
) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    if raw is None:
        r = client.put(f"/v1/images/{s['img']}/members", headers=s["owner"])
    else:
        r = put_all(client, s["img"], headers=s["owner"], raw=raw)
    assert r.status_code == 400, (raw, r.status_code, r.text)
    assert members(client, s["img"], s["owner"]) == [row(s["B"], True)]


@pytest.mark.parametrize("raw", ["{", '{"memberships": [', "not json at all", "{'a': 1}"])
def test_replace_all_malformed_json(
    client: httpx.Client, setup: dict[str, Any], raw: str
) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"])
    r = put_all(client, s["img"], headers=s["owner"], raw=raw)
    assert r.status_code == 400, r.text
    assert "Malformed JSON in request body" in r.text
    assert members(client, s["img"], s["owner"]) == [row(s["B"])]


# --------------------------------------------------------------------------- DELETE member


def test_delete_member(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"])
    put_member(client, s["img"], s["C"], s["owner"])
    r = delete_member(client, s["img"], s["B"], s["owner"])
    assert r.status_code == 204
    assert r.content == b""
    assert members(client, s["img"], s["owner"]) == [row(s["C"])]
    r = delete_member(client, s["img"], s["B"], s["owner"])
    assert r.status_code == 404
    r = delete_member(client, s["img"], s["D"], s["owner"])
    assert r.status_code == 404
    assert members(client, s["img"], s["owner"]) == [row(s["C"])]
    assert delete_member(client, s["img"], s["C"], ANON).status_code == 204
    assert members(client, s["img"], s["owner"]) == []


# --------------------------------------------------------------------------- errors


def test_member_ops_on_deleted_image(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"])
    assert client.delete(f"/v1/images/{s['img']}", headers=s["owner"]).status_code == 200
    for headers in (ANON, ctx(s["E"], roles="admin")):
        r = client.get(f"/v1/images/{s['img']}/members", headers=headers)
        assert r.status_code == 404
        assert "has been deleted" in r.text
        r = put_member(client, s["img"], s["C"], headers)
        assert r.status_code == 404
        assert "has been deleted" in r.text
        r = put_member(client, s["img"], s["C"], headers, {"member": {"can_share": True}})
        assert r.status_code == 404
        assert "has been deleted" in r.text
        r = put_all(client, s["img"], {"memberships": [{"member_id": s["C"]}]}, headers)
        assert r.status_code == 404
        assert "has been deleted" in r.text
        r = delete_member(client, s["img"], s["B"], headers)
        assert r.status_code == 404
        assert "has been deleted" in r.text
    # Non-admins (even the owner) just get 404.
    for headers in (s["owner"], ctx(s["B"])):
        assert client.get(f"/v1/images/{s['img']}/members", headers=headers).status_code == 404
        assert put_member(client, s["img"], s["C"], headers).status_code == 404
        assert delete_member(client, s["img"], s["B"], headers).status_code == 404


def test_non_admin_without_tenant_gets_401(client: httpx.Client, unique: str) -> None:
    img = make(client, ANON, unique)["id"]  # owner null: readable by everybody
    put_member(client, img, f"b-{unique}")
    for headers in (ctx(None), ctx(None, user=f"u-{unique}"), {"X-User-Id": f"u-{unique}"}):
        assert put_member(client, img, f"c-{unique}", headers).status_code == 401
        r = put_member(client, img, f"c-{unique}", headers, {"member": {"can_share": False}})
        assert r.status_code == 401
        r = put_all(client, img, {"memberships": []}, headers)
        assert r.status_code == 401
        assert delete_member(client, img, f"b-{unique}", headers).status_code == 401
    assert members(client, img) == [row(f"b-{unique}")]


def test_caller_not_allowed_to_share_q5(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"])  # can_share false
    b = ctx(s["B"])
    assert put_member(client, s["img"], s["C"], b).status_code in (403, 404)
    r = put_member(client, s["img"], s["B"], b, {"member": {"can_share": True}})
    assert r.status_code in (403, 404)
    r = put_all(client, s["img"], {"memberships": [{"member_id": s["C"]}]}, b)
    assert r.status_code in (403, 404)
    assert delete_member(client, s["img"], s["B"], b).status_code in (403, 404)
    assert members(client, s["img"], s["owner"]) == [row(s["B"])]
    # A caller who cannot even see the image gets 404.
    c = ctx(s["C"])
    assert put_member(client, s["img"], s["C"], c).status_code == 404
    assert put_all(client, s["img"], {"memberships": []}, c).status_code == 404
    assert delete_member(client, s["img"], s["B"], c).status_code == 404
    assert members(client, s["img"], s["owner"]) == [row(s["B"])]


def test_non_owner_of_visible_images_cannot_share_q5(client: httpx.Client, unique: str) -> None:
    a, c = f"a-{unique}", ctx(f"c-{unique}")
    public = make(client, ANON, unique, is_public="True", owner=a)["id"]
    null_owner = make(client, ANON, unique)["id"]
    for img in (public, null_owner):
        assert put_member(client, img, f"c-{unique}", c).status_code in (403, 404)
        r = put_all(client, img, {"memberships": [{"member_id": f"c-{unique}"}]}, c)
        assert r.status_code in (403, 404)
        assert members(client, img) == []


def test_can_share_delegation(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    put_member(client, s["img"], s["C"], s["owner"])
    b = ctx(s["B"])
    # B may add, update and remove memberships.
    assert put_member(client, s["img"], s["D"], b).status_code == 204
    assert members(client, s["img"], s["owner"]) == [
        row(s["B"], True), row(s["C"]), row(s["D"]),
    ]
    assert head_status(client, s["img"], ctx(s["D"])) == 200
    r = put_member(client, s["img"], s["D"], b, {"member": {"can_share": True}})
    assert r.status_code == 204
    assert members(client, s["img"], s["owner"])[2] == row(s["D"], True)
    assert delete_member(client, s["img"], s["C"], b).status_code == 204
    assert members(client, s["img"], s["owner"]) == [row(s["B"], True), row(s["D"], True)]
    # B sees only its own row.
    assert members(client, s["img"], b) == [row(s["B"], True)]
    # B may not modify or delete the image itself.
    r = client.put(
        f"/v1/images/{s['img']}",
        headers={**b, "x-image-meta-name": "hijack", "x-glance-registry-purge-props": "false"},
    )
    assert r.status_code in (403, 404)
    assert client.delete(f"/v1/images/{s['img']}", headers=b).status_code in (403, 404)
    h = client.head(f"/v1/images/{s['img']}", headers=s["owner"])
    assert h.headers["x-image-meta-name"] == "member-test"
    assert h.headers["x-image-meta-status"] == "active"
    # A member without can_share may not delegate further.
    d_no_share = put_member(client, s["img"], s["D"], s["owner"], {"member": {"can_share": 0}})
    assert d_no_share.status_code == 204
    assert put_member(client, s["img"], s["E"], ctx(s["D"])).status_code in (403, 404)


# --------------------------------------------------------------------------- GET one member (Q11)


def test_get_single_member_q11(client: httpx.Client, setup: dict[str, Any]) -> None:
    s = setup
    put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    r = client.get(f"/v1/images/{s['img']}/members/{s['B']}", headers=s["owner"])
    assert r.status_code in (200, 404, 405), r.status_code
    implemented = r.status_code == 200
    if implemented:
        assert r.json() == {"member": {"member_id": s["B"], "can_share": True}}
    r = client.get(f"/v1/images/{s['img']}/members/{s['C']}", headers=s["owner"])
    assert r.status_code in ((404,) if implemented else (404, 405))


# --------------------------------------------------------------------------- quotas


@pytest.fixture(scope="module")
def quota_server() -> Iterator[GlimpseServer]:
    srv = GlimpseServer({"image_member_quota": "2"})
    yield srv
    srv.stop()


def test_member_quota(quota_server: GlimpseServer) -> None:
    tag = uuid.uuid4().hex
    a = ctx(f"a-{tag}")
    m1, m2, m3, m4 = (f"m{n}-{tag}" for n in range(1, 5))
    with httpx.Client(base_url=quota_server.url, timeout=30.0) as c:
        img = make(c, a, tag)["id"]
        assert put_member(c, img, m1, a).status_code == 204
        assert put_member(c, img, m2, a).status_code == 204
        r = put_member(c, img, m3, a)
        assert r.status_code == 413, r.text
        r = put_member(c, img, m3, a, {"member": {"can_share": True}})
        assert r.status_code == 413, r.text
        assert members(c, img, a) == [row(m1), row(m2)]
        # Replace-all over the quota changes nothing.
        r = put_all(c, img, {"memberships": [{"member_id": m} for m in (m1, m2, m3)]}, a)
        assert r.status_code == 413, r.text
        assert members(c, img, a) == [row(m1), row(m2)]
        # Exactly at the quota is fine.
        r = put_all(c, img, {"memberships": [{"member_id": m3}, {"member_id": m4}]}, a)
        assert r.status_code == 204, r.text
        assert members(c, img, a) == [row(m3), row(m4)]
        # After removing one, there is room again.
        assert delete_member(c, img, m3, a).status_code == 204
        m5 = f"m5-{tag}"
        assert put_member(c, img, m5, a).status_code == 204
        assert members(c, img, a) == [row(m4), row(m5)]
        # The quota is per image.
        other = make(c, a, tag)["id"]
        assert put_member(c, other, m2, a).status_code == 204


def test_member_quota_existing_member_q18(quota_server: GlimpseServer) -> None:
    tag = uuid.uuid4().hex
    a = ctx(f"a-{tag}")
    m1, m2 = f"m1-{tag}", f"m2-{tag}"
    with httpx.Client(base_url=quota_server.url, timeout=30.0) as c:
        img = make(c, a, tag)["id"]
        assert put_member(c, img, m1, a).status_code == 204
        assert put_member(c, img, m2, a).status_code == 204
        r = put_member(c, img, m1, a, {"member": {"can_share": True}})
        assert r.status_code in (204, 413), r.text
        want = row(m1, r.status_code == 204)
        assert members(c, img, a) == [want, row(m2)]


def test_member_quota_one_below(quota_server: GlimpseServer) -> None:
    tag = uuid.uuid4().hex
    a = ctx(f"a-{tag}")
    with httpx.Client(base_url=quota_server.url, timeout=30.0) as c:
        img = make(c, a, tag)["id"]
        assert put_member(c, img, f"m1-{tag}", a).status_code == 204
        # Existing (1) + 1 = 2 <= quota: the update of an existing member is fine either way.
        r = put_member(c, img, f"m1-{tag}", a, {"member": {"can_share": True}})
        assert r.status_code == 204
        assert members(c, img, a) == [row(f"m1-{tag}", True)]


# --------------------------------------------------------------------------- shared images


@pytest.fixture
def shares(client: httpx.Client, unique: str) -> dict[str, Any]:
    s: dict[str, Any] = {"tag": unique}
    for x in "ABCD":
        s[x] = f"{x.lower()}-{unique}"
    a, c = ctx(s["A"]), ctx(s["C"])
    s["img1"] = make(client, a, unique)["id"]
    s["img2"] = make(client, a, unique)["id"]
    s["img3"] = make(client, c, unique)["id"]
    s["img4"] = make(client, a, unique)["id"]
    put_member(client, s["img1"], s["B"], a, {"member": {"can_share": True}})
    put_member(client, s["img2"], s["B"], a)
    put_member(client, s["img3"], s["B"], c)
    put_member(client, s["img4"], s["D"], a)
    return s


def test_shared_images_views(client: httpx.Client, shares: dict[str, Any]) -> None:
    s = shares
    everything = {s["img1"]: True, s["img2"]: False, s["img3"]: False}
    assert shared_images(client, s["B"]) == everything
    assert shared_images(client, s["B"], ctx(s["D"], roles="admin")) == everything
    assert shared_images(client, s["B"], ctx(s["B"])) == everything
    assert shared_images(client, s["B"], ctx(s["A"])) == {s["img1"]: True, s["img2"]: False}
    assert shared_images(client, s["B"], ctx(s["C"])) == {s["img3"]: False}
    assert shared_images(client, s["B"], ctx(s["D"])) == {}
    assert shared_images(client, s["D"]) == {s["img4"]: False}
    assert shared_images(client, s["D"], ctx(s["B"])) == {}


def test_shared_images_unknown_member(client: httpx.Client, unique: str) -> None:
    r = client.get(f"/v1/shared-images/nobody-{unique}")
    assert r.status_code == 200
    assert r.json() == {"shared_images": []}
    r = client.get(f"/v1/shared-images/nobody-{unique}", headers=ctx(f"x-{unique}"))
    assert r.status_code == 200
    assert r.json() == {"shared_images": []}


def test_shared_images_follow_membership_changes(
    client: httpx.Client, shares: dict[str, Any]
) -> None:
    s = shares
    a = ctx(s["A"])
    assert delete_member(client, s["img2"], s["B"], a).status_code == 204
    assert shared_images(client, s["B"]) == {s["img1"]: True, s["img3"]: False}
    r = put_member(client, s["img3"], s["B"], ctx(s["C"]), {"member": {"can_share": True}})
    assert r.status_code == 204
    assert shared_images(client, s["B"]) == {s["img1"]: True, s["img3"]: True}
    assert client.delete(f"/v1/images/{s['img1']}", headers=a).status_code == 200
    assert shared_images(client, s["B"]) == {s["img3"]: True}
    assert shared_images(client, s["B"], ctx(s["B"])) == {s["img3"]: True}


def test_shared_images_other_methods_q12(client: httpx.Client, shares: dict[str, Any]) -> None:
    s = shares
    for method in ("POST", "PUT", "DELETE"):
        r = client.request(method, f"/v1/shared-images/{s['D']}")
        assert r.status_code in (200, 405), (method, r.status_code)
        if r.status_code == 200:
            assert r.json() == {"shared_images": [{"image_id": s["img4"], "can_share": False}]}
    # Nothing was changed by those requests.
    assert shared_images(client, s["D"]) == {s["img4"]: False}
    assert members(client, s["img4"]) == [row(s["D"])]


# --------------------------------------------------------------------------- visibility


def test_membership_grants_visibility_and_listing(
    client: httpx.Client, setup: dict[str, Any]
) -> None:
    s = setup
    b = ctx(s["B"])
    assert head_status(client, s["img"], b) == 404
    assert client.get(f"/v1/images/{s['img']}", headers=b).status_code == 404
    assert s["img"] not in listed(client, b, s["tag"])
    assert put_member(client, s["img"], s["B"], s["owner"]).status_code == 204
    assert head_status(client, s["img"], b) == 200
    g = client.get(f"/v1/images/{s['img']}", headers=b)
    assert g.status_code == 200
    assert g.content == b"member data"
    assert listed(client, b, s["tag"]) == {s["img"]}
    # Other tenants still cannot see it.
    assert head_status(client, s["img"], ctx(s["C"])) == 404
    assert listed(client, ctx(s["C"]), s["tag"]) == set()
    assert delete_member(client, s["img"], s["B"], s["owner"]).status_code == 204
    assert head_status(client, s["img"], b) == 404
    assert listed(client, b, s["tag"]) == set()


def test_memberships_vanish_when_image_deleted(
    client: httpx.Client, setup: dict[str, Any]
) -> None:
    s = setup
    b = ctx(s["B"])
    put_member(client, s["img"], s["B"], s["owner"], {"member": {"can_share": True}})
    assert s["img"] in shared_images(client, s["B"])
    assert client.delete(f"/v1/images/{s['img']}", headers=s["owner"]).status_code == 200
    assert head_status(client, s["img"], b) == 404
    assert listed(client, b, s["tag"]) == set()
    assert shared_images(client, s["B"]) == {}
    assert shared_images(client, s["B"], b) == {}
    r = client.get(f"/v1/images/{s['img']}/members")
    assert r.status_code == 404
    assert "has been deleted" in r.text

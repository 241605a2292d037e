"""Identity (spec §2.1), which images callers list (§9.4) and may read or write (§10)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.identity import ctx
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

ANON: dict[str, str] = {}
NO_PURGE = {"x-glance-registry-purge-props": "false"}
DATA = b"visible bytes"


def create(
    client: httpx.Client,
    headers: dict[str, str],
    tag: str,
    *,
    name: str = "vis",
    data: bytes | None = DATA,
    **meta: Any,
) -> httpx.Response:
    h = dict(headers)
    h.update({
        "x-image-meta-name": name,
        "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare",
        "x-image-meta-property-tag": tag,
    })
    for key, value in meta.items():
        h[f"x-image-meta-{key}"] = str(value)
    if data is not None:
        h["Content-Type"] = "application/octet-stream"
    return client.post("/v1/images", headers=h, content=data)


def make(client: httpx.Client, headers: dict[str, str], tag: str, **kw: Any) -> dict[str, Any]:
    r = create(client, headers, tag, **kw)
    assert r.status_code == 201, r.text
    image: dict[str, Any] = r.json()["image"]
    return image


def listed(
    client: httpx.Client, headers: dict[str, str], tag: str, *, detail: bool = True, **params: Any
) -> set[str]:
    path = "/v1/images/detail" if detail else "/v1/images"
    params["property-tag"] = tag
    r = client.get(path, headers=headers, params=params)
    assert r.status_code == 200, r.text
    return {i["id"] for i in r.json()["images"]}


def share(client: httpx.Client, image_id: str, member: str, headers: dict[str, str]) -> None:
    r = client.put(f"/v1/images/{image_id}/members/{member}", headers=headers)
    assert r.status_code == 204, r.text


def head(client: httpx.Client, image_id: str, headers: dict[str, str]) -> httpx.Response:
    return client.head(f"/v1/images/{image_id}", headers=headers)


# --------------------------------------------------------------------------- a small world


@pytest.fixture(scope="module")
def world(server: GlimpseServer) -> Iterator[dict[str, Any]]:
    """Tenants A, B, C, D (unrelated) and images:

    priv_a (private, owner A), pub (public, owner A), null (private, owner null),
    shared (private, owner A, member B), priv_c (private, owner C).
    """
    tag = uuid.uuid4().hex
    a, b, c, d = (f"{x}-{tag}" for x in "abcd")
    w: dict[str, Any] = {"tag": tag, "A": a, "B": b, "C": c, "D": d}
    with httpx.Client(base_url=server.url, timeout=30.0) as cl:
        w["priv_a"] = make(cl, ctx(a), tag, name="priv_a")["id"]
        pub = make(cl, ctx(a, roles="admin"), tag, name="pub", is_public="True")
        assert pub["is_public"] is True
        assert pub["owner"] == a
        w["pub"] = pub["id"]
        null = make(cl, ANON, tag, name="null")
        assert null["owner"] is None
        assert null["is_public"] is False
        w["null"] = null["id"]
        w["shared"] = make(cl, ctx(a), tag, name="shared")["id"]
        share(cl, w["shared"], b, ctx(a))
        w["priv_c"] = make(cl, ctx(c), tag, name="priv_c")["id"]
    yield w


ALL = {"priv_a", "pub", "null", "shared", "priv_c"}


def names(w: dict[str, Any], keys: set[str]) -> set[str]:
    return {w[k] for k in keys}


# --------------------------------------------------------------------------- listing


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("A", {"priv_a", "pub", "shared"}),
        ("B", {"pub", "shared"}),
        ("C", {"pub", "priv_c"}),
        ("D", {"pub"}),
    ],
)
def test_non_admin_lists(
    client: httpx.Client, world: dict[str, Any], who: str, expected: set[str]
) -> None:
    headers = ctx(world[who])
    want = names(world, expected)
    assert listed(client, headers, world["tag"]) == want
    assert listed(client, headers, world["tag"], detail=False) == want


def test_tenantless_non_admin_lists_only_public(
    client: httpx.Client, world: dict[str, Any]
) -> None:
    for headers in (ctx(None), ctx(None, user=f"u-{world['tag']}")):
        assert listed(client, headers, world["tag"]) == {world["pub"]}
    # Without a role, not even that: get_images needs reader.
    assert client.get("/v1/images", headers={"X-User-Id": "someone"}).status_code == 403


def test_project_id_header_is_tenant(client: httpx.Client, world: dict[str, Any]) -> None:
    headers = {"X-Project-Id": world["A"], "X-Roles": "member"}
    assert listed(client, headers, world["tag"]) == names(world, {"priv_a", "pub", "shared"})
    img = make(client, headers, world["tag"] + "-p")
    assert img["owner"] == world["A"]


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("none", [{"pub", "shared"}]),
        ("NONE", [{"pub", "shared"}]),
        ("true", [{"pub", "shared"}, {"pub"}]),
        ("1", [{"pub", "shared"}, {"pub"}]),
        ("false", [{"pub", "shared"}, {"shared"}]),
        ("0", [{"pub", "shared"}, {"shared"}]),
    ],
)
def test_non_admin_is_public_param_q8(
    client: httpx.Client, world: dict[str, Any], value: str, allowed: list[set[str]]
) -> None:
    got = listed(client, ctx(world["B"]), world["tag"], is_public=value)
    assert got in [names(world, a) for a in allowed]


def test_non_admin_is_public_invalid(client: httpx.Client, world: dict[str, Any]) -> None:
    r = client.get("/v1/images", headers=ctx(world["B"]), params={"is_public": "perhaps"})
    assert r.status_code == 400


@pytest.mark.parametrize("value", [None, "true", "True", "1"])
def test_anonymous_admin_default_list(
    client: httpx.Client, world: dict[str, Any], value: str | None
) -> None:
    params = {} if value is None else {"is_public": value}
    got = listed(client, ANON, world["tag"], **params)
    # Public images only; Q10 allows the private image that has a member too.
    assert got in (names(world, {"pub"}), names(world, {"pub", "shared"}))


@pytest.mark.parametrize("value", ["none", "None", "NONE"])
def test_anonymous_admin_is_public_none_lists_everything(
    client: httpx.Client, world: dict[str, Any], value: str
) -> None:
    assert listed(client, ANON, world["tag"], is_public=value) == names(world, ALL)
    assert listed(client, ANON, world["tag"], is_public=value, detail=False) == names(world, ALL)


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_anonymous_admin_is_public_false_lists_private(
    client: httpx.Client, world: dict[str, Any], value: str
) -> None:
    want = names(world, ALL - {"pub"})
    assert listed(client, ANON, world["tag"], is_public=value) == want


def test_tenant_admin_lists(client: httpx.Client, world: dict[str, Any]) -> None:
    admin_d = ctx(world["D"], roles="admin")
    assert listed(client, admin_d, world["tag"]) == {world["pub"]}
    assert listed(client, admin_d, world["tag"], is_public="true") == {world["pub"]}
    assert listed(client, admin_d, world["tag"], is_public="none") == names(world, ALL)
    assert listed(client, admin_d, world["tag"], is_public="false") == names(world, ALL - {"pub"})
    admin_b = ctx(world["B"], roles="member,admin")
    assert listed(client, admin_b, world["tag"]) == names(world, {"pub", "shared"})
    admin_a = ctx(world["A"], roles="admin")
    assert listed(client, admin_a, world["tag"]) == names(world, {"priv_a", "pub", "shared"})


def test_admin_is_public_filters_combine_with_other_filters(
    client: httpx.Client, world: dict[str, Any]
) -> None:
    got = listed(client, ANON, world["tag"], is_public="none", name="priv_c")
    assert got == {world["priv_c"]}
    got = listed(client, ANON, world["tag"], is_public="false", name="pub")
    assert got == set()


# --------------------------------------------------------------------------- reading


READ_MATRIX: list[tuple[str, set[str]]] = [
    ("A", {"priv_a", "pub", "null", "shared"}),
    ("B", {"pub", "null", "shared"}),
    ("C", {"pub", "null", "priv_c"}),
    ("D", {"pub", "null"}),
    ("tenantless", {"pub", "null"}),
    ("anon", ALL),
    ("admin_d", ALL),
]


def who_headers(w: dict[str, Any], who: str) -> dict[str, str]:
    if who == "anon":
        return ANON
    if who == "tenantless":
        return ctx(None, user=f"u-{w['tag']}")
    if who == "admin_d":
        return ctx(w["D"], roles="admin")
    return ctx(w[who])


@pytest.mark.parametrize(("who", "readable"), READ_MATRIX, ids=[m[0] for m in READ_MATRIX])
def test_read_access(
    client: httpx.Client, world: dict[str, Any], who: str, readable: set[str]
) -> None:
    headers = who_headers(world, who)
    for key in sorted(ALL):
        image_id = world[key]
        h = head(client, image_id, headers)
        g = client.get(f"/v1/images/{image_id}", headers=headers)
        if key in readable:
            assert h.status_code == 200, (who, key, h.status_code)
            assert h.headers["x-image-meta-id"] == image_id
            assert h.content == b""
            assert g.status_code == 200, (who, key, g.status_code)
            assert g.content == DATA
        else:
            assert h.status_code == 404, (who, key, h.status_code)
            assert g.status_code == 404, (who, key, g.status_code)


def test_unknown_ids_are_404(client: httpx.Client, world: dict[str, Any]) -> None:
    for image_id in (str(uuid.uuid4()), "not-a-uuid", "x" * 40):
        for headers in (ANON, ctx(world["A"])):
            assert head(client, image_id, headers).status_code == 404
            assert client.get(f"/v1/images/{image_id}", headers=headers).status_code == 404


def test_role_names_are_trimmed_and_case_insensitive(
    client: httpx.Client, world: dict[str, Any]
) -> None:
    priv_c = world["priv_c"]
    for roles in ("admin", "ADMIN", "Admin", "member , Admin", "reader,admin"):
        assert head(client, priv_c, ctx(world["D"], roles=roles)).status_code == 200, roles
    for roles in ("member", "administrator", "admins", "reader,member"):
        assert head(client, priv_c, ctx(world["D"], roles=roles)).status_code == 404, roles


def test_admin_role_without_tenant(client: httpx.Client, world: dict[str, Any]) -> None:
    headers = {"X-Roles": "admin"}
    assert head(client, world["priv_c"], headers).status_code == 200
    assert listed(client, headers, world["tag"], is_public="none") == names(world, ALL)


def test_owner_null_readable_but_not_listed_by_non_admins(
    client: httpx.Client, world: dict[str, Any]
) -> None:
    for who in ("A", "B", "C", "D"):
        headers = ctx(world[who])
        assert head(client, world["null"], headers).status_code == 200
        assert world["null"] not in listed(client, headers, world["tag"])
        assert world["null"] not in listed(client, headers, world["tag"], is_public="none")


def test_tenantless_member_creates_owner_null_image(client: httpx.Client, unique: str) -> None:
    img = make(client, ctx(None), unique)
    assert img["owner"] is None
    h = head(client, img["id"], ctx(f"other-{unique}"))
    assert h.status_code == 200
    assert "x-image-meta-owner" not in h.headers


def test_deleted_image_visible_to_admins_only(client: httpx.Client, unique: str) -> None:
    a = ctx(f"a-{unique}")
    img = make(client, a, unique)
    assert client.delete(f"/v1/images/{img['id']}", headers=a).status_code == 200
    assert head(client, img["id"], a).status_code == 404
    assert head(client, img["id"], ctx(f"b-{unique}")).status_code == 404
    for admin in (ANON, ctx(f"z-{unique}", roles="admin")):
        h = head(client, img["id"], admin)
        assert h.status_code == 200
        assert h.headers["x-image-meta-status"] == "deleted"
        assert h.headers["x-image-meta-deleted"] == "True"
    assert client.get(f"/v1/images/{img['id']}", headers=ANON).status_code == 404


# --------------------------------------------------------------------------- writing


def put(
    client: httpx.Client, image_id: str, headers: dict[str, str], **meta: str
) -> httpx.Response:
    h = {**headers, **NO_PURGE}
    for key, value in meta.items():
        h[f"x-image-meta-{key}"] = value
    return client.put(f"/v1/images/{image_id}", headers=h)


def delete(client: httpx.Client, image_id: str, headers: dict[str, str]) -> httpx.Response:
    return client.delete(f"/v1/images/{image_id}", headers=headers)


@pytest.fixture
def fresh(client: httpx.Client, unique: str) -> dict[str, Any]:
    """Fresh images per test (so writes do not disturb other tests)."""
    a, b, c = f"a-{unique}", f"b-{unique}", f"c-{unique}"
    f: dict[str, Any] = {"tag": unique, "A": a, "B": b, "C": c}
    f["priv_a"] = make(client, ctx(a), unique, name="priv_a")["id"]
    f["pub"] = make(client, ANON, unique, name="pub", is_public="True", owner=a)["id"]
    f["null"] = make(client, ANON, unique, name="null")["id"]
    f["shared"] = make(client, ctx(a), unique, name="shared")["id"]
    share(client, f["shared"], b, ctx(a))
    return f


def name_of(client: httpx.Client, image_id: str) -> str:
    h = head(client, image_id, ANON)
    assert h.status_code == 200
    return h.headers["x-image-meta-name"]


def status_of(client: httpx.Client, image_id: str) -> str:
    return head(client, image_id, ANON).headers["x-image-meta-status"]


def test_owner_can_update_and_delete(client: httpx.Client, fresh: dict[str, Any]) -> None:
    owner = ctx(fresh["A"])
    r = put(client, fresh["priv_a"], owner, name="renamed")
    assert r.status_code == 200, r.text
    assert r.json()["image"]["name"] == "renamed"
    # The owner of a public image may modify it as well.
    r = put(client, fresh["pub"], owner, name="pub2")
    assert r.status_code == 200, r.text
    assert delete(client, fresh["priv_a"], owner).status_code == 200
    assert status_of(client, fresh["priv_a"]) == "deleted"


def test_admins_can_write_any_image(client: httpx.Client, fresh: dict[str, Any]) -> None:
    admin_z = ctx(f"z-{fresh['tag']}", roles="admin")
    assert put(client, fresh["priv_a"], admin_z, name="by-admin").status_code == 200
    assert name_of(client, fresh["priv_a"]) == "by-admin"
    assert put(client, fresh["null"], ANON, name="null2").status_code == 200
    assert put(client, fresh["null"], admin_z, name="null3").status_code == 200
    assert name_of(client, fresh["null"]) == "null3"
    assert delete(client, fresh["null"], admin_z).status_code == 200
    assert delete(client, fresh["priv_a"], ANON).status_code == 200
    assert status_of(client, fresh["null"]) == "deleted"
    assert status_of(client, fresh["priv_a"]) == "deleted"


def test_invisible_image_write_is_404(client: httpx.Client, fresh: dict[str, Any]) -> None:
    for headers in (ctx(fresh["B"]), ctx(fresh["C"])):
        assert put(client, fresh["priv_a"], headers, name="x").status_code == 404
        assert delete(client, fresh["priv_a"], headers).status_code == 404
    assert put(client, fresh["shared"], ctx(fresh["C"]), name="x").status_code == 404
    assert delete(client, fresh["shared"], ctx(fresh["C"])).status_code == 404
    assert name_of(client, fresh["priv_a"]) == "priv_a"
    assert status_of(client, fresh["priv_a"]) == "active"


def test_non_owner_on_public_image_is_403(client: httpx.Client, fresh: dict[str, Any]) -> None:
    for headers in (ctx(fresh["B"]), ctx(fresh["C"]), ctx(None, user="u1")):
        assert put(client, fresh["pub"], headers, name="hijack").status_code == 403
        assert delete(client, fresh["pub"], headers).status_code == 403
    assert name_of(client, fresh["pub"]) == "pub"
    assert status_of(client, fresh["pub"]) == "active"


def test_member_cannot_write_shared_private_image_q9(
    client: httpx.Client, fresh: dict[str, Any]
) -> None:
    member = ctx(fresh["B"])
    assert put(client, fresh["shared"], member, name="hijack").status_code in (403, 404)
    assert delete(client, fresh["shared"], member).status_code in (403, 404)
    assert name_of(client, fresh["shared"]) == "shared"
    assert status_of(client, fresh["shared"]) == "active"


def test_non_admin_cannot_write_owner_null_image_q9(
    client: httpx.Client, fresh: dict[str, Any]
) -> None:
    # A caller with a project may not; one without a role may not either. (A noauth caller
    # without a project but with the member role may: the rules compare projects as
    # oslo.policy does, and the image's None is the caller's; docs/identity.md, Policy.)
    for headers in (ctx(fresh["B"]), {"X-User-Id": "u-null"}, ctx(None, roles="reader")):
        assert put(client, fresh["null"], headers, name="hijack").status_code in (403, 404)
        assert delete(client, fresh["null"], headers).status_code in (403, 404)
    assert name_of(client, fresh["null"]) == "null"
    assert status_of(client, fresh["null"]) == "active"


def test_non_admin_cannot_publicize_on_create(client: httpx.Client, unique: str) -> None:
    a = ctx(f"a-{unique}")
    for value in ("True", "true", "1", "yes", "on"):
        r = create(client, a, unique, is_public=value)
        assert r.status_code == 403, (value, r.text)
    r = create(client, a, unique, data=None, is_public="True")
    assert r.status_code == 403
    # Nothing was created.
    assert listed(client, ANON, unique, is_public="none") == set()


def test_non_admin_is_public_false_values(client: httpx.Client, unique: str) -> None:
    a = ctx(f"a-{unique}")
    for value in ("False", "None", "no", "0", ""):
        r = create(client, a, unique, data=None, is_public=value)
        assert r.status_code == 201, (value, r.text)
        assert r.json()["image"]["is_public"] is False


def test_non_admin_cannot_publicize_on_update(client: httpx.Client, fresh: dict[str, Any]) -> None:
    owner = ctx(fresh["A"])
    r = put(client, fresh["priv_a"], owner, is_public="True")
    assert r.status_code == 403, r.text
    assert head(client, fresh["priv_a"], ANON).headers["x-image-meta-is_public"] == "False"
    assert head(client, fresh["priv_a"], ctx(fresh["B"])).status_code == 404
    # Setting it to false is fine.
    r = put(client, fresh["priv_a"], owner, is_public="False")
    assert r.status_code == 200, r.text
    assert r.json()["image"]["is_public"] is False


def test_admin_can_publicize_and_owner_can_unpublicize(
    client: httpx.Client, fresh: dict[str, Any]
) -> None:
    owner = ctx(fresh["A"])
    other = ctx(fresh["C"])
    r = put(client, fresh["priv_a"], ctx(fresh["A"], roles="admin"), is_public="True")
    assert r.status_code == 200, r.text
    assert r.json()["image"]["is_public"] is True
    assert head(client, fresh["priv_a"], other).status_code == 200
    assert fresh["priv_a"] in listed(client, other, fresh["tag"])
    r = put(client, fresh["priv_a"], owner, is_public="False")
    assert r.status_code == 200, r.text
    assert head(client, fresh["priv_a"], other).status_code == 404
    assert fresh["priv_a"] not in listed(client, other, fresh["tag"])


def test_owner_header_honoured_only_for_admins(client: httpx.Client, unique: str) -> None:
    a, b = f"a-{unique}", f"b-{unique}"
    img = make(client, ctx(a), unique, owner=b)
    assert img["owner"] == a
    r = put(client, img["id"], ctx(a), owner=b)
    assert r.status_code == 200
    assert r.json()["image"]["owner"] == a
    admin_img = make(client, ctx(f"z-{unique}", roles="admin"), unique, owner=b)
    assert admin_img["owner"] == b
    assert head(client, admin_img["id"], ctx(b)).status_code == 200
    assert admin_img["id"] in listed(client, ctx(b), unique)
    assert put(client, admin_img["id"], ctx(b), name="mine").status_code == 200
    r = put(client, admin_img["id"], ANON, owner="")
    assert r.status_code == 200
    assert r.json()["image"]["owner"] is None


# --------------------------------------------------------------------------- owner_is_tenant=false


@pytest.fixture(scope="module")
def user_owner_server() -> Iterator[GlimpseServer]:
    srv = GlimpseServer({"owner_is_tenant": "false"})
    yield srv
    srv.stop()


def test_owner_is_tenant_false_uses_user_id(user_owner_server: GlimpseServer) -> None:
    tag = uuid.uuid4().hex
    tenant = f"t-{tag}"
    u1 = ctx(tenant, user=f"u1-{tag}")
    u2 = ctx(tenant, user=f"u2-{tag}")
    u1_elsewhere = ctx(f"other-{tag}", user=f"u1-{tag}")
    with httpx.Client(base_url=user_owner_server.url, timeout=30.0) as c:
        img = make(c, u1, tag)
        assert img["owner"] == f"u1-{tag}"
        assert head(c, img["id"], u1).headers["x-image-meta-owner"] == f"u1-{tag}"
        assert listed(c, u1, tag) == {img["id"]}
        # Same tenant, different user: not the owner, cannot see a private image.
        assert listed(c, u2, tag) == set()
        assert head(c, img["id"], u2).status_code == 404
        assert put(c, img["id"], u2, name="x").status_code == 404
        # The user owns it whatever tenant it acts in.
        assert listed(c, u1_elsewhere, tag) == {img["id"]}
        assert put(c, img["id"], u1_elsewhere, name="renamed").status_code == 200
        # Members are user ids in this mode.
        share(c, img["id"], f"u2-{tag}", u1)
        assert head(c, img["id"], u2).status_code == 200
        assert listed(c, u2, tag) == {img["id"]}
        # A tenant-named membership means nothing for a user-owned world.
        other = make(c, u1, tag, name="other")
        share(c, other["id"], tenant, u1)
        assert head(c, other["id"], u2).status_code == 404

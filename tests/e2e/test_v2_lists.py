"""v2 lists over HTTP (spec §2.3, §2.9): who lists what, the filters and their operators, the
links, and the query strings refused.

The images of this module carry a custom property ``suite=<uuid>``, and every list filters on
it (a custom-property filter, as any client may send), so other tests' images stay out. Member
statuses other than accepted are set in the server's database (v1 adds accepted members; the
v2 members API is another part's), as tests/e2e/test_v1_view.py does.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.identity import ctx
from tests.service.test_v2_lists import QUERIES, ROWS

pytestmark = pytest.mark.e2e

# The service tables' callers, here as identity headers.
CALLERS = {
    "admin": ctx("root-2l", roles="admin"), "owner": ctx("alice-2l"),
    "member": ctx("bob-2l"), "stranger": ctx("carol-2l"), "anonymous": ctx(None),
}
OWNER = CALLERS["owner"]




def create(client: httpx.Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = client.post("/v2/images", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    image: dict[str, Any] = resp.json()
    return image


def get_list(client: httpx.Client, query: str, headers: dict[str, str] = OWNER,
             ) -> dict[str, Any]:
    resp = client.get(f"/v2/images?{query}", headers=headers)
    assert resp.status_code == 200, resp.text
    document: dict[str, Any] = resp.json()
    return document


@pytest.fixture(scope="module")
def world(client: httpx.Client, database: sa.Engine) -> tuple[str, dict[tuple[str, str], str]]:
    """alice's images, one per (visibility, bob's membership), in one suite."""
    suite = uuid.uuid4().hex
    made: dict[tuple[str, str], str] = {}
    for visibility, status in ROWS:
        image = create(client, CALLERS["admin"], owner="alice-2l", suite=suite,
                       name=f"{visibility}-{status}", visibility=str(visibility))
        made[str(visibility), status] = image["id"]
        if status != "none":
            resp = client.put(f"/v1/images/{image['id']}/members/bob-2l", headers=OWNER)
            assert resp.status_code == 204, resp.text
            with database.begin() as conn:
                conn.execute(sa.text("UPDATE image_members SET status = :s "
                                     "WHERE image_id = :id AND member = 'bob-2l'"),
                             {"s": status, "id": image["id"]})
    return suite, made


@pytest.mark.parametrize("role", list(CALLERS))
@pytest.mark.parametrize("query", list(QUERIES), ids=lambda q: q or "default")
def test_who_lists_what(client: httpx.Client, world: tuple[str, dict[tuple[str, str], str]],
                        query: str, role: str) -> None:
    suite, made = world
    document = get_list(client, f"suite={suite}&limit=100&{query}", CALLERS[role])
    listed = {image["id"] for image in document["images"]}
    expected = {image_id for (v, s), image_id in made.items()
                if QUERIES[query][v, s, role]}  # type: ignore[index]
    assert listed == expected
    assert "next" not in document


def test_filters_and_operators(client: httpx.Client) -> None:
    suite = uuid.uuid4().hex
    a = create(client, OWNER, suite=suite, name="foo:bar", tags=["x86", "64bit"],
               disk_format="raw", container_format="bare", os_distro="ubuntu")
    b = create(client, OWNER, suite=suite, name="a,b", tags=["x86"], protected=True)
    c = create(client, OWNER, suite=suite, name="in:x", os_hidden=True)
    names = {a["id"]: "a", b["id"]: "b", c["id"]: "c"}

    def listed(query: str) -> str:
        document = get_list(client, f"suite={suite}&{query}")
        return "".join(sorted(names[i["id"]] for i in document["images"]))

    assert listed("") == "ab"  # hidden images only when asked for
    assert listed("os_hidden=true") == "c"
    assert listed("name=foo%3Abar") == "a"  # Glance: 400 (§7.7)
    assert listed("name=eq:in:x&os_hidden=true") == "c"
    assert listed("name=in:%22a%2Cb%22,foo:bar") == "ab"
    assert listed("tag=x86&tag=64bit") == "a"
    assert listed("tag=x86") == "ab"
    assert listed("protected=true") == "b"
    assert listed("os_distro=ubuntu") == "a"
    assert listed("disk_format=in:raw,qcow2") == "a"
    assert listed("size=0") == ""  # no data: no size (an integer reaches the database)
    created = str(a["created_at"])  # as rendered: to the second
    assert "a" in listed(f"created_at={created}")
    assert "a" in listed(f"created_at=lte:{created}&created_at=gte:{created}")
    assert "a" not in listed(f"created_at=gt:{created}")
    assert listed("created_at=lt:2000-01-01") == ""


def test_links_keep_repeated_parameters_and_walk_the_list(client: httpx.Client) -> None:
    suite = uuid.uuid4().hex
    made = [create(client, OWNER, suite=suite, name=f"n{n % 2}", tags=["t", "u"])["id"]
            for n in range(5)]
    query = f"suite={suite}&tag=t&tag=u&sort_key=name&sort_key=created_at&sort_dir=asc&limit=2"
    seen: list[str] = []
    url: str | None = f"/v2/images?{query}"
    while url is not None:
        resp = client.get(url, headers=OWNER)
        assert resp.status_code == 200, resp.text
        document = resp.json()
        seen += [i["id"] for i in document["images"]]
        first = parse_qsl(urlsplit(document["first"]).query)
        assert first == parse_qsl(query)  # every tag and sort_key, in order, no marker
        url = document.get("next")
        if url is not None:
            assert parse_qsl(urlsplit(url).query)[:-1] == first
    assert sorted(seen) == sorted(made) and len(seen) == 5
    names = [i["name"] for i in get_list(client, query.replace("limit=2", "limit=9"))["images"]]
    assert names == sorted(names)


@pytest.mark.parametrize("query", [
    "limit=-1", "limit=x", "limit=1&limit=2", "visibility=everyone", "member_status=maybe",
    "sort=name&sort_key=name", "sort=owner", "sort_key=name&sort_key=size&sort_dir=asc"
    "&sort_dir=desc&sort_dir=asc", "sort=name:sideways", "protected=yes", "os_hidden=2",
    "size=big", "size_min=x", "name=gt:x", "created_at=2020-13-01", "created_at=soon:2020-01-01",
    "changes-since=2020-01-01", "deleted=true", 'name=in:"a',
    "marker=9c732e22-f0ab-42ce-87ac-b785dc2e7646",
    "name=%FF", "%FF=x", "name=a%00b", "&".join(["tag=x"] * 101),
])
def test_refused_queries_are_400(client: httpx.Client, query: str) -> None:
    resp = client.get(f"/v2/images?{query}", headers={**OWNER, "Accept": "application/json"})
    assert resp.status_code == 400, resp.text


def test_a_huge_value_is_only_a_value(client: httpx.Client) -> None:
    document = get_list(client, f"name={'x' * 8000}&{'y' * 2000}=z")
    assert document["images"] == []

"""v2 lists through the service (spec v2-api.md §2.3, §2.9): the query a v2 request parses to
(glimpse.api.v2.query, a pure function) handed to ``ImageService.list_images``, as the v2
handler does.

The tables are caller x (visibility, bob's membership) -> listed ("L") or not ("-"), as in
test_access.py: every image is alice's (OWNER), active, and carries bob's (MEMBER) membership
in the column's status ("none": no membership). One table per query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from glimpse.api.v2.query import decode_query, page_links, parse_list_query
from glimpse.domain.data import Upload
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import Image, Principal, Visibility
from glimpse.errors import Invalid
from tests.service.conftest import (
    ADMIN,
    OWNER,
    ROLES,
    STRANGER,
    Services,
    build_services,
    make_store,
    new_id,
)
from tests.service.test_access import STATUSES

PUB, COM, SHA, PRI = Visibility.PUBLIC, Visibility.COMMUNITY, Visibility.SHARED, Visibility.PRIVATE
# Rows: (visibility, bob's membership). Columns: the callers.
ROWS = [(v, s) for v in (PUB, COM, SHA, PRI) for s in STATUSES]
COLUMNS = ("admin", "owner", "member", "stranger", "anonymous")


def table(text: str) -> dict[tuple[Visibility, str, str], bool]:
    """(visibility, membership, role) -> listed, from 16 rows of five cells."""
    lines = [line.split() for line in text.strip().splitlines()]
    assert len(lines) == len(ROWS)
    out = {}
    for (visibility, status), cells in zip(ROWS, lines, strict=True):
        assert cells[:2] == [str(visibility), status], cells
        for role, cell in zip(COLUMNS, cells[2:], strict=True):
            assert cell in ("L", "-")
            out[visibility, status, role] = cell == "L"
    return out


#                      admin owner member stranger anon
DEFAULT = table("""
public    none         L     L     L      L        L
public    pending      L     L     L      L        L
public    accepted     L     L     L      L        L
public    rejected     L     L     L      L        L
community none         -     L     -      -        -
community pending      -     L     -      -        -
community accepted     -     L     -      -        -
community rejected     -     L     -      -        -
shared    none         L     L     -      -        -
shared    pending      L     L     -      -        -
shared    accepted     L     L     L      -        -
shared    rejected     L     L     -      -        -
private   none         L     L     -      -        -
private   pending      L     L     -      -        -
private   accepted     L     L     -      -        -
private   rejected     L     L     -      -        -
""")
# Everything each caller may list: community images of other owners too.
ALL = table("""
public    none         L     L     L      L        L
public    pending      L     L     L      L        L
public    accepted     L     L     L      L        L
public    rejected     L     L     L      L        L
community none         L     L     L      L        L
community pending      L     L     L      L        L
community accepted     L     L     L      L        L
community rejected     L     L     L      L        L
shared    none         L     L     -      -        -
shared    pending      L     L     -      -        -
shared    accepted     L     L     L      -        -
shared    rejected     L     L     -      -        -
private   none         L     L     -      -        -
private   pending      L     L     -      -        -
private   accepted     L     L     -      -        -
private   rejected     L     L     -      -        -
""")
# member_status picks the memberships that list a shared image; own and public images stay.
PENDING = table("""
public    none         L     L     L      L        L
public    pending      L     L     L      L        L
public    accepted     L     L     L      L        L
public    rejected     L     L     L      L        L
community none         -     L     -      -        -
community pending      -     L     -      -        -
community accepted     -     L     -      -        -
community rejected     -     L     -      -        -
shared    none         L     L     -      -        -
shared    pending      L     L     L      -        -
shared    accepted     L     L     -      -        -
shared    rejected     L     L     -      -        -
private   none         L     L     -      -        -
private   pending      L     L     -      -        -
private   accepted     L     L     -      -        -
private   rejected     L     L     -      -        -
""")
# Any status: every membership of a shared image (private images' memberships never count).
ANY_MEMBERSHIP = table("""
public    none         L     L     L      L        L
public    pending      L     L     L      L        L
public    accepted     L     L     L      L        L
public    rejected     L     L     L      L        L
community none         -     L     -      -        -
community pending      -     L     -      -        -
community accepted     -     L     -      -        -
community rejected     -     L     -      -        -
shared    none         L     L     -      -        -
shared    pending      L     L     L      -        -
shared    accepted     L     L     L      -        -
shared    rejected     L     L     L      -        -
private   none         L     L     -      -        -
private   pending      L     L     -      -        -
private   accepted     L     L     -      -        -
private   rejected     L     L     -      -        -
""")


def only(visibility: Visibility, base: dict[tuple[Visibility, str, str], bool],
         ) -> dict[tuple[Visibility, str, str], bool]:
    """A visibility=X list: X's rows of ``base`` (what the caller may list), nothing else."""
    return {key: listed and key[0] is visibility for key, listed in base.items()}


QUERIES = {
    "": DEFAULT,
    "visibility=all": ALL,
    "visibility=public": only(PUB, DEFAULT),
    "visibility=community": only(COM, ALL),
    "visibility=shared": only(SHA, DEFAULT),
    "visibility=private": only(PRI, DEFAULT),
    "member_status=accepted": DEFAULT,
    "member_status=pending": PENDING,
    "member_status=rejected": {
        **PENDING,
        **{(SHA, s, "member"): s == "rejected" for s in STATUSES},
    },
    "member_status=all": ANY_MEMBERSHIP,
    "visibility=shared&member_status=all": only(SHA, ANY_MEMBERSHIP),
    "visibility=all&member_status=pending": {**ALL, **{k: v for k, v in PENDING.items()
                                                       if k[0] is SHA}},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory,
          template_db: Path) -> Iterator[tuple[Services, dict[tuple[Visibility, str], Image]]]:
    directory = tmp_path_factory.mktemp("v2lists")
    services = build_services(directory, template_db, make_store(directory / "images"))
    images = {(v, s): services.shared(v, STATUSES[s], name=f"{v}-{s}") for v, s in ROWS}
    yield services, images
    services.engine.dispose()


World = tuple[Services, dict[tuple[Visibility, str], Image]]


def v2_list(services: Services, principal: Principal, query: str,
            marker: str | None = None) -> list[Image]:
    """What ``GET /v2/images?<query>`` lists: the handler's three calls."""
    params = decode_query(query.encode())
    v2list = parse_list_query(params, 25, 1000)
    return services.images.list_images(principal, v2list.query,
                                       marker if marker is not None else v2list.marker)


def v2_ids(services: Services, principal: Principal, query: str) -> list[str]:
    return [i.id for i in v2_list(services, principal, query)]


def test_tables_agree_with_reading() -> None:
    """Whoever lists an image may read it (test_access's READ table): a guard against a
    typo in a cell."""
    from tests.service.test_access import READ

    for expected in QUERIES.values():
        for (visibility, status, role), listed in expected.items():
            if listed:
                assert READ[visibility, role, status] == "ok", (visibility, status, role)


@pytest.mark.parametrize("role", COLUMNS)
@pytest.mark.parametrize("query", list(QUERIES), ids=lambda q: q or "default")
def test_who_lists_what(world: World, query: str, role: str) -> None:
    services, images = world
    listed = set(v2_ids(services, ROLES[role], f"limit=1000&{query}"))
    expected = {image.id for (v, s), image in images.items() if QUERIES[query][v, s, role]}
    assert listed == expected


def test_visibility_filters_within_what_the_caller_may_see(world: World) -> None:
    services, images = world
    # Bob's community and private images are not there; alice's are, for alice only.
    assert v2_ids(services, STRANGER, "visibility=private") == []
    assert set(v2_ids(services, OWNER, "visibility=private")) == {
        i.id for (v, _), i in images.items() if v is PRI}


# -- what is never listed, hidden images, filters ---------------------------------------------


def test_killed_and_deleted_images_are_never_listed(svc: Services) -> None:
    live = svc.create(visibility=COM)
    killed = svc.create(data=None)
    with pytest.raises(RuntimeError):
        svc.images.update(OWNER, killed.id, [], upload=Upload(_failing(), None),
                          on_failure=FailureRule.KILL)
    deleted = svc.create()
    svc.images.delete(OWNER, deleted.id)
    for who in (OWNER, ADMIN):
        for query in ("", "visibility=all", "member_status=all", "status=killed",
                      "status=deleted", "status=in:killed,deleted,active"):
            assert set(v2_ids(svc, who, query)) <= {live.id}, (who, query)


def test_hidden_images_are_listed_only_when_asked(svc: Services) -> None:
    shown, hidden = svc.create(), svc.create(os_hidden=True)
    assert v2_ids(svc, OWNER, "") == [shown.id]
    assert v2_ids(svc, OWNER, "os_hidden=false") == [shown.id]
    assert v2_ids(svc, OWNER, "os_hidden=TRUE") == [hidden.id]
    assert v2_ids(svc, ADMIN, "os_hidden=true") == [hidden.id]
    assert svc.images.get(OWNER, hidden.id).os_hidden  # still shown by id


def test_filters(svc: Services) -> None:
    a = svc.create(data=b"1", name="foo:bar", tags=["x86", "64bit"],
                   properties={"os_distro": "ubuntu"})
    b = svc.create(data=b"22", name="in:x", tags=["x86"], disk_format="qcow2", protected=True,
                   properties={"os_distro": "debian"})
    c = svc.create(data=None, name="a,b", container_format="ovf")
    ids = {a.id: "a", b.id: "b", c.id: "c"}

    def listed(query: str) -> str:
        return "".join(sorted(ids[i] for i in v2_ids(svc, OWNER, query)))

    assert listed("name=foo:bar") == "a"
    assert listed("name=eq:in:x") == "b"
    assert listed("name=in:x") == ""  # the list ["x"]
    assert listed('name=in:"a,b",foo:bar') == "ac"
    assert listed(f"id=in:{a.id},{c.id}") == "ac"
    assert listed("status=queued") == "c"
    assert listed("status=in:active,queued") == "abc"
    assert listed("disk_format=qcow2") == "b"
    assert listed("container_format=eq:ovf") == "c"
    assert listed("size=2") == "b"
    assert listed("size_min=1") == "ab"  # c has no size: within no bounds
    assert listed("size_max=1") == "a"
    assert listed("size_min=1&size_max=1") == "a"
    assert listed("protected=true") == "b"
    assert listed("protected=false") == "ac"
    assert listed("tag=x86") == "ab"
    assert listed("tag=x86&tag=64bit") == "a"
    assert listed("tag=nothing") == ""
    assert listed("os_distro=ubuntu") == "a"
    assert listed("os_distro=ubuntu&os_distro=debian") == ""
    assert listed("owner=alice") == "abc"
    assert listed("owner=bob") == ""
    assert listed("checksum=b6d767d2f8ed5d21a44b0e5886680cb9") == "b"  # md5(b"22")
    assert listed(f"os_hash_value={a.os_hash_value}") == "a"
    assert listed("os_hash_algo=sha512") == "ab"
    assert listed("min_ram=0&min_disk=0") == "abc"
    for bad in ("size=big", "size_min=x", "protected=yes", "name=gt:x", "changes-since=2020"):
        with pytest.raises(Invalid):
            v2_ids(svc, OWNER, bad)


def test_timestamps_compare_with_the_span_they_name(svc: Services) -> None:
    """A timestamp as v2 renders it (to the second) names that second: eq matches the image
    it was read from, though the image's time has microseconds."""
    image = svc.create()
    stamp = image.created_at
    rendered = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert v2_ids(svc, OWNER, f"created_at={rendered}") == [image.id]
    assert v2_ids(svc, OWNER, f"created_at=eq:{rendered}") == [image.id]
    assert v2_ids(svc, OWNER, f"created_at=gte:{rendered}") == [image.id]
    assert v2_ids(svc, OWNER, f"created_at=lte:{rendered}") == [image.id]
    assert v2_ids(svc, OWNER, f"created_at=gt:{rendered}") == []
    assert v2_ids(svc, OWNER, f"created_at=lt:{rendered}") == []
    assert v2_ids(svc, OWNER, f"created_at=neq:{rendered}") == []
    day = stamp.date().isoformat()
    assert v2_ids(svc, OWNER, f"updated_at=eq:{day}") == [image.id]
    later = (stamp + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S%%2B00:00")  # +00:00
    assert v2_ids(svc, OWNER, f"created_at=lt:{later}&created_at=gte:{day}") == [image.id]


# -- paging through the links -------------------------------------------------------------------


def test_pages_follow_next_links_to_the_end(svc: Services) -> None:
    made = [svc.create(name=f"n{n % 3}", tags=["t"]).id for n in range(7)]
    svc.create(name="untagged")
    query = "tag=t&sort_key=name&sort_dir=asc&sort_key=created_at&limit=3&tag=t"
    whole = v2_ids(svc, OWNER, query.replace("limit=3", "limit=100"))
    assert sorted(whole) == sorted(made)
    link: str | None = f"/v2/images?{query}"
    seen: list[str] = []
    firsts = set()
    while link is not None:
        params = decode_query(urlsplit(link).query.encode())
        v2list = parse_list_query(params, 25, 1000)
        page = svc.images.list_images(OWNER, v2list.query, v2list.marker)
        seen += [i.id for i in page]
        first, link = page_links(params, page, v2list.query.limit)
        firsts.add(first)
    assert seen == whole
    assert len(firsts) == 1  # the same first link from every page


def test_markers(svc: Services) -> None:
    mine, theirs = svc.create(), svc.create(STRANGER, visibility=PRI)
    with pytest.raises(Invalid, match="marker"):
        v2_list(svc, OWNER, "", marker=new_id())
    with pytest.raises(Invalid, match="marker"):
        v2_list(svc, OWNER, "", marker=theirs.id)  # invisible to alice
    with pytest.raises(Invalid, match="marker"):
        v2_list(svc, OWNER, "marker=")
    with pytest.raises(Invalid, match="marker"):
        v2_list(svc, OWNER, "marker=" + "x" * 1000)
    assert v2_ids(svc, OWNER, f"marker={mine.id}") == []
    deleted = svc.create()
    svc.images.delete(OWNER, deleted.id)
    with pytest.raises(Invalid, match="marker"):
        v2_list(svc, OWNER, f"marker={deleted.id}")


def _failing() -> Iterator[bytes]:
    yield b"x"
    raise RuntimeError("gone")

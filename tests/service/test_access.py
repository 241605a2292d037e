"""Who may do what: visibility x the member tenant's membership x caller, for every read, write
and membership operation, written as tables from the rules (glimpse/domain/policy.py,
members.py; the intended v2 matrix is spec v2-api.md §2.9).

Every image is OWNER's (alice), active, and carries MEMBER's (bob) membership in the column's
status ("none": no membership). Cells: "ok"; "404" NotFound (invisible, never Forbidden);
"403" Forbidden (visible, not allowed); "401" Unauthenticated; for lists "L" listed, "-" not.

Where the domain differs from v2's default policy (it serves v1 today), the table says what
the domain does and a comment says how v2 differs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import Image, MemberStatus, Scope, SetFields, Visibility
from glimpse.errors import Forbidden, GlimpseError, NotFound, Unauthenticated
from tests.service.conftest import (
    ADMIN,
    MEMBER,
    OWNER,
    ROLES,
    STRANGER,
    Services,
    build_services,
    make_store,
    read,
)

PUB, COM, SHA, PRI = Visibility.PUBLIC, Visibility.COMMUNITY, Visibility.SHARED, Visibility.PRIVATE
STATUSES: dict[str, MemberStatus | None] = {
    "none": None, "pending": MemberStatus.PENDING, "accepted": MemberStatus.ACCEPTED,
    "rejected": MemberStatus.REJECTED,
}
# The columns of every table: the member tenant once per membership status, the others once
# (their outcome must not depend on bob's membership: each is checked under all four).
COLUMNS = ("admin", "owner", "member:none", "member:pending", "member:accepted",
           "member:rejected", "stranger", "anonymous")


def table(rows: dict[Visibility, str]) -> dict[tuple[Visibility, str, str], str]:
    """(visibility, role, membership) -> expected cell."""
    out = {}
    for visibility, row in rows.items():
        cells = dict(zip(COLUMNS, row.split(), strict=True))
        for role in ROLES:
            for status in STATUSES:
                column = f"member:{status}" if role == "member" else role
                out[visibility, role, status] = cells[column]
    return out


#                 admin owner  bob:none pend  acc   rej   stranger anon
READ = table({
    PUB:          "ok    ok     ok       ok    ok    ok    ok       ok",
    COM:          "ok    ok     ok       ok    ok    ok    ok       ok",
    # Members read a shared image whatever their membership's status (v2 §2.9 agrees).
    SHA:          "ok    ok     404      ok    ok    ok    404      404",
    # A membership has no effect while the image is not shared.
    PRI:          "ok    ok     404      404   404   404   404      404",
})
# The default list (Scope.VISIBLE): public, own, and shared with an accepted membership.
LIST = table({
    # The admin's default list is v1's (is_public=true: public and its own); v2 lists
    # everything but others' community images for admins.
    PUB:          "L     L      L        L     L     L     L        L",
    COM:          "-     L      -        -     -     -     -        -",
    SHA:          "-     L      -        -     L     -     -        -",
    PRI:          "-     L      -        -     -     -     -        -",
})
# Changing or deleting the image: the owner and admins; the others get 403 where they see it.
WRITE = table({
    PUB:          "ok    ok     403      403   403   403   403      403",
    COM:          "ok    ok     403      403   403   403   403      403",
    # v2 agrees: members 403, strangers 404.
    SHA:          "ok    ok     404      403   403   403   404      404",
    PRI:          "ok    ok     404      404   404   404   404      404",
})
# The memberships a caller is shown: "all" (every one), "own" (its own), "-" (none), 404, or
# 403 where get_members refuses: it needs the caller to own the image or to be named its
# member, which Glance's target does only for a shared image. The domain lists members of
# images of every visibility (v1 does); v2 answers 403 for an image that is not shared. The
# anonymous caller (no project) passes the rule as oslo.policy would ('None' == 'None', the
# target's member_id being None) and is shown nothing.
MEMBERS = table({
    PUB:          "all   all    403      403   403   403   403      -",
    COM:          "all   all    403      403   403   403   403      -",
    SHA:          "all   all    404      own   own   own   404      404",
    PRI:          "all   all    404      404   404   404   404      404",
})
# Adding or removing a membership (bob without can_share): the owner and admins. Others get
# 404 even where they see the image (the reference's answer, Q5); an anonymous caller 401.
# v2 answers 403 to a visible non-owner, and 403 for an image that is not shared: the domain
# shares images of every visibility.
SHARE = table({
    PUB:          "ok    ok     404      404   404   404   404      401",
    COM:          "ok    ok     404      404   404   404   404      401",
    SHA:          "ok    ok     404      404   404   404   404      401",
    PRI:          "ok    ok     404      404   404   404   404      401",
})
# bob with can_share (v1): shares wherever he sees the image.
SHARE_CAN_SHARE = {PUB: "ok", COM: "ok", SHA: "ok", PRI: "404"}

CASES = [(v, r, s) for v in Visibility for r in ROLES for s in STATUSES]
CASE_IDS = [f"{v}-{r}-{s}" for v, r, s in CASES]

ERRORS: dict[str, type[GlimpseError]] = {
    "404": NotFound, "403": Forbidden, "401": Unauthenticated,
}


def outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except GlimpseError as exc:
        for cell, kind in ERRORS.items():
            if type(exc) is kind:
                return cell
        raise
    return "ok"


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, template_db: Path
) -> Iterator[tuple[Services, dict[tuple[Visibility, str], Image]]]:
    """One database for the whole module: the read matrix shares one image per visibility and
    membership; write tests make their own images in it."""
    directory = tmp_path_factory.mktemp("access")
    services = build_services(directory, template_db, make_store(directory / "images"))
    images = {(v, s): services.shared(v, STATUSES[s], name=f"{v}-{s}")
              for v in Visibility for s in STATUSES}
    yield services, images
    services.engine.dispose()


World = tuple[Services, dict[tuple[Visibility, str], Image]]


def test_tables_follow_visibility_rules() -> None:
    """The tables agree with each other: whoever may write may read, and whoever lists an
    image may read it (a cheap guard against a typo in a cell)."""
    for case in READ:
        if WRITE[case] == "ok" or LIST[case] == "L" or MEMBERS[case] != "404":
            assert READ[case] == "ok", case
        assert (READ[case] == "404") == (WRITE[case] == "404") == (MEMBERS[case] == "404"), case


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_get(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, images = world
    image = images[visibility, status]
    cell = outcome(lambda: services.images.get(ROLES[role], image.id))
    assert cell == READ[visibility, role, status]


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_open_data(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, images = world
    image = images[visibility, status]
    got: list[bytes] = []
    cell = outcome(lambda: got.append(read(services.images.open_data(ROLES[role], image.id))))
    assert cell == READ[visibility, role, status]
    assert got == ([b"data"] if cell == "ok" else [])


@pytest.mark.parametrize("role", ROLES)
def test_default_list(world: World, role: str) -> None:
    services, images = world
    listed = set(services.listed(ROLES[role]))
    expected = {image.id for (v, s), image in images.items() if LIST[v, role, s] == "L"}
    assert listed & {i.id for i in images.values()} == expected


@pytest.mark.parametrize(("scope", "visibilities"), [
    (Scope.ALL, set(Visibility)),
    (Scope.NON_PUBLIC, {COM, SHA, PRI}),
    (Scope.VISIBLE, {PUB}),
])
def test_admin_list_scopes(world: World, scope: Scope, visibilities: set[Visibility]) -> None:
    services, images = world
    listed = set(services.listed(ADMIN, scope=scope)) & {i.id for i in images.values()}
    assert listed == {i.id for (v, _), i in images.items() if v in visibilities}


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
@pytest.mark.parametrize("scope", [Scope.ALL, Scope.NON_PUBLIC])
def test_non_admins_list_what_they_see_whatever_scope_they_ask(
    world: World, role: str, scope: Scope
) -> None:
    services, _ = world
    assert services.listed(ROLES[role], scope=scope) == services.listed(ROLES[role])


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_list_members(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, images = world
    image = images[visibility, status]
    shown: list[list[str]] = []
    cell = outcome(lambda: shown.append(
        [m.member_id for m in services.members.list_members(ROLES[role], image.id)]))
    expected = MEMBERS[visibility, role, status]
    if expected in ("403", "404"):
        assert cell == expected
        return
    assert cell == "ok"
    has_bob = STATUSES[status] is not None
    assert shown == [{"all": ["bob"] if has_bob else [], "own": ["bob"], "-": []}[expected]]


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_get_member(world: World, visibility: Visibility, role: str, status: str) -> None:
    """One membership, by id: whoever is shown it in the list, and nobody else."""
    services, images = world
    image = images[visibility, status]
    cell = outcome(lambda: services.members.get(ROLES[role], image.id, "bob"))
    shown = MEMBERS[visibility, role, status]
    has_bob = STATUSES[status] is not None
    assert cell == ("ok" if shown in ("all", "own") and has_bob else
                    "403" if shown == "403" else "404")


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_update(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status], name="before")
    cell = outcome(lambda: services.images.update(
        ROLES[role], image.id, [SetFields({"name": "after"})], on_failure=FailureRule.KILL))
    assert cell == WRITE[visibility, role, status]
    after = services.images.get(ADMIN, image.id)
    assert after.name == ("after" if cell == "ok" else "before")


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_delete(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status])
    cell = outcome(lambda: services.images.delete(ROLES[role], image.id))
    assert cell == WRITE[visibility, role, status]
    assert services.images.get(ADMIN, image.id).deleted is (cell == "ok")
    assert (image.id in services.stored()) is (cell != "ok")


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_add_member(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status])
    before = services.repo.members(image.id)
    cell = outcome(lambda: services.members.add(ROLES[role], image.id, "dave", None,
                                                MemberStatus.PENDING))
    assert cell == SHARE[visibility, role, status]
    after = {m.member_id: m.status for m in services.repo.members(image.id)}
    if cell == "ok":
        assert after == {**{m.member_id: m.status for m in before},
                         "dave": MemberStatus.PENDING}
    else:
        assert services.repo.members(image.id) == before


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_remove_member(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status])
    services.members.add(OWNER, image.id, "dave", None, MemberStatus.ACCEPTED)
    cell = outcome(lambda: services.members.remove(ROLES[role], image.id, "dave"))
    assert cell == SHARE[visibility, role, status]
    remaining = {m.member_id for m in services.repo.members(image.id)}
    assert ("dave" in remaining) is (cell != "ok")


@pytest.mark.parametrize(("visibility", "status"),
                         [(v, s) for v in Visibility for s in STATUSES if s != "none"])
def test_member_with_can_share_shares_where_it_sees(
    world: World, visibility: Visibility, status: str
) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status], can_share=True)
    added = outcome(lambda: services.members.add(MEMBER, image.id, "dave", None,
                                                 MemberStatus.ACCEPTED))
    expected = SHARE_CAN_SHARE[visibility]
    assert added == expected
    services.members.add(OWNER, image.id, "erin", None, MemberStatus.ACCEPTED)
    assert outcome(lambda: services.members.remove(MEMBER, image.id, "erin")) == expected
    # A sharer is still not the owner: the image itself stays out of its reach.
    assert outcome(lambda: services.images.update(
        MEMBER, image.id, [SetFields({"name": "x"})], on_failure=FailureRule.KILL
    )) == ("404" if expected == "404" else "403")


def test_stranger_sees_nothing_of_other_memberships(world: World) -> None:
    services, images = world
    for (visibility, _), image in images.items():
        if visibility in (PUB, COM):
            with pytest.raises(Forbidden):
                services.members.list_members(STRANGER, image.id)


def test_shared_images_of_a_member(svc: Services) -> None:
    """Which memberships naming a tenant a caller is shown: the tenant itself and admins all,
    an owner those on its own images, an anonymous caller none."""
    mine = svc.shared(SHA, MemberStatus.PENDING)
    theirs = svc.create(STRANGER)
    svc.members.add(STRANGER, theirs.id, "bob", None, MemberStatus.ACCEPTED)
    shown = {
        role: [m.image_id for m in svc.members.shared_images(principal, "bob")]
        for role, principal in ROLES.items()
    }
    assert shown == {
        "admin": [mine.id, theirs.id], "member": [mine.id, theirs.id], "owner": [mine.id],
        "stranger": [theirs.id], "anonymous": [],
    }


def test_ownerless_images_are_seen_by_all_listed_by_none_changed_by_admins(
    svc: Services,
) -> None:
    """An image without an owner (made by an anonymous caller) is visible to everyone, as v1's
    reference has it, yet listed only in an admin's ALL scope. Admins may change it, and so
    may callers without a project: the rules compare projects as oslo.policy does, and
    'None' is 'None' (only noauth mode has such callers)."""
    image = svc.create(ROLES["anonymous"], data=None)
    assert image.owner is None and image.visibility is SHA
    for role, principal in ROLES.items():
        assert svc.images.get(principal, image.id).id == image.id
        assert image.id not in svc.listed(principal), role
        rename = functools.partial(svc.images.update, principal, image.id,
                                   [SetFields({"name": "x"})], on_failure=FailureRule.KILL)
        assert outcome(rename) == ("ok" if role in ("admin", "anonymous") else "403")
    assert image.id in svc.listed(ADMIN, scope=Scope.ALL)


@pytest.mark.parametrize("visibility", list(Visibility))
def test_shared_images_leave_out_private_ones(svc: Services, visibility: Visibility) -> None:
    """A private image's memberships are kept but have no effect: the member neither reads
    it nor finds it among the images shared with it."""
    image = svc.shared(visibility, MemberStatus.ACCEPTED)
    listed = [m.image_id for m in svc.members.shared_images(MEMBER, "bob")]
    assert listed == ([] if visibility is Visibility.PRIVATE else [image.id])

"""v2's membership operations (spec v2-api.md §2.9): visibility x the member tenant's
membership x caller, as tables in the form of test_access.py, then what each operation leaves.

Every image is OWNER's (alice), active, and carries MEMBER's (bob) membership in the column's
status ("none": no membership). Cells: "ok"; "404" NotFound (invisible, or a membership the
caller is not shown); "403" Forbidden (visible, not allowed, or the image is not shared).
For reads: "all" (every membership), "own" (the caller's own).

v1's add/replace/remove keep their rules (test_access.py SHARE): images of any visibility,
404 to whoever may not share.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import Command, Image, Member, MemberStatus, SetFields, Visibility
from glimpse.errors import Conflict, Forbidden, Invalid, NotFound, OverLimit
from tests.service.conftest import (
    ADMIN,
    MEMBER,
    OWNER,
    ROLES,
    STRANGER,
    ServiceFactory,
    Services,
    build_services,
    make_store,
)
from tests.service.test_access import CASE_IDS, CASES, READ, STATUSES, outcome, table

PUB, COM, SHA, PRI = Visibility.PUBLIC, Visibility.COMMUNITY, Visibility.SHARED, Visibility.PRIVATE

#                 admin owner  bob:none pend  acc   rej   stranger anon
# Listing (and showing) with shared_only: 403 wherever the image is seen but not shared.
LIST_V2 = table({
    PUB:          "403   403    403      403   403   403   403      403",
    COM:          "403   403    403      403   403   403   403      403",
    SHA:          "all   all    404      own   own   own   404      404",
    PRI:          "403   403    404      404   404   404   404      404",
})
# Inviting and uninviting "dave": the owner and admins, of a shared image only; a member (or
# anyone who sees the image) 403; whoever does not see it 404.
CHANGE_V2 = table({
    PUB:          "403   403    403      403   403   403   403      403",
    COM:          "403   403    403      403   403   403   403      403",
    SHA:          "ok    ok     404      403   403   403   404      404",
    PRI:          "403   403    404      404   404   404   404      404",
})
# Setting the status of bob's membership: bob itself and admins; the owner 403. (Where bob
# has none, the admin and owner cells read 404: test_set_status_of_a_missing_membership.)
SET_BOB = table({
    PUB:          "403   403    403      403   403   403   403      403",
    COM:          "403   403    403      403   403   403   403      403",
    SHA:          "ok    403    404      ok    ok    ok    404      404",
    PRI:          "403   403    404      404   404   404   404      404",
})
# Setting the status of dave's (pending) membership, which is not the caller's: admins only;
# the owner 403; bob is not shown it (404).
SET_DAVE = table({
    PUB:          "403   403    403      403   403   403   403      403",
    COM:          "403   403    403      403   403   403   403      403",
    SHA:          "ok    403    404      404   404   404   404      404",
    PRI:          "403   403    404      404   404   404   404      404",
})

World = tuple[Services, dict[tuple[Visibility, str], Image]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("v2-members")
    services = build_services(directory, template_db, make_store(directory / "images"))
    images = {(v, s): services.shared(v, STATUSES[s], name=f"{v}-{s}")
              for v in Visibility for s in STATUSES}
    yield services, images
    services.engine.dispose()


def test_tables_agree_with_the_read_rules() -> None:
    """Whoever does not see the image (404 in test_access READ) gets 404 from every v2
    operation too, and the image being not shared is 403 to everyone who sees it."""
    for case in READ:
        invisible = READ[case] == "404"
        for name, cells in (("list", LIST_V2), ("change", CHANGE_V2), ("bob", SET_BOB),
                            ("dave", SET_DAVE)):
            assert (cells[case] == "404") >= invisible, (name, case)
            if case[0] is not SHA and not invisible:
                assert cells[case] == "403", (name, case)


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_list_members_shared_only(
    world: World, visibility: Visibility, role: str, status: str
) -> None:
    services, images = world
    image = images[visibility, status]
    shown: list[list[str]] = []
    cell = outcome(lambda: shown.append([m.member_id for m in services.members.list_members(
        ROLES[role], image.id, shared_only=True)]))
    expected = LIST_V2[visibility, role, status]
    if expected in ("403", "404"):
        assert cell == expected
        return
    assert cell == "ok"
    has_bob = STATUSES[status] is not None
    assert shown == [["bob"] if has_bob else []]


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_get_member_shared_only(
    world: World, visibility: Visibility, role: str, status: str
) -> None:
    services, images = world
    image = images[visibility, status]
    cell = outcome(lambda: services.members.get(ROLES[role], image.id, "bob", shared_only=True))
    expected = LIST_V2[visibility, role, status]
    if expected in ("all", "own"):
        expected = "ok" if STATUSES[status] is not None else "404"
    assert cell == expected


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_invite(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status])
    before = services.repo.members(image.id)
    invited: list[Member] = []
    cell = outcome(lambda: invited.append(
        services.members.invite(ROLES[role], image.id, "dave")))
    assert cell == CHANGE_V2[visibility, role, status]
    if cell == "ok":
        (dave,) = invited
        assert (dave.image_id, dave.member_id, dave.status) == (
            image.id, "dave", MemberStatus.PENDING)
        assert dave.created_at is not None and dave.created_at == dave.updated_at
        assert services.repo.members(image.id) == [*before, dave]
    else:
        assert services.repo.members(image.id) == before


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_uninvite(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status])
    services.members.add(OWNER, image.id, "dave", None, MemberStatus.ACCEPTED)
    cell = outcome(lambda: services.members.uninvite(ROLES[role], image.id, "dave"))
    assert cell == CHANGE_V2[visibility, role, status]
    remaining = {m.member_id for m in services.repo.members(image.id)}
    assert ("dave" in remaining) is (cell != "ok")


@pytest.mark.parametrize(("visibility", "role", "status"),
                         [c for c in CASES if c[1] == "member" or c[2] != "none"],
                         ids=[i for c, i in zip(CASES, CASE_IDS, strict=True)
                              if c[1] == "member" or c[2] != "none"])
def test_set_status_of_bob(world: World, visibility: Visibility, role: str, status: str) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status])
    before = services.repo.members(image.id)
    cell = outcome(lambda: services.members.set_status(ROLES[role], image.id, "bob",
                                                       MemberStatus.REJECTED))
    assert cell == SET_BOB[visibility, role, status]
    after = {m.member_id: m.status for m in services.repo.members(image.id)}
    if cell == "ok":
        assert after == {"bob": MemberStatus.REJECTED}
    else:
        assert services.repo.members(image.id) == before


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_set_status_of_another_member(
    world: World, visibility: Visibility, role: str, status: str
) -> None:
    services, _ = world
    image = services.shared(visibility, STATUSES[status])
    services.members.add(OWNER, image.id, "dave", None, MemberStatus.PENDING)
    before = services.repo.members(image.id)
    cell = outcome(lambda: services.members.set_status(ROLES[role], image.id, "dave",
                                                       MemberStatus.ACCEPTED))
    assert cell == SET_DAVE[visibility, role, status]
    dave = next(m for m in services.repo.members(image.id) if m.member_id == "dave")
    if cell == "ok":
        assert dave.status is MemberStatus.ACCEPTED
    else:
        assert services.repo.members(image.id) == before


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_set_status_of_a_missing_membership(svc: Services, role: str) -> None:
    image = svc.shared(SHA, None)
    with pytest.raises(NotFound):
        svc.members.set_status(ROLES[role], image.id, "bob", MemberStatus.ACCEPTED)


# -- what the operations leave -------------------------------------------------------------


def _shared(svc: Services) -> Image:
    return svc.shared(SHA, None)


def test_invite_starts_pending_and_any_status_follows_any_other(svc: Services) -> None:
    image = _shared(svc)
    invited = svc.members.invite(OWNER, image.id, "bob")
    assert invited.status is MemberStatus.PENDING
    previous = invited
    # Every ordered pair, including a status set again to itself.
    walk = [MemberStatus.ACCEPTED, MemberStatus.ACCEPTED, MemberStatus.REJECTED,
            MemberStatus.PENDING, MemberStatus.REJECTED, MemberStatus.ACCEPTED,
            MemberStatus.PENDING, MemberStatus.PENDING]
    for status in walk:
        changed = svc.members.set_status(MEMBER, image.id, "bob", status)
        assert changed.status is status
        assert changed.created_at == invited.created_at
        assert _later(changed.updated_at, previous.updated_at)
        assert svc.members.get(MEMBER, image.id, "bob", shared_only=True) == changed
        previous = changed


def test_a_member_sees_the_image_whatever_its_status_lists_it_once_accepted(
    svc: Services,
) -> None:
    image = _shared(svc)
    svc.members.invite(OWNER, image.id, "bob")
    for status in (MemberStatus.PENDING, MemberStatus.REJECTED, MemberStatus.ACCEPTED):
        if status is not MemberStatus.PENDING:
            svc.members.set_status(MEMBER, image.id, "bob", status)
        assert svc.images.get(MEMBER, image.id).id == image.id
        assert (image.id in svc.listed(MEMBER)) is (status is MemberStatus.ACCEPTED)


def test_reinvited_member_starts_pending(svc: Services) -> None:
    image = _shared(svc)
    svc.members.invite(OWNER, image.id, "bob")
    svc.members.set_status(MEMBER, image.id, "bob", MemberStatus.ACCEPTED)
    svc.members.uninvite(OWNER, image.id, "bob")
    with pytest.raises(NotFound):
        svc.images.get(MEMBER, image.id)
    again = svc.members.invite(ADMIN, image.id, "bob")
    assert again.status is MemberStatus.PENDING
    assert image.id not in svc.listed(MEMBER)


def test_invite_twice_is_a_conflict_that_changes_nothing(svc: Services) -> None:
    image = _shared(svc)
    first = svc.members.invite(OWNER, image.id, "bob")
    svc.members.set_status(MEMBER, image.id, "bob", MemberStatus.ACCEPTED)
    before = svc.repo.members(image.id)
    for principal in (OWNER, ADMIN):
        with pytest.raises(Conflict):
            svc.members.invite(principal, image.id, "bob")
    assert svc.repo.members(image.id) == before and before[0].created_at == first.created_at


def test_uninvite_a_missing_membership(svc: Services) -> None:
    image = _shared(svc)
    with pytest.raises(NotFound):
        svc.members.uninvite(OWNER, image.id, "bob")
    svc.members.invite(OWNER, image.id, "bob")
    svc.members.uninvite(OWNER, image.id, "bob")
    with pytest.raises(NotFound):
        svc.members.uninvite(OWNER, image.id, "bob")


def test_the_not_shared_message(svc: Services) -> None:
    image = svc.create(visibility=PRI)
    with pytest.raises(Forbidden, match=r"^Only shared images have members\.$"):
        svc.members.invite(OWNER, image.id, "bob")


def test_memberships_survive_visibility_changes_and_count_only_while_shared(
    svc: Services,
) -> None:
    image = svc.shared(SHA, MemberStatus.ACCEPTED)
    svc.images.update(OWNER, image.id, _visibility(PRI), on_failure=_KILL)
    with pytest.raises(Forbidden):
        svc.members.list_members(OWNER, image.id, shared_only=True)
    with pytest.raises(NotFound):
        svc.images.get(MEMBER, image.id)
    # v1's reads still show it: memberships are kept.
    assert [m.member_id for m in svc.members.list_members(OWNER, image.id)] == ["bob"]
    svc.images.update(OWNER, image.id, _visibility(SHA), on_failure=_KILL)
    assert [m.member_id for m in svc.members.list_members(OWNER, image.id,
                                                          shared_only=True)] == ["bob"]
    assert image.id in svc.listed(MEMBER)


@pytest.mark.parametrize("member_id", ["", "x" * 256, None, 5, ["bob"]])
def test_invite_refuses_bad_member_ids(svc: Services, member_id: Any) -> None:
    image = _shared(svc)
    with pytest.raises(Invalid):
        svc.members.invite(OWNER, image.id, member_id)
    assert svc.repo.members(image.id) == []


def test_member_ids_up_to_255_characters(svc: Services) -> None:
    image = _shared(svc)
    long = "\u2603" * 255
    assert svc.members.invite(OWNER, image.id, long).member_id == long
    assert svc.members.get(OWNER, image.id, long, shared_only=True).member_id == long


@pytest.mark.parametrize("status", ["ACCEPTED", "accept", "", None, 1, "all"])
def test_set_status_refuses_other_values(svc: Services, status: Any) -> None:
    image = _shared(svc)
    svc.members.invite(OWNER, image.id, "bob")
    with pytest.raises(Invalid):
        svc.members.set_status(MEMBER, image.id, "bob", status)
    assert svc.members.get(MEMBER, image.id, "bob").status is MemberStatus.PENDING


def test_set_status_takes_the_plain_strings(svc: Services) -> None:
    image = _shared(svc)
    svc.members.invite(OWNER, image.id, "bob")
    changed = svc.members.set_status(MEMBER, image.id, "bob", "accepted")  # type: ignore[arg-type]
    assert changed.status is MemberStatus.ACCEPTED


@pytest.mark.parametrize("role", ["admin", "owner", "member"])
def test_member_operations_on_a_deleted_image_are_not_found(svc: Services, role: str) -> None:
    image = _shared(svc)
    svc.members.invite(OWNER, image.id, "bob")
    svc.images.delete(OWNER, image.id)
    principal = ROLES[role]
    for action in (
        lambda: svc.members.invite(principal, image.id, "dave"),
        lambda: svc.members.uninvite(principal, image.id, "bob"),
        lambda: svc.members.set_status(principal, image.id, "bob", MemberStatus.ACCEPTED),
        lambda: svc.members.list_members(principal, image.id, shared_only=True),
        lambda: svc.members.get(principal, image.id, "bob", shared_only=True),
    ):
        with pytest.raises(NotFound):
            action()


def test_invite_quota(build: ServiceFactory) -> None:
    svc = build(image_member_quota=2)
    image = _shared(svc)
    svc.members.invite(OWNER, image.id, "bob")
    svc.members.add(OWNER, image.id, "carol", None, MemberStatus.ACCEPTED)
    before = svc.repo.members(image.id)
    with pytest.raises(OverLimit):
        svc.members.invite(OWNER, image.id, "dave")
    # A duplicate at the quota is the duplicate's Conflict, not the quota's.
    with pytest.raises(Conflict):
        svc.members.invite(OWNER, image.id, "bob")
    assert svc.repo.members(image.id) == before
    svc.members.uninvite(OWNER, image.id, "carol")
    assert svc.members.invite(OWNER, image.id, "dave").status is MemberStatus.PENDING


def test_concurrent_invites_stop_at_the_quota(build: ServiceFactory) -> None:
    """Every invite passes the quick check on its own read; the repository's check under the
    image's lock lets exactly the quota through."""
    svc = build(image_member_quota=3)
    image = _shared(svc)
    names = [f"m{n}" for n in range(8)]
    start = threading.Barrier(len(names))
    results: dict[str, str] = {}

    def invite(name: str) -> None:
        start.wait()
        try:
            svc.members.invite(OWNER, image.id, name)
            results[name] = "ok"
        except OverLimit:
            results[name] = "413"

    threads = [threading.Thread(target=invite, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results.values()).count("ok") == 3
    assert {m.member_id for m in svc.repo.members(image.id)} == {
        n for n, r in results.items() if r == "ok"}


def test_concurrent_invites_of_one_member_make_one_membership(svc: Services) -> None:
    image = _shared(svc)
    start = threading.Barrier(6)
    results: list[str] = []

    def invite() -> None:
        start.wait()
        results.append(_conflict_or_ok(svc, image.id))

    threads = [threading.Thread(target=invite) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["409"] * 5 + ["ok"]
    assert [m.member_id for m in svc.repo.members(image.id)] == ["bob"]


def test_v1_add_still_shares_images_of_every_visibility(svc: Services) -> None:
    """v1 keeps its rules beside v2's: a private image takes members through v1."""
    image = svc.create(visibility=PRI)
    svc.members.add(OWNER, image.id, "bob", None, MemberStatus.ACCEPTED)
    assert [m.member_id for m in svc.members.list_members(OWNER, image.id)] == ["bob"]
    with pytest.raises(Forbidden):
        svc.members.list_members(OWNER, image.id, shared_only=True)
    with pytest.raises(NotFound):
        svc.members.list_members(STRANGER, image.id)


# -- helpers --------------------------------------------------------------------------------

_KILL = FailureRule.KILL


def _visibility(visibility: Visibility) -> list[Command]:
    return [SetFields({"visibility": visibility})]


def _conflict_or_ok(svc: Services, image_id: str) -> str:
    try:
        svc.members.invite(OWNER, image_id, "bob")
    except Conflict:
        return "409"
    return "ok"


def _later(after: dt.datetime | None, before: dt.datetime | None) -> bool:
    return after is not None and before is not None and after > before

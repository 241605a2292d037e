"""The update commands: applied in order, all or nothing, with the field rules (who may set
what), reserved properties, publicizing, and visibility changes against memberships."""

from __future__ import annotations

from typing import Any

import pytest

from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import (
    AddTag,
    Changes,
    Command,
    ImageInput,
    MemberStatus,
    RemoveOtherProperties,
    RemoveProperties,
    RemoveTag,
    SetFields,
    SetProperties,
    Status,
    Visibility,
)
from glimpse.errors import Conflict, Forbidden, GlimpseError, Invalid, NotFound
from tests.service.conftest import ADMIN, FORMATS, MEMBER, OWNER, STRANGER, Services

KILL = FailureRule.KILL


def update(svc: Services, image_id: str, *commands: Command, who: Any = OWNER) -> Any:
    return svc.images.update(who, image_id, list(commands), on_failure=KILL)


@pytest.fixture
def image_id(svc: Services) -> str:
    return svc.create(data=None, name="n", properties={"a": "1", "b": "2", "c": "3"},
                      tags=["x", "y"]).id


def test_set_fields(svc: Services, image_id: str) -> None:
    before = svc.images.get(OWNER, image_id)
    after = update(svc, image_id, SetFields({"name": "m", "min_ram": 512, "protected": True}),
                   SetFields({"min_disk": 10, "name": "later"}))
    assert (after.name, after.min_ram, after.protected, after.min_disk) == (
        "later", 512, True, 10)
    assert after.updated_at > before.updated_at
    assert (after.properties, after.tags) == (before.properties, before.tags)


@pytest.mark.parametrize(("commands", "properties"), [
    ([SetProperties({"a": "one", "d": "4"})], {"a": "one", "b": "2", "c": "3", "d": "4"}),
    ([SetProperties({"a": None})], {"a": None, "b": "2", "c": "3"}),
    ([RemoveProperties(frozenset({"a", "zz"}))], {"b": "2", "c": "3"}),
    ([RemoveProperties(frozenset({"a"}), missing_ok=False)], {"b": "2", "c": "3"}),
    # v1's purge: every property not resent goes.
    ([RemoveOtherProperties(frozenset({"a"}))], {"a": "1"}),
    ([SetProperties({"d": "4"}), RemoveOtherProperties(frozenset({"b"}))], {"b": "2", "d": "4"}),
    ([RemoveOtherProperties(frozenset()), SetProperties({"d": "4"})], {"d": "4"}),
    # In order: a later command wins.
    ([SetProperties({"a": "9"}), RemoveProperties(frozenset({"a"}))], {"b": "2", "c": "3"}),
    ([RemoveProperties(frozenset({"a"})), SetProperties({"a": "9"})],
     {"a": "9", "b": "2", "c": "3"}),
    ([SetProperties({"d": "4"}), RemoveProperties(frozenset({"d"}), missing_ok=False)],
     {"a": "1", "b": "2", "c": "3"}),
], ids=lambda v: repr(v)[:40] if isinstance(v, list) else "")
def test_property_commands(svc: Services, image_id: str, commands: list[Command],
                           properties: dict[str, str | None]) -> None:
    assert update(svc, image_id, *commands).properties == properties
    assert svc.images.get(OWNER, image_id).properties == properties


@pytest.mark.parametrize(("commands", "tags"), [
    ([AddTag("z")], ["x", "y", "z"]),
    ([AddTag("x")], ["x", "y"]),
    ([RemoveTag("x")], ["y"]),
    ([RemoveTag("nope", missing_ok=True)], ["x", "y"]),
    ([AddTag("z"), RemoveTag("z")], ["x", "y"]),
    ([RemoveTag("x"), AddTag("x")], ["x", "y"]),
    ([AddTag("z"), RemoveTag("z"), AddTag("z")], ["x", "y", "z"]),
], ids=lambda v: repr(v)[:40] if isinstance(v, list) else "")
def test_tag_commands(svc: Services, image_id: str, commands: list[Command],
                      tags: list[str]) -> None:
    assert sorted(update(svc, image_id, *commands).tags) == tags
    assert sorted(svc.images.get(OWNER, image_id).tags) == tags


# Each ends in a failing command after ones that would succeed.
FAILING: list[tuple[list[Command], type[GlimpseError]]] = [
    ([RemoveTag("nope")], NotFound),
    ([RemoveProperties(frozenset({"zz"}), missing_ok=False)], Conflict),
    ([RemoveProperties(frozenset({"a"})), RemoveProperties(frozenset({"a"}), missing_ok=False)],
     Conflict),
    ([SetFields({"min_ram": -1})], Invalid),
    ([SetFields({"min_disk": "1"})], Invalid),
    ([SetFields({"disk_format": "nonsense"})], Invalid),
    ([SetFields({"bogus": 1})], Invalid),
    ([AddTag("t" * 256)], Invalid),
    ([SetProperties({"": "v"})], Invalid),
    ([SetFields({"status": "active"})], Forbidden),
    ([SetFields({"id": "00000000-0000-0000-0000-000000000000"})], Forbidden),
    ([SetProperties({"os_glance_import_task": "t"})], Forbidden),
    ([RemoveProperties(frozenset({"os_glance_x"}))], Forbidden),
    ([SetFields({"visibility": Visibility.PUBLIC})], Forbidden),
]


@pytest.mark.parametrize(("failing", "error"), FAILING,
                         ids=[f"{e.__name__}-{c!r:.40}" for c, e in FAILING])
def test_a_failing_command_changes_nothing(svc: Services, image_id: str,
                                           failing: list[Command],
                                           error: type[GlimpseError]) -> None:
    before = svc.images.get(OWNER, image_id)
    with pytest.raises(error):
        update(svc, image_id, SetFields({"name": "changed"}), SetProperties({"a": "new"}),
               RemoveProperties(frozenset({"b"})), RemoveOtherProperties(frozenset({"a"})),
               AddTag("new"), RemoveTag("x"), *failing)
    assert svc.images.get(OWNER, image_id) == before


@pytest.mark.parametrize("who", [OWNER, ADMIN], ids=["owner", "admin"])
@pytest.mark.parametrize("name", ["os_glance_import_task", "os_glance", "os_glance_x"])
def test_reserved_properties_are_refused_on_create(svc: Services, who: Any, name: str) -> None:
    with pytest.raises(Forbidden):
        svc.images.create(who, ImageInput(fields=dict(FORMATS), properties={name: "v"}),
                          None, KILL)
    assert svc.all_ids() == set()
    # Names merely containing the prefix are the client's.
    assert svc.create(who, data=None, properties={f"x_{name}": "v"}).properties


def test_reserved_properties_are_refused_to_admins_on_update(svc: Services,
                                                             image_id: str) -> None:
    with pytest.raises(Forbidden):
        update(svc, image_id, SetProperties({"os_glance_x": "v"}), who=ADMIN)


def test_only_admins_make_images_public(svc: Services, image_id: str) -> None:
    with pytest.raises(Forbidden):
        svc.create(data=None, visibility=Visibility.PUBLIC)
    assert svc.all_ids() == {image_id}
    with pytest.raises(Forbidden):
        update(svc, image_id, SetFields({"visibility": "public"}))
    assert svc.images.get(OWNER, image_id).visibility is Visibility.SHARED
    assert svc.create(ADMIN, data=None, visibility=Visibility.PUBLIC).visibility \
        is Visibility.PUBLIC
    assert update(svc, image_id, SetFields({"visibility": "public"}), who=ADMIN).visibility \
        is Visibility.PUBLIC
    # Once public, the owner may change other things, and take it back from the public.
    assert update(svc, image_id, SetFields({"name": "still"})).name == "still"
    assert update(svc, image_id, SetFields({"visibility": "private"})).visibility \
        is Visibility.PRIVATE


@pytest.mark.parametrize("visibility", [Visibility.COMMUNITY, Visibility.SHARED,
                                        Visibility.PRIVATE])
def test_owners_set_the_other_visibilities(svc: Services, image_id: str,
                                           visibility: Visibility) -> None:
    assert svc.create(data=None, visibility=visibility).visibility is visibility
    assert update(svc, image_id, SetFields({"visibility": visibility})).visibility is visibility
    with pytest.raises(Invalid):
        update(svc, image_id, SetFields({"visibility": "everyone"}))


def test_images_are_created_shared_and_owned_by_the_caller(svc: Services) -> None:
    image = svc.create(data=None)
    assert (image.visibility, image.owner) == (Visibility.SHARED, "alice")


def test_owner_is_set_by_admins_only(svc: Services, image_id: str) -> None:
    # A non-admin's owner is ignored (the field table's ADMIN setter), not refused.
    assert update(svc, image_id, SetFields({"owner": "carol"})).owner == "alice"
    assert svc.create(data=None, owner="carol").owner == "alice"
    assert update(svc, image_id, SetFields({"owner": "carol"}), who=ADMIN).owner == "carol"
    assert svc.images.get(STRANGER, image_id).owner == "carol"


def test_server_fields_may_be_resent_unchanged(svc: Services, image_id: str) -> None:
    image = svc.images.get(OWNER, image_id)
    after = update(svc, image_id, SetFields({"status": "queued", "id": image_id,
                                             "created_at": image.created_at}))
    assert after.status is Status.QUEUED


def test_declared_data_facts_are_fixed_once_active(svc: Services) -> None:
    queued = svc.create(data=None)
    assert update(svc, queued.id, SetFields({"size": 4})).size == 4
    active = svc.create(data=b"data")
    with pytest.raises(Forbidden):
        update(svc, active.id, SetFields({"size": 5}))
    with pytest.raises(Forbidden):
        update(svc, active.id, SetFields({"checksum": "0" * 32}))
    assert update(svc, active.id, SetFields({"size": 4})).size == 4  # unchanged is fine
    assert update(svc, active.id, SetFields({"size": 5}), who=ADMIN).size == 5


def test_protected_images_can_be_updated_not_deleted(svc: Services, image_id: str) -> None:
    update(svc, image_id, SetFields({"protected": True}))
    assert update(svc, image_id, SetFields({"name": "p"})).name == "p"
    for who in (OWNER, ADMIN):
        with pytest.raises(Forbidden):
            svc.images.delete(who, image_id)
    update(svc, image_id, SetFields({"protected": False}))
    svc.images.delete(OWNER, image_id)


def test_memberships_have_effect_only_while_shared(svc: Services) -> None:
    image = svc.shared(Visibility.SHARED, MemberStatus.ACCEPTED)

    def member_view() -> tuple[bool, bool]:
        try:
            svc.images.get(MEMBER, image.id)
            sees = True
        except NotFound:
            sees = False
        return sees, image.id in svc.listed(MEMBER)

    # (visibility, who sets it, bob sees it, bob lists it)
    steps = [
        (Visibility.SHARED, OWNER, True, True),
        (Visibility.PRIVATE, OWNER, False, False),
        (Visibility.COMMUNITY, OWNER, True, False),
        (Visibility.PUBLIC, ADMIN, True, True),
        (Visibility.PRIVATE, OWNER, False, False),
        (Visibility.SHARED, OWNER, True, True),
    ]
    for visibility, who, sees, lists in steps:
        update(svc, image.id, SetFields({"visibility": visibility}), who=who)
        assert member_view() == (sees, lists), visibility
        # The membership itself survives every change.
        assert [(m.member_id, m.status) for m in svc.repo.members(image.id)] == [
            ("bob", MemberStatus.ACCEPTED)]


def test_a_pending_membership_lists_once_accepted(svc: Services) -> None:
    image = svc.shared(Visibility.SHARED, MemberStatus.PENDING)
    assert image.id not in svc.listed(MEMBER)
    svc.repo.set_member(image.id, "bob", None, status=MemberStatus.ACCEPTED)
    assert image.id in svc.listed(MEMBER)
    svc.repo.set_member(image.id, "bob", None, status=MemberStatus.REJECTED)
    assert image.id not in svc.listed(MEMBER)
    svc.images.get(MEMBER, image.id)  # still readable


def test_an_empty_count_is_zero(svc: Services, image_id: str) -> None:
    """v1 sends an empty header for a count it clears: the count becomes 0."""
    update(svc, image_id, SetFields({"min_disk": 5}))
    assert update(svc, image_id, SetFields({"min_disk": None})).min_disk == 0


def test_v1_purge_leaves_the_services_own_properties(svc: Services, image_id: str) -> None:
    """v1 resends the properties it keeps; the os_glance ones are not its to resend (the
    import machinery writes them): a purge spares them, whatever a concurrent writer did."""
    svc.repo.update(image_id, Changes(set_properties={"os_glance_import_task": "t1",
                                                      "os_glance_x%_y": "z"}))
    image = update(svc, image_id, SetProperties({"kept": "1"}),
                   RemoveOtherProperties(frozenset({"kept"})))
    assert image.properties == {"kept": "1", "os_glance_import_task": "t1",
                                "os_glance_x%_y": "z"}

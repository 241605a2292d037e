"""The commands v2's JSON-patch adds to the domain: the whole tag list (SetTags), what a
property set expects (Presence), and formats fixed once an image has data; all applied with
the others, in order, and not at all when one fails."""

from __future__ import annotations

from typing import Any

import pytest

from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import (
    AddTag,
    Command,
    Presence,
    RemoveProperties,
    RemoveTag,
    SetFields,
    SetProperties,
    SetTags,
    Status,
)
from glimpse.errors import Conflict, Forbidden, GlimpseError, Invalid, NotFound, OverLimit
from tests.service.conftest import ADMIN, OWNER, Services

KILL = FailureRule.KILL


def update(svc: Services, image_id: str, *commands: Command, who: Any = OWNER) -> Any:
    return svc.images.update(who, image_id, list(commands), on_failure=KILL)


@pytest.fixture
def image_id(svc: Services) -> str:
    return svc.create(data=None, name="n", properties={"a": "1"}, tags=["x", "y"]).id


@pytest.mark.parametrize(("commands", "tags"), [
    ([SetTags(("b", "a", "b"))], ["a", "b"]),
    ([SetTags(())], []),
    ([SetTags(("x",))], ["x"]),
    ([SetTags(("p",)), AddTag("q")], ["p", "q"]),
    ([SetTags(("p",)), AddTag("p")], ["p"]),
    ([SetTags(("p", "q")), RemoveTag("p")], ["q"]),
    ([SetTags(("p",)), RemoveTag("x", missing_ok=True)], ["p"]),
    ([AddTag("z"), SetTags(("p",))], ["p"]),
    ([RemoveTag("x"), SetTags(("x", "w"))], ["w", "x"]),
    ([SetTags(("p",)), SetTags(("r",))], ["r"]),
], ids=lambda v: repr(v)[:50] if isinstance(v, list) else "")
def test_set_tags(svc: Services, image_id: str, commands: list[Command],
                  tags: list[str]) -> None:
    before = svc.images.get(OWNER, image_id)
    after = update(svc, image_id, *commands)
    assert sorted(after.tags) == tags
    assert sorted(svc.images.get(OWNER, image_id).tags) == tags
    assert after.updated_at > before.updated_at


def test_set_tags_replaces_the_stored_list(svc: Services, image_id: str) -> None:
    """A tag a concurrent writer added after this update read the image goes too: the list
    is replaced in the repository, not diffed against the read."""
    from glimpse.domain.model import Changes

    svc.repo.update(image_id, Changes(add_tags=["late"]))
    assert update(svc, image_id, SetTags(("only",))).tags == ["only"]


def test_set_tags_counts_against_the_quota(build: Any) -> None:
    svc = build(image_tag_quota=2)
    image = svc.create(data=None, tags=["x"])
    assert sorted(update(svc, image.id, SetTags(("a", "b", "a"))).tags) == ["a", "b"]
    with pytest.raises(OverLimit):
        update(svc, image.id, SetTags(("a", "b", "c")))
    assert sorted(svc.images.get(OWNER, image.id).tags) == ["a", "b"]


def test_presence(svc: Services, image_id: str) -> None:
    assert update(svc, image_id, SetProperties({"a": "2"}, Presence.PRESENT)).properties == {
        "a": "2"}
    assert update(svc, image_id, SetProperties({"b": "1"}, Presence.ABSENT)).properties == {
        "a": "2", "b": "1"}
    # Earlier commands count: what one adds, the next may replace.
    after = update(svc, image_id, SetProperties({"c": "1"}, Presence.ABSENT),
                   SetProperties({"c": "2"}, Presence.PRESENT),
                   RemoveProperties(frozenset({"c"}), missing_ok=False),
                   SetProperties({"c": "3"}, Presence.ABSENT))
    assert after.properties == {"a": "2", "b": "1", "c": "3"}


@pytest.mark.parametrize(("command", "message"), [
    (SetProperties({"zz": "1"}, Presence.PRESENT), "Property zz does not exist."),
    (SetProperties({"a": "1"}, Presence.ABSENT), "Property a already present."),
])
def test_presence_conflicts(svc: Services, image_id: str, command: Command,
                            message: str) -> None:
    with pytest.raises(Conflict, match=message):
        update(svc, image_id, command)


@pytest.mark.parametrize("status", [Status.QUEUED, Status.IMPORTING])
def test_formats_change_while_there_is_no_data(svc: Services, status: Status) -> None:
    image = svc.create(data=None)
    svc.repo.set_fields(image.id, {"status": str(status)})
    after = update(svc, image.id, SetFields({"disk_format": "qcow2", "container_format": "ovf"},
                                            formats_need_no_data=True))
    assert (after.disk_format, after.container_format) == ("qcow2", "ovf")


@pytest.mark.parametrize("status", [Status.ACTIVE, Status.DEACTIVATED, Status.UPLOADING,
                                    Status.SAVING, Status.KILLED])
@pytest.mark.parametrize("name", ["disk_format", "container_format"])
def test_formats_are_fixed_once_there_is_data(svc: Services, status: Status,
                                              name: str) -> None:
    image = svc.create()
    svc.repo.set_fields(image.id, {"status": str(status)})
    other = {"disk_format": "qcow2", "container_format": "ovf"}[name]
    for who in (OWNER, ADMIN):
        with pytest.raises(Forbidden, match=f"Attribute {name} can be only replaced"):
            update(svc, image.id, SetFields({name: other}, formats_need_no_data=True),
                   who=who)
    # The same value is no change; and v1's commands never had the rule.
    update(svc, image.id, SetFields({name: getattr(image, name)}, formats_need_no_data=True))
    if status in (Status.ACTIVE, Status.DEACTIVATED):
        assert getattr(update(svc, image.id, SetFields({name: other})), name) == other


# Each ends in a failing command after ones that would succeed.
FAILING: list[tuple[list[Command], type[GlimpseError]]] = [
    ([SetProperties({"zz": "1"}, Presence.PRESENT)], Conflict),
    ([SetProperties({"a": "1"}, Presence.ABSENT)], Conflict),
    ([SetTags(("t" * 256,))], Invalid),
    ([SetTags(("",))], Invalid),
    ([RemoveTag("gone")], NotFound),
    ([SetTags(tuple(f"t{i}" for i in range(200)))], OverLimit),
    ([SetProperties({f"p{i}": "v" for i in range(200)})], OverLimit),
    ([SetFields({"disk_format": "qcow2"}, formats_need_no_data=True)], Forbidden),
]


@pytest.mark.parametrize(("failing", "error"), FAILING,
                         ids=[f"{e.__name__}-{c!r:.40}" for c, e in FAILING])
def test_a_failing_command_changes_nothing(svc: Services, failing: list[Command],
                                           error: type[GlimpseError]) -> None:
    image = svc.create(name="n", properties={"a": "1"}, tags=["x", "y"])
    before = svc.images.get(OWNER, image.id)
    with pytest.raises(error):
        update(svc, image.id, SetFields({"name": "changed"}, formats_need_no_data=True),
               SetProperties({"a": "new"}, Presence.PRESENT),
               SetProperties({"b": "new"}, Presence.ABSENT),
               SetTags(("gone", "new")), RemoveTag("gone"), *failing)
    assert svc.images.get(OWNER, image.id) == before


@pytest.mark.serial
def test_a_hundred_thousand_commands_fold_quickly(svc: Services, image_id: str) -> None:
    """A huge patch is refused on its result (the quota), in linear time, changing nothing."""
    import time

    before = svc.images.get(OWNER, image_id)
    commands: list[Command] = [SetProperties({f"p{i}": "v"}) for i in range(100_000)]
    started = time.monotonic()
    with pytest.raises(OverLimit):
        update(svc, image_id, *commands)
    assert time.monotonic() - started < 30
    assert svc.images.get(OWNER, image_id) == before
    # Within the quota, however many commands: one write.
    names = [f"q{i % 100}" for i in range(100_000)]
    after = update(svc, image_id, *[SetProperties({n: "v"}) for n in names])
    assert len(after.properties) == 101

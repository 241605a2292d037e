"""Property protections in the image service: every create, read, update and delete of a custom
property, whichever API asks (v1 sends one SetProperties and its purge; v2 one command per
patch operation)."""

from __future__ import annotations

from typing import Any

import pytest

from glimpse.db import tables
from glimpse.domain.images import ImageService
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import (
    Command,
    ImageInput,
    ListQuery,
    Presence,
    Principal,
    RemoveOtherProperties,
    RemoveProperties,
    Scope,
    SetFields,
    SetProperties,
    Visibility,
)
from glimpse.domain.protections import PropertyRules, RuleFormat, parse
from glimpse.errors import Conflict, Forbidden, PropertyProtected
from tests.service.conftest import ADMIN, FORMATS, OWNER, STRANGER, Services, read, upload

KILL = FailureRule.KILL

RULES = """\
[^x_owner_]
create = admin,member
read = admin,member
update = admin,member
delete = admin,member

[^spl_read_only]
create = admin
read = admin,spl_role
update = admin
delete = admin

[^spl_update]
create = admin,spl_role
read = admin,spl_role
update = admin,spl_role
delete = admin

[^spl_delete]
create = admin,spl_role
read = admin,spl_role
update = admin
delete = admin,spl_role

[^write_only]
create = @
read = admin
update = admin
delete = admin

[^x_all_]
create = @
read = @
update = @
delete = @

[.*]
create = admin
read = admin
update = admin
delete = admin
"""

# The owner (project alice) with the special role; OWNER is alice as a plain member.
SPL = Principal(tenant="alice", user="s", roles=("member", "reader", "spl_role"), is_admin=False,
                owner="alice")
# Every property the file names, as an admin sets them.
ALL = {"x_owner_a": "o", "spl_read_only": "r", "spl_update": "u", "spl_delete": "d",
       "x_all_a": "e", "secret": "s"}


@pytest.fixture
def images(svc: Services) -> ImageService:
    return ImageService(svc.repo, svc.data, svc.limits,
                        protections=PropertyRules(parse(RULES, RuleFormat.ROLES),
                                                  RuleFormat.ROLES))


@pytest.fixture
def image_id(images: ImageService) -> str:
    """alice's image with every property, made by an admin for her."""
    made = images.create(ADMIN, ImageInput(fields={**FORMATS, "owner": "alice"},
                                           properties=dict(ALL)), None, KILL)
    return made.id


def stored(svc: Services, image_id: str) -> dict[str, str | None]:
    """Every property, as the database holds it."""
    return svc.images.get(ADMIN, image_id).properties


def update(images: ImageService, image_id: str, *commands: Command, who: Any = SPL) -> Any:
    return images.update(who, image_id, list(commands), on_failure=KILL)


# -- create -----------------------------------------------------------------------------------


def test_create_needs_create_on_every_property(images: ImageService) -> None:
    made = images.create(OWNER, ImageInput(fields=dict(FORMATS),
                                           properties={"x_owner_a": "1", "x_all_b": "2"}),
                         None, KILL)
    assert made.properties == {"x_owner_a": "1", "x_all_b": "2"}
    with pytest.raises(PropertyProtected) as refused:
        images.create(OWNER, ImageInput(fields=dict(FORMATS),
                                        properties={"x_owner_a": "1", "foo": "bar"}), None, KILL)
    assert refused.value.name == "foo"
    assert isinstance(refused.value, Forbidden)


def test_refused_create_leaves_nothing(images: ImageService, svc: Services) -> None:
    before = svc.all_ids()
    with pytest.raises(PropertyProtected):
        images.create(OWNER, ImageInput(fields=dict(FORMATS), properties={"foo": "bar"}),
                      upload(b"data"), KILL)
    assert svc.all_ids() == before


def test_created_image_is_shown_without_what_its_creator_may_not_read(
        images: ImageService) -> None:
    made = images.create(SPL, ImageInput(fields=dict(FORMATS),
                                         properties={"spl_update": "1", "write_only": "2"}),
                         None, KILL)
    assert made.properties == {"spl_update": "1"}
    assert images.get(ADMIN, made.id).properties == {"spl_update": "1", "write_only": "2"}


# -- read -------------------------------------------------------------------------------------


def test_reads_hide_unreadable_properties(images: ImageService, image_id: str,
                                          svc: Services) -> None:
    assert images.get(OWNER, image_id).properties == {"x_owner_a": "o", "x_all_a": "e"}
    assert images.get(SPL, image_id).properties == {
        "x_owner_a": "o", "spl_read_only": "r", "spl_update": "u", "spl_delete": "d",
        "x_all_a": "e"}
    assert images.get(ADMIN, image_id).properties == ALL
    listed = images.list_images(OWNER, ListQuery(), None)
    assert [i.properties for i in listed if i.id == image_id] == [
        {"x_owner_a": "o", "x_all_a": "e"}]
    # The stored image is untouched by what a caller was shown.
    assert stored(svc, image_id) == ALL


def test_admins_are_not_exempt(images: ImageService, image_id: str) -> None:
    anonymous_admin = Principal(tenant=None, user=None, roles=(), is_admin=True, owner=None)
    assert images.get(anonymous_admin, image_id).properties == {"x_all_a": "e"}
    with pytest.raises(PropertyProtected):
        update(images, image_id, SetProperties({"secret": "t"}), who=anonymous_admin)


def test_a_filter_on_an_unreadable_property_matches_nothing(images: ImageService,
                                                            image_id: str) -> None:
    def listed(who: Principal, **properties: str) -> list[str]:
        query = ListQuery(scope=Scope.ALL, properties=dict(properties), limit=1000)
        return [i.id for i in images.list_images(who, query, None)]

    assert image_id in listed(ADMIN, secret="s")
    assert listed(OWNER, secret="s") == []
    assert image_id in listed(OWNER, x_owner_a="o")


def test_downloads_and_actions_show_the_image_as_the_caller_may(
        images: ImageService, svc: Services) -> None:
    made = images.create(ADMIN, ImageInput(fields={**FORMATS, "owner": "alice"},
                                           properties={"secret": "s", "x_all_a": "e"}),
                         upload(b"abc"), KILL)
    download = images.open_data(OWNER, made.id)
    assert download.image.properties == {"x_all_a": "e"}
    assert read(download) == b"abc"
    assert images.deactivate(OWNER, made.id).properties == {"x_all_a": "e"}
    assert images.reactivate(OWNER, made.id).properties == {"x_all_a": "e"}


# -- update, v2 style: one command per operation ----------------------------------------------


def test_update_needs_update_and_refuses_atomically(images: ImageService, image_id: str,
                                                    svc: Services) -> None:
    after = update(images, image_id, SetProperties({"spl_update": "u2"}, Presence.PRESENT))
    assert after.properties["spl_update"] == "u2"
    with pytest.raises(PropertyProtected) as refused:
        update(images, image_id, SetFields({"name": "renamed"}),
               SetProperties({"spl_update": "u3"}, Presence.PRESENT),
               SetProperties({"spl_read_only": "changed"}, Presence.PRESENT))
    assert refused.value.name == "spl_read_only"
    # Nothing of the refused request was written.
    assert stored(svc, image_id)["spl_update"] == "u2"
    assert svc.images.get(ADMIN, image_id).name is None


def test_adding_a_new_property_needs_create(images: ImageService, image_id: str) -> None:
    update(images, image_id, SetProperties({"spl_delete_new": "n"}, Presence.ABSENT))
    with pytest.raises(PropertyProtected):
        update(images, image_id, SetProperties({"brand_new": "n"}))
    # Created then changed in one request: create, then update, in order.
    with pytest.raises(PropertyProtected):
        update(images, image_id, SetProperties({"spl_delete_2": "a"}),
               SetProperties({"spl_delete_2": "b"}))


def test_unreadable_properties_are_absent_to_the_caller(images: ImageService, image_id: str,
                                                        svc: Services) -> None:
    # Replacing or removing one: it does not exist, for this caller.
    with pytest.raises(Conflict, match="Property secret does not exist"):
        update(images, image_id, SetProperties({"secret": "t"}, Presence.PRESENT))
    with pytest.raises(Conflict, match="Property secret does not exist"):
        update(images, image_id, RemoveProperties(frozenset({"secret"}), missing_ok=False))
    update(images, image_id, RemoveProperties(frozenset({"secret"})))
    # Adding it anyway: refused, whatever the caller may create (it exists).
    with pytest.raises(PropertyProtected):
        update(images, image_id, SetProperties({"secret": "t"}, Presence.ABSENT))
    with pytest.raises(PropertyProtected):
        update(images, image_id, SetProperties({"secret": "s"}))
    assert stored(svc, image_id)["secret"] == "s"


def test_remove_needs_delete(images: ImageService, image_id: str, svc: Services) -> None:
    with pytest.raises(PropertyProtected):
        update(images, image_id, RemoveProperties(frozenset({"spl_update"}), missing_ok=False))
    after = update(images, image_id,
                   RemoveProperties(frozenset({"spl_delete"}), missing_ok=False))
    assert "spl_delete" not in after.properties
    assert "spl_delete" not in stored(svc, image_id)


def test_an_unchanged_value_needs_read_not_update(images: ImageService, image_id: str) -> None:
    update(images, image_id, SetProperties({"spl_read_only": "r"}, Presence.PRESENT))
    with pytest.raises(PropertyProtected):
        update(images, image_id, SetProperties({"spl_read_only": "other"}, Presence.PRESENT))


# -- update, v1 style: every property resent, the others purged -------------------------------


def v1_update(images: ImageService, image_id: str, who: Principal,
              properties: dict[str, str | None], purge: bool = True) -> Any:
    commands: list[Command] = [SetFields({"name": "v1"}), SetProperties(properties)]
    if purge:
        commands.append(RemoveOtherProperties(frozenset(properties)))
    return update(images, image_id, *commands, who=who)


def test_v1_purge_keeps_what_the_caller_may_not_read(images: ImageService, image_id: str,
                                                     svc: Services) -> None:
    # The owner sees x_owner_a and x_all_a; resending them changes nothing it cannot.
    after = v1_update(images, image_id, OWNER, {"x_owner_a": "o", "x_all_a": "e2"})
    assert after.properties == {"x_owner_a": "o", "x_all_a": "e2"}
    assert stored(svc, image_id) == {**ALL, "x_all_a": "e2"}


def test_v1_purge_of_a_readable_property_needs_delete(images: ImageService, image_id: str,
                                                      svc: Services) -> None:
    visible = images.get(SPL, image_id).properties
    # spl may read spl_read_only but not delete it: leaving it out is a refused delete.
    without = {k: v for k, v in visible.items() if k != "spl_read_only"}
    with pytest.raises(PropertyProtected) as refused:
        v1_update(images, image_id, SPL, without)
    assert refused.value.name == "spl_read_only"
    # spl_delete it may delete.
    without = {k: v for k, v in visible.items() if k != "spl_delete"}
    after = v1_update(images, image_id, SPL, without)
    assert "spl_delete" not in after.properties
    assert stored(svc, image_id) == {k: v for k, v in ALL.items() if k != "spl_delete"}


def test_v1_without_purge_deletes_nothing(images: ImageService, image_id: str,
                                          svc: Services) -> None:
    v1_update(images, image_id, OWNER, {"x_owner_b": "new"}, purge=False)
    assert stored(svc, image_id) == {**ALL, "x_owner_b": "new"}


def test_v1_resending_a_changed_value_needs_update(images: ImageService, image_id: str) -> None:
    visible = images.get(SPL, image_id).properties
    with pytest.raises(PropertyProtected):
        v1_update(images, image_id, SPL, {**visible, "spl_read_only": "changed"})
    with pytest.raises(PropertyProtected):
        # Naming a property it cannot see: refused, not created over the hidden one.
        v1_update(images, image_id, SPL, {**visible, "secret": "s"})


def test_reserved_properties_stay_under_purge(images: ImageService, image_id: str,
                                              svc: Services) -> None:
    # The service's own properties (os_glance_*) are set by the service, never a client.
    with svc.engine.begin() as connection:
        connection.execute(tables.image_properties.insert().values(
            image_id=image_id, name="os_glance_x", value="v"))
    v1_update(images, image_id, ADMIN, {})
    assert stored(svc, image_id) == {"os_glance_x": "v"}


def test_no_protections_no_change(svc: Services) -> None:
    # Without a file every property is everyone's who may change the image.
    made = svc.create(properties={"secret": "s"})
    assert svc.images.get(OWNER, made.id).properties == {"secret": "s"}
    after = svc.images.update(OWNER, made.id, [SetProperties({"secret": "t"})], on_failure=KILL)
    assert after.properties == {"secret": "t"}


def test_visibility_rules_still_come_first(images: ImageService, image_id: str) -> None:
    # A caller who may not modify the image is refused for that, not for a property.
    images.update(ADMIN, image_id, [SetFields({"visibility": Visibility.PUBLIC})],
                  on_failure=KILL)
    with pytest.raises(Forbidden) as refused:
        update(images, image_id, SetProperties({"x_all_a": "z"}), who=STRANGER)
    assert not isinstance(refused.value, PropertyProtected)

"""Image ids (glimpse/domain/ids.py): one image per UUID however it is spelled (spec v2-api.md
§7 item 14: Glance made a second image of an upper-case copy of an existing id)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from glimpse.domain import ids
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import Image, ImageInput, MemberStatus, SetFields, Status, Visibility
from glimpse.errors import Conflict, Invalid, NotFound
from tests.service.conftest import ADMIN, FORMATS, MEMBER, OWNER, Services, read

KILL = FailureRule.KILL


def spellings(image_id: str) -> dict[str, str]:
    """Other ways to write a canonical id, every one UUID-like."""
    return {
        "upper": image_id.upper(),
        "mixed": image_id[:9] + image_id[9:].upper(),
        "no hyphens": image_id.replace("-", ""),
        "upper, no hyphens": image_id.replace("-", "").upper(),
    }


SPELLINGS = list(spellings(str(uuid.uuid4())))


def create(svc: Services, image_id: Any, **fields: Any) -> Image:
    return svc.images.create(OWNER, ImageInput(fields={**FORMATS, "id": image_id, **fields}),
                             None, KILL)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_id_is_stored_canonical(svc: Services, spelling: str) -> None:
    canonical = str(uuid.uuid4())
    image = create(svc, spellings(canonical)[spelling])
    assert image.id == canonical
    assert svc.all_ids() == {canonical}
    assert svc.repo.get(canonical) is not None


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_another_spelling_of_an_existing_id_is_a_conflict(svc: Services, spelling: str) -> None:
    image = create(svc, str(uuid.uuid4()))
    with pytest.raises(Conflict):
        create(svc, spellings(image.id)[spelling])
    svc.images.delete(OWNER, image.id)
    # Ids are never reused, in any spelling.
    with pytest.raises(Conflict):
        create(svc, spellings(image.id)[spelling])
    assert svc.all_ids() == set()
    assert svc.images.get(ADMIN, image.id).deleted


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_any_spelling_finds_the_image(svc: Services, spelling: str) -> None:
    image = svc.shared(Visibility.SHARED, MemberStatus.ACCEPTED)
    other = svc.create()
    spelled = spellings(image.id)[spelling]
    assert svc.images.get(OWNER, spelled) == svc.images.get(OWNER, image.id)
    assert svc.images.get(MEMBER, spelled).id == image.id
    assert read(svc.images.open_data(MEMBER, spelled)) == b"data"
    assert [m.member_id for m in svc.members.list_members(OWNER, spelled)] == ["bob"]
    assert svc.members.get(MEMBER, spelled, "bob", shared_only=True).image_id == image.id
    # A marker in another spelling is the same marker.
    assert svc.listed(OWNER, marker=spelled) == svc.listed(OWNER, marker=image.id) == (
        [] if svc.listed(OWNER)[-1] == image.id else [other.id])
    renamed = svc.images.update(OWNER, spelled, [SetFields({"name": "x", "id": spelled})],
                                on_failure=KILL)
    assert (renamed.id, renamed.name) == (image.id, "x")
    assert svc.images.deactivate(OWNER, spelled).id == image.id
    assert svc.images.reactivate(ADMIN, spelled).status is Status.ACTIVE
    svc.members.uninvite(OWNER, spelled, "bob")
    svc.images.delete(OWNER, spelled)
    assert svc.images.get(ADMIN, image.id).deleted
    with pytest.raises(NotFound):
        svc.images.get(OWNER, spelled)


def test_resending_the_id_in_another_spelling_is_no_change(svc: Services) -> None:
    image = create(svc, str(uuid.uuid4()))
    changed = svc.images.update(OWNER, image.id, [SetFields({"id": image.id.upper()})],
                                on_failure=KILL)
    assert changed.id == image.id
    with pytest.raises(Exception, match="Forbidden to modify 'id'"):
        svc.images.update(OWNER, image.id, [SetFields({"id": str(uuid.uuid4())})],
                          on_failure=KILL)


# Fixed, not random: parametrized ids must be the same in every xdist worker.
SOME_ID = "8d4294a9-142a-4e76-aa11-a83f9c5ba17f"


@pytest.mark.parametrize("bad", [
    "", "x", "not-a-uuid", SOME_ID + "\n", "\n" + SOME_ID,
    SOME_ID + "0", "{" + SOME_ID + "}", "urn:uuid:" + SOME_ID,
    SOME_ID.replace("a", "g", 1).replace("0", "g", 1) + "",
    "\uff10" * 32, 7, None, ["x"],
])
def test_ids_that_are_not_uuids_are_invalid(svc: Services, bad: Any) -> None:
    with pytest.raises(Invalid):
        create(svc, bad)
    assert svc.all_ids() == set()


@pytest.mark.parametrize("lookup", [
    "", "nope", "x" * 37, "x" * 100_000, SOME_ID + "\n", "\x00", "\udcff" * 36,
])
def test_strings_that_name_no_image_are_not_found(svc: Services, lookup: str) -> None:
    svc.create()
    with pytest.raises(NotFound):
        svc.images.get(ADMIN, lookup)
    with pytest.raises(NotFound):
        svc.images.deactivate(ADMIN, lookup)
    with pytest.raises(NotFound):
        svc.members.list_members(ADMIN, lookup, shared_only=True)


def test_an_id_stored_as_written_earlier_is_still_found_by_that_spelling(
    svc: Services,
) -> None:
    """Before ids were made canonical, v1 stored them as written: such a row keeps its
    spelling, and that spelling still finds it and may not be reused."""
    legacy = str(uuid.uuid4()).upper()
    svc.repo.create(Image(id=legacy, status=Status.QUEUED, owner=OWNER.owner))
    assert svc.images.get(OWNER, legacy).id == legacy
    with pytest.raises(Conflict):
        create(svc, legacy)
    assert svc.all_ids() == {legacy}
    svc.images.delete(OWNER, legacy)
    assert svc.images.get(ADMIN, legacy).deleted


def test_canonical() -> None:
    image_id = str(uuid.uuid4())
    for spelled in spellings(image_id).values():
        assert ids.canonical(spelled) == image_id
    assert ids.canonical(image_id) == image_id
    for other in ("", "x", image_id + "\n", "x" * 40):
        assert ids.canonical(other) == other

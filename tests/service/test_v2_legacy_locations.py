"""v2's legacy locations (spec §2.4, §2.10): the PATCH commands on ``/locations`` and who is
shown an image's locations. Every new URL goes through the external-source checks (here a
fake remote that records them); removing a location deletes glimpse's own copy it named."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from glimpse.domain.data import EXTERNAL_STORE
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.locations import shown_locations
from glimpse.domain.model import (
    AddLocation,
    Changes,
    Command,
    Location,
    LocationInput,
    MemberStatus,
    Presence,
    RemoveLocation,
    ReplaceLocations,
    SetProperties,
    Status,
)
from glimpse.errors import Conflict, Forbidden, GlimpseError, Invalid, OverLimit
from tests.service.conftest import ADMIN, MEMBER, OWNER, STRANGER, Services

REMOTE = "http://remote.test/"
SHA512_EMPTY = ("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0"
                "ff8318d2877eec2f63b931bd47417a81a538327af927da3e")
MD5 = "0" * 32


class FakeRemote:
    """An external source: URLs under REMOTE are valid and ``size`` bytes long; any other is
    refused as the real one refuses hostile URLs (Invalid, the URL not quoted)."""

    def __init__(self) -> None:
        self.checked: list[str] = []
        self.size_of: dict[str, int | None] = {}

    def validate(self, url: str) -> None:
        self.checked.append(url)
        if not url.startswith(REMOTE):
            raise Invalid("The URL is not allowed.")

    def size(self, url: str) -> int | None:
        return self.size_of.get(url, 4)

    def open(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        yield b"data"[offset:None if length is None else offset + length]


@pytest.fixture
def remote(svc: Services) -> FakeRemote:
    fake = FakeRemote()
    svc.data.external = fake
    return fake


def loc(name: str, **validation: str) -> LocationInput:
    return LocationInput(REMOTE + name, {"k": name}, validation)


def update(svc: Services, image_id: str, *commands: Command, who: Any = OWNER) -> Any:
    return svc.images.update(who, image_id, list(commands), on_failure=FailureRule.REQUEUE)


def urls(svc: Services, image_id: str) -> list[str]:
    image = svc.repo.get(image_id)
    assert image is not None
    return [location.url for location in image.locations]


def queued(svc: Services, **fields: Any) -> str:
    return str(svc.create(data=None, **fields).id)


def unchanged(svc: Services, image_id: str, *commands: Command,
              error: type[GlimpseError], who: Any = OWNER) -> GlimpseError:
    before = svc.repo.get(image_id)
    with pytest.raises(error) as caught:
        update(svc, image_id, *commands, who=who)
    assert svc.repo.get(image_id) == before
    return caught.value


def test_a_location_activates_a_queued_image(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    image = update(svc, image_id, AddLocation(loc("a", os_hash_algo="sha512",
                                                  os_hash_value=SHA512_EMPTY,
                                                  checksum=MD5)))
    assert image.status is Status.ACTIVE
    assert image.size == 4  # from the remote
    assert (image.checksum, image.os_hash_algo, image.os_hash_value) == (
        MD5, "sha512", SHA512_EMPTY)
    assert image.locations == [Location(EXTERNAL_STORE, REMOTE + "a", {"k": "a"})]
    assert remote.checked == [REMOTE + "a"]


def test_a_location_needs_formats(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc, disk_format=None, container_format=None)
    unchanged(svc, image_id, AddLocation(loc("a")), error=Invalid)


def test_positions(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    update(svc, image_id, AddLocation(loc("a")), AddLocation(loc("b"), 0),
           AddLocation(loc("c")), AddLocation(loc("d"), 3))
    assert urls(svc, image_id) == [REMOTE + n for n in "bacd"]
    unchanged(svc, image_id, AddLocation(loc("e"), 5), error=Invalid)
    unchanged(svc, image_id, RemoveLocation(4), error=Invalid, who=ADMIN)
    update(svc, image_id, RemoveLocation(0), RemoveLocation(), who=ADMIN)
    assert urls(svc, image_id) == [REMOTE + "a", REMOTE + "c"]


def test_quota(build: Any) -> None:
    svc = build(image_location_quota=2)
    svc.data.external = FakeRemote()
    image_id = queued(svc)
    update(svc, image_id, AddLocation(loc("a")), AddLocation(loc("b")))
    unchanged(svc, image_id, AddLocation(loc("c")), error=OverLimit)
    other = queued(svc)
    unchanged(svc, other, ReplaceLocations((loc("a"), loc("b"), loc("c"))), error=OverLimit)


def test_statuses(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    unchanged(svc, image_id, RemoveLocation(), error=Conflict, who=ADMIN)
    update(svc, image_id, AddLocation(loc("a")))
    svc.images.deactivate(OWNER, image_id)
    error = unchanged(svc, image_id, AddLocation(loc("b")), error=Conflict)
    assert "deactivated" in error.message
    unchanged(svc, image_id, ReplaceLocations((loc("a"),)), error=Conflict)
    unchanged(svc, image_id, RemoveLocation(), error=Conflict, who=ADMIN)


def test_the_last_location_stays(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    update(svc, image_id, AddLocation(loc("a")))
    unchanged(svc, image_id, RemoveLocation(), error=Forbidden, who=ADMIN)
    unchanged(svc, image_id, ReplaceLocations(()), error=Forbidden)


def test_removing_a_location_is_the_admins(svc: Services, remote: FakeRemote) -> None:
    """delete_image_location's default is admin only (Glance's, since OSSN-0065): the owner
    may add and replace locations but not remove one."""
    image_id = queued(svc)
    update(svc, image_id, AddLocation(loc("a")), AddLocation(loc("b")))
    error = unchanged(svc, image_id, RemoveLocation(), error=Forbidden)
    assert "delete_image_location" in error.message
    update(svc, image_id, RemoveLocation(), who=ADMIN)
    assert urls(svc, image_id) == [REMOTE + "a"]


def test_removing_glimpses_copy_deletes_it(svc: Services, remote: FakeRemote) -> None:
    image = svc.create(data=b"data")
    assert image.id in svc.stored()
    update(svc, image.id, AddLocation(loc("a")))
    assert image.id in svc.stored()  # still named by the first location
    active = update(svc, image.id, RemoveLocation(0), who=ADMIN)
    assert active.status is Status.ACTIVE
    assert [x.store for x in active.locations] == [EXTERNAL_STORE]
    assert image.id not in svc.stored()


def test_removing_an_external_location_keeps_the_data(svc: Services,
                                                      remote: FakeRemote) -> None:
    image = svc.create(data=b"data")
    update(svc, image.id, AddLocation(loc("a")), RemoveLocation(1), who=ADMIN)
    assert urls(svc, image.id) == [image.id]
    assert image.id in svc.stored()


def test_replace(svc: Services, remote: FakeRemote) -> None:
    image = svc.create(data=b"data")
    update(svc, image.id, AddLocation(loc("a")))
    # The same URLs (glimpse's copy by its key, as shown) may get new metadata and order;
    # "store" is glimpse's to say.
    same = (LocationInput(REMOTE + "a", {"x": 1}),
            LocationInput(image.id, {"y": 2, "store": "elsewhere"}))
    done = update(svc, image.id, ReplaceLocations(same))
    assert [(x.url, dict(x.metadata)) for x in done.locations] == [
        (REMOTE + "a", {"x": 1}), (image.id, {"y": 2})]
    assert done.locations[1].store == svc.store.name
    unchanged(svc, image.id, ReplaceLocations((loc("a"), loc("b"))), error=Invalid)
    unchanged(svc, image.id, ReplaceLocations((loc("a"),)), error=Invalid)
    unchanged(svc, image.id, ReplaceLocations((loc("a"), loc("a"))), error=Invalid)
    assert image.id in svc.stored()


def test_replace_on_a_queued_image_sets_and_activates(svc: Services,
                                                      remote: FakeRemote) -> None:
    image_id = queued(svc)
    unchanged(svc, image_id, ReplaceLocations((loc("a"), loc("a"))), error=Invalid)
    image = update(svc, image_id, ReplaceLocations((loc("a"), loc("b"))))
    assert image.status is Status.ACTIVE
    assert urls(svc, image_id) == [REMOTE + "a", REMOTE + "b"]


def test_metadata_is_bounded(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    huge = LocationInput(REMOTE + "a", {"k": "x" * 20_000})
    unchanged(svc, image_id, AddLocation(huge), error=Invalid)
    unchanged(svc, image_id, ReplaceLocations((huge,)), error=Invalid)


def test_duplicates_are_refused(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    update(svc, image_id, AddLocation(loc("a")))
    unchanged(svc, image_id, AddLocation(loc("a")), error=Invalid)


@pytest.mark.parametrize(("validations", "error"), [
    ([{"checksum": MD5}, {"checksum": "1" * 32}], Conflict),
    ([{"os_hash_algo": "sha256", "os_hash_value": "a" * 64}], Conflict),
    ([{"os_hash_algo": "sha512", "os_hash_value": "a" * 64}], Conflict),
    ([{"os_hash_algo": "sha512", "os_hash_value": "z" * 128}], Conflict),
    ([{"checksum": "g" * 32}], Conflict),
    ([{"size": "1"}], Invalid),
])
def test_validation_data_rules(svc: Services, remote: FakeRemote,
                               validations: list[dict[str, str]],
                               error: type[GlimpseError]) -> None:
    image_id = queued(svc)
    given = tuple(LocationInput(f"{REMOTE}{n}", {}, v) for n, v in enumerate(validations))
    unchanged(svc, image_id, ReplaceLocations(given), error=error)


def test_validation_data_of_an_active_image_must_match(svc: Services,
                                                       remote: FakeRemote) -> None:
    image = svc.create(data=b"data")
    unchanged(svc, image.id, AddLocation(loc("a", checksum=MD5)), error=Conflict)
    update(svc, image.id, AddLocation(loc("a", checksum=str(image.checksum))))
    assert len(urls(svc, image.id)) == 2


def test_refused_urls_change_nothing(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    for url in ("http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
                "http://user:secret@remote.test/x"):
        error = unchanged(svc, image_id, AddLocation(LocationInput(url)), error=Invalid)
        assert "secret" not in error.message and "169.254" not in error.message


def test_the_remote_size_must_match(svc: Services, remote: FakeRemote) -> None:
    image = svc.create(data=b"data!")
    remote.size_of[REMOTE + "a"] = 4
    unchanged(svc, image.id, AddLocation(loc("a")), error=Conflict)
    remote.size_of[REMOTE + "b"] = None  # unknown: accepted
    update(svc, image.id, AddLocation(loc("b")))


def test_a_failing_command_undoes_the_others(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    unchanged(svc, image_id, AddLocation(loc("a")),
              SetProperties({"p": "v"}, Presence.PRESENT), error=Conflict)


def test_only_owners_and_admins_edit(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc, visibility="community")
    with pytest.raises(Forbidden):
        update(svc, image_id, AddLocation(loc("a")), who=STRANGER)
    update(svc, image_id, AddLocation(loc("a")), who=ADMIN)


def test_a_queued_images_leftover_is_released(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    leftover = Location(svc.store.name, image_id)
    svc.store.put(image_id, [b"partial"])
    svc.repo.update(image_id, Changes(), add_locations=[leftover])
    image = update(svc, image_id, AddLocation(loc("a")))
    assert [x.url for x in image.locations] == [REMOTE + "a"]
    assert image_id not in svc.stored()


def test_the_list_is_swapped_only_if_unchanged(svc: Services, remote: FakeRemote) -> None:
    image_id = queued(svc)
    update(svc, image_id, AddLocation(loc("a")))
    stale = Changes(fields={"name": "x"}, locations=[],
                    locations_before=[Location(EXTERNAL_STORE, REMOTE + "b")])
    with pytest.raises(Conflict):
        svc.repo.update(image_id, stale)
    image = svc.repo.get(image_id)
    assert image is not None and image.name != "x" and urls(svc, image_id) == [REMOTE + "a"]


def test_who_is_shown_locations(svc: Services, remote: FakeRemote) -> None:
    image = svc.create(data=b"data")
    svc.members.add(OWNER, image.id, "bob", False, MemberStatus.ACCEPTED)
    read = svc.repo.get(image.id)
    assert read is not None
    image = read
    assert shown_locations(OWNER, image) == image.locations != []
    assert shown_locations(ADMIN, image) == image.locations
    assert shown_locations(MEMBER, image) == []
    assert shown_locations(STRANGER, image) == []
    svc.images.deactivate(OWNER, image.id)
    deactivated = svc.repo.get(image.id)
    assert deactivated is not None
    assert shown_locations(OWNER, deactivated) == []
    assert shown_locations(ADMIN, deactivated) == image.locations
    assert shown_locations(OWNER, svc.create(data=None)) == []

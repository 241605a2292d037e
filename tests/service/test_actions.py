"""Deactivate and reactivate (spec v2-api.md §2.7): who may (test_access.py WRITE: the owner
and admins; 403 to those who see the image, 404 to those who do not), from which statuses,
what they change, and what a deactivated image still allows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.domain.images import ImageService
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import (
    AddTag,
    Image,
    Principal,
    SetFields,
    SetProperties,
    Status,
    Visibility,
)
from glimpse.errors import Conflict, Forbidden, NotFound
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
    read,
    upload,
)
from tests.service.test_access import CASE_IDS, CASES, STATUSES, WRITE, outcome

KILL = FailureRule.KILL


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[Services]:
    directory = tmp_path_factory.mktemp("actions")
    services = build_services(directory, template_db, make_store(directory / "images"))
    yield services
    services.engine.dispose()


@pytest.mark.parametrize(("visibility", "role", "status"), CASES, ids=CASE_IDS)
def test_deactivate_and_reactivate_by_caller(
    world: Services, visibility: Visibility, role: str, status: str
) -> None:
    services = world
    image = services.shared(visibility, STATUSES[status])
    expected = WRITE[visibility, role, status]
    cell = outcome(lambda: services.images.deactivate(ROLES[role], image.id))
    assert cell == expected
    stored = services.images.get(ADMIN, image.id)
    assert stored.status is (Status.DEACTIVATED if cell == "ok" else Status.ACTIVE)
    # Reactivating follows the same table, from the deactivated status.
    services.images.deactivate(ADMIN, image.id)
    cell = outcome(lambda: services.images.reactivate(ROLES[role], image.id))
    assert cell == expected
    stored = services.images.get(ADMIN, image.id)
    assert stored.status is (Status.ACTIVE if cell == "ok" else Status.DEACTIVATED)


def test_deactivate_then_reactivate(svc: Services) -> None:
    image = svc.create()
    deactivated = svc.images.deactivate(OWNER, image.id)
    assert deactivated.status is Status.DEACTIVATED
    assert deactivated.updated_at > image.updated_at
    # Nothing else changes: data, facts about it, metadata.
    assert _same_but_status(deactivated, image)
    assert svc.images.get(OWNER, image.id) == deactivated
    reactivated = svc.images.reactivate(OWNER, image.id)
    assert reactivated.status is Status.ACTIVE
    assert reactivated.updated_at > deactivated.updated_at
    assert _same_but_status(reactivated, image)
    assert read(svc.images.open_data(OWNER, image.id)) == b"data"


def test_actions_are_idempotent(svc: Services) -> None:
    """A repeat succeeds and writes nothing, not even updated_at."""
    image = svc.create()
    assert svc.images.reactivate(OWNER, image.id) == svc.images.get(OWNER, image.id)
    assert svc.images.get(OWNER, image.id).updated_at == image.updated_at
    once = svc.images.deactivate(OWNER, image.id)
    assert svc.images.deactivate(OWNER, image.id) == once
    assert svc.images.deactivate(ADMIN, image.id) == once
    assert svc.images.get(OWNER, image.id) == once


def _queued(svc: Services) -> Image:
    return svc.create(data=None)


def _set_status(status: Status) -> Callable[[Services], Image]:
    """An image in a status no service call leaves it in between requests (saving,
    uploading, importing): written through the repository."""

    def make(svc: Services) -> Image:
        image = svc.create(data=None)
        assert svc.repo.set_fields(image.id, {"status": status})
        return svc.images.get(ADMIN, image.id)

    return make


def _killed(svc: Services) -> Image:
    image = svc.create(data=None)

    def broken() -> Iterator[bytes]:
        yield b"x"
        raise OSError("gone")

    with pytest.raises(OSError):
        svc.images.update(OWNER, image.id, [], upload=_chunks(broken()), on_failure=KILL)
    return svc.images.get(OWNER, image.id)


def _chunks(chunks: Iterator[bytes]) -> Any:
    from glimpse.domain.data import Upload

    return Upload(chunks, None)


# Every other status: Forbidden (403) for both actions, nothing changed.
OTHER_STATUSES: dict[Status, Callable[[Services], Image]] = {
    Status.QUEUED: _queued,
    Status.SAVING: _set_status(Status.SAVING),
    Status.UPLOADING: _set_status(Status.UPLOADING),
    Status.IMPORTING: _set_status(Status.IMPORTING),
    Status.KILLED: _killed,
}


def test_every_status_is_covered() -> None:
    covered = set(OTHER_STATUSES) | {Status.ACTIVE, Status.DEACTIVATED, Status.DELETED,
                                     Status.PENDING_DELETE}
    assert covered == set(Status)


@pytest.mark.parametrize("status", list(OTHER_STATUSES))
@pytest.mark.parametrize("action", ["deactivate", "reactivate"])
@pytest.mark.parametrize("role", ["owner", "admin"])
def test_other_statuses_are_forbidden(
    svc: Services, status: Status, action: str, role: str
) -> None:
    image = OTHER_STATUSES[status](svc)
    assert image.status is status
    with pytest.raises(Forbidden, match=f"Not allowed to {action} image in status '{status}'"):
        getattr(svc.images, action)(ROLES[role], image.id)
    assert svc.images.get(ADMIN, image.id) == image


@pytest.mark.parametrize("delayed", [False, True])
@pytest.mark.parametrize("action", ["deactivate", "reactivate"])
@pytest.mark.parametrize("role", ["owner", "admin"])
def test_deleted_images_are_not_found(
    build: ServiceFactory, delayed: bool, action: str, role: str
) -> None:
    svc = build(delayed_delete=delayed)
    image = svc.create()
    svc.images.delete(OWNER, image.id)
    before = svc.images.get(ADMIN, image.id)
    assert before.status is (Status.PENDING_DELETE if delayed else Status.DELETED)
    with pytest.raises(NotFound):
        getattr(svc.images, action)(ROLES[role], image.id)
    assert svc.images.get(ADMIN, image.id) == before


def test_unknown_image_is_not_found(svc: Services) -> None:
    for action in (svc.images.deactivate, svc.images.reactivate):
        for image_id in ("00000000-0000-0000-0000-000000000000", "nope", "x" * 1000, ""):
            with pytest.raises(NotFound):
                action(ADMIN, image_id)


def test_the_status_moving_under_an_action_is_decided_again(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write is a compare-and-swap on the status read: if another request deactivated
    the image between the read and the write, the swap fails and the action, reading again,
    finds it done."""
    image = svc.create()
    real_update = svc.repo.update
    calls: list[Status | None] = []

    def racing(image_id: str, changes: Any, **kwargs: Any) -> Image | None:
        calls.append(kwargs.get("expected_status"))
        if len(calls) == 1:
            assert svc.repo.set_fields(image_id, {"status": Status.DEACTIVATED},
                                       expected_status=Status.ACTIVE)
        return real_update(image_id, changes, **kwargs)

    monkeypatch.setattr(svc.repo, "update", racing)
    assert svc.images.deactivate(OWNER, image.id).status is Status.DEACTIVATED
    assert calls == [Status.ACTIVE]


def test_an_image_deleted_under_an_action_is_not_found(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = svc.create()
    real_update = svc.repo.update

    def racing(image_id: str, changes: Any, **kwargs: Any) -> Image | None:
        svc.images.delete(OWNER, image_id)
        return real_update(image_id, changes, **kwargs)

    monkeypatch.setattr(svc.repo, "update", racing)
    with pytest.raises(NotFound):
        svc.images.deactivate(OWNER, image.id)
    assert svc.images.get(ADMIN, image.id).status is Status.DELETED


def test_a_status_that_keeps_moving_is_a_conflict(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = svc.create()
    monkeypatch.setattr(svc.repo, "update", lambda *args, **kwargs: None)
    with pytest.raises(Conflict):
        svc.images.deactivate(OWNER, image.id)


# -- what a deactivated image allows -----------------------------------------------------------


def test_metadata_of_a_deactivated_image_stays_editable(svc: Services) -> None:
    image = svc.create()
    svc.images.deactivate(OWNER, image.id)
    changed = svc.images.update(
        OWNER, image.id,
        [SetFields({"name": "renamed", "min_ram": 64}), SetProperties({"k": "v"}), AddTag("t")],
        on_failure=KILL,
    )
    assert (changed.status, changed.name, changed.min_ram) == (Status.DEACTIVATED, "renamed", 64)
    assert changed.properties == {"k": "v"} and changed.tags == ["t"]
    # ... but not the facts about its data, as for an active image.
    with pytest.raises(Forbidden):
        svc.images.update(OWNER, image.id, [SetFields({"size": 99})], on_failure=KILL)


def test_a_deactivated_image_takes_no_upload(svc: Services) -> None:
    image = svc.create()
    svc.images.deactivate(OWNER, image.id)
    with pytest.raises(Conflict):
        svc.images.update(OWNER, image.id, [], upload=upload(b"more"), on_failure=KILL)
    assert svc.stored() == {image.id}


def test_deactivated_images_are_still_listed_and_shown(svc: Services) -> None:
    image = svc.shared(Visibility.SHARED, None)
    svc.members.invite(OWNER, image.id, "bob")
    svc.members.set_status(MEMBER, image.id, "bob", "accepted")  # type: ignore[arg-type]
    svc.images.deactivate(OWNER, image.id)
    for principal in (OWNER, MEMBER):
        assert svc.images.get(principal, image.id).status is Status.DEACTIVATED
        assert image.id in svc.listed(principal)


# Downloading a deactivated image: nobody through v1 (its reference refused admins too); v2
# lets admins (spec §2.6). Invisible stays 404.
#                      admin  owner  member stranger
DOWNLOAD = {
    "v1":             ("403",  "403", "403", "404"),
    "v2":             ("ok",   "403", "403", "404"),
}


@pytest.mark.parametrize("api", DOWNLOAD)
def test_downloading_a_deactivated_image(svc: Services, api: str) -> None:
    images = svc.images if api == "v1" else ImageService(
        svc.repo, svc.data, svc.limits, admins_read_deactivated=True)
    image = svc.shared(Visibility.SHARED, None)
    svc.members.invite(OWNER, image.id, "bob")
    svc.images.deactivate(OWNER, image.id)
    got: list[bytes] = []
    for principal, expected in zip((ADMIN, OWNER, MEMBER, STRANGER), DOWNLOAD[api],
                                   strict=True):
        def download(p: Principal = principal) -> None:
            got.append(read(images.open_data(p, image.id)))

        cell = outcome(download)
        assert cell == expected, principal
    assert got == [b"data"] * DOWNLOAD[api].count("ok")
    svc.images.reactivate(ADMIN, image.id)
    for principal in (ADMIN, OWNER, MEMBER):
        assert read(images.open_data(principal, image.id)) == b"data"


@pytest.mark.parametrize("delayed", [False, True])
def test_deleting_a_deactivated_image_removes_its_data(build: ServiceFactory,
                                                       delayed: bool) -> None:
    """Spec §7 item 14: Glance left a deactivated image's file in the store."""
    svc = build(delayed_delete=delayed)
    image, other = svc.create(), svc.create(data=b"other")
    svc.images.deactivate(OWNER, image.id)
    svc.images.delete(OWNER, image.id)
    if delayed:
        assert svc.images.get(ADMIN, image.id).status is Status.PENDING_DELETE
        assert svc.audit.scrub() == [image.id]
    gone = svc.images.get(ADMIN, image.id)
    assert (gone.status, gone.deleted, gone.locations) == (Status.DELETED, True, [])
    assert svc.stored() == {other.id}
    assert svc.audit.check().clean


def test_a_protected_deactivated_image_is_not_deleted(svc: Services) -> None:
    image = svc.create(protected=True)
    svc.images.deactivate(OWNER, image.id)
    with pytest.raises(Forbidden):
        svc.images.delete(ADMIN, image.id)
    assert svc.stored() == {image.id}


def _same_but_status(a: Image, b: Image) -> bool:
    ignore = {"status", "updated_at"}
    return all(getattr(a, f) == getattr(b, f) for f in a.__dataclass_fields__ if f not in ignore)


# A deleted image: v1 still shows admins its metadata; v2 shows it to nobody (spec §2.5), so
# every v2 operation on it is a 404, admins' included.
#                      get    update  delete
AFTER_DELETE = {
    "v1":             ("ok",  "403",  "404"),
    "v2":             ("404", "404",  "404"),
}


@pytest.mark.parametrize("api", AFTER_DELETE)
def test_what_admins_see_of_a_deleted_image(svc: Services, api: str) -> None:
    images = svc.images if api == "v1" else ImageService(
        svc.repo, svc.data, svc.limits, admins_read_deactivated=True, hide_deleted=True)
    image = svc.shared(Visibility.SHARED, None)
    images.delete(OWNER, image.id)
    cells = (
        outcome(lambda: images.get(ADMIN, image.id)),
        outcome(lambda: images.update(ADMIN, image.id, [SetFields({"name": "x"})],
                                      on_failure=FailureRule.REQUEUE)),
        outcome(lambda: images.delete(ADMIN, image.id)),
    )
    assert cells == AFTER_DELETE[api]

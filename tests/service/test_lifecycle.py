"""Every status change the services make, as glimpse/domain/lifecycle.py TRANSITIONS allows it,
with what each leaves in the store and on the image; and the table's refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.domain import lifecycle
from glimpse.domain.data import Upload
from glimpse.domain.lifecycle import TRANSITIONS, FailureRule
from glimpse.domain.model import Changes, Image, ImageInput, Location, SetFields, Status, now
from glimpse.domain.ports import Store
from glimpse.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    OverLimit,
    PreconditionFailed,
    Unavailable,
)
from tests.service.conftest import (
    ADMIN,
    FORMATS,
    OWNER,
    ServiceFactory,
    Services,
    build_services,
    new_id,
    read,
    upload,
)


def chunks_with(action: Callable[[], None], data: bytes = b"abcdef") -> Iterator[bytes]:
    """The data in two chunks, running ``action`` between them: mid-upload."""
    yield data[:2]
    action()
    yield data[2:]


class ClientGone(Exception):
    pass


def disconnecting() -> Iterator[bytes]:
    yield b"partial"
    raise ClientGone("the client went away")


def test_upload_moves_queued_to_saving_to_active(svc: Services) -> None:
    queued = svc.create(data=None)
    assert (queued.status, queued.locations, queued.size) == (Status.QUEUED, [], None)
    seen = []

    def look() -> None:
        image = svc.images.get(OWNER, queued.id)
        # Where the data goes is recorded when the upload claims the image.
        seen.append((image.status, [loc.url for loc in image.locations]))

    active = svc.images.update(OWNER, queued.id, [], upload=Upload(chunks_with(look), None),
                               on_failure=FailureRule.KILL)
    assert seen == [(Status.SAVING, [queued.id])]
    assert active.status is Status.ACTIVE
    assert (active.size, active.checksum) == (6, "e80b5017098950fc58aad83c8c14978e")
    assert active.os_hash_algo == "sha512" and active.os_hash_value
    assert [loc.url for loc in active.locations] == [queued.id]
    assert svc.stored() == {queued.id}


def test_create_with_data_is_saving_until_the_data_is_in(svc: Services) -> None:
    image_id = new_id()
    seen = []
    active = svc.images.create(
        OWNER,
        svc_input(id=image_id),
        Upload(chunks_with(lambda: seen.append(svc.images.get(OWNER, image_id).status)), None),
        FailureRule.KILL,
    )
    assert seen == [Status.SAVING]
    assert active.status is Status.ACTIVE and active.size == 6


def test_declared_empty_image_is_active_at_once(svc: Services) -> None:
    image = svc.create(data=None, size=0)
    assert image.status is Status.ACTIVE and image.locations == []


FAILURES: dict[str, Callable[[], tuple[Upload, dict[str, Any]]]] = {
    "client gone": lambda: (Upload(disconnecting(), None), {}),
    "size mismatch": lambda: (upload(b"abcdef"), {"size": 7}),
    "checksum mismatch": lambda: (upload(b"abcdef"), {"checksum": "0" * 32}),
}


@pytest.mark.parametrize("rule", list(FailureRule))
@pytest.mark.parametrize("failure", FAILURES)
def test_failing_upload_to_a_queued_image(svc: Services, rule: FailureRule,
                                          failure: str) -> None:
    data, declared = FAILURES[failure]()
    queued = svc.create(data=None, **declared)
    with pytest.raises((ClientGone, Invalid)):
        svc.images.update(OWNER, queued.id, [], upload=data, on_failure=rule)
    image = svc.images.get(OWNER, queued.id)
    # v1 (KILL): saving -> killed; v2 (REQUEUE): saving -> queued.
    assert image.status is rule.status
    assert image.locations == [] and image.size == declared.get("size")
    assert svc.stored() == set()


@pytest.mark.parametrize("rule", list(FailureRule))
@pytest.mark.parametrize("failure", FAILURES)
def test_failing_upload_with_create(svc: Services, rule: FailureRule, failure: str) -> None:
    data, declared = FAILURES[failure]()
    image_id = new_id()
    with pytest.raises((ClientGone, Invalid)):
        svc.images.create(OWNER, svc_input(id=image_id, **declared), data, rule)
    image = svc.images.get(OWNER, image_id)
    assert image.status is rule.status
    assert image.locations == []
    assert svc.stored() == set()


def test_requeued_image_takes_another_upload(svc: Services) -> None:
    queued = svc.create(data=None)
    with pytest.raises(ClientGone):
        svc.images.update(OWNER, queued.id, [], upload=Upload(disconnecting(), None),
                          on_failure=FailureRule.REQUEUE)
    active = svc.images.update(OWNER, queued.id, [], upload=upload(b"again"),
                               on_failure=FailureRule.REQUEUE)
    assert active.status is Status.ACTIVE and active.size == 5
    assert svc.stored() == {queued.id}


@pytest.mark.parametrize("status", [Status.ACTIVE, Status.KILLED])
def test_upload_to_an_unqueued_image_is_a_conflict(svc: Services, status: Status) -> None:
    image = svc.create() if status is Status.ACTIVE else _killed(svc)
    before = svc.images.get(OWNER, image.id)
    with pytest.raises(Conflict):
        svc.images.update(OWNER, image.id, [], upload=upload(b"more"),
                          on_failure=FailureRule.KILL)
    assert svc.images.get(OWNER, image.id) == before


def test_active_to_deleted(svc: Services) -> None:
    image = svc.create()
    svc.images.delete(OWNER, image.id)
    gone = svc.images.get(ADMIN, image.id)
    assert (gone.status, gone.deleted, gone.locations) == (Status.DELETED, True, [])
    assert gone.deleted_at is not None
    assert svc.stored() == set()
    with pytest.raises(NotFound):
        svc.images.get(OWNER, image.id)
    with pytest.raises(NotFound):
        svc.images.delete(OWNER, image.id)


def test_active_to_pending_delete_with_delayed_delete(build: ServiceFactory) -> None:
    svc = build(delayed_delete=True)
    image = svc.create()
    svc.images.delete(OWNER, image.id)
    pending = svc.images.get(ADMIN, image.id)
    assert (pending.status, pending.deleted) == (Status.PENDING_DELETE, True)
    # The data stays until the scrubber runs.
    assert [loc.url for loc in pending.locations] == [image.id]
    assert svc.stored() == {image.id}
    with pytest.raises(NotFound):
        svc.images.get(OWNER, image.id)
    with pytest.raises(Forbidden):
        svc.images.delete(OWNER, image.id)
    # pending_delete -> deleted, by the scrubber.
    assert svc.audit.scrub() == [image.id]
    done = svc.images.get(ADMIN, image.id)
    assert (done.status, done.locations) == (Status.DELETED, [])
    assert svc.stored() == set()


@pytest.mark.parametrize("delayed", [False, True])
def test_images_without_data_are_deleted_at_once(build: ServiceFactory, delayed: bool) -> None:
    svc = build(delayed_delete=delayed)
    for image in (svc.create(data=None), _killed(svc)):
        svc.images.delete(OWNER, image.id)
        assert svc.images.get(ADMIN, image.id).status is Status.DELETED


def test_killed_to_deleted(svc: Services) -> None:
    killed = _killed(svc)
    assert lifecycle.can_transition(Status.KILLED, Status.DELETED)
    svc.images.delete(OWNER, killed.id)
    assert svc.images.get(ADMIN, killed.id).status is Status.DELETED


@pytest.mark.parametrize("delayed", [False, True])
@pytest.mark.parametrize("heartbeat", [10.0, 0.0], ids=["finish-notices", "heartbeat-notices"])
def test_deleted_while_saving(build: ServiceFactory, heartbeat: float, delayed: bool) -> None:
    """The upload loses: PreconditionFailed, and nothing stays in the store. The delete is
    never delayed for a saving image (its data is not complete)."""
    svc = build(upload_heartbeat_interval=heartbeat, delayed_delete=delayed)
    queued = svc.create(data=None)
    with pytest.raises(PreconditionFailed):
        svc.images.update(
            OWNER, queued.id, [],
            upload=Upload(chunks_with(lambda: svc.images.delete(OWNER, queued.id)), None),
            on_failure=FailureRule.KILL,
        )
    image = svc.images.get(ADMIN, queued.id)
    assert (image.status, image.locations) == (Status.DELETED, [])
    assert svc.stored() == set()


def test_stale_uploads_are_killed_and_their_data_deleted(build: ServiceFactory) -> None:
    svc = build(stale_upload_timeout=60.0)
    stale, fresh = svc.create(data=None), svc.create(data=None)
    # What a server that died mid-upload leaves: saving, its location, partial data. No
    # service stops half way, so the repository writes it.
    for image, age in ((stale, 61), (fresh, 1)):
        claimed = svc.repo.update(
            image.id, Changes(fields={"status": Status.SAVING,
                                      "updated_at": now() - dt.timedelta(seconds=age)}),
            expected_status=Status.QUEUED, add_locations=[Location(svc.store.name, image.id)])
        assert claimed is not None
        svc.store.put(image.id, [b"partial"])
    assert svc.data.recover_stale_uploads() == [stale.id]
    killed = svc.images.get(OWNER, stale.id)
    assert (killed.status, killed.locations) == (Status.KILLED, [])
    assert svc.images.get(OWNER, fresh.id).status is Status.SAVING
    assert svc.stored() == {fresh.id}
    assert svc.data.recover_stale_uploads() == []


def test_stale_location_imports_go_back_to_queued(build: ServiceFactory) -> None:
    """An external location being verified (v2's locations API) whose server died: importing,
    with the failure rule the claim recorded, and no location yet."""
    svc = build(stale_upload_timeout=60.0)
    stale, fresh = svc.create(data=None), svc.create(data=None)
    for image, age in ((stale, 61), (fresh, 1)):
        claimed = svc.repo.update(
            image.id, Changes(fields={"status": Status.IMPORTING,
                                      "failure_status": Status.QUEUED,
                                      "updated_at": now() - dt.timedelta(seconds=age)}),
            expected_status=Status.QUEUED)
        assert claimed is not None
    assert svc.data.recover_stale_uploads() == [stale.id]
    requeued = svc.images.get(OWNER, stale.id)
    assert (requeued.status, requeued.locations, requeued.failure_status) == (
        Status.QUEUED, [], None)
    assert svc.images.get(OWNER, fresh.id).status is Status.IMPORTING


@pytest.mark.parametrize("damage", ["missing", "corrupt", "corrupt-same-size"])
def test_audit_repair_kills_active_images_with_broken_data(svc: Services, damage: str) -> None:
    broken, sound = svc.create(data=b"abcdef"), svc.create(data=b"sound")
    if damage == "missing":
        svc.store.delete(broken.id)
    else:
        svc.store.put(broken.id, [b"xyz" if damage == "corrupt" else b"fedcba"])
    verify = damage == "corrupt-same-size"  # only the checksum tells
    report = svc.audit.check(verify=verify)
    assert (report.missing, report.corrupt) == (
        ([broken.id], []) if damage == "missing" else ([], [broken.id]))
    assert svc.images.get(OWNER, broken.id).status is Status.ACTIVE  # a check changes nothing
    report = svc.audit.check(verify=verify, repair=True)
    assert report.repaired == 1
    killed = svc.images.get(OWNER, broken.id)
    assert (killed.status, killed.locations) == (Status.KILLED, [])
    assert svc.images.get(OWNER, sound.id).status is Status.ACTIVE
    assert svc.stored() == {sound.id}
    assert svc.audit.check(verify=True).clean


def test_audit_repair_deletes_orphans(svc: Services) -> None:
    image = svc.create()
    orphan = new_id()
    svc.store.put(orphan, [b"nobody's"])
    report = svc.audit.check(repair=True)
    assert report.orphans == [f"{svc.store.name}/{orphan}"] and report.repaired == 1
    assert svc.stored() == {image.id}


ALLOWED = [(a, b) for a in Status for b in Status if b in TRANSITIONS[a]]
FORBIDDEN = [(a, b) for a in Status for b in Status if b not in TRANSITIONS[a]]


@pytest.mark.parametrize(("current", "target"), FORBIDDEN, ids=[f"{a}-{b}" for a, b in FORBIDDEN])
def test_forbidden_transitions_are_refused(current: Status, target: Status) -> None:
    with pytest.raises(Conflict):
        lifecycle.check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=[f"{a}-{b}" for a, b in ALLOWED])
def test_allowed_transitions_pass(current: Status, target: Status) -> None:
    assert lifecycle.check_transition(current, target) is target


def test_the_table_ends_in_deleted() -> None:
    assert TRANSITIONS[Status.DELETED] == frozenset()
    assert all(Status.DELETED in TRANSITIONS[s] for s in Status if s is not Status.DELETED)
    # A killed image is spent: it can only be deleted.
    assert TRANSITIONS[Status.KILLED] == {Status.DELETED}


def test_the_services_refuse_what_the_table_forbids(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The services ask the table: with saving -> active struck out, an upload fails (and
    cleans up) instead of activating."""
    table = {**TRANSITIONS, Status.SAVING: TRANSITIONS[Status.SAVING] - {Status.ACTIVE}}
    monkeypatch.setattr(lifecycle, "TRANSITIONS", table)
    queued = svc.create(data=None)
    with pytest.raises(Conflict):
        svc.images.update(OWNER, queued.id, [], upload=upload(b"abc"),
                          on_failure=FailureRule.KILL)
    assert svc.images.get(OWNER, queued.id).status is not Status.ACTIVE


def test_deleted_images_are_not_updated(svc: Services) -> None:
    image = svc.create()
    svc.images.delete(OWNER, image.id)
    with pytest.raises(NotFound):
        svc.images.update(OWNER, image.id, [SetFields({"name": "x"})],
                          on_failure=FailureRule.KILL)
    with pytest.raises(Forbidden):
        svc.images.update(ADMIN, image.id, [SetFields({"name": "x"})],
                          on_failure=FailureRule.KILL)


def _killed(svc: Services) -> Image:
    queued = svc.create(data=None)
    with pytest.raises(ClientGone):
        svc.images.update(OWNER, queued.id, [], upload=Upload(disconnecting(), None),
                          on_failure=FailureRule.KILL)
    return svc.images.get(OWNER, queued.id)


def svc_input(**fields: Any) -> ImageInput:
    return ImageInput(fields={**FORMATS, **fields})


def test_data_in_a_store_no_longer_configured_is_unavailable(svc: Services) -> None:
    """Not a 500: the image names the store its data is in, which this deployment lacks."""
    image = svc.create()
    for location in image.locations:
        svc.repo.remove_location(image.id, location.store, location.url)
    svc.repo.update(image.id, Changes(), add_locations=[Location("gone", image.id)])
    assert [loc.store for loc in svc.images.get(OWNER, image.id).locations] == ["gone"]
    with pytest.raises(Unavailable, match="store gone"):
        svc.images.open_data(OWNER, image.id)


@pytest.mark.parametrize(("rule", "via_create"), [
    (FailureRule.KILL, False), (FailureRule.KILL, True), (FailureRule.REQUEUE, False),
])
def test_recovery_follows_the_failure_rule_of_the_upload(
    build: ServiceFactory, rule: FailureRule, via_create: bool
) -> None:
    """An upload whose server died ends as its API's rule says (v1 killed, v2 queued): the
    rule is recorded with the claim, so the sweep of another process knows it."""
    svc = build(stale_upload_timeout=60.0)
    started, release = threading.Event(), threading.Event()

    def hanging() -> Iterator[bytes]:
        yield b"partial"
        started.set()
        release.wait(10)
        raise OSError("the server died")  # what the upload thread sees, late

    queued = None if via_create else svc.create(data=None)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            if queued is None:
                svc.images.create(OWNER, ImageInput(fields=dict(FORMATS)),
                                  Upload(hanging(), None), rule)
            else:
                svc.images.update(OWNER, queued.id, [], upload=Upload(hanging(), None),
                                  on_failure=rule)
        except BaseException as exc:  # the upload fails either way; its end is checked below
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(10)
    saving = next(i for i in svc.repo.images_holding_data([str(Status.SAVING)]))
    assert saving.failure_status is rule.status
    # Its heartbeat stops: what the sweep of any process then finds.
    assert svc.repo.set_fields(saving.id, {"updated_at": now() - dt.timedelta(seconds=61)},
                               expected_status=Status.SAVING)
    assert svc.data.recover_stale_uploads() == [saving.id]
    release.set()
    worker.join(10)
    assert outcome
    ended = svc.images.get(OWNER, saving.id)
    assert (ended.status, ended.locations, ended.failure_status) == (rule.status, [], None)
    assert svc.stored() == set()


# -- a failed upload under v2's rule leaves the image as it was ------------------------------


class RefusingStore:
    """A store that refuses writes (after reading some of the data, as a full disk does) and,
    when told, deletes too."""

    writable = True

    def __init__(self, inner: Store, refuse_deletes: bool = False) -> None:
        self.name = inner.name
        self.inner = inner
        self.refuse_writes = True
        self.refuse_deletes = refuse_deletes

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        if self.refuse_writes:
            next(iter(chunks), None)
            raise Unavailable("the store is full")
        return self.inner.put(key, chunks)

    def delete(self, key: str) -> None:
        if self.refuse_deletes:
            raise Unavailable("the store is down")
        self.inner.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# How each upload fails: the Services and the upload, and the error it ends with.
REQUEUE_FAILURES: dict[str, tuple[dict[str, Any], Callable[[], Upload], type[BaseException]]] = {
    "client gone": ({}, lambda: Upload(disconnecting(), None), ClientGone),
    "over the cap while streaming": ({"image_size_cap": 4}, lambda: upload(b"abcdef"),
                                     OverLimit),
    "over the storage quota": ({"user_storage_quota": 4}, lambda: upload(b"abcdef"),
                               OverLimit),
    "store refuses": ({"refusing": True}, lambda: upload(b"abcdef"), Unavailable),
}


@pytest.mark.parametrize("via_create", [False, True], ids=["update", "create"])
@pytest.mark.parametrize("failure", REQUEUE_FAILURES)
def test_failed_upload_under_requeue_leaves_no_trace(
    tmp_path: Path, template_db: Path, store: Store, failure: str, via_create: bool
) -> None:
    """Spec v2-api.md §7 item 14: Glance left the checksum of a refused upload on the queued
    image. Here the image is as it was before the upload (as created, for a create with
    data): no size, checksum, hashes, virtual size or location, and nothing in the store."""
    limits, data, error = REQUEUE_FAILURES[failure]
    limits = dict(limits)
    if limits.pop("refusing", False):
        store = RefusingStore(store)
    svc = build_services(tmp_path, template_db, store, **limits)
    try:
        image_id = new_id()
        fields = {**FORMATS, "id": image_id, "name": "n"}
        before = None
        if not via_create:
            before = svc.images.create(OWNER, ImageInput(fields=fields), None, FailureRule.REQUEUE)
        with pytest.raises(error):
            if via_create:
                svc.images.create(OWNER, ImageInput(fields=fields), data(), FailureRule.REQUEUE)
            else:
                svc.images.update(OWNER, image_id, [], upload=data(),
                                  on_failure=FailureRule.REQUEUE)
        after = svc.images.get(OWNER, image_id)
        assert after.status is Status.QUEUED and after.failure_status is None
        assert (after.size, after.checksum, after.os_hash_algo, after.os_hash_value,
                after.virtual_size, after.locations) == (None, None, None, None, None, [])
        if before is not None:
            assert dataclasses.replace(after, updated_at=before.updated_at) == before
        assert svc.stored() == set()
    finally:
        svc.engine.dispose()


def test_data_the_store_could_not_delete_stays_recorded_once(
    tmp_path: Path, template_db: Path, store: Store
) -> None:
    """The one trace a requeued image may keep: the location of partial data its store could
    not delete at the time, so that the data is not lost track of. The next upload writes the
    same object and keeps that one location; deleting the image removes the data."""
    refusing = RefusingStore(store, refuse_deletes=True)
    svc = build_services(tmp_path, template_db, refusing)
    try:
        queued = svc.create(data=None)

        def partial() -> Iterator[bytes]:
            yield b"abc"
            refusing.inner.put(queued.id, [b"abc"])  # what a store that wrote part leaves
            raise ClientGone("gone")

        refusing.refuse_writes = False
        with pytest.raises(ClientGone):
            svc.images.update(OWNER, queued.id, [], upload=Upload(partial(), None),
                              on_failure=FailureRule.REQUEUE)
        requeued = svc.images.get(OWNER, queued.id)
        assert requeued.status is Status.QUEUED and requeued.checksum is None
        assert [loc.url for loc in requeued.locations] == [queued.id]
        refusing.refuse_deletes = False
        active = svc.images.update(OWNER, queued.id, [], upload=upload(b"whole"),
                                   on_failure=FailureRule.REQUEUE)
        assert [loc.url for loc in active.locations] == [queued.id]
        assert read(svc.images.open_data(OWNER, queued.id)) == b"whole"
        svc.images.delete(OWNER, queued.id)
        assert svc.stored() == set()
    finally:
        svc.engine.dispose()

"""A restarted process ends the uploads of its node's ended incarnations at once (each by the
failure rule its claim recorded, its data deleted); it leaves alone a live sibling's, another
node's and its own, which only the heartbeat timeout may end."""

from __future__ import annotations

import dataclasses
import datetime as dt

from glimpse.domain.data import Upload
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import Changes, Image, ImageInput, Location, Status, now
from tests.service.conftest import FORMATS, OWNER, ServiceFactory, Services
from tests.service.test_lifecycle import chunks_with

DEAD, SIBLING, ME = "d" * 32, "5" * 32, "e" * 32


@dataclasses.dataclass
class FakeIdentity:
    """A node's incarnations as the lock files would tell: ``live`` are running."""

    node: str = "host/node"
    incarnation: str = ME
    live: frozenset[str] = frozenset({SIBLING})
    forgotten: int = 0

    def ended(self, incarnation: str) -> bool:
        return incarnation != self.incarnation and incarnation not in self.live

    def forget_ended(self) -> int:
        self.forgotten += 1
        return 0


def claim(svc: Services, image: Image, status: Status, rule: FailureRule, node: str,
          incarnation: str) -> None:
    """What a server leaves of an upload in flight: claimed, its location, partial data, a
    heartbeat a second old (far from the 60 s timeout)."""
    fields = {"status": status, "failure_status": rule.status, "claim_node": node,
              "claim_incarnation": incarnation, "updated_at": now() - dt.timedelta(seconds=1)}
    located = [Location(svc.store.name, image.id)] if status is Status.SAVING else []
    assert svc.repo.update(image.id, Changes(fields=fields), expected_status=Status.QUEUED,
                           add_locations=located) is not None
    if located:
        svc.store.put(image.id, [b"partial"])


def test_a_restart_ends_its_predecessors_uploads_at_once(build: ServiceFactory) -> None:
    identity = FakeIdentity()
    svc = build(identity=identity, stale_upload_timeout=60.0)
    v1, v2, importing, sibling, peer, own = (svc.create(data=None) for _ in range(6))
    claim(svc, v1, Status.SAVING, FailureRule.KILL, identity.node, DEAD)
    claim(svc, v2, Status.SAVING, FailureRule.REQUEUE, identity.node, DEAD)
    claim(svc, importing, Status.IMPORTING, FailureRule.REQUEUE, identity.node, DEAD)
    claim(svc, sibling, Status.SAVING, FailureRule.KILL, identity.node, SIBLING)
    # Another node's incarnation ids mean nothing here, even one equal to a dead one of ours.
    claim(svc, peer, Status.SAVING, FailureRule.KILL, "other-host/node", DEAD)
    claim(svc, own, Status.SAVING, FailureRule.KILL, identity.node, ME)
    assert sorted(svc.data.recover_stale_uploads()) == sorted([v1.id, v2.id, importing.id])
    ended = {i.id: svc.images.get(OWNER, i.id) for i in (v1, v2, importing)}
    assert (ended[v1.id].status, ended[v1.id].locations) == (Status.KILLED, [])
    assert (ended[v2.id].status, ended[v2.id].locations) == (Status.QUEUED, [])
    assert ended[importing.id].status is Status.QUEUED
    assert all(i.failure_status is None for i in ended.values())
    for alive in (sibling, peer, own):
        assert svc.images.get(OWNER, alive.id).status is Status.SAVING
    assert svc.stored() == {sibling.id, peer.id, own.id}
    assert identity.forgotten == 1
    # Nothing more to end: a second sweep (or a sibling's at the same time) finds nothing.
    assert svc.data.recover_stale_uploads() == []
    # The peer's upload is still the heartbeat's to end.
    assert svc.repo.set_fields(peer.id, {"updated_at": now() - dt.timedelta(seconds=61)})
    assert svc.data.recover_stale_uploads() == [peer.id]
    assert svc.stored() == {sibling.id, own.id}


def test_claims_record_this_process(build: ServiceFactory) -> None:
    identity = FakeIdentity()
    svc = build(identity=identity)
    seen: list[tuple[str | None, str | None]] = []

    def look(image_id: str) -> None:
        image = svc.repo.get(image_id)
        assert image is not None and image.status is Status.SAVING
        seen.append((image.claim_node, image.claim_incarnation))

    queued = svc.create(data=None)
    svc.images.update(OWNER, queued.id, [], upload=Upload(chunks_with(lambda: look(queued.id)),
                                                           None), on_failure=FailureRule.REQUEUE)
    # Created with its data (v1): created claimed.
    created_id: list[str] = []

    def look_created() -> None:
        [saving] = svc.repo.images_holding_data([str(Status.SAVING)])
        created_id.append(saving.id)
        look(saving.id)

    svc.images.create(OWNER, ImageInput(fields=dict(FORMATS)),
                      Upload(chunks_with(look_created), None), FailureRule.KILL)
    assert seen == [(identity.node, ME)] * 2
    assert svc.images.get(OWNER, created_id[0]).status is Status.ACTIVE


def test_without_an_identity_claims_name_no_process(build: ServiceFactory) -> None:
    svc = build()
    queued = svc.create(data=None)
    claim(svc, queued, Status.SAVING, FailureRule.KILL, "host/node", DEAD)
    assert svc.data.recover_stale_uploads() == []

"""Glance's notifications on a real RabbitMQ, read by oslo.messaging's own listener (what
ceilometer runs), through real server processes (docs/notifications.md): each operation of
both APIs sends its events, in order, with Glance's payloads; a broker that stops answering
never slows or fails a request, its drops are counted, and delivery resumes when it is back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests import rabbit
from tests.e2e.identity import tenant
from tests.e2e.server import GlimpseServer, free_port
from tests.e2e.test_operations import scrape, value
from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.e2e

PUBLISHER = "image.notify-test"
OCTETS = {"Content-Type": "application/octet-stream"}
DATA = b"glimpse-notification-data" * 400
# Glance's format_image_notification, key for key.
IMAGE_KEYS = {"id", "name", "status", "created_at", "updated_at", "min_disk", "min_ram",
              "protected", "checksum", "owner", "disk_format", "container_format", "size",
              "virtual_size", "is_public", "visibility", "properties", "tags", "deleted",
              "deleted_at"}
IMPORT_KEYS = {"os_glance_importing_to_stores", "os_glance_failed_import"}
MEMBER_KEYS = {"image_id", "member_id", "status", "created_at", "updated_at", "deleted",
               "deleted_at"}
SEND_KEYS = {"bytes_sent", "image_id", "owner_id", "receiver_tenant_id", "receiver_user_id"}


@pytest.fixture(scope="module")
def consumer() -> Iterator[rabbit.Consumer]:
    rabbit.require()
    listening = rabbit.Consumer()
    yield listening
    listening.close()


@pytest.fixture(scope="module")
def notifying(consumer: rabbit.Consumer) -> Iterator[GlimpseServer]:
    """Two workers, each with its own sender, on the consumer's topic."""
    srv = GlimpseServer({
        "workers": "2", "notifications": "true",
        "notification_transport_url": rabbit.transport_url(),
        "notification_topics": consumer.topic, "notification_publisher_id": PUBLISHER,
    })
    yield srv
    srv.stop()


class Steps:
    """Runs operations on one image and checks, after each, the events it added."""

    def __init__(self, consumer: rabbit.Consumer) -> None:
        self.consumer = consumer
        self.image_id = ""
        self.expected: list[str] = []

    def expect(self, *types: str) -> list[tuple[str, str, str, Any, dict[str, Any]]]:
        self.expected += types
        found = self.consumer.wait_for(len(self.expected), self.image_id)
        assert found == self.expected, found
        # Nothing more trails in.
        time.sleep(0.05)
        assert self.consumer.types(self.image_id) == self.expected
        return self.consumer.of(self.image_id)[-len(types):]


def check_image(payload: dict[str, Any], image_id: str, status: str, *,
                extra: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    assert set(payload) == IMAGE_KEYS | extra, payload
    assert payload["id"] == image_id and payload["status"] == status
    assert payload["created_at"].endswith("Z") and payload["updated_at"].endswith("Z")
    assert "locations" not in payload and "direct_url" not in payload


def test_v2_operations_send_glances_events_in_order(
        notifying: GlimpseServer, consumer: rabbit.Consumer) -> None:
    owner, member = (f"{who}-{uuid.uuid4().hex[:8]}" for who in ("owner", "member"))
    steps = Steps(consumer)
    with httpx.Client(base_url=notifying.url, timeout=30) as client:
        created = client.post("/v2/images", headers=tenant(owner), json={
            "name": "n1", "disk_format": "raw", "container_format": "bare",
            "visibility": "shared", "purpose": "notify"})
        assert created.status_code == 201, created.text
        steps.image_id = image_id = created.json()["id"]
        (event,) = steps.expect("image.create")
        priority, publisher, _, payload, metadata = event
        assert (priority, publisher) == ("INFO", PUBLISHER)
        assert metadata["message_id"] and metadata["timestamp"]
        check_image(payload, image_id, "queued")
        assert payload["owner"] == owner and payload["properties"] == {"purpose": "notify"}
        assert payload["visibility"] == "shared" and payload["is_public"] is False

        put = client.put(f"/v2/images/{image_id}/file", content=DATA,
                         headers={**tenant(owner), **OCTETS})
        assert put.status_code == 204, put.text
        prepare, upload, activate = steps.expect("image.prepare", "image.upload",
                                                 "image.activate")
        check_image(prepare[3], image_id, "queued", extra=IMPORT_KEYS)
        check_image(upload[3], image_id, "active", extra=IMPORT_KEYS)
        assert upload[3]["size"] == len(DATA) and upload[3]["checksum"]
        assert upload[3]["os_glance_importing_to_stores"] == []
        check_image(activate[3], image_id, "active")

        patched = client.patch(
            f"/v2/images/{image_id}", headers={
                **tenant(owner), "Content-Type": "application/openstack-images-v2.1-json-patch"},
            json=[{"op": "replace", "path": "/name", "value": "n2"}])
        assert patched.status_code == 200, patched.text
        (update,) = steps.expect("image.update")
        assert update[3]["name"] == "n2"

        assert client.put(f"/v2/images/{image_id}/tags/red",
                          headers=tenant(owner)).status_code == 204
        update, tagged = steps.expect("image.update", "image.tag.create")
        assert update[3]["tags"] == ["red"] and tagged[3]["tag"] == "red"
        assert client.delete(f"/v2/images/{image_id}/tags/red",
                             headers=tenant(owner)).status_code == 204
        update, untagged = steps.expect("image.update", "image.tag.delete")
        assert update[3]["tags"] == [] and untagged[3]["tag"] == "red"

        members = f"/v2/images/{image_id}/members"
        added = client.post(members, json={"member": member}, headers=tenant(owner))
        assert added.status_code == 200, added.text
        (invited,) = steps.expect("image.member.create")
        assert set(invited[3]) == MEMBER_KEYS
        assert (invited[3]["member_id"], invited[3]["status"]) == (member, "pending")
        assert invited[3]["deleted"] is False and invited[3]["created_at"].endswith("Z")
        accepted = client.put(f"{members}/{member}", json={"status": "accepted"},
                              headers=tenant(member))
        assert accepted.status_code == 200, accepted.text
        (changed,) = steps.expect("image.member.update")
        assert changed[3]["status"] == "accepted"
        assert client.delete(f"{members}/{member}", headers=tenant(owner)).status_code == 204
        (removed,) = steps.expect("image.member.delete")
        assert removed[3]["member_id"] == member and removed[3]["deleted"] is True
        assert removed[3]["deleted_at"].endswith("Z")

        admin = tenant("notify-admin", "admin")
        for action, status in (("deactivate", "deactivated"), ("reactivate", "active")):
            done = client.post(f"/v2/images/{image_id}/actions/{action}", headers=admin)
            assert done.status_code == 204, done.text
            (update,) = steps.expect("image.update")
            assert update[3]["status"] == status

        got = client.get(f"/v2/images/{image_id}/file", headers=tenant(member + "-x", "admin"))
        assert got.status_code == 200 and got.content == DATA
        (sent,) = steps.expect("image.send")
        assert sent[0] == "INFO" and set(sent[3]) == SEND_KEYS
        assert sent[3] == {"bytes_sent": len(DATA), "image_id": image_id, "owner_id": owner,
                           "receiver_tenant_id": member + "-x",
                           "receiver_user_id": f"user-{member}-x"}

        assert client.delete(f"/v2/images/{image_id}", headers=tenant(owner)).status_code == 204
        (deleted,) = steps.expect("image.delete")
        check_image(deleted[3], image_id, "deleted")
        assert deleted[3]["deleted"] is True and deleted[3]["deleted_at"].endswith("Z")
        # Glance's payload is of the image as it was: its properties are still there.
        assert deleted[3]["properties"] == {"purpose": "notify"}


def test_v1_operations_send_glances_events_in_order(
        notifying: GlimpseServer, consumer: rabbit.Consumer) -> None:
    owner, member = (f"{who}-{uuid.uuid4().hex[:8]}" for who in ("v1owner", "v1member"))
    steps = Steps(consumer)
    with httpx.Client(base_url=notifying.url, timeout=30) as client:
        created = client.post("/v1/images", content=DATA, headers={
            **tenant(owner), **OCTETS, "x-image-meta-name": "v1", "x-image-meta-disk-format":
            "raw", "x-image-meta-container-format": "bare"})
        assert created.status_code == 201, created.text
        steps.image_id = image_id = created.json()["image"]["id"]
        events = steps.expect("image.create", "image.prepare", "image.upload",
                              "image.activate")
        assert events[0][3]["name"] == "v1" and events[0][3]["is_public"] is False
        check_image(events[2][3], image_id, "active", extra=IMPORT_KEYS)
        assert events[3][3]["size"] == len(DATA)

        updated = client.put(f"/v1/images/{image_id}", headers={
            **tenant(owner), "x-image-meta-property-colour": "blue"})
        assert updated.status_code == 200, updated.text
        (update,) = steps.expect("image.update")
        assert update[3]["properties"] == {"colour": "blue"}

        url = f"/v1/images/{image_id}/members/{member}"
        assert client.put(url, headers=tenant(owner)).status_code == 204
        (added,) = steps.expect("image.member.create")
        assert added[3]["member_id"] == member
        assert client.put(url, headers={**tenant(owner), "Content-Type": "application/json"},
                          json={"member": {"can_share": True}}).status_code == 204
        steps.expect("image.member.update")
        assert client.delete(url, headers=tenant(owner)).status_code == 204
        (removed,) = steps.expect("image.member.delete")
        assert removed[3]["deleted"] is True
        # Replacing the list: one event per membership created, changed or removed.
        listed = f"/v1/images/{image_id}/members"
        assert client.put(listed, headers=tenant(owner), json={"memberships": [
            {"member_id": member, "can_share": False}]}).status_code == 204
        steps.expect("image.member.create")
        assert client.put(listed, headers=tenant(owner), json={"memberships": [
            {"member_id": member + "-2", "can_share": False}]}).status_code == 204
        created, removed = steps.expect("image.member.create", "image.member.delete")
        assert created[3]["member_id"] == member + "-2" and removed[3]["member_id"] == member

        got = client.get(f"/v1/images/{image_id}", headers=tenant(owner))
        assert got.status_code == 200 and got.content == DATA
        (sent,) = steps.expect("image.send")
        assert sent[3]["bytes_sent"] == len(DATA) and sent[3]["receiver_tenant_id"] == owner

        assert client.delete(f"/v1/images/{image_id}", headers=tenant(owner)).status_code == 200
        (deleted,) = steps.expect("image.delete")
        assert deleted[3]["deleted"] is True and deleted[3]["status"] == "deleted"


def test_a_failed_upload_is_an_error_with_glances_message(
        notifying: GlimpseServer, consumer: rabbit.Consumer) -> None:
    owner = f"failing-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=notifying.url, timeout=30) as client:
        created = client.post("/v2/images", headers=tenant(owner), json={
            "name": "not-qcow2", "disk_format": "qcow2", "container_format": "bare"})
        image_id = created.json()["id"]
        # Zeros are no qcow2: the inspection refuses them once they have streamed in.
        put = client.put(f"/v2/images/{image_id}/file", content=bytes(65536),
                         headers={**tenant(owner), **OCTETS})
        assert put.status_code == 415, put.text
    # The ERROR travels on its own queue (<topic>.error): its order against the INFO
    # events is the broker's, so only the INFO ones are checked for order.
    found = consumer.wait_for(3, image_id)
    assert sorted(found) == ["image.create", "image.prepare", "image.upload"], found
    events = consumer.of(image_id)
    assert [e[2] for e in events if e[0] == "INFO"] == ["image.create", "image.prepare"]
    (failed,) = [e for e in events if e[0] == "ERROR"]
    assert failed[2] == "image.upload" and isinstance(failed[3], str)
    assert failed[3].startswith(f"Failed to upload image data for image {image_id}: ")


@pytest.mark.serial
def test_a_broker_that_stops_answering_never_slows_a_request(consumer: rabbit.Consumer) -> None:
    """The machine's RabbitMQ stays up (others use it): a proxy in front of it stops
    answering (every connection cut, new ones never answered), then passes again."""
    proxy = FaultProxy(rabbit.RABBIT_PORT)
    metrics_port = free_port()
    srv = GlimpseServer({
        "notifications": "true", "notification_transport_url": rabbit.transport_url(
            proxy.port), "notification_topics": consumer.topic,
        "notification_queue_size": "5", "metrics_port": str(metrics_port)})
    owner = f"outage-{uuid.uuid4().hex[:8]}"
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as client:

            def create(name: str) -> tuple[str, float]:
                start = time.monotonic()
                resp = client.post("/v2/images", headers=tenant(owner), json={"name": name})
                assert resp.status_code == 201, resp.text
                return resp.json()["id"], time.monotonic() - start

            first, _ = create("before")
            assert consumer.wait_for(1, first) == ["image.create"]
            proxy.set_mode("stall")
            during = [create(f"during-{n}") for n in range(40)]
            timings = [seconds for _, seconds in during]
            # Each answered as if no broker existed (a blocked send would take seconds).
            assert max(timings) < 1.0, timings
            samples = scrape(srv.metrics_url)
            dropped = value(samples, "glimpse_notifications_dropped_total")
            # 40 events, 5 queued, at most one held by the stalled sender.
            assert dropped >= 40 - 5 - 1, dropped
            assert "notification queue full" in srv.log()
            proxy.set_mode("pass")
            # The sender reconnects (oslo.messaging's backoff) and sends what waited: the
            # queued events, in order, none of the dropped ones.
            ids = [image_id for image_id, _ in during]
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                delivered = [i for i in ids if consumer.types(i)]
                if len(delivered) >= 5:
                    break
                time.sleep(0.2)
            assert len(delivered) >= 5, srv.log()[-3000:]
            assert delivered == ids[:len(delivered)] or delivered == ids[1:len(delivered) + 1]
            assert len(delivered) <= 6
            after, _ = create("after")
            assert consumer.wait_for(1, after, timeout=30) == ["image.create"]
    finally:
        srv.stop()
        proxy.close()


def test_log_driver_writes_events_to_the_log(
        server_factory: Callable[..., GlimpseServer]) -> None:
    """No broker needed: the log driver writes each event to the server's log."""
    srv = server_factory(notifications="true", notification_driver="log",
                         disabled_notifications="image.member")
    owner = f"logged-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        resp = client.post("/v2/images", headers=tenant(owner), json={"name": "logged"})
        assert resp.status_code == 201
        image_id = resp.json()["id"]
        deadline = time.monotonic() + 20
        while image_id not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    log = srv.log()
    assert "image.create" in log and image_id in log


TASK_KEYS = {"id", "type", "status", "result", "owner", "message", "expires_at", "created_at",
             "updated_at", "deleted", "deleted_at"}


def test_an_import_sends_its_tasks_and_images_events(
        notifying: GlimpseServer, consumer: rabbit.Consumer) -> None:
    """glance-direct: the task's life as Glance tells it (each payload the task before the
    change), and the image's prepare, upload and activate with the import's store lists."""
    owner = f"importer-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=notifying.url, timeout=30) as client:
        created = client.post("/v2/images", headers=tenant(owner), json={
            "name": "imported", "disk_format": "raw", "container_format": "bare"})
        image_id = created.json()["id"]
        staged = client.put(f"/v2/images/{image_id}/stage", content=DATA,
                            headers={**tenant(owner), **OCTETS})
        assert staged.status_code == 204, staged.text
        started = client.post(f"/v2/images/{image_id}/import", headers=tenant(owner),
                              json={"method": {"name": "glance-direct"}})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 30
        while client.get(f"/v2/images/{image_id}",
                         headers=tenant(owner)).json()["status"] != "active":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        [task] = client.get(f"/v2/images/{image_id}/tasks",
                            headers=tenant(owner)).json()["tasks"]
    assert consumer.wait_for(4, task["id"]) == [
        "task.create", "task.run", "task.processing", "task.success"]
    payloads = [e[3] for e in consumer.of(task["id"])]
    for payload in payloads:
        assert set(payload) == TASK_KEYS and payload["type"] == "api_image_import"
        assert payload["owner"] == owner and payload["result"] is None
    assert [p["status"] for p in payloads] == ["pending", "pending", "pending", "processing"]
    image_events = consumer.wait_for(4, image_id)
    assert image_events[0] == "image.create"
    assert image_events[-3:] == ["image.prepare", "image.upload", "image.activate"], image_events
    prepare, upload, activate = consumer.of(image_id)[-3:]
    check_image(prepare[3], image_id, "importing", extra=IMPORT_KEYS)
    assert prepare[3]["os_glance_importing_to_stores"] == ["file"]
    check_image(upload[3], image_id, "active", extra=IMPORT_KEYS)
    assert upload[3]["os_glance_importing_to_stores"] == []
    assert upload[3]["os_glance_failed_import"] == []
    check_image(activate[3], image_id, "active")

"""The notification queue (glimpse.notifications) and the domain's events, without a broker:
notify never waits, a full queue drops and counts, disabled types are never queued, and the
payloads are Glance's."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest

from glimpse import settings as settings_mod
from glimpse.domain.events import Events, image_payload, isotime
from glimpse.domain.model import Image, Member, MemberStatus, Principal, Status, Visibility
from glimpse.errors import Invalid
from glimpse.notifications import QueuedNotifier

Sent = list[tuple[str, Any, bool]]


def blocked_sender(gate: threading.Event, sent: Sent) -> Any:
    def connect() -> Any:
        def send(event_type: str, payload: Any, error: bool) -> None:
            gate.wait(30)  # a broker that does not answer until the gate opens
            sent.append((event_type, payload, error))
        return send
    return connect


@pytest.mark.serial
def test_a_stuck_sender_never_blocks_notify_and_drops_are_counted() -> None:
    gate, sent, drops = threading.Event(), [], []
    notifier = QueuedNotifier(blocked_sender(gate, sent), capacity=3,
                              on_drop=lambda: drops.append(1))
    start = time.monotonic()
    for n in range(50):
        notifier.notify("image.create", {"n": n})
    assert time.monotonic() - start < 0.5
    # One taken by the stuck sender (perhaps), three queued, the rest dropped.
    assert notifier.dropped in (46, 47) and len(drops) == notifier.dropped
    gate.set()
    notifier.stop(5)
    # Which ones were dropped depends on when the sender took the first one off the queue;
    # what went out is in order, each once, and all that was not dropped.
    numbers = [p["n"] for _, p, _ in sent]
    assert numbers == sorted(set(numbers)) and numbers[:3] == [0, 1, 2]
    assert len(numbers) == 50 - notifier.dropped


def test_disabled_types_and_groups_are_never_queued() -> None:
    gate, sent = threading.Event(), []
    gate.set()
    notifier = QueuedNotifier(blocked_sender(gate, sent), capacity=10,
                              disabled=("image.member", "image.send"))
    for event_type in ("image.member.create", "image.send", "image.create", "image.membership"):
        notifier.notify(event_type, {})
    notifier.stop(5)
    assert [t for t, _, _ in sent] == ["image.create", "image.membership"]


def test_a_failed_send_is_logged_and_the_next_goes_out(caplog: pytest.LogCaptureFixture) -> None:
    sent: Sent = []

    def connect() -> Any:
        def send(event_type: str, payload: Any, error: bool) -> None:
            if payload == "boom":
                raise ConnectionError("rabbit://guest:secret@broker/")
            sent.append((event_type, payload, error))
        return send

    notifier = QueuedNotifier(connect, capacity=10)
    notifier.notify("image.upload", "boom", error=True)
    notifier.notify("image.update", {})
    notifier.stop(5)
    assert sent == [("image.update", {}, False)] and notifier.failed == 1
    assert "secret" not in caplog.text and "ConnectionError" in caplog.text


class Recording:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any, bool]] = []

    def notify(self, event_type: str, payload: Any, error: bool = False) -> None:
        self.events.append((event_type, payload, error))


def test_payloads_are_glances() -> None:
    stamp = dt.datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=dt.UTC)
    image = Image(id="i1", status=Status.ACTIVE, name="n", size=3, owner="p",
                  visibility=Visibility.PUBLIC, created_at=stamp, updated_at=stamp,
                  properties={"a": "b"}, tags=["t"])
    payload = image_payload(image)
    assert payload["created_at"] == "2026-12-06T01:02:03Z" == isotime(stamp)
    assert payload["is_public"] is True and payload["visibility"] == "public"
    assert payload["status"] == "active" and payload["properties"] == {"a": "b"}
    recording = Recording()
    events = Events(recording)
    events.tags(image, ["old"])
    assert [(t, p["tag"]) for t, p, _ in recording.events] == [
        ("image.tag.create", "t"), ("image.tag.delete", "old")]
    events.member("image.member.delete",
                  Member("i1", "m", MemberStatus.PENDING, created_at=stamp, updated_at=stamp))
    member = recording.events[-1][1]
    assert member["deleted"] is True and member["status"] == "pending"
    who = Principal(tenant="t", user="u", roles=(), is_admin=False, owner="t")
    events.sent(image, who, 2, 3)
    assert recording.events[-1] == ("image.send", {
        "bytes_sent": 2, "image_id": "i1", "owner_id": "p", "receiver_tenant_id": "t",
        "receiver_user_id": "u"}, True)


def test_settings_checked_only_when_on() -> None:
    assert not settings_mod.load(environ={}).notifications
    with pytest.raises(Invalid, match="notification_transport_url"):
        settings_mod.load(environ={"GLIMPSE_NOTIFICATIONS": "true"})
    with pytest.raises(Invalid, match="notification_driver"):
        settings_mod.load(environ={"GLIMPSE_NOTIFICATIONS": "true",
                                   "GLIMPSE_NOTIFICATION_DRIVER": "smoke"})
    loaded = settings_mod.load(environ={
        "GLIMPSE_NOTIFICATIONS": "true", "GLIMPSE_NOTIFICATION_DRIVER": "log,noop",
        "GLIMPSE_DISABLED_NOTIFICATIONS": "image.send"})
    assert loaded.notification_driver == ("log", "noop")
    assert loaded.disabled_notifications == ("image.send",)
    secret = settings_mod.load(environ={
        "GLIMPSE_NOTIFICATIONS": "1",
        "GLIMPSE_NOTIFICATION_TRANSPORT_URL": "rabbit://u:hush@h:5672/"})
    assert "hush" not in repr(secret)


@pytest.mark.serial
def test_stop_returns_once_the_sender_is_done_even_after_importing_oslo() -> None:
    """The sender thread imports oslo.messaging (and so eventlet), after which Thread.join
    no longer sees that thread end: stop must not wait its whole timeout."""

    def connect() -> Any:
        import oslo_messaging  # noqa: F401

        return lambda event_type, payload, error: None

    notifier = QueuedNotifier(connect, capacity=10)
    notifier.notify("image.create", {})
    deadline = time.monotonic() + 30
    while notifier.sent < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert notifier.sent == 1
    start = time.monotonic()
    notifier.stop(5)
    assert time.monotonic() - start < 2

"""A real consumer of glimpse's notifications on the machine's RabbitMQ: oslo.messaging's own
notification listener (what ceilometer runs), on a topic of its own per test."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import warnings
from typing import Any

import pytest

RABBIT_HOST = os.environ.get("GLIMPSE_TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("GLIMPSE_TEST_RABBIT_PORT", "5672"))
RABBIT_USER = os.environ.get("GLIMPSE_TEST_RABBIT_USER", "guest")
RABBIT_PASSWORD = os.environ.get("GLIMPSE_TEST_RABBIT_PASSWORD", "guest")
EXCHANGE = "glance"  # glimpse.notifications.CONTROL_EXCHANGE


def transport_url(port: int = RABBIT_PORT) -> str:
    return f"rabbit://{RABBIT_USER}:{RABBIT_PASSWORD}@{RABBIT_HOST}:{port}/"


def require() -> None:
    """Skip unless the broker answers (CI's machine runs one)."""
    try:
        socket.create_connection((RABBIT_HOST, RABBIT_PORT), timeout=2).close()
    except OSError:
        pytest.skip(f"no RabbitMQ on {RABBIT_HOST}:{RABBIT_PORT}")


class Consumer:
    """Listens on ``topic`` (a fresh one) of Glance's exchange; ``events`` in arrival order,
    each (priority, publisher_id, event_type, payload, metadata)."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eventlet's deprecation, imported by oslo
            import oslo_messaging
            from oslo_config import cfg

        self.topic = f"glimpse-test-{uuid.uuid4().hex[:12]}"
        self.events: list[tuple[str, str, str, Any, dict[str, Any]]] = []
        self._lock = threading.Lock()
        conf = cfg.ConfigOpts()
        conf([], project="glimpse-tests", default_config_files=[], default_config_dirs=[])
        self._transport = oslo_messaging.get_notification_transport(conf, url=transport_url())
        consumer = self

        class Endpoint:
            def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
                     metadata: dict[str, Any]) -> None:
                consumer._add("INFO", publisher_id, event_type, payload, metadata)

            def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
                      metadata: dict[str, Any]) -> None:
                consumer._add("ERROR", publisher_id, event_type, payload, metadata)

        target = oslo_messaging.Target(topic=self.topic, exchange=EXCHANGE)
        self._listener = oslo_messaging.get_notification_listener(
            self._transport, [target], [Endpoint()], executor="threading")
        self._listener.start()

    def _add(self, *event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def types(self, image_id: str | None = None) -> list[str]:
        with self._lock:
            return [e[2] for e in self.events if image_id is None or _about(e[3], image_id)]

    def of(self, image_id: str) -> list[tuple[str, str, str, Any, dict[str, Any]]]:
        with self._lock:
            return [e for e in self.events if _about(e[3], image_id)]

    def wait_for(self, count: int, image_id: str | None = None,
                 timeout: float = 30.0) -> list[str]:
        """The event types about ``image_id`` once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while len(found := self.types(image_id)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def close(self) -> None:
        self._listener.stop()
        self._listener.wait()
        # The topic's queues (the publisher declares them durable) go with the test.
        import kombu

        with kombu.Connection(f"amqp://{RABBIT_USER}:{RABBIT_PASSWORD}@{RABBIT_HOST}:"
                              f"{RABBIT_PORT}//") as conn:
            channel = conn.channel()
            for priority in ("info", "error", "warn", "audit", "debug", "critical", "sample"):
                try:
                    channel.queue_delete(f"{self.topic}.{priority}")
                except Exception:
                    channel = conn.channel()  # a missing queue closes the channel
        self._transport.cleanup()


def _about(payload: Any, image_id: str) -> bool:
    if isinstance(payload, dict):
        return image_id in (payload.get("id"), payload.get("image_id"))
    return isinstance(payload, str) and image_id in payload

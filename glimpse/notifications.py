"""Sends the domain's notifications (the Notifier port) through oslo.messaging, never in the
request's way: events wait in a bounded in-process queue that one background thread drains.

A broker that is down or slow only stalls that thread (oslo.messaging retries its connection
as configured); requests keep handing events over in microseconds, and when the queue is full
the newest event is dropped, counted (``dropped``, the notification_drops metric) and logged.
oslo.messaging is imported by the thread, so a server with notifications off never loads it
and a worker process builds its transport after the fork.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from glimpse.redaction import redact_urls

log = logging.getLogger(__name__)

# Glance's exchange: ceilometer listens to the "glance" exchange for image events.
CONTROL_EXCHANGE = "glance"
# How often a run of drops is logged: the first at once, then one summary a period.
DROP_LOG_PERIOD = 10.0

Payload = dict[str, Any] | str
Event = tuple[str, Payload, bool]


class QueuedNotifier:
    """The Notifier port: ``notify`` only enqueues. ``send`` delivers one event (in the
    sender thread); it is built there, on the first event, by ``connect``."""

    def __init__(self, connect: Callable[[], Callable[[str, Payload, bool], None]],
                 capacity: int, on_drop: Callable[[], None] = lambda: None,
                 disabled: Sequence[str] = ()) -> None:
        self._connect = connect
        self._disabled = frozenset(disabled)
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=capacity)
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Set when the sender returns. Not Thread.join: importing oslo.messaging (in the
        # thread) imports eventlet, after which join() no longer sees the thread end.
        self._done = threading.Event()
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self._drops_logged = 0
        self._last_drop_log = 0.0

    def notify(self, event_type: str, payload: Payload, error: bool = False) -> None:
        if self._disabled and self._is_disabled(event_type):
            return
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait((event_type, payload, error))
        except queue.Full:
            self._drop(event_type)

    def _is_disabled(self, event_type: str) -> bool:
        """Glance's disabled_notifications: the type itself or a group it is in (image,
        image.member)."""
        parts = event_type.split(".")
        return any(".".join(parts[:n]) in self._disabled for n in range(1, len(parts) + 1))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping:
                # A fresh context: the sender's log lines are its own, not those of the
                # request that happened to send the first event.
                self._thread = threading.Thread(
                    target=contextvars.Context().run, args=(self._run,),
                    name="notifications", daemon=True)
                self._thread.start()

    def _drop(self, event_type: str) -> None:
        with self._lock:
            self.dropped += 1
            count, now = self.dropped, time.monotonic()
            due = now - self._last_drop_log >= DROP_LOG_PERIOD
            if due:
                self._last_drop_log, since = now, count - self._drops_logged
                self._drops_logged = count
        self._on_drop()
        if due:
            log.warning("notification queue full (broker down or slow): dropped %s (%d "
                        "dropped since the last report, %d in all)", event_type, since, count)

    def _run(self) -> None:
        try:
            self._send_all()
        finally:
            self._done.set()

    def _send_all(self) -> None:
        try:
            send = self._connect()
        except Exception:
            log.exception("notifications cannot be sent: their transport could not be built")
            return
        while (event := self._queue.get()) is not None:
            event_type, payload, error = event
            try:
                send(event_type, payload, error)
                self.sent += 1
            except Exception as exc:
                # oslo.messaging gave up on this one (its retries are spent): it is lost, but
                # the next may go through. The message says why without the transport URL.
                self.failed += 1
                log.warning("notification %s could not be sent: %s", event_type,
                            type(exc).__name__)

    def stop(self, timeout: float) -> None:
        """Let the sender finish what is queued for up to ``timeout`` seconds, then leave it
        (a daemon thread: it never holds the process's exit)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._queue.put(None, timeout=max(deadline - time.monotonic(), 0.01))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    return
        self._done.wait(max(deadline - time.monotonic(), 0))


def oslo_sender(transport_url: str, drivers: Sequence[str], topics: Sequence[str],
                publisher_id: str, retry: int) -> Callable[[], Callable[[str, Payload, bool],
                                                                        None]]:
    """``connect`` for QueuedNotifier: an oslo.messaging Notifier on a configuration of its
    own (glimpse does not read oslo.config files), on Glance's exchange."""

    def connect() -> Callable[[str, Payload, bool], None]:
        with warnings.catch_warnings():
            # oslo.messaging still imports eventlet (for its eventlet executor, unused here),
            # which warns of its own deprecation into the server's log on every start.
            warnings.simplefilter("ignore")
            import oslo_messaging
            from oslo_config import cfg

        conf = cfg.ConfigOpts()
        conf([], project="glimpse", default_config_files=[], default_config_dirs=[])
        oslo_messaging.set_transport_defaults(CONTROL_EXCHANGE)
        transport = oslo_messaging.get_notification_transport(conf, url=transport_url or None)
        conf.set_override("control_exchange", CONTROL_EXCHANGE)
        # Several drivers are named through the configuration (the argument takes one).
        conf.set_override("driver", list(drivers), group="oslo_messaging_notifications")
        notifier = oslo_messaging.Notifier(transport, publisher_id=publisher_id,
                                           topics=list(topics), retry=retry)

        def send(event_type: str, payload: Payload, error: bool) -> None:
            if isinstance(payload, str):
                # A failed upload's message: its sources already quote URLs redacted; this
                # keeps any other userinfo out of what every consumer of the topic reads.
                payload = redact_urls(payload)
            # Glance sends an empty request context.
            if error:
                notifier.error({}, event_type, payload)
            else:
                notifier.info({}, event_type, payload)

        return send

    return connect

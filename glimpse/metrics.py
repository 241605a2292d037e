"""Prometheus metrics: what every worker process records, and the listener that serves them.

Off unless ``metrics_port`` is set; then prometheus_client is loaded and runs in its
multiprocess mode. uvicorn serves requests from several worker processes, each with its own
memory, so every worker writes its values to memory-mapped files in one directory that the
serving process creates for this run (``PROMETHEUS_MULTIPROC_DIR``, inherited by the workers),
and a scrape adds the files of all workers up. The scrape is answered by the serving process
(the supervisor of the workers, or the one process of a one-worker server) on a listener of its
own: metrics never share the API's port, so tenants cannot read them, a scrape works while every
API worker is busy, and scrapes do not count among the API's requests.

Labels are bounded by construction: a request is labelled by its route's template
(``/v2/images/{image_id}``), never its path, and an unmatched path by ``unmatched``; methods
outside the known ones are ``other``; statuses are what the server answers; store names are
the configured ones. A hostile client can add no series.

The metrics the image cache and notifications will feed are declared here (names and help)
and created on their first use: until something feeds them they are not exported at all,
rather than exported as zeros that would look like a cache that never hits.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from glimpse.settings import Settings

log = logging.getLogger(__name__)

DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIRECTORY_PREFIX = "glimpse-metrics-"  # then the serving process's pid
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
UNMATCHED = "unmatched"
# Seconds: metadata requests take milliseconds, image transfers up to minutes.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0)
# What the cache and notifications will feed: (kind, name, help, labels).
LATER = {
    "cache_events": ("counter", "glimpse_cache_events_total",
                     "Image cache lookups, fills and evictions, by event (hit, miss, fill, "
                     "fill_failure, eviction)",
                     ("event",)),
    "cache_size": ("gauge", "glimpse_cache_size_bytes", "Bytes held by the image cache", ()),
    "notification_drops": ("counter", "glimpse_notifications_dropped_total",
                           "Notifications dropped because their queue was full", ()),
}


class Recorder(Protocol):
    """What the API core, the data path and the wiring report. ``NullRecorder`` when metrics
    are off, so callers never check."""

    def request(self, method: str, route: str, status: int, seconds: float,
                bytes_in: int, bytes_out: int) -> None: ...

    def transfer(self, kind: str, delta: int) -> None:
        """An upload or import (``kind``) starts (+1) or ends (-1)."""

    def store_error(self, store: str, operation: str) -> None: ...

    def watch_pool(self, engine: Engine) -> None:
        """Follow the engine's connection pool (checked out, idle, overflow)."""

    def later(self, metric: str, value: float = 1.0, *labels: str) -> None:
        """Feed one of the LATER metrics (counters: add value; gauges: set it)."""


class NullRecorder:
    def request(self, method: str, route: str, status: int, seconds: float,
                bytes_in: int, bytes_out: int) -> None:
        pass

    def transfer(self, kind: str, delta: int) -> None:
        pass

    def store_error(self, store: str, operation: str) -> None:
        pass

    def watch_pool(self, engine: Engine) -> None:
        pass

    def later(self, metric: str, value: float = 1.0, *labels: str) -> None:
        pass


class PrometheusRecorder:
    """Records into prometheus_client's metrics; needs DIRECTORY_ENV set before
    prometheus_client is first imported in the process (prepare() does)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self._requests = Counter("glimpse_http_requests_total", "Requests answered",
                                 ("method", "route", "status"))
        self._latency = Histogram("glimpse_http_request_duration_seconds",
                                  "Time from a request's arrival to its last response byte",
                                  ("method", "route"), buckets=LATENCY_BUCKETS)
        self._bytes_in = Counter("glimpse_http_request_body_bytes_total",
                                 "Request body bytes received", ("route",))
        self._bytes_out = Counter("glimpse_http_response_body_bytes_total",
                                  "Response body bytes sent (zero-copy file sends included)",
                                  ("route",))
        self._transfers = Gauge("glimpse_transfers_in_progress",
                                "Uploads and imports (external data being verified) streaming "
                                "now", ("kind",), multiprocess_mode="livesum")
        self._store_errors = Counter("glimpse_store_errors_total",
                                     "Store operations that failed (a missing object is no "
                                     "error)", ("store", "operation"))
        self._pool = Gauge("glimpse_db_pool_connections",
                           "Database connections of the API workers' pools: checked_out (in "
                           "use now), pool_size (kept open at most; up to 10 more per worker "
                           "are opened for a while beyond it)",
                           ("state",), multiprocess_mode="livesum")
        for kind in ("upload", "import"):
            self._transfers.labels(kind)
        self._later: dict[str, Any] = {}
        self._lock = threading.Lock()

    def request(self, method: str, route: str, status: int, seconds: float,
                bytes_in: int, bytes_out: int) -> None:
        method = method if method in KNOWN_METHODS else "other"
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)
        if bytes_in:
            self._bytes_in.labels(route).inc(bytes_in)
        if bytes_out:
            self._bytes_out.labels(route).inc(bytes_out)

    def transfer(self, kind: str, delta: int) -> None:
        self._transfers.labels(kind).inc(delta)

    def store_error(self, store: str, operation: str) -> None:
        self._store_errors.labels(store, operation).inc()

    def watch_pool(self, engine: Engine) -> None:
        from sqlalchemy import event
        from sqlalchemy.pool import QueuePool

        pool = engine.pool
        if not isinstance(pool, QueuePool):
            return  # no pool of fixed size to speak of (NullPool, StaticPool)
        self._pool.labels("pool_size").set(pool.size())
        checked_out = self._pool.labels("checked_out")
        # Counted by the events themselves: the pool's own counters, read in a check-in
        # event, still count the connection being returned.
        lock = threading.Lock()
        count = 0

        def change(delta: int) -> None:
            nonlocal count
            with lock:
                count += delta
                checked_out.set(count)

        event.listen(pool, "checkout", lambda *_: change(1))
        event.listen(pool, "checkin", lambda *_: change(-1))
        checked_out.set(0)

    def later(self, metric: str, value: float = 1.0, *labels: str) -> None:
        with self._lock:
            made = self._later.get(metric)
            if made is None:
                made = self._later[metric] = _make_later(metric)
        target = made.labels(*labels) if labels else made
        if LATER[metric][0] == "gauge":
            target.set(value)
        else:
            target.inc(value)


def _make_later(metric: str) -> Any:
    from prometheus_client import Counter, Gauge

    kind, name, documentation, labels = LATER[metric]
    if kind == "gauge":
        # The cache is the node's, shared by its workers: each reports the same whole, so
        # the newest report is the value (a sum would count it once per worker).
        return Gauge(name, documentation, labels, multiprocess_mode="mostrecent")
    return Counter(name, documentation, labels)


def recorder(settings: Settings) -> Recorder:
    """The recorder of a worker process: Prometheus's when metrics are on."""
    if settings.metrics_port and os.environ.get(DIRECTORY_ENV):
        return PrometheusRecorder()
    return NullRecorder()


def prepare(settings: Settings) -> Path | None:
    """In the serving process, before any worker starts: a fresh directory for this run's
    values (a directory kept from an earlier run would add its counts in), named in the
    environment the workers inherit. None when metrics are off."""
    if not settings.metrics_port:
        return None
    _remove_abandoned()
    directory = Path(tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-"))
    os.environ[DIRECTORY_ENV] = str(directory)
    return directory


def _remove_abandoned() -> None:
    """Directories of servers that were killed outright (SIGKILL: no clean-up ran)."""
    for path in Path(tempfile.gettempdir()).glob(f"{DIRECTORY_PREFIX}*-*"):
        pid = path.name.removeprefix(DIRECTORY_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def serve(settings: Settings, directory: Path) -> None:
    """Serve the sum of every worker's values on metrics_host:metrics_port, in a daemon
    thread of this process."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(_Workers(directory))
    start_http_server(settings.metrics_port, settings.metrics_host, registry)
    log.info("serving metrics on %s:%d", settings.metrics_host, settings.metrics_port)


def remove(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


class _Workers:
    """prometheus_client's MultiProcessCollector, forgetting the gauges of dead workers
    first: uvicorn replaces a worker that died, and a dead worker's uploads are not in
    progress any more (its counters stay: they were counted)."""

    def __init__(self, directory: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self._directory = directory
        self._collector = MultiProcessCollector(None, str(directory))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Any]:
        from prometheus_client.multiprocess import mark_process_dead

        for pid in _live_gauge_pids(self._directory):
            if not _alive(pid):
                mark_process_dead(pid, str(self._directory))  # type: ignore[no-untyped-call]
        return self._collector.collect()  # type: ignore[no-untyped-call,no-any-return]


def _live_gauge_pids(directory: Path) -> set[int]:
    pids = set()
    for name in glob.glob(str(directory / "gauge_live*_*.db")):
        pid = Path(name).stem.rsplit("_", 1)[-1]
        if pid.isdigit():
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

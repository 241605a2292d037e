"""What ``glimpse status`` reports about a node and its deployment, read with the settings
``glimpse serve`` reads: the database (does it answer, is its schema the one this glimpse
needs), each store (does it answer, its free space where that means something), images by
status, the uploads in flight and the stale ones, this node's process incarnations, and the
notification and metrics settings.

Whether the database and the stores answer is the detailed health check's question, asked
with the same probes and timeout (glimpse.api.health), so the command and ``/healthcheck``
never disagree. Nothing here writes: no schema is created, no lock file removed, no upload
ended. Credentials never appear: database and transport URLs are shown without theirs, store
options not at all, and a probe's failure is told as the health check tells it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket

import sqlalchemy as sa

from glimpse import __version__
from glimpse import incarnation as incarnation_mod
from glimpse.api.health import HealthCheck, Probe, ProbeFailed, Result
from glimpse.db import census
from glimpse.db import engine as db_engine
from glimpse.domain.model import now
from glimpse.domain.ports import Store, sized_store
from glimpse.errors import GlimpseError
from glimpse.redaction import redact_url
from glimpse.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DatabaseStatus:
    url: str  # without user, password or query (which may carry either)
    reachable: bool
    detail: str
    revision: str | None  # the schema's, None when unknown or none
    head: str  # the revision this glimpse needs

    @property
    def current(self) -> bool:
        return self.revision == self.head


@dataclasses.dataclass(frozen=True)
class StoreStatus:
    name: str
    driver: str
    default: bool
    reachable: bool
    detail: str
    free_bytes: int | None  # where the store has a local file system; None elsewhere
    total_bytes: int | None


@dataclasses.dataclass(frozen=True)
class UploadStatus:
    image_id: str
    name: str | None
    status: str
    node: str | None
    incarnation: str | None
    process: str  # "running", "ended" (this node's), "other node", "unknown"
    heartbeat_age: float  # seconds since the last heartbeat
    stale: bool  # older than stale_upload_timeout: any process may end it


@dataclasses.dataclass(frozen=True)
class CacheStatus:
    dir: str
    max_size: int
    size: int | None = None  # None (and the counts): the directory could not be read
    images: int | None = None
    queued: int | None = None


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    version: str
    node: str
    data_dir: str
    drained: bool  # the healthcheck disable file exists
    database: DatabaseStatus
    stores: list[StoreStatus]
    images: dict[str, int] | None  # None when the database did not answer
    uploads: list[UploadStatus]
    incarnations: list[incarnation_mod.Sighting]
    notifications: dict[str, object]
    metrics: dict[str, object]
    cache: CacheStatus | None  # None: no image cache configured
    problems: list[str]  # something is down: the command exits non-zero
    warnings: list[str]  # worth a look, nothing down

    @property
    def healthy(self) -> bool:
        return not self.problems


def survey(settings: Settings) -> NodeStatus:
    from glimpse.app import build_health_check
    from glimpse.stores.registry import build_stores, canonical_store_name, store_configs

    problems: list[str] = []
    warnings: list[str] = []
    url = settings.effective_database_url
    engine = db_engine.create_engine(url)
    missing = _missing_sqlite_file(engine)
    try:
        configs = store_configs(settings)
        stores = build_stores(settings)
        check = build_health_check(settings, engine, stores)
        # Connecting to a missing SQLite file would create an empty database there: it is
        # reported missing instead.
        check = HealthCheck(check.disable_file,
                            [_explained(p) for p in check.probes
                             if missing is None or p.name != "database"],
                            check.timeout)
        results = asyncio.run(check.results(detailed=True))
        by_probe = dict(zip((p.name for p in check.probes), results[1:], strict=True))
        drained = not results[0].available
        if drained:
            warnings.append(f"drained: {results[0].details}; /healthcheck answers 503")

        database = _database(engine, by_probe.get("database"), missing)
        if not database.reachable:
            problems.append(f"database unavailable: {database.detail}")
        elif not database.current:
            problems.append(
                f"database schema is at {database.revision or 'nothing'}, this glimpse needs "
                f"{database.head}: run `glimpse db upgrade` (glimpse serve does it at start)")
        store_states = [_store(name, configs[name].driver, store, by_probe[f"store {name!r}"],
                               canonical_store_name(settings.default_store) == name)
                        for name, store in sorted(stores.items())]
        problems += [f"store {s.name!r} unavailable: {s.detail}"
                     for s in store_states if not s.reachable]

        node = incarnation_mod.node_name(socket.gethostname(), settings.data_dir)
        sightings = incarnation_mod.survey(settings.data_dir)
        images: dict[str, int] | None = None
        uploads: list[UploadStatus] = []
        if database.reachable and database.revision is not None:
            try:
                images = census.image_counts(engine)
                uploads = _uploads(census.uploads_in_flight(engine), node, sightings,
                                   settings.stale_upload_timeout)
            except sa.exc.SQLAlchemyError as exc:
                problems.append(f"database failed while counting: {type(exc).__name__}")
        stale = sum(u.stale for u in uploads)
        orphaned = sum(u.process == "ended" and not u.stale for u in uploads)
        if stale:
            warnings.append(f"{stale} stale upload(s): no heartbeat for over "
                            f"{settings.stale_upload_timeout:g} s; a running glimpse serve ends "
                            "them at its next sweep")
        if orphaned:
            warnings.append(f"{orphaned} upload(s) of ended processes of this node: a running "
                            "glimpse serve of this node ends them at its next sweep")
        if not any(s.alive for s in sightings):
            warnings.append("no glimpse serve process of this node is running")
    finally:
        engine.dispose()
    return NodeStatus(
        version=__version__,
        node=node,
        data_dir=str(settings.data_dir.resolve()),
        drained=drained,
        database=database,
        stores=store_states,
        images=images,
        uploads=uploads,
        incarnations=sightings,
        notifications=_notifications(settings),
        metrics=_metrics(settings),
        cache=_cache(settings, warnings),
        problems=problems,
        warnings=warnings,
    )


def _cache(settings: Settings, warnings: list[str]) -> CacheStatus | None:
    """What the node's image cache holds, read from its directory alone (the database's
    record of it is the cache API's to show)."""
    from glimpse.cache.local import LocalCache

    root = settings.effective_cache_dir
    if root is None:
        return None
    status = CacheStatus(str(root), settings.image_cache_max_size)
    if not root.is_dir():
        warnings.append(f"the image cache directory {root} does not exist yet; glimpse serve "
                        "creates it")
        return dataclasses.replace(status, size=0, images=0, queued=0)
    try:
        cache = LocalCache(root, settings.image_cache_max_size)
        return dataclasses.replace(status, size=cache.size(), images=len(cache.held_ids()),
                                   queued=len(cache.queued()))
    except OSError as exc:
        warnings.append(f"the image cache directory {root} cannot be read: {exc.strerror}")
        return status


def _explained(probe: Probe) -> Probe:
    """``probe``, whose failures other than glimpse's own say where the details are: the
    health check shows only an unknown error's kind (its message may quote a host or a
    user), and here there is no server log to point at."""
    def run() -> str:
        try:
            return probe.run()
        except (ProbeFailed, GlimpseError):
            raise
        except Exception as exc:
            log.debug("%s failed", probe.name, exc_info=exc)
            raise ProbeFailed(f"{type(exc).__name__} (GLIMPSE_LOG_LEVEL=debug shows the "
                              "driver's message)") from exc

    return dataclasses.replace(probe, run=run)


def display_url(url: str) -> str:
    """A database URL without its user, password and query: where, not as whom."""
    try:
        return _where(sa.make_url(url))
    except sa.exc.ArgumentError:
        return redact_url(url).split("?")[0]


def _where(parsed: sa.URL) -> str:
    where = parsed.host or ""
    if parsed.port:
        where += f":{parsed.port}"
    return f"{parsed.drivername}://{where}/{parsed.database or ''}"


def _missing_sqlite_file(engine: sa.Engine) -> str | None:
    """The path of a SQLite database file that does not exist (None: not SQLite, in memory,
    or there)."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return None
    return path


def _database(engine: sa.Engine, probed: Result | None, missing: str | None) -> DatabaseStatus:
    url = _where(engine.url)
    head = db_engine.HEAD_REVISION
    if missing is not None:
        return DatabaseStatus(url, False, f"no database file at {missing} (glimpse db upgrade "
                                          "or glimpse serve creates it)", None, head)
    assert probed is not None
    if not probed.available:
        return DatabaseStatus(url, False, probed.details, None, head)
    try:
        revision = db_engine.current_revision(engine)
    except sa.exc.SQLAlchemyError as exc:
        return DatabaseStatus(url, False, f"{type(exc).__name__} reading its schema revision",
                              None, head)
    return DatabaseStatus(url, True, _detail(probed), revision, head)


def _detail(probed: Result) -> str:
    # A success's details name the probe ("store 'file': answered in 0.4 ms"): the report's
    # line names it already.
    return probed.details.split(": ", 1)[-1] if probed.available else probed.details


def _store(name: str, driver: str, store: Store, probed: Result, default: bool) -> StoreStatus:
    free = total = None
    sized = sized_store(store)
    if sized is not None and probed.available:
        # The probe above says whether the store answers; room is only shown when known.
        with contextlib.suppress(OSError, GlimpseError):
            free, total = sized.space() or (None, None)
    return StoreStatus(name, driver, default, probed.available, _detail(probed), free, total)


def _uploads(found: list[census.Upload], node: str,
             sightings: list[incarnation_mod.Sighting], stale_after: float) -> list[UploadStatus]:
    alive = {s.id for s in sightings if s.alive}
    moment = now()
    states = []
    for upload in found:
        if upload.node is None or upload.incarnation is None:
            process = "unknown"  # claimed before claims were recorded (migration 0007)
        elif upload.node != node:
            process = "other node"
        else:
            process = "running" if upload.incarnation in alive else "ended"
        age = max((moment - upload.updated_at).total_seconds(), 0.0)
        states.append(UploadStatus(upload.image_id, upload.name, upload.status, upload.node,
                                   upload.incarnation, process, age, age > stale_after))
    return states


def _notifications(settings: Settings) -> dict[str, object]:
    if not settings.notifications:
        return {"enabled": False}
    return {
        "enabled": True,
        "driver": list(settings.notification_driver),
        "transport_url": redact_url(settings.notification_transport_url),
        "topics": list(settings.notification_topics),
        "publisher_id": settings.notification_publisher_id,
        "queue_size": settings.notification_queue_size,
        "disabled": list(settings.disabled_notifications),
    }


def _metrics(settings: Settings) -> dict[str, object]:
    if not settings.metrics_port:
        return {"enabled": False}
    return {"enabled": True,
            "url": f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"}


def as_document(status: NodeStatus) -> dict[str, object]:
    """The report as plain data (``--json``): timestamps as ages, everything serializable."""
    document = dataclasses.asdict(status)
    document["database"]["current"] = status.database.current
    document["healthy"] = status.healthy
    return document

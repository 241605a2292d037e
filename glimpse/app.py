"""The composition root: settings in, a ready ASGI application out."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Engine

from glimpse import heap, metrics
from glimpse import settings as settings_mod
from glimpse.api.asgi import GlimpseApp
from glimpse.api.auth import Authenticator, TrustedHeaders
from glimpse.api.health import HealthCheck, Probe
from glimpse.api.protocol import GlimpseHttpProtocol
from glimpse.api.v1.api import V1Api
from glimpse.api.v1.handlers import ListLimits, V1Handlers
from glimpse.api.v2.api import CACHE_MINORS, V2Api, listed_minors
from glimpse.api.v2.handlers import V2Handlers
from glimpse.api.v2.import_handlers import ImportHandlers
from glimpse.api.v2.schemas import ImageSchemas, load_operator_schema
from glimpse.api.v2.store_handlers import StoreHandlers
from glimpse.api.v2.task_handlers import TaskHandlers
from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.db.tasks import SqlTaskRepository
from glimpse.domain import policy as policy_mod
from glimpse.domain.audit import StoreAudit
from glimpse.domain.data import ImageData, StoreNames
from glimpse.domain.events import NO_NOTIFIER, Events
from glimpse.domain.glance_download import GlanceDownload
from glimpse.domain.images import ImageService
from glimpse.domain.imports import ImportConfig, ImportService
from glimpse.domain.limits import Limits
from glimpse.domain.location_tasks import LocationTasks
from glimpse.domain.members import MemberService
from glimpse.domain.model import Status
from glimpse.domain.policy import DEFAULT_POLICY, Policy, RuleOverrides
from glimpse.domain.ports import ImportTransform, Notifier, Store
from glimpse.domain.protections import (
    PolicyCheck,
    PropertyRules,
    RuleFormat,
    Section,
    rule_names,
)
from glimpse.domain.protections import load as load_protections
from glimpse.domain.protections import warn as warn_protections
from glimpse.domain.quotas import LimitSource, StaticLimits
from glimpse.domain.store_service import StoreService
from glimpse.errors import Invalid
from glimpse.incarnation import Incarnation
from glimpse.inspection.oslo import OsloDetector
from glimpse.notifications import QueuedNotifier, oslo_sender
from glimpse.settings import Settings
from glimpse.stores.http import HttpSource
from glimpse.stores.observed import ObservedStore, probe
from glimpse.stores.registry import (
    READ_ONLY_STORES,
    STORE_ALIASES,
    build_catalog,
    build_stores,
    canonical_store_name,
)
from glimpse.streams.inspection import InspectionRules, Inspector

if TYPE_CHECKING:
    from glimpse.api.keystone_limits import KeystoneLimits
    from glimpse.api.keystone_tokens import IdentityServer, ServiceCredentials
    from glimpse.cache.local import LocalCache

T = TypeVar("T")
SETTINGS_ENV = "GLIMPSE_WORKER_SETTINGS"
# Seconds a stopping worker gives queued notifications to go out.
NOTIFICATIONS_DRAIN = 5.0
log = logging.getLogger(__name__)


def worker_app() -> GlimpseApp:
    """The app in a worker process of a multi-worker server: the parent migrated already, and
    read the policy files (and said what it had to say about them)."""
    settings = settings_mod.from_json(os.environ[SETTINGS_ENV])
    return build_app(settings, migrate=False,
                     policy=Policy(policy_overrides(settings, announce=False)))


def build_storage(settings: Settings, migrate: bool = True) -> tuple[Engine, SqlImageRepository,
                                                                     dict[str, Store]]:
    """The database (migrated unless told otherwise) and the stores."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db_engine.create_engine(settings.effective_database_url)
    if migrate:
        db_engine.upgrade(engine)
    return engine, SqlImageRepository(engine), build_stores(settings)


def build_audit(settings: Settings) -> StoreAudit:
    _, repo, stores = build_storage(settings)
    return StoreAudit(repo, stores)


def build_app(settings: Settings, migrate: bool = True,
              policy: Policy | None = None) -> GlimpseApp:
    """The application. ``policy``: the rules by name, built from the settings' policy files
    when not given (``glimpse serve`` reads them before anything else)."""
    heap.limit_arenas()  # before any thread of the server allocates
    GlimpseHttpProtocol.configure(settings.header_timeout, settings.body_idle_timeout)
    engine, repo, raw_stores = build_storage(settings, migrate)
    recorder = metrics.recorder(settings)
    stores = raw_stores
    if not isinstance(recorder, metrics.NullRecorder):
        # Wrapped only when counted: with metrics off, stores are called as they are.
        stores = {name: ObservedStore(store, recorder.store_error)
                  for name, store in raw_stores.items()}
        recorder.watch_pool(engine)
    external = HttpSource(
        allowed_networks=settings.external_allowed_networks,
        timeout=settings.external_timeout,
        max_redirects=settings.external_max_redirects,
    )
    notifier = build_notifier(settings, recorder)
    events = Events(notifier)
    # Every limit is the setting of the same name.
    limits = Limits(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(Limits)})
    # The stores as the API shows them, and their weights for downloads (multi-store).
    catalog = build_catalog(settings)
    # This process's identity on the uploads it claims (a uvicorn worker's own: workers build
    # their app each); a restarted process ends its ended predecessors' uploads at once.
    incarnation = Incarnation(settings.data_dir)
    cache = build_cache(settings, engine, incarnation.node, recorder)
    data = ImageData(
        repo, stores, settings.default_store, external, limits, identity=incarnation,
        names=StoreNames(aliases=STORE_ALIASES, read_only=READ_ONLY_STORES),
        quotas=limit_source(settings),
        events=events,
        catalog=catalog,
        cache=cache,
        background=RequestContextExecutor(max_workers=4, thread_name_prefix="copy-from"),
        inspector=Inspector(OsloDetector, InspectionRules(
            frozenset(settings.inspection_disk_formats), settings.inspection_strict_raw,
            settings.inspection_relax_partition_checks,
        )),
    )
    data.uploads.observe(lambda status, delta: recorder.transfer(
        "import" if status == Status.IMPORTING else "upload", delta))
    # Every rule by name (glimpse.domain.policy): the defaults, and the operator's files over
    # them. One Policy for the whole process, handed to whoever authorizes.
    if policy is None:
        policy = Policy(policy_overrides(settings))
    # The operator's property protections (their ``policies`` format asks the same rules).
    protections = build_protections(settings, policy)
    images = ImageService(repo, data, limits, policy=policy, protections=protections)
    members = MemberService(repo, limits, policy, events=events)
    inline_reads = engine.dialect.name == "sqlite"
    handlers = V1Handlers(
        images, members, ListLimits(settings.limit_param_default, settings.api_limit_max),
        inline_reads=inline_reads,
    )
    # v2 lets admins download deactivated images, and shows nobody a deleted image; v1 refuses
    # everyone the first and shows admins the second (docs/v2-choices.md).
    v2_images = ImageService(repo, data, limits, admins_read_deactivated=True,
                             hide_deleted=True, policy=policy, protections=protections,
                             location_tasks=LocationTasks(SqlTaskRepository(engine),
                                                          data.claim_fields, events))
    schemas = ImageSchemas(settings.disk_formats, settings.container_formats,
                           load_operator_schema(settings.image_schema_file))
    v2 = V2Handlers(v2_images, members, settings.limit_param_default, settings.api_limit_max,
                    inline_reads=inline_reads, schemas=schemas,
                    show_locations=settings.show_multiple_locations,
                    show_direct_url=settings.show_image_direct_url,
                    stores=StoreHandlers(StoreService(repo, v2_images, data, catalog)),
                    import_methods=settings.import_methods)
    imports = build_imports(settings, engine, repo, v2_images, stores, incarnation,
                            transform=_import_plugins(settings),
                            glance_download=glance_download(settings, external))
    sweepers = [Sweeper(data.recover_stale_uploads, settings.stale_upload_timeout / 2),
                Sweeper(imports.recover, settings.stale_upload_timeout / 2)]
    trim = heap.trimmer()
    if trim is not None:
        sweepers.append(Sweeper(trim, heap.TRIM_PERIOD))
    if settings.store_cleanup_interval > 0:
        sweepers.append(Sweeper(data.purge_leftovers, settings.store_cleanup_interval))
    cache_api, services, minors = None, [], listed_minors(settings.multi_store)
    if cache is not None:
        # Imported only with a cache configured (it is off by default): memory in every worker.
        from glimpse.api.v2.cache_handlers import CacheHandlers
        from glimpse.cache.prefetch import Prefetcher
        from glimpse.domain.caching import CacheService

        minors += tuple(CACHE_MINORS)
        prefetcher = Prefetcher(cache.queued, data.prefetch, cache.dequeue,
                                settings.image_cache_prefetch_interval)
        cache.on_queue = prefetcher.wake
        cache_api = CacheHandlers(CacheService(repo, cache, policy, prefetcher.wake))
        sweepers.append(Sweeper(data.sweep_cache, settings.image_cache_sweep_interval))
        services.append(prefetcher)
    return GlimpseApp(
        routers=[V1Api(handlers), V2Api(
            v2, minors, cache=cache_api, imports=ImportHandlers(imports),
            tasks=TaskHandlers(imports, schemas, settings.limit_param_default,
                               settings.api_limit_max))],
        auth=build_authenticator(settings, policy),
        public_endpoint=settings.public_endpoint,
        max_header_line=settings.max_header_line,
        on_startup=[heap.freeze_startup_objects, *(s.start for s in sweepers),
                    *(s.start for s in services)],
        on_shutdown=[*(s.stop for s in sweepers), *(s.stop for s in services),
                     lambda: data.uploads.stop_all(10.0),
                     incarnation.close,
                     *([functools.partial(notifier.stop, NOTIFICATIONS_DRAIN)]
                       if isinstance(notifier, QueuedNotifier) else [])],
        health_check=build_health_check(settings, engine, raw_stores),
        metrics=recorder,
    )


def _import_plugins(settings: Settings) -> ImportTransform | None:
    """The import plugins the settings enable (docs/import-plugins.md), None for none; their
    modules are imported only then."""
    if not (settings.import_decompress or settings.import_convert_to
            or settings.import_inject_properties):
        return None
    from glimpse.import_plugins import build_import_plugins

    return build_import_plugins(settings)


def build_cache(settings: Settings, engine: Engine, node: str,
                recorder: metrics.Recorder) -> LocalCache | None:
    """The node's image cache (docs/cache.md), None unless image_cache_dir is set."""
    root = settings.effective_cache_dir
    if root is None:
        return None
    from glimpse.cache.local import LocalCache
    from glimpse.db.cache_records import SqlCacheRecords

    url = (settings.image_cache_node_url or settings.public_endpoint
           or f"http://{settings.host}:{settings.port}")
    return LocalCache(root, settings.image_cache_max_size, node=node, node_url=url,
                      records=SqlCacheRecords(engine), metrics=recorder,
                      fill_wait=settings.image_cache_fill_wait)


def build_imports(settings: Settings, engine: Engine, repo: SqlImageRepository,
                  images: ImageService, stores: dict[str, Store], identity: Incarnation,
                  transform: ImportTransform | None = None,
                  glance_download: GlanceDownload | None = None) -> ImportService:
    """The v2 import service (docs/import.md); ``transform``: the import plugins, or None;
    ``glance_download``: that method's remote side (keystone mode only)."""
    staging = canonical_store_name(settings.staging_store or settings.default_store)
    if staging not in stores:
        raise Invalid(f"Unknown staging_store {settings.staging_store!r}")
    config = ImportConfig(
        methods=settings.import_methods, staging_store=staging,
        scratch_dir=settings.data_dir / "import-scratch",
        hash_algo=settings.multihash_algorithm,
        max_parallel_stores=settings.max_parallel_stores,
        web_download_retries=settings.web_download_retries,
        heartbeat_interval=settings.upload_heartbeat_interval,
        stale_timeout=settings.stale_upload_timeout,
    )
    return ImportService(
        repo, SqlTaskRepository(engine), images, stores, config,
        RequestContextExecutor(max_workers=4, thread_name_prefix="import"),
        transform=transform, identity=identity, glance_download=glance_download)


def glance_download(settings: Settings, external: HttpSource) -> GlanceDownload | None:
    """glance-download's remote side when it is offered (it needs keystone mode: the
    settings refuse it otherwise)."""
    if "glance-download" not in settings.import_methods:
        return None
    from glimpse.api.keystone_catalog import KeystoneCatalog

    return GlanceDownload(
        KeystoneCatalog(service_credentials(settings).identity_url, settings.keystone_timeout),
        external, retries=settings.web_download_retries,
        prefixes=settings.glance_download_properties,
        formats=(settings.disk_formats, settings.container_formats))


def build_notifier(settings: Settings, recorder: metrics.Recorder) -> Notifier:
    """Glance's notifications through oslo.messaging, queued off the request path; the null
    notifier when they are off (oslo.messaging is then never imported)."""
    if not settings.notifications:
        return NO_NOTIFIER
    connect = oslo_sender(
        settings.notification_transport_url, settings.notification_driver,
        settings.notification_topics, settings.notification_publisher_id,
        settings.notification_retry)
    return QueuedNotifier(connect, settings.notification_queue_size,
                          on_drop=lambda: recorder.later("notification_drops"),
                          disabled=settings.disabled_notifications)


def build_health_check(settings: Settings, engine: Engine,
                       stores: dict[str, Store]) -> HealthCheck:
    """The detailed health check probes the database and every configured store."""
    probes = [Probe("database", "DatabaseCheck", lambda: db_engine.ping(engine))]
    probes += [Probe(f"store {name!r}", "StoreCheck", functools.partial(probe, store))
               for name, store in sorted(stores.items())]
    return HealthCheck(settings.healthcheck_disable_file, probes, settings.healthcheck_timeout)


def build_protections(settings: Settings, policy: Policy | None = None,
                      announce: bool = True) -> PropertyRules | None:
    """The operator's property protections, or None; Invalid naming the file and the problem
    (the command line checks this before serving, so a bad file stops glimpse at start-up).
    ``announce``: log the file's warnings (empty operations, unknown policy rules)."""
    if settings.property_protection_file is None:
        return None
    rule_format = RuleFormat(settings.property_protection_rule_format)
    sections = load_protections(settings.property_protection_file, rule_format)
    if announce:
        warn_protections(sections)
    check = (policy_check(policy or Policy(), sections, announce)
             if rule_format is RuleFormat.POLICIES else None)
    return PropertyRules(sections, rule_format, check)


def policy_check(policy: Policy, sections: Sequence[Section], announce: bool) -> PolicyCheck:
    """How the ``policies`` format evaluates a named rule: as Glance does, the rule for the
    caller with an empty target (so a rule that compares the image's owner never passes)."""
    for name in sorted(rule_names(sections)) if announce else ():
        if name not in policy_mod.BY_NAME and policy.overrides is None:
            log.warning("property protections name the policy rule %r, which glimpse does not "
                        "define: no one passes it unless the policy file defines it", name)
    return policy.allowed


def build_authenticator(settings: Settings, policy: Policy = DEFAULT_POLICY) -> Authenticator:
    """The identity mode's authenticator; ``policy`` decides who is an admin (its
    context_is_admin rule)."""
    if settings.auth_strategy != "keystone":
        return TrustedHeaders(owner_is_tenant=settings.owner_is_tenant, policy=policy)
    # Imported here: a noauth server never loads keystoneauth1 (and requests).
    from glimpse.api.keystone_auth import KeystoneTokens
    from glimpse.api.token_cache import TokenCache

    return KeystoneTokens(
        identity_server(settings),
        TokenCache(settings.token_cache_time, settings.token_cache_size),
        www_authenticate_uri=settings.keystone_www_authenticate_uri or settings.keystone_auth_url,
        service_type=settings.keystone_service_type,
        service_token_roles=settings.service_token_roles,
        service_token_roles_required=settings.service_token_roles_required,
        policy=policy,
    )


def limit_source(settings: Settings) -> LimitSource:
    """Where per-project quotas come from: Keystone's unified limits when use_keystone_limits
    (user_storage_quota is then ignored, as Glance does), else the settings."""
    if settings.use_keystone_limits:
        return keystone_limits(settings)
    return StaticLimits(settings.user_storage_quota)


def keystone_limits(settings: Settings) -> KeystoneLimits:
    # Imported here: a server without unified limits never loads keystoneauth1 for them.
    from glimpse.api.keystone_limits import KeystoneLimits

    return KeystoneLimits(
        service_credentials(settings), timeout=settings.keystone_timeout,
        cache_time=settings.keystone_limits_cache_time,
        endpoint_id=settings.keystone_limits_endpoint_id,
        service_type=settings.keystone_service_type, region=settings.keystone_limits_region,
        interface=settings.keystone_limits_interface,
    )


def identity_server(settings: Settings) -> IdentityServer:
    """Keystone as glimpse's service user sees it (auth_strategy keystone)."""
    from glimpse.api.keystone_tokens import IdentityServer

    return IdentityServer(service_credentials(settings), timeout=settings.keystone_timeout)


def service_credentials(settings: Settings) -> ServiceCredentials:
    from glimpse.api.keystone_tokens import ServiceCredentials

    return ServiceCredentials(
        auth_url=settings.keystone_auth_url, username=settings.keystone_username,
        password=settings.keystone_password,
        user_domain_name=settings.keystone_user_domain_name,
        project_name=settings.keystone_project_name,
        project_domain_name=settings.keystone_project_domain_name,
    )


def policy_overrides(settings: Settings, announce: bool = True) -> RuleOverrides | None:
    """The operator's policy files (docs/identity.md), read once here and then only when they
    change; None when none is configured (every rule its default). Raises Invalid naming the
    file and the problem for files that cannot be used, or when oslo.policy (the extra
    ``glimpse[policy]``) is missing. ``announce``: log the start-up warnings (unknown rule
    names), which one process of a server says for all."""
    if settings.policy_file is None and not settings.policy_dirs:
        return None
    try:
        # Imported here: a server without policy files never loads oslo.policy.
        from glimpse.policy_files import PolicyFiles
    except ImportError as exc:
        raise Invalid(f"policy_file and policy_dirs need oslo.policy, which is not installed "
                      f"(install glimpse[policy]): {exc}") from exc
    return PolicyFiles.load(settings.policy_file, settings.policy_dirs,
                            settings.policy_reload_interval, announce=announce)


class RequestContextExecutor(ThreadPoolExecutor):
    """Runs each task in the context it was submitted from: the log records of a background
    copy or location check carry the request ids of the request that started it."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


class Sweeper:
    """Runs a recovery task now and then every ``period`` seconds, in a daemon thread."""

    def __init__(self, task: Callable[[], object], period: float) -> None:
        self._task = task
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            try:
                self._task()
            except Exception:
                log.exception("recovery sweep failed; trying again in %.0f s", self._period)
            if self._stop.wait(self._period):
                return

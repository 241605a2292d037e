"""The composition root: settings in, a ready ASGI application out."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from glimpse import heap
from glimpse import settings as settings_mod
from glimpse.api.asgi import GlimpseApp
from glimpse.api.auth import Authenticator, TrustedHeaders
from glimpse.api.protocol import GlimpseHttpProtocol
from glimpse.api.v1.api import V1Api
from glimpse.api.v1.handlers import ListLimits, V1Handlers
from glimpse.api.v2.api import V2Api
from glimpse.api.v2.handlers import V2Handlers
from glimpse.api.v2.schemas import ImageSchemas, load_operator_schema
from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.domain.audit import StoreAudit
from glimpse.domain.data import ImageData, StoreNames
from glimpse.domain.images import ImageService
from glimpse.domain.limits import Limits
from glimpse.domain.members import MemberService
from glimpse.domain.ports import Store
from glimpse.inspection.oslo import OsloDetector
from glimpse.settings import Settings
from glimpse.stores.http import HttpSource
from glimpse.stores.registry import READ_ONLY_STORES, STORE_ALIASES, build_stores
from glimpse.streams.inspection import InspectionRules, Inspector

if TYPE_CHECKING:
    from glimpse.api.keystone_tokens import IdentityServer

SETTINGS_ENV = "GLIMPSE_WORKER_SETTINGS"
log = logging.getLogger(__name__)


def worker_app() -> GlimpseApp:
    """The app in a worker process of a multi-worker server: the parent migrated already."""
    return build_app(settings_mod.from_json(os.environ[SETTINGS_ENV]), migrate=False)


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


def build_app(settings: Settings, migrate: bool = True) -> GlimpseApp:
    heap.limit_arenas()  # before any thread of the server allocates
    GlimpseHttpProtocol.configure(settings.header_timeout, settings.body_idle_timeout)
    engine, repo, stores = build_storage(settings, migrate)
    external = HttpSource(
        allowed_networks=settings.external_allowed_networks,
        timeout=settings.external_timeout,
        max_redirects=settings.external_max_redirects,
    )
    # Every limit is the setting of the same name.
    limits = Limits(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(Limits)})
    data = ImageData(
        repo, stores, settings.default_store, external, limits,
        names=StoreNames(aliases=STORE_ALIASES, read_only=READ_ONLY_STORES),
        background=ThreadPoolExecutor(max_workers=4, thread_name_prefix="copy-from"),
        inspector=Inspector(OsloDetector, InspectionRules(
            frozenset(settings.inspection_disk_formats), settings.inspection_strict_raw,
            settings.inspection_relax_partition_checks,
        )),
    )
    images = ImageService(repo, data, limits)
    members = MemberService(repo, limits)
    inline_reads = engine.dialect.name == "sqlite"
    handlers = V1Handlers(
        images, members, ListLimits(settings.limit_param_default, settings.api_limit_max),
        inline_reads=inline_reads,
    )
    # v2 lets admins download deactivated images, and shows nobody a deleted image; v1 refuses
    # everyone the first and shows admins the second (docs/v2-choices.md).
    v2_images = ImageService(repo, data, limits, admins_read_deactivated=True,
                             hide_deleted=True)
    schemas = ImageSchemas(settings.disk_formats, settings.container_formats,
                           load_operator_schema(settings.image_schema_file))
    v2 = V2Handlers(v2_images, members, settings.limit_param_default, settings.api_limit_max,
                    inline_reads=inline_reads, schemas=schemas,
                    show_locations=settings.show_multiple_locations,
                    show_direct_url=settings.show_image_direct_url)
    sweepers = [Sweeper(data.recover_stale_uploads, settings.stale_upload_timeout / 2)]
    trim = heap.trimmer()
    if trim is not None:
        sweepers.append(Sweeper(trim, heap.TRIM_PERIOD))
    if settings.store_cleanup_interval > 0:
        sweepers.append(Sweeper(data.purge_leftovers, settings.store_cleanup_interval))
    return GlimpseApp(
        routers=[V1Api(handlers), V2Api(v2)],
        auth=build_authenticator(settings),
        public_endpoint=settings.public_endpoint,
        max_header_line=settings.max_header_line,
        on_startup=[heap.freeze_startup_objects, *(s.start for s in sweepers)],
        on_shutdown=[*(s.stop for s in sweepers), lambda: data.uploads.stop_all(10.0)],
    )


def build_authenticator(settings: Settings) -> Authenticator:
    if settings.auth_strategy != "keystone":
        return TrustedHeaders(owner_is_tenant=settings.owner_is_tenant)
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
    )


def identity_server(settings: Settings) -> IdentityServer:
    """Keystone as glimpse's service user sees it (auth_strategy keystone)."""
    from glimpse.api.keystone_tokens import IdentityServer, ServiceCredentials

    return IdentityServer(ServiceCredentials(
        auth_url=settings.keystone_auth_url, username=settings.keystone_username,
        password=settings.keystone_password,
        user_domain_name=settings.keystone_user_domain_name,
        project_name=settings.keystone_project_name,
        project_domain_name=settings.keystone_project_domain_name,
    ), timeout=settings.keystone_timeout)


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

"""The composition root: settings in, a ready ASGI application out."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from glimpse import settings as settings_mod
from glimpse.api.asgi import GlimpseApp
from glimpse.api.auth import TrustedHeaders
from glimpse.api.v1.handlers import ListLimits, V1Handlers
from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.domain.images import ImageService, Limits
from glimpse.domain.members import MemberService
from glimpse.domain.ports import Store
from glimpse.inspection.oslo import OsloDetector
from glimpse.settings import Settings
from glimpse.stores.filesystem import FilesystemStore
from glimpse.stores.http import HttpSource
from glimpse.streams.inspection import InspectionRules, Inspector

SETTINGS_ENV = "GLIMPSE_WORKER_SETTINGS"


def worker_app() -> GlimpseApp:
    """The app in a worker process of a multi-worker server: the parent migrated already."""
    return build_app(settings_mod.from_json(os.environ[SETTINGS_ENV]), migrate=False)


def build_app(settings: Settings, migrate: bool = True) -> GlimpseApp:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db_engine.create_engine(settings.effective_database_url)
    if migrate:
        db_engine.upgrade(engine)
    repo = SqlImageRepository(engine)
    stores: dict[str, Store] = {"file": FilesystemStore(settings.images_dir)}
    external = HttpSource(
        allowed_networks=settings.external_allowed_networks,
        timeout=settings.external_timeout,
        max_redirects=settings.external_max_redirects,
    )
    limits = Limits(
        image_size_cap=settings.image_size_cap,
        image_property_quota=settings.image_property_quota,
        image_member_quota=settings.image_member_quota,
        user_storage_quota=settings.user_storage_quota,
        delayed_delete=settings.delayed_delete,
        disk_formats=settings.disk_formats,
        container_formats=settings.container_formats,
        multihash_algorithm=settings.multihash_algorithm,
    )
    images = ImageService(
        repo, stores, settings.default_store, external, limits,
        background=ThreadPoolExecutor(max_workers=4, thread_name_prefix="copy-from"),
        inspector=Inspector(OsloDetector, InspectionRules(
            frozenset(settings.inspection_disk_formats), settings.inspection_strict_raw,
        )),
    )
    members = MemberService(repo, settings.image_member_quota)
    handlers = V1Handlers(
        images, members, ListLimits(settings.limit_param_default, settings.api_limit_max)
    )
    return GlimpseApp(
        handlers,
        TrustedHeaders(owner_is_tenant=settings.owner_is_tenant),
        public_endpoint=settings.public_endpoint,
        max_header_line=settings.max_header_line,
    )

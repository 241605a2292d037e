"""The image and member services run in process: no HTTP, a migrated SQLite file per test and
one store, built as glimpse.app.build_app builds them (minus the API layer).

The Alembic migration runs once per session into a template file that each test copies: a
migration costs far more than a copy, and every test then starts from an empty database.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest

from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.domain.audit import StoreAudit
from glimpse.domain.data import Download, ImageData, Upload
from glimpse.domain.images import ImageService
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.limits import Limits
from glimpse.domain.members import MemberService
from glimpse.domain.model import (
    Filter,
    Image,
    ImageInput,
    ListQuery,
    MemberStatus,
    Op,
    Principal,
    Scope,
    SetFields,
    SortKey,
    Visibility,
)
from glimpse.domain.ports import ProcessIdentity, Store
from glimpse.domain.quotas import LimitSource
from glimpse.settings import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS
from glimpse.stores.filesystem import FilesystemStore
from glimpse.stores.http import HttpSource

P = ParamSpec("P")
T = TypeVar("T")

# The callers every matrix is written for. The admin has a project of its own, as a Keystone
# admin does; the anonymous caller is what an unauthenticated request (no tenant) becomes.
ADMIN = Principal(tenant="root", user="r", roles=("admin", "member", "reader"),
                  is_admin=True, owner="root")
OWNER = Principal(tenant="alice", user="a", roles=("member", "reader"),
                  is_admin=False, owner="alice")
MEMBER = Principal(tenant="bob", user="b", roles=("member", "reader"), is_admin=False, owner="bob")
STRANGER = Principal(tenant="carol", user="c", roles=("member", "reader"),
                     is_admin=False, owner="carol")
# No project, with the roles a token (or "X-Roles: member") carries: a noauth caller without
# X-Tenant-Id.
ANONYMOUS = Principal(tenant=None, user=None, roles=("member", "reader"), is_admin=False,
                      owner=None)
ROLES: dict[str, Principal] = {
    "admin": ADMIN, "owner": OWNER, "member": MEMBER, "stranger": STRANGER,
    "anonymous": ANONYMOUS,
}

FORMATS = {"disk_format": "raw", "container_format": "bare"}


class InlineExecutor(Executor):
    """Runs background work (copy-from) at once, in the caller's thread: deterministic."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def make_store(directory: Path) -> Store:
    """The in-memory store when this tree has one, else the filesystem store: the suite is
    about the services, not the store."""
    try:
        memory = importlib.import_module("glimpse.stores.memory")
    except ModuleNotFoundError as exc:
        if exc.name != "glimpse.stores.memory":
            raise
        return FilesystemStore(directory)
    store: Store = memory.MemoryStore()
    return store


@dataclasses.dataclass
class Services:
    engine: Any
    repo: SqlImageRepository
    store: Store
    limits: Limits
    data: ImageData
    images: ImageService
    members: MemberService
    audit: StoreAudit

    def create(
        self, principal: Principal = OWNER, data: bytes | None = b"data", *,
        on_failure: FailureRule = FailureRule.KILL, tags: Iterable[str] = (),
        properties: dict[str, str | None] | None = None, **fields: Any,
    ) -> Image:
        """An image made through the service: active with ``data`` (raw/bare), queued
        without."""
        values = {**FORMATS, **fields}
        return self.images.create(
            principal, ImageInput(fields=values, properties=dict(properties or {}),
                                  tags=list(tags)),
            None if data is None else upload(data), on_failure,
        )

    def shared(self, visibility: Visibility, member_status: MemberStatus | None,
               can_share: bool = False, **fields: Any) -> Image:
        """OWNER's active image with MEMBER's membership in ``member_status`` (None: no
        membership), then the visibility set: memberships are kept across visibilities."""
        image = self.create(**fields)
        if member_status is not None:
            self.members.add(OWNER, image.id, "bob", can_share, member_status)
        principal = ADMIN if visibility is Visibility.PUBLIC else OWNER
        return self.images.update(principal, image.id,
                                  [SetFields({"visibility": visibility})],
                                  on_failure=FailureRule.KILL)

    def listed(self, principal: Principal, **query: Any) -> list[str]:
        """The ids a list returns (a big page unless asked otherwise)."""
        marker = query.pop("marker", None)
        query.setdefault("limit", 1000)
        filters = query.pop("filters", {})
        query["filters"] = [
            Filter("size", Op.GTE, v) if k == "size_min" else
            Filter("size", Op.LTE, v) if k == "size_max" else Filter(k, Op.EQ, v)
            for k, v in filters.items()]
        if "sort_key" in query:
            query["sort"] = [SortKey(query.pop("sort_key"),
                                     query.pop("sort_dir", "desc") == "desc")]
        return [i.id for i in self.images.list_images(principal, ListQuery(**query), marker)]

    def all_ids(self) -> set[str]:
        return {i.id for i in self.images.list_images(ADMIN, ListQuery(scope=Scope.ALL,
                                                                        limit=1000), None)}

    def stored(self) -> set[str]:
        return set(self.store.object_keys())


def upload(data: bytes, chunk: int = 3, length: int | None = None) -> Upload:
    return Upload(chunks=iter([data[i:i + chunk] for i in range(0, len(data), chunk)]),
                  length=length)


def read(download: Download) -> bytes:
    """All the data of a download, from whichever form the store gave (a file from the
    download's offset, as the response sends it)."""
    if download.file is not None:
        with download.file as fh:
            fh.seek(download.offset)
            return fh.read(-1 if download.length is None else download.length)
    return b"".join(download.chunks or ())


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "db.sqlite"
    engine = db_engine.create_engine(f"sqlite:///{path}")
    db_engine.upgrade(engine)
    # Closing the last connection checkpoints the WAL into the file, so the file alone is
    # the migrated database.
    engine.dispose()
    return path


ServiceFactory = Callable[..., Services]


def build_services(directory: Path, template: Path, store: Store,
                   identity: ProcessIdentity | None = None, quotas: LimitSource | None = None,
                   **limits: Any) -> Services:
    path = directory / f"db-{uuid.uuid4().hex}.sqlite"
    shutil.copyfile(template, path)
    engine = db_engine.create_engine(f"sqlite:///{path}")
    repo = SqlImageRepository(engine)
    settings = Limits(disk_formats=DEFAULT_DISK_FORMATS,
                      container_formats=DEFAULT_CONTAINER_FORMATS, **limits)
    data = ImageData(repo, {store.name: store}, store.name, HttpSource(allowed_networks=()),
                     settings, background=InlineExecutor(), inspector=None, identity=identity,
                     quotas=quotas)
    return Services(engine, repo, store, settings, data, ImageService(repo, data, settings),
                    MemberService(repo, settings), StoreAudit(repo, {store.name: store}))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "images")


@pytest.fixture
def build(tmp_path: Path, template_db: Path, store: Store) -> Iterator[ServiceFactory]:
    """Services on a fresh database and the test's store, with ``Limits`` overrides."""
    built: list[Services] = []

    def factory(identity: ProcessIdentity | None = None, quotas: LimitSource | None = None,
                **limits: Any) -> Services:
        services = build_services(tmp_path, template_db, store, identity, quotas, **limits)
        built.append(services)
        return services

    yield factory
    for services in built:
        services.engine.dispose()


@pytest.fixture
def svc(build: ServiceFactory) -> Services:
    return build()

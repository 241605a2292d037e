"""The import service in process (glimpse.domain.imports): the transform seam with a small
real transform (gzip decompression), a transform that refuses, the import lock, and the
recovery of imports and stages whose process died."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import threading
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from glimpse.db.tasks import SqlTaskRepository
from glimpse.domain.imports import (
    FAILED_IMPORT,
    IMPORT_TASK,
    IMPORTING_TO,
    ImportConfig,
    ImportRequest,
    ImportService,
    staging_key,
)
from glimpse.domain.model import Changes, Image, Status, now
from glimpse.domain.ports import TransformOutcome
from glimpse.domain.quotas import (
    IMAGE_COUNT_TOTAL,
    IMAGE_COUNT_UPLOADING,
    IMAGE_SIZE_TOTAL,
    IMAGE_STAGE_TOTAL,
    MiB,
)
from glimpse.domain.tasks import Task, TaskStatus, TaskType
from glimpse.errors import Conflict, Invalid, OverLimit
from glimpse.stores.filesystem import FilesystemStore
from tests.service.conftest import (
    ADMIN,
    OWNER,
    InlineExecutor,
    ServiceFactory,
    Services,
    upload,
)

T = TypeVar("T")
DEAD = uuid.uuid4().hex
ME = uuid.uuid4().hex


@dataclasses.dataclass
class FakeIdentity:
    """This node's incarnations as the lock files would tell: only ``incarnation`` runs."""

    node: str = "host/node"
    incarnation: str = ME

    def ended(self, incarnation: str) -> bool:
        return incarnation != self.incarnation

    def forget_ended(self) -> int:
        return 0


class Gunzip:
    """A real transform: gzip data becomes the raw image it holds, bounded (a bomb is
    refused), and says so in a property."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self.seen: list[Path] = []

    def apply(self, staged: Path, scratch_dir: Path, image: Image, *,
              roles: Collection[str] = ()) -> TransformOutcome:
        self.seen.append(scratch_dir)
        self.roles = tuple(roles)
        out = scratch_dir / "unpacked"
        written = 0
        with gzip.open(staged, "rb") as source, out.open("wb") as target:
            try:
                while block := source.read(65536):
                    written += len(block)
                    if written > self.limit:
                        raise Invalid(f"Decompressed data exceeds {self.limit} bytes: refused.")
                    target.write(block)
            except (OSError, EOFError) as exc:
                raise Invalid(f"The staged data is not valid gzip: {exc}") from None
        return TransformOutcome(out, disk_format="raw", container_format="bare",
                                extra_properties={"decompressed": "gzip"})


def importer(svc: Services, tmp_path: Path, transform: Gunzip | None = None,
             identity: FakeIdentity | None = None) -> ImportService:
    config = ImportConfig(methods=("glance-direct", "web-download", "copy-image"),
                          staging_store=svc.store.name, scratch_dir=tmp_path / "scratch",
                          heartbeat_interval=0.05, stale_timeout=60.0)
    return ImportService(svc.repo, SqlTaskRepository(svc.engine), svc.images,
                         {svc.store.name: svc.store}, config, InlineExecutor(),
                         transform=transform, identity=identity)


def test_the_transform_runs_between_stage_and_store(build: ServiceFactory,
                                                    tmp_path: Path) -> None:
    svc = build()
    transform = Gunzip()
    imports = importer(svc, tmp_path, transform)
    payload = b"raw disk bytes " * 5000
    image = svc.create(data=None, disk_format="qcow2", container_format="ovf")
    imports.stage(OWNER, image.id, upload(gzip.compress(payload), chunk=4096))
    imports.import_image(OWNER, image.id, ImportRequest("glance-direct"))
    done = svc.repo.get(image.id)
    assert done is not None and done.status is Status.ACTIVE
    assert done.checksum == hashlib.md5(payload).hexdigest() and done.size == len(payload)
    assert (done.disk_format, done.container_format) == ("raw", "bare")
    assert done.properties["decompressed"] == "gzip"
    assert done.properties[IMPORTING_TO] == "" and IMPORT_TASK not in done.properties
    # Only the image's object is left: the staged copy and the scratch copy are gone.
    assert svc.stored() == {image.id}
    assert transform.seen and not transform.seen[0].exists()


def test_a_transform_that_refuses_fails_the_task_and_keeps_nothing(
        build: ServiceFactory, tmp_path: Path) -> None:
    svc = build()
    imports = importer(svc, tmp_path, Gunzip(limit=1000))
    image = svc.create(data=None)
    imports.stage(OWNER, image.id, upload(gzip.compress(b"\0" * 100_000), chunk=4096))
    imports.import_image(OWNER, image.id, ImportRequest("glance-direct"))
    failed = svc.repo.get(image.id)
    assert failed is not None and failed.status is Status.QUEUED
    assert failed.properties[FAILED_IMPORT] == svc.store.name
    (task,) = imports.image_tasks(OWNER, image.id)
    assert task.status is TaskStatus.FAILURE and "exceeds 1000 bytes" in task.message
    assert svc.stored() == set() and failed.locations == []


def test_the_import_lock_holds_while_its_task_beats(build: ServiceFactory,
                                                    tmp_path: Path) -> None:
    svc = build()
    imports = importer(svc, tmp_path)
    image = svc.create()
    tasks = SqlTaskRepository(svc.engine)
    running = _running_task(svc, tasks, image, ME)
    with pytest.raises(Conflict):
        imports.import_image(ADMIN, image.id, ImportRequest("copy-image", all_stores=True))
    # Its heartbeat stale: the lock has expired.
    tasks.set_task(running, {"updated_at": now() - dt.timedelta(seconds=120)})
    imports.import_image(ADMIN, image.id, ImportRequest("copy-image", all_stores=True))


def test_recovery_fails_a_dead_processes_import_and_stage(build: ServiceFactory,
                                                          tmp_path: Path) -> None:
    identity = FakeIdentity()
    svc = build(identity=identity)
    imports = importer(svc, tmp_path, identity=identity)
    tasks = SqlTaskRepository(svc.engine)
    # An import the dead incarnation was running: importing, its staged data still there.
    importing = svc.create(data=None)
    imports.stage(OWNER, importing.id, upload(b"staged"))
    task_id = _running_task(svc, tasks, svc.repo.get(importing.id), DEAD,
                            status=Status.IMPORTING)
    svc.store.put(importing.id, [b"partial"])  # what it had written of the image
    # A stage the dead incarnation was writing.
    staging = svc.create(data=None)
    location = svc.data.claimed_location(staging_key(staging.id), svc.store.name)
    svc.repo.update(staging.id, Changes(fields={
        "status": Status.UPLOADING, "claim_node": identity.node, "claim_incarnation": DEAD}),
        add_locations=[location])
    svc.store.put(location.url, [b"half a stage"])
    assert sorted(imports.recover()) == sorted([task_id, staging.id])
    for image_id in (importing.id, staging.id):
        image = svc.repo.get(image_id)
        assert image is not None and image.status is Status.QUEUED and image.locations == []
    task = tasks.get_task(task_id)
    assert task is not None and task.status is TaskStatus.FAILURE
    assert "process ended" in task.message
    recovered = svc.repo.get(importing.id)
    assert recovered is not None and recovered.properties[FAILED_IMPORT] == svc.store.name
    assert IMPORT_TASK not in recovered.properties
    assert svc.stored() == set()
    assert imports.recover() == []  # once


def _running_task(svc: Services, tasks: SqlTaskRepository, image: Image | None,
                  incarnation: str, status: Status | None = None) -> str:
    """A task recorded as another process would have, running an import of ``image``."""
    assert image is not None
    stamp = now()
    task = Task(id=str(uuid.uuid4()), type=TaskType.API_IMAGE_IMPORT,
                status=TaskStatus.PROCESSING, owner=image.owner, image_id=image.id,
                input={"import_req": {"method": {"name": "glance-direct"}},
                       "backend": [svc.store.name]},
                created_at=stamp, updated_at=stamp, claim_node="host/node",
                claim_incarnation=incarnation)
    tasks.create_task(task)
    fields: dict[str, object] = {"updated_at": stamp}
    if status is not None:
        fields.update(status=status, claim_node="host/node", claim_incarnation=incarnation,
                      failure_status=Status.QUEUED)
    svc.repo.update(image.id, Changes(fields=fields, set_properties={
        IMPORT_TASK: task.id, IMPORTING_TO: svc.store.name, FAILED_IMPORT: ""}))
    return task.id


def test_recovery_leaves_an_import_to_a_process_that_has_its_stores(
        build: ServiceFactory, tmp_path: Path) -> None:
    identity = FakeIdentity()
    svc = build(identity=identity)
    imports = importer(svc, tmp_path, identity=identity)
    tasks = SqlTaskRepository(svc.engine)
    image = svc.create()
    task_id = _running_task(svc, tasks, image, DEAD)
    tasks.set_task(task_id, {"input": {"import_req": {"method": {"name": "copy-image"}},
                                       "backend": ["elsewhere"]}})
    assert imports.recover() == []
    task = tasks.get_task(task_id)
    assert task is not None and task.status is TaskStatus.PROCESSING


class HeldExecutor(Executor):
    """Background work accepted and never run: an import's lock stays held."""

    def __init__(self) -> None:
        self.held: list[object] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.held.append(fn)
        return Future()


class MeetingTasks(SqlTaskRepository):
    """Both imports meet after checking the lock and before taking it: the race at its
    widest, every time."""

    def __init__(self, engine: Any, parties: int) -> None:
        super().__init__(engine)
        self.meet = threading.Barrier(parties, timeout=10)

    def create_task(self, task: Task) -> None:
        self.meet.wait()
        super().create_task(task)


def test_two_copy_image_requests_at_once_take_the_lock_once(
        build: ServiceFactory, tmp_path: Path) -> None:
    svc = build()
    image = svc.create()
    other = FilesystemStore(tmp_path / "other", "other")
    tasks = MeetingTasks(svc.engine, 2)
    config = ImportConfig(methods=("copy-image",), staging_store=svc.store.name,
                          scratch_dir=tmp_path / "scratch")
    imports = ImportService(svc.repo, tasks, svc.images,
                            {svc.store.name: svc.store, "other": other}, config, HeldExecutor())
    won: list[Task] = []
    refused: list[Conflict] = []

    def copy() -> None:
        try:
            won.append(imports.import_image(ADMIN, image.id,
                                            ImportRequest("copy-image", all_stores=True)))
        except Conflict as exc:
            refused.append(exc)

    threads = [threading.Thread(target=copy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(won) == 1 and len(refused) == 1, (won, refused)
    assert refused[0].code == "import_locked"
    held = svc.repo.get(image.id)
    assert held is not None and held.properties[IMPORT_TASK] == won[0].id
    assert held.properties[IMPORTING_TO] == "other"
    # The loser's task is recorded as failed, not left pending.
    loser = [t for t in imports.image_tasks(ADMIN, image.id) if t.id != won[0].id]
    assert [t.status for t in loser] == [TaskStatus.FAILURE]


def test_an_expired_lock_is_taken_over_only_if_unchanged(build: ServiceFactory,
                                                         tmp_path: Path) -> None:
    """A lock whose task ended is taken over; the condition is on the holder read."""
    svc = build()
    image = svc.create()
    tasks = SqlTaskRepository(svc.engine)
    ended = _running_task(svc, tasks, image, ME)
    tasks.set_task(ended, {"status": TaskStatus.FAILURE})
    other = FilesystemStore(tmp_path / "other", "other")
    config = ImportConfig(methods=("copy-image",), staging_store=svc.store.name,
                          scratch_dir=tmp_path / "scratch")
    imports = ImportService(svc.repo, tasks, svc.images,
                            {svc.store.name: svc.store, "other": other}, config, HeldExecutor())
    task = imports.import_image(ADMIN, image.id, ImportRequest("copy-image", all_stores=True))
    held = svc.repo.get(image.id)
    assert held is not None and held.properties[IMPORT_TASK] == task.id
    with pytest.raises(Conflict) as raised:
        imports.import_image(ADMIN, image.id, ImportRequest("copy-image", all_stores=True))
    assert raised.value.code == "import_locked"


@dataclasses.dataclass(frozen=True)
class StageLimits:
    """Unified limits with image_stage_total set (bytes) and nothing else bounded."""

    stage_total: int
    unified: bool = True

    def limits(self, project: str | None) -> dict[str, int | None]:
        return {IMAGE_STAGE_TOTAL: self.stage_total, IMAGE_SIZE_TOTAL: None,
                IMAGE_COUNT_TOTAL: None, IMAGE_COUNT_UPLOADING: None}


def _staged_bytes(svc: Services) -> int:
    return svc.repo.quota_usage(OWNER.owner).stage_total


def test_stages_are_held_to_image_stage_total_until_their_import_ends(
        build: ServiceFactory, tmp_path: Path) -> None:
    svc = build(quotas=StageLimits(2 * MiB))
    imports = importer(svc, tmp_path, Gunzip(limit=1000))
    first, second = svc.create(data=None), svc.create(data=None)
    staged = b"\x01" * (3 * MiB // 2)
    imports.stage(OWNER, first.id, upload(staged, chunk=65536, length=len(staged)))
    assert _staged_bytes(svc) == len(staged)
    report = svc.images.quota_usage(OWNER)
    assert report is not None and report[IMAGE_STAGE_TOTAL] == {"limit": 2, "usage": 1}
    # A declared length past what remains: refused before any byte, in Glance's words.
    with pytest.raises(OverLimit) as refused:
        imports.stage(OWNER, second.id, upload(b"\x02" * MiB, chunk=65536, length=MiB))
    assert refused.value.message.startswith("The request returned a 413 Request Entity Too "
                                            "Large.")
    assert refused.value.message.endswith(
        "[Resource image_stage_total is over limit of 2 due to current usage 1 and delta 1]")
    # Unknown length: cut once past what remains.
    with pytest.raises(OverLimit, match="image_stage_total"):
        imports.stage(OWNER, second.id, upload(b"\x02" * MiB, chunk=65536))
    refused_image = svc.repo.get(second.id)
    assert refused_image is not None and refused_image.status is Status.QUEUED
    assert refused_image.locations == [] and staging_key(second.id) not in svc.stored()
    assert _staged_bytes(svc) == len(staged)
    # A failed import releases its stage (the data is not gzip: the transform refuses).
    imports.import_image(OWNER, first.id, ImportRequest("glance-direct"))
    failed = svc.repo.get(first.id)
    assert failed is not None and failed.status is Status.QUEUED
    assert _staged_bytes(svc) == 0
    # A finished import releases its stage too.
    plain = importer(svc, tmp_path)
    plain.stage(OWNER, second.id, upload(b"\x02" * MiB, chunk=65536))
    assert _staged_bytes(svc) == MiB
    plain.import_image(OWNER, second.id, ImportRequest("glance-direct"))
    done = svc.repo.get(second.id)
    assert done is not None and done.status is Status.ACTIVE
    assert _staged_bytes(svc) == 0


def test_concurrent_stages_cannot_pass_image_stage_total(build: ServiceFactory,
                                                         tmp_path: Path) -> None:
    """Stages racing for the last of the limit: each reserves its declared length in its
    claim's transaction, so at most what fits is admitted."""
    svc = build(quotas=StageLimits(2 * MiB))
    imports = importer(svc, tmp_path)
    images = [svc.create(data=None) for _ in range(4)]
    start = threading.Barrier(len(images), timeout=10)
    outcomes: list[str] = []

    def stage(image_id: str) -> None:
        start.wait()
        try:
            imports.stage(OWNER, image_id, upload(b"\x03" * MiB, chunk=65536, length=MiB))
            outcomes.append("staged")
        except OverLimit:
            outcomes.append("413")

    threads = [threading.Thread(target=stage, args=(image.id,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["413", "413", "staged", "staged"]
    assert _staged_bytes(svc) == 2 * MiB

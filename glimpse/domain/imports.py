"""v2's interoperable import: staging data, importing it by a method, and the tasks that
record each import (docs/import.md).

- ``glance-direct``: ``stage`` writes the data into the staging store (a store every API
  process shares: the default one unless configured), the image goes queued -> uploading;
  ``import`` moves it uploading -> importing and, in the background, streams the staged object
  through the upload stages (size cap, hashes, format inspection) into the target stores.
- ``web-download``: queued -> importing, the data fetched from a URL under the external
  sources' network rules, resumed with Range requests when the remote drops the connection.
- ``copy-image``: an active image's data copied into more stores, a bounded number at once,
  each copy hashed and compared with the image's checksum.

Every import is a task row (glimpse.domain.tasks) claimed by the process that runs it. Its
progress shows in the image's ``os_glance_importing_to_stores`` and ``os_glance_failed_import``
(both always set), and ``os_glance_import_task`` names the task that holds the image's import
lock. An import whose process dies is failed by another process (``recover``): at once when
that process was of the same node (its incarnation lock is free), after the heartbeat timeout
otherwise. A failed import leaves the image where the user can act on it (queued for
glance-direct and web-download, active for copy-image), its data deleted, and the task with a
message naming the cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from glimpse.domain import lifecycle
from glimpse.domain.data import EXTERNAL_STORE, ImageData, Upload
from glimpse.domain.glance_download import GLANCE_DOWNLOAD, GlanceDownload, RemoteImage
from glimpse.domain.images import ImageService
from glimpse.domain.import_streams import Heartbeat, file_chunks, parallel_copies
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import (
    Changes,
    Image,
    ImageInput,
    Location,
    Principal,
    Status,
    now,
)
from glimpse.domain.policy import ImageTarget
from glimpse.domain.ports import ImageRepository, ImportTransform, ProcessIdentity, Store
from glimpse.domain.tasks import (
    RUNNING,
    TIME_TO_LIVE,
    Task,
    TaskQuery,
    TaskRepository,
    TaskStatus,
    TaskType,
)
from glimpse.domain.web_download import NOT_ALLOWED, announced_size, resumable
from glimpse.errors import (
    Conflict,
    GlimpseError,
    Invalid,
    NotFound,
    PreconditionFailed,
)
from glimpse.streams.expected_hash import ExpectedHash
from glimpse.streams.upload import UploadStream

log = logging.getLogger(__name__)

GLANCE_DIRECT = "glance-direct"
WEB_DOWNLOAD = "web-download"
COPY_IMAGE = "copy-image"
METHODS = (GLANCE_DIRECT, WEB_DOWNLOAD, COPY_IMAGE, GLANCE_DOWNLOAD)
# The image properties an import keeps up to date (Glance's names; clients and Tempest read
# them).
IMPORT_TASK = "os_glance_import_task"
IMPORTING_TO = "os_glance_importing_to_stores"
FAILED_IMPORT = "os_glance_failed_import"
# The status each method needs the image in.
_NEEDS = {GLANCE_DIRECT: Status.UPLOADING, WEB_DOWNLOAD: Status.QUEUED, COPY_IMAGE: Status.ACTIVE,
          GLANCE_DOWNLOAD: Status.QUEUED}
_STAGED = uuid.UUID("6f1c5f40-2d4a-4e0e-9a54-6b3d0f7e6a11")


def staging_key(image_id: str) -> str:
    """The key of an image's staged data: a UUID of its own (stores take UUID keys), derived
    from the image's, so that it never collides with the image's data in the same store."""
    return str(uuid.uuid5(_STAGED, image_id.lower()))


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """The operator's import settings, resolved (store names canonical)."""

    methods: tuple[str, ...]
    staging_store: str
    scratch_dir: Path
    hash_algo: str = "sha512"
    max_parallel_stores: int = 2
    web_download_retries: int = 3
    heartbeat_interval: float = 10.0
    stale_timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class ImportRequest:
    """``POST /v2/images/{id}/import``, parsed: the method, its URI (web-download), and the
    stores (``stores`` None: not named; ``all_stores``; ``must_succeed``). ``expected``: the
    hash the client says the data has (web-download; beyond Glance)."""

    method: str
    uri: str | None = None
    stores: tuple[str, ...] | None = None
    all_stores: bool = False
    must_succeed: bool = True
    expected: ExpectedHash | None = None
    body: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    roles: tuple[str, ...] = ()  # the importer's, for the transform (set when it starts)
    # glance-download: the remote image, the caller's token (never recorded: the import's run
    # holds it in memory), and the remote image service's URL (found when it is asked for).
    remote: RemoteImage | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    endpoint: str | None = None


class ImportService:
    def __init__(
        self, repo: ImageRepository, tasks: TaskRepository, images: ImageService,
        stores: Mapping[str, Store], config: ImportConfig, background: Executor, *,
        transform: ImportTransform | None = None, identity: ProcessIdentity | None = None,
        glance_download: GlanceDownload | None = None,
    ) -> None:
        """``images``: the v2 image service (who may see an image, and the data path it
        holds). ``transform``: the import plugins, run between staging and storing
        (glance-direct and web-download; never for copy-image). ``identity``: this process,
        recorded on the tasks and stages it runs."""
        self._repo = repo
        self._tasks = tasks
        self._images = images
        self._data: ImageData = images.data
        self._stores = stores
        self.config = config
        self._background = background
        self._transform = transform
        self._identity = identity
        self._glance_download = glance_download

    # -- discovery ------------------------------------------------------------------------

    @property
    def methods(self) -> tuple[str, ...]:
        return self.config.methods

    # -- stage --------------------------------------------------------------------------------

    def stage(self, principal: Principal, image_id: str, upload: Upload,
              expected: ExpectedHash | None = None) -> None:
        """Write the request's data into the staging store: queued -> uploading, the staged
        object recorded as a location first (a failure, or the image's deletion, deletes
        it). The image's size is recorded; its checksum waits for the import."""
        if GLANCE_DIRECT not in self.config.methods:
            raise NotFound("The glance-direct import method is not enabled: nothing may be "
                           "staged.")
        image = self._image(principal, image_id)
        self._enforce("modify_image", principal, image,
                      "You are not permitted to modify this image.")
        if image.status is not Status.QUEUED:
            raise Conflict(f"Image {image.id} is {image.status}: data can only be staged to a "
                           "queued image.")
        store_name = self.config.staging_store
        location = self._data.claimed_location(staging_key(image.id), store_name)
        # image_stage_total and image_count_uploading, checked in the claim's transaction
        # under the owner's lock: the stage reserves its declared length, else all that
        # remains, and is cut past it.
        admission = self._data.admission(image.owner, new_image=False, upload=False,
                                         stage=True, declared=upload.length)
        lifecycle.check_transition(Status.QUEUED, Status.UPLOADING)
        claimed = self._repo.update(
            image.id, Changes(fields={"status": Status.UPLOADING, "updated_at": now(),
                                      "failure_status": Status.QUEUED,
                                      # A failed upload's reservation is not this stage's.
                                      "upload_reserved": None,
                                      **self._data.claim_fields()}),
            expected_status=Status.QUEUED,
            add_locations=[] if location in image.locations else [location],
            admit=admission if admission.needed else None,
        )
        if claimed is None:
            raise Conflict(f"Image {image.id} is no longer queued: data can only be staged to "
                           "a queued image.")
        limit, limit_error = self._data.upload_limit(claimed)
        if admission.granted is not None and admission.granted < limit:
            limit = admission.granted
            limit_error = admission.size_error(admission.used, admission.granted + 1)
        watched = self._data.uploads.watch(image.id, upload.chunks, Status.UPLOADING)
        stream = UploadStream(watched, limit=limit, limit_error=limit_error,
                              expected_size=None, hash_algo=self.config.hash_algo,
                              expected_hash=expected)
        try:
            if upload.length is not None and upload.length > limit:
                raise limit_error
            self._stores[store_name].put(location.url, stream)
        except BaseException:
            with contextlib.suppress(ValueError):
                watched.close()
            self._move(image.id, Status.UPLOADING, Status.QUEUED, self._incarnation)
            self._data.release(image.id, location)
            raise
        # Staged: the claim is cleared, which tells a finished stage from one in progress.
        if not self._repo.set_fields(
                image.id, {"size": stream.size, "updated_at": now(), "claim_node": None,
                           "claim_incarnation": None, "upload_reserved": None},
                expected_status=Status.UPLOADING, expected_incarnation=self._incarnation):
            self._data.release(image.id, location)
            raise PreconditionFailed(f"Image {image.id} changed while its data was being "
                                     "staged.")

    # -- import -------------------------------------------------------------------------------

    def import_image(self, principal: Principal, image_id: str, request: ImportRequest,
                     request_id: str | None = None) -> Task:
        """Check the request, take the image's import lock, record the task and start it in
        the background; the task as recorded."""
        method = request.method
        if method not in self.config.methods or (
                method == GLANCE_DOWNLOAD and self._glance_download is None):
            hint = (" (glance-download needs keystone mode and import_methods naming it)"
                    if method == GLANCE_DOWNLOAD else "")
            raise Invalid(f"Import method {method} is not supported here (enabled: "
                          f"{', '.join(self.config.methods)}){hint}.")
        image = self._image(principal, image_id)
        if method == COPY_IMAGE:
            self._enforce("copy_image", principal, image,
                          "You are not permitted to copy this image to other stores.")
        else:
            self._enforce("modify_image", principal, image,
                          "You are not permitted to import this image.")
        if not request.must_succeed and len(self._stores) < 2:
            raise Invalid("all_stores_must_succeed may be false only where several stores are "
                          "configured.")
        if method == WEB_DOWNLOAD:
            self._check_uri(request.uri)
        needed = _NEEDS[method]
        if image.status is not needed:
            raise Conflict(f"Image {image.id} is {image.status}: the {method} import needs an "
                           f"image that is {needed}.")
        if image.disk_format is None or image.container_format is None:
            raise Conflict(f"Image {image.id} needs a disk_format and a container_format "
                           "before it can be imported.")
        targets = self._targets(image, request)
        recorded = dict(request.body)
        if method == GLANCE_DOWNLOAD and self._glance_download is not None:
            remote = request.remote
            if remote is None:
                raise Invalid("glance-download needs glance_region and glance_image_id.")
            try:
                found: str | None = self._glance_download.endpoint(request.token, remote)
            except GlimpseError as exc:
                if exc.code == NOT_ALLOWED:
                    raise  # an endpoint leading inward: refused now, as a web-download URL
                # Glance accepts the import and fails its task (Tempest expects the 202):
                # the task asks again, and fails naming what is missing.
                found = None
            request = dataclasses.replace(request, endpoint=found)
            recorded["method"] = remote.as_method()
        return self._start(principal, image, request, targets, TaskType.API_IMAGE_IMPORT,
                           {"image_id": image.id, "import_req": recorded,
                            "backend": list(targets)}, request_id)

    def create_task(self, principal: Principal, task_type: str, task_input: Any,
                    image_input: ImageInput, request_id: str | None = None) -> Task:
        """The legacy ``POST /v2/tasks`` import: a new image (``image_properties``) whose data
        is fetched from ``import_from`` as a web-download is, under the same network rules
        (checked now: Glance bug 2152110). Admin only (``add_task``, ``tasks_api_access``)."""
        self.tasks_access(principal, "add_task")
        if task_type != str(TaskType.IMPORT):
            raise Invalid(f"Invalid type value: {task_type}. Only import tasks may be created.")
        if not isinstance(task_input, dict):
            raise Invalid("A task's input must be a JSON object.")
        missing = [k for k in ("import_from", "import_from_format", "image_properties")
                   if k not in task_input]
        if missing:
            raise Invalid(f"Input does not contain '{missing[0]}' field")
        if WEB_DOWNLOAD not in self.config.methods:
            raise Invalid("Importing from a URL is not enabled here.")
        uri = task_input["import_from"]
        self._check_uri(uri if isinstance(uri, str) else None)
        fields = image_input.fields
        if not fields.get("disk_format") or not fields.get("container_format"):
            raise Invalid("image_properties needs a disk_format and a container_format.")
        image = self._images.create(principal, image_input, None, FailureRule.REQUEUE)
        stored = self._repo.get(image.id)
        assert stored is not None, "just created"
        request = ImportRequest(WEB_DOWNLOAD, uri=uri)
        return self._start(principal, stored, request, (self._data.default_store,),
                           TaskType.IMPORT, dict(task_input), request_id)

    def _start(self, principal: Principal, image: Image, request: ImportRequest,
               targets: tuple[str, ...], task_type: TaskType, task_input: dict[str, Any],
               request_id: str | None) -> Task:
        """Take the image's import lock, record the task and run it in the background."""
        method = request.method
        holder = self._check_lock(image)
        stamp = now()
        task = Task(
            id=str(uuid.uuid4()), type=task_type, status=TaskStatus.PENDING,
            owner=image.owner, image_id=image.id, input=task_input,
            created_at=stamp, updated_at=stamp, request_id=request_id,
            user_id=principal.user, **self._claim(),
        )
        self._tasks.create_task(task)
        self._data.events.task("task.create", task)
        fields: dict[str, Any] = {"updated_at": stamp}
        if method != COPY_IMAGE:
            lifecycle.check_transition(image.status, Status.IMPORTING)
            fields.update(status=Status.IMPORTING, failure_status=Status.QUEUED,
                          upload_reserved=None, **self._data.claim_fields())
        # The lock is taken only if it is still as _check_lock saw it (absent, or held by an
        # ended or silent task): of two imports racing for it, exactly one wins.
        moved = self._repo.update(image.id, Changes(
            fields=fields,
            set_properties={IMPORT_TASK: task.id, IMPORTING_TO: ",".join(targets),
                            FAILED_IMPORT: ""},
            properties_before={IMPORT_TASK: holder}),
            expected_status=image.status)
        if moved is None:
            self._end_task(task, TaskStatus.FAILURE, "The image changed before the import "
                           "started.")
            now_held = self._repo.get(image.id)
            if now_held is not None and now_held.properties.get(IMPORT_TASK) not in (
                    None, holder, task.id):
                raise Conflict(f"Image {image.id} is being imported by task "
                               f"{now_held.properties[IMPORT_TASK]}; try again once it ends.",
                               code="import_locked")
            raise Conflict(f"Image {image.id} changed meanwhile; try the import again.")
        if not targets:
            # copy-image with nothing to copy: done at once, the progress keys set.
            self._finish_lock(image.id, task.id, failed=())
            self._end_task(task, TaskStatus.SUCCESS, "", {"image_id": image.id})
            return task
        self._data.events.task("task.run", task)
        self._background.submit(
            self._run, task, dataclasses.replace(request, roles=principal.roles), targets)
        return task

    def _check_uri(self, uri: str | None) -> None:
        if not isinstance(uri, str) or not uri:
            raise Invalid("The web-download import method needs a uri.")
        # Refused now if the network rules forbid where it leads (every redirect included);
        # an unreachable or slow remote fails the task instead.
        self._data.external.validate(uri)
        announced_size(self._data.external, uri)

    def _targets(self, image: Image, request: ImportRequest) -> tuple[str, ...]:
        held = {location.store for location in image.locations}
        if request.all_stores:
            every = sorted(name for name, store in self._stores.items()
                           if getattr(store, "writable", True))
            return tuple(n for n in every if request.method != COPY_IMAGE or n not in held)
        if request.stores is None:
            if request.method == COPY_IMAGE:
                raise Invalid("copy-image needs the stores to copy to (stores or all_stores).")
            return (self._data.default_store,)
        names: list[str] = []
        for given in request.stores:
            try:
                name = self._data.writable_store(given, Upload(iter(()), 0))
            except GlimpseError:
                raise Conflict(f"Store {given} is not enabled here.") from None
            if name not in names:
                names.append(name)
        if request.method == COPY_IMAGE:
            already = [n for n in names if n in held]
            if already:
                raise Invalid(f"Image {image.id} is already in store {', '.join(already)}.")
        return tuple(names)

    def _check_lock(self, image: Image) -> str | None:
        """Conflict while another import holds the image: its task is running and its process
        beats its heart. A lock whose task ended, or whose process stopped beating (the
        heartbeat timeout), has expired. The lock's value as read (None: absent), which
        taking it expects to find still."""
        holder = image.properties.get(IMPORT_TASK)
        if holder is None:
            return None
        task = self._tasks.get_task(holder) if holder else None
        if task is None or task.status not in RUNNING:
            return holder
        if task.updated_at < now() - dt.timedelta(seconds=self.config.stale_timeout):
            return holder
        raise Conflict(f"Image {image.id} is being imported by task {task.id}; try again once "
                       "it ends.", code="import_locked")

    # -- running an import (in the background) --------------------------------------------

    def _run(self, task: Task, request: ImportRequest, targets: tuple[str, ...]) -> None:
        try:
            if not self._tasks.set_task(task.id, {"status": TaskStatus.PROCESSING,
                                                  "updated_at": now()},
                                        expected_status=[TaskStatus.PENDING],
                                        expected_incarnation=self._incarnation):
                return
            self._data.events.task("task.processing", task)
            task = dataclasses.replace(task, status=TaskStatus.PROCESSING)
            if request.method == COPY_IMAGE:
                self._copy_image(task, request, targets)
            else:
                self._import_data(task, request, targets)
        except BaseException as exc:
            reason = exc.message if isinstance(exc, GlimpseError) else (
                f"internal error ({type(exc).__name__})")
            if not isinstance(exc, GlimpseError):
                log.exception("import task %s of image %s failed", task.id, task.image_id)
            else:
                log.warning("import task %s of image %s failed: %s", task.id, task.image_id,
                            reason)
            self._fail(task, f"Import failed: {reason}")

    def _import_data(self, task: Task, request: ImportRequest,
                     targets: tuple[str, ...]) -> None:
        """glance-direct and web-download: the data through the transform (if any) and the
        upload stages into the first store, copies of it into the others."""
        image = self._repo.get(task.image_id or "")
        if image is None or image.status is not Status.IMPORTING:
            raise PreconditionFailed("The image changed before its import ran.")
        with Heartbeat(self._tasks, self._repo, task, self._incarnation,
                        self.config.heartbeat_interval, Status.IMPORTING) as beat:
            done, failed, facts = self._store_data(task, image, request, targets, beat)
        staged = list(image.locations)
        learnt = facts.pop("properties", {})
        # The new locations replace the staged one in the same transaction: a reader never
        # sees the image active with its data location still the staged object.
        try:
            lifecycle.check_transition(Status.IMPORTING, Status.ACTIVE)
            finished = self._repo.update(
                image.id,
                Changes(fields={**facts, "status": Status.ACTIVE, "updated_at": now(),
                                "failure_status": None},
                        set_properties={**learnt, IMPORTING_TO: "",
                                        FAILED_IMPORT: ",".join(failed)},
                        remove_properties={IMPORT_TASK},
                        locations=done, locations_before=staged),
                expected_status=Status.IMPORTING)
        except Conflict:
            finished = None
        if finished is None:
            self._release(image.id, done)
            raise PreconditionFailed(f"Image {image.id} was deleted or changed while it was "
                                     "being imported.")
        for location in staged:
            try:
                self._stores[location.store].delete(location.url)
            except GlimpseError as exc:
                # Its location is gone: `glimpse store check` reports the object as an orphan.
                log.warning("image %s: the staged data could not be deleted from store %s: "
                            "%s", image.id, location.store, exc.message)
        self._data.events.uploaded(finished, activated=True)
        self._end_task(task, TaskStatus.SUCCESS, "", {"image_id": image.id})

    def _store_data(self, task: Task, image: Image, request: ImportRequest,
                    targets: tuple[str, ...], beat: Heartbeat,
                    ) -> tuple[list[Location], list[str], dict[str, Any]]:
        """The data into the first target store through the stages, then copied into the
        others; the new locations, the stores that failed, and the image fields learnt
        (``properties``: those the transform adds)."""
        scratch = self.config.scratch_dir / task.id
        try:
            source, fields, properties = self._source(image, request, beat, scratch)
            # The stages inspect the data as the format the transform made of it.
            inspected = dataclasses.replace(image, **{
                k: v for k, v in fields.items() if k in ("disk_format", "container_format")})
            first, rest = targets[0], targets[1:]
            located = self._data.claimed_location(image.id, first)
            stages = self._data.stages(inspected, source, Status.IMPORTING, None,
                                       expected_hash=request.expected)
            self._data.events.prepare(image)
            try:
                self._stores[first].put(located.url, stages.output)
            except BaseException:
                with contextlib.suppress(GlimpseError):
                    self._stores[first].delete(located.url)
                raise
            finally:
                with contextlib.suppress(ValueError):
                    stages.watched.close()
            facts: dict[str, Any] = {**stages.facts(), **fields}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        done = [located]
        failed: list[str] = []
        self._progress(image.id, rest, failed)
        for name, outcome in self._copies(image.id, located, rest, facts, beat):
            if isinstance(outcome, Location):
                done.append(outcome)
            else:
                failed.append(name)
                if request.must_succeed:
                    self._release(image.id, done)
                    raise outcome
            landed = {d.store for d in done} | set(failed)
            self._progress(image.id, [n for n in rest if n not in landed], failed)
        facts["properties"] = properties
        return done, failed, facts

    def _source(self, image: Image, request: ImportRequest, beat: Heartbeat,
                scratch: Path) -> tuple[Iterator[bytes], dict[str, Any], dict[str, str]]:
        """The data to store, and the image fields and properties the transform learnt."""
        remote: dict[str, Any] = {}
        copied: dict[str, str] = {}
        if request.method == GLANCE_DIRECT:
            staged = self._staged_location(image)
            chunks: Iterator[bytes] = self._stores[staged.store].open(staged.url)
        elif request.method == GLANCE_DOWNLOAD:
            chunks, remote, copied = self._remote_source(request)
            # The data is the remote's: inspected (and transformed) as the remote's formats.
            image = dataclasses.replace(image, **remote)
        else:
            chunks = resumable(self._data.external, request.uri or "",
                               self.config.web_download_retries)
        chunks = beat.passing(chunks)
        if self._transform is None:
            return chunks, remote, copied
        scratch.mkdir(parents=True, exist_ok=True)
        staged_file = scratch / "staged"
        with staged_file.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        outcome = self._transform.apply(staged_file, scratch, image, roles=request.roles)
        fields = {name: value for name, value in (
            ("disk_format", outcome.disk_format), ("container_format", outcome.container_format),
            ("virtual_size", outcome.virtual_size)) if value is not None}
        return (beat.passing(file_chunks(outcome.path)), {**remote, **fields},
                {**copied, **outcome.extra_properties})

    def _remote_source(self, request: ImportRequest
                       ) -> tuple[Iterator[bytes], dict[str, Any], dict[str, str]]:
        """glance-download: the remote image's bytes (checked against its record), its
        formats and the properties copied from it."""
        gdl, remote = self._glance_download, request.remote
        if gdl is None or remote is None or not request.token:
            raise PreconditionFailed("The glance-download import lost its remote image.")
        endpoint = request.endpoint or gdl.endpoint(request.token, remote)
        chunks, record = gdl.fetch(endpoint, request.token, remote)
        return chunks, {"disk_format": record.disk_format,
                        "container_format": record.container_format}, record.properties

    def _staged_location(self, image: Image) -> Location:
        key = staging_key(image.id)
        for location in image.locations:
            # The key itself, or a URL naming it (an RBD store's rbd://<fsid>/<pool>/<key>/snap).
            if location.url == key or f"/{key}/" in location.url:
                return location
        raise PreconditionFailed(f"Image {image.id} has no staged data to import.")

    def _copy_image(self, task: Task, request: ImportRequest,
                    targets: tuple[str, ...]) -> None:
        image = self._repo.get(task.image_id or "")
        if image is None or image.status is not Status.ACTIVE or image.data_location is None:
            raise PreconditionFailed("The image is no longer active: nothing to copy.")
        source = image.data_location
        if source.store not in self._stores:
            raise PreconditionFailed(f"The image's data is in store {source.store}, which "
                                     "cannot be copied from.")
        facts = {"size": image.size, "checksum": image.checksum}
        done: list[Location] = []
        failed: list[str] = []
        with Heartbeat(self._tasks, self._repo, task, self._incarnation,
                        self.config.heartbeat_interval, None) as beat:
            for name, outcome in self._copies(image.id, source, targets, facts, beat):
                if isinstance(outcome, Location):
                    # Each copy is recorded as it lands: readers may use it at once.
                    self._repo.update(image.id, Changes(fields={"updated_at": now()}),
                                      add_locations=[outcome])
                    done.append(outcome)
                else:
                    failed.append(name)
                landed = {d.store for d in done} | set(failed)
                self._progress(image.id, [n for n in targets if n not in landed], failed)
        if failed and request.must_succeed:
            for location in done:
                self._data.release(image.id, location)
            self._finish_lock(image.id, task.id, failed=targets)
            self._end_task(task, TaskStatus.FAILURE,
                           f"Copying the image to store(s) {', '.join(failed)} failed; the "
                           "copies made were deleted (all_stores_must_succeed).")
            return
        self._finish_lock(image.id, task.id, failed=failed)
        self._end_task(task, TaskStatus.SUCCESS,
                       f"Copying to store(s) {', '.join(failed)} failed." if failed else "",
                       {"image_id": image.id})

    def _copies(self, image_id: str, source: Location, targets: Sequence[str],
                facts: Mapping[str, Any], beat: Heartbeat,
                ) -> Iterator[tuple[str, Location | GlimpseError]]:
        return parallel_copies(self._stores, self._data.claimed_location, image_id, source,
                               targets, facts, beat, self.config.max_parallel_stores)

    # -- progress and ending ------------------------------------------------------------------

    def _progress(self, image_id: str, importing: Sequence[str], failed: Sequence[str]) -> None:
        self._repo.update(image_id, Changes(fields={"updated_at": now()}, set_properties={
            IMPORTING_TO: ",".join(importing), FAILED_IMPORT: ",".join(failed)}))

    def _finish_lock(self, image_id: str, task_id: str, failed: Sequence[str]) -> None:
        """The progress keys at the end, and the lock let go (if this task still holds it)."""
        image = self._repo.get(image_id)
        if image is None or image.deleted:
            return
        holds = image.properties.get(IMPORT_TASK) == task_id
        self._repo.update(image_id, Changes(
            fields={"updated_at": now()},
            set_properties={IMPORTING_TO: "", FAILED_IMPORT: ",".join(failed)},
            remove_properties={IMPORT_TASK} if holds else set()))

    def _end_task(self, task: Task, status: TaskStatus, message: str,
                  result: dict[str, Any] | None = None, incarnation: str | None = None) -> bool:
        stamp = now()
        ended = self._tasks.set_task(
            task.id, {"status": status, "message": message, "result": result,
                      "updated_at": stamp, "expires_at": stamp + TIME_TO_LIVE},
            expected_status=list(RUNNING),
            expected_incarnation=incarnation if incarnation is not None else self._incarnation)
        if ended:
            self._data.events.task(
                "task.success" if status is TaskStatus.SUCCESS else "task.failure", task)
        return ended

    def _fail(self, task: Task, message: str, incarnation: str | None = None) -> None:
        """End a task as failed and put its image back where the user can act on it: data
        imports back to queued (the staged data and every new copy deleted), copy-image active
        with the copies it had not recorded deleted. Only the task's claimant (or the process
        that took it over) gets here past the task's conditional update."""
        owner = incarnation if incarnation is not None else self._incarnation
        if not self._end_task(task, TaskStatus.FAILURE, message, incarnation=owner):
            return
        image = self._repo.get(task.image_id or "")
        if image is None:
            return
        method = str(task.input.get("import_req", {}).get("method", {}).get("name", ""))
        # A legacy import task's input is the client's: its data went to the default store.
        targets = [str(name) for name in task.input.get("backend", [self._data.default_store])]
        if (method != COPY_IMAGE and image.status is Status.IMPORTING
                and image.properties.get(IMPORT_TASK) == task.id
                and self._move(image.id, Status.IMPORTING, Status.QUEUED, owner)):
            image = self._repo.get(image.id) or image
        if image.properties.get(IMPORT_TASK) != task.id and not image.deleted:
            return  # another import holds the image now: its data is not ours to delete
        if image.status is not Status.ACTIVE or image.deleted:
            self._data.release_all(image)
        keep = {(loc.store, loc.url) for loc in image.locations} if (
            image.status is Status.ACTIVE and not image.deleted) else set()
        for name in targets:
            location = self._data.claimed_location(image.id, name)
            store = self._stores.get(name)
            if store is not None and (location.store, location.url) not in keep:
                with contextlib.suppress(GlimpseError):
                    store.delete(location.url)
        if not image.deleted:
            self._finish_lock(image.id, task.id, failed=targets)

    def _move(self, image_id: str, current: Status, target: Status,
              incarnation: str | None) -> bool:
        """current -> target (and the failure rule cleared), only if the image is still in
        ``current`` and claimed by ``incarnation`` (when given); whether it moved."""
        lifecycle.check_transition(current, target)
        return self._repo.set_fields(image_id, {"status": target, "updated_at": now(),
                                                "failure_status": None},
                                     expected_status=current, expected_incarnation=incarnation)

    def _release(self, image_id: str, locations: Iterable[Location]) -> None:
        for location in locations:
            with contextlib.suppress(GlimpseError):
                self._stores[location.store].delete(location.url)

    # -- recovery -----------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Fail the imports and stages whose process died: this node's ended incarnations at
        once, others' once their heartbeat is older than the stale timeout. Safe to run in
        every API process at once (each end is a conditional update). The ids of the tasks
        and images it ended."""
        ended: list[str] = []
        stale = now() - dt.timedelta(seconds=self.config.stale_timeout)
        verdicts: dict[str, bool] = {}
        for task in self._tasks.running_tasks():
            if not self._dead(task.claim_node, task.claim_incarnation, task.updated_at, stale,
                              verdicts):
                continue
            if not self._can_clean(task.input.get("backend", [self._data.default_store]),
                                   task.image_id):
                continue  # a process that has its stores ends it (and deletes its data)
            why = ("its process ended" if task.updated_at >= stale else
                   f"its process stopped reporting progress (no heartbeat since "
                   f"{task.updated_at.isoformat()}Z)")
            log.warning("import task %s of image %s: %s; failing it", task.id, task.image_id,
                        why)
            self._fail(task, f"Import failed: {why} before the import finished; the image "
                       "is ready for another try.", incarnation=task.claim_incarnation)
            ended.append(task.id)
        for image_id in self._tasks.staging_image_ids():
            image = self._repo.get(image_id)
            if image is None or image.status is not Status.UPLOADING:
                continue
            if not self._dead(image.claim_node, image.claim_incarnation, image.updated_at,
                              stale, verdicts):
                continue
            if not self._can_clean([], image.id):
                continue
            if self._move(image.id, Status.UPLOADING, Status.QUEUED, image.claim_incarnation):
                log.warning("image %s: its stage's process ended; back to queued", image.id)
                self._data.release_all(image)
                ended.append(image.id)
        return ended

    def _can_clean(self, targets: Any, image_id: str | None) -> bool:
        """Whether this process has every store an import's data may be in: its targets and
        the image's locations (the staged object). A fleet whose processes differ in their
        stores (mid-rollout) leaves an import to a process that can delete all it wrote."""
        image = self._repo.get(image_id or "")
        stores = {str(name) for name in targets} if isinstance(targets, list) else set()
        if image is not None:
            stores |= {loc.store for loc in image.locations}
        return stores <= set(self._stores) | {EXTERNAL_STORE}

    def _dead(self, node: str | None, incarnation: str | None, beat: dt.datetime,
              stale: dt.datetime, verdicts: dict[str, bool]) -> bool:
        if beat < stale:
            return True
        if self._identity is None or incarnation is None or node != self._identity.node:
            return False
        if incarnation not in verdicts:
            verdicts[incarnation] = self._identity.ended(incarnation)
        return verdicts[incarnation]

    # -- tasks (reading) ----------------------------------------------------------------------

    def image_tasks(self, principal: Principal, image_id: str) -> list[Task]:
        """The image's tasks, for anyone who may see the image (404 otherwise)."""
        image = self._image(principal, image_id)
        return self._tasks.image_tasks(image.id)

    def get_task(self, principal: Principal, task_id: str) -> Task:
        self.tasks_access(principal, "get_task")
        task = self._tasks.get_task(task_id)
        if task is None or task.deleted:
            raise NotFound(f"Task with the given id {task_id} not found")
        return task

    def list_tasks(self, principal: Principal, query: TaskQuery) -> list[Task]:
        self.tasks_access(principal, "get_tasks")
        return self._tasks.list_tasks(query)

    def tasks_access(self, principal: Principal, rule: str) -> None:
        """Glance's pair: the operation's rule, and tasks_api_access (admin) for every one."""
        target = {"project_id": principal.owner}
        for name in (rule, "tasks_api_access"):
            self._images.policy.enforce(name, principal, target,
                                        "You are not authorized to use the tasks API.")

    # -- helpers ------------------------------------------------------------------------------

    def _image(self, principal: Principal, image_id: str) -> Image:
        shown = self._images.get(principal, image_id)
        image = self._repo.get(shown.id)
        if image is None or image.deleted:
            raise NotFound(f"Image {image_id} not found.")
        return image

    def _enforce(self, rule: str, principal: Principal, image: Image, message: str) -> None:
        self._images.policy.enforce(rule, principal, ImageTarget(image, principal.owner),
                                    message)

    @property
    def _incarnation(self) -> str | None:
        return None if self._identity is None else self._identity.incarnation

    def _claim(self) -> dict[str, Any]:
        if self._identity is None:
            return {}
        return {"claim_node": self._identity.node,
                "claim_incarnation": self._identity.incarnation}

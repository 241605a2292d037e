"""The locations API's ``location_import`` task (glimpse.domain.location_tasks) in process:
recorded before add_location returns, ended once the image has moved, with the cause of a
failure; a refused claim ends its task at once."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

import pytest

from glimpse.db.tasks import SqlTaskRepository
from glimpse.domain.data import HashCheck
from glimpse.domain.images import ImageService
from glimpse.domain.location_tasks import LocationTasks
from glimpse.domain.model import Status
from glimpse.domain.tasks import TaskStatus, TaskType
from glimpse.errors import Conflict, Invalid
from tests.service.conftest import OWNER, Services

T = TypeVar("T")
REMOTE = "http://remote.test/"
DATA = b"location data " * 100


class Remote:
    """An external source serving DATA under REMOTE."""

    def validate(self, url: str) -> None:
        if not url.startswith(REMOTE):
            raise Invalid("The URL is not allowed.")

    def size(self, url: str) -> int | None:
        return len(DATA)

    def open(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        yield DATA[offset:None if length is None else offset + length]


class Later(Executor):
    """Background work run when the test says (after add_location has returned)."""

    def __init__(self) -> None:
        self.queued: list[Callable[[], Any]] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.queued.append(lambda: fn(*args, **kwargs))
        return Future()

    def run(self) -> None:
        while self.queued:
            self.queued.pop(0)()


@pytest.fixture
def world(svc: Services) -> tuple[ImageService, SqlTaskRepository, Later]:
    later = Later()
    svc.data.external = Remote()
    svc.data._background = later  # the verification runs when the test says
    tasks = SqlTaskRepository(svc.engine)
    images = ImageService(svc.repo, svc.data, svc.limits,
                          location_tasks=LocationTasks(tasks, svc.data.claim_fields))
    return images, tasks, later


def test_a_verified_location_ends_its_task_success_after_the_image_is_active(
        svc: Services, world: tuple[ImageService, SqlTaskRepository, Later]) -> None:
    images, tasks, later = world
    image = svc.create(data=None)
    sha = hashlib.sha256(DATA).hexdigest()
    images.add_location(OWNER, image.id, REMOTE + "x", HashCheck("sha256", sha))
    (task,) = tasks.image_tasks(image.id)
    # Recorded, running, before the verification ran.
    assert task.type is TaskType.LOCATION_IMPORT and task.status is TaskStatus.PROCESSING
    assert task.input == {"image_id": image.id, "loc_url": REMOTE + "x",
                          "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha}}
    later.run()
    (task,) = tasks.image_tasks(image.id)
    assert task.status is TaskStatus.SUCCESS and task.result == {"image_id": image.id}
    done = svc.repo.get(image.id)
    assert done is not None and done.status is Status.ACTIVE


def test_a_mismatch_ends_its_task_failure_with_the_cause(
        svc: Services, world: tuple[ImageService, SqlTaskRepository, Later]) -> None:
    images, tasks, later = world
    image = svc.create(data=None)
    images.add_location(OWNER, image.id, REMOTE + "x", HashCheck("md5", "0" * 32))
    later.run()
    (task,) = tasks.image_tasks(image.id)
    assert task.status is TaskStatus.FAILURE and "does not match the given md5" in task.message
    assert task.input["validation_data"] == {"checksum": "0" * 32}
    back = svc.repo.get(image.id)
    assert back is not None and back.status is Status.QUEUED and back.locations == []


def test_a_lost_claim_ends_its_task_at_once(
        svc: Services, world: tuple[ImageService, SqlTaskRepository, Later]) -> None:
    images, tasks, _later = world
    image = svc.create(data=None)
    # Another request claims the image between the check and this one's claim.
    claim = svc.data.import_location
    moved = threading.Event()

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not moved.is_set():
            moved.set()
            claim(image, REMOTE + "other", None)
        return claim(*args, **kwargs)

    svc.data.import_location = racing  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        images.add_location(OWNER, image.id, REMOTE + "x", None)
    (task,) = tasks.image_tasks(image.id)
    assert task.status is TaskStatus.FAILURE and "queued" in task.message

"""The ``location_import`` task each ``POST /v2/images/{id}/locations`` records, as Glance's
new locations API (2.17) does: clients (Tempest's LocationImportTest) wait on the image's
tasks (``GET /v2/images/{id}/tasks``) to learn how the verification of the location's data
ended. The task is recorded, claimed by this process, before the request is answered, and ends
``success`` once the image is active or ``failure`` (with the cause) once it is back in
queued. A task whose process died is failed by ``ImportService.recover``; the image itself is
put back in queued by ``ImageData.recover_stale_uploads``.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any

from glimpse.domain.data import HashCheck
from glimpse.domain.events import Events
from glimpse.domain.model import Image, Principal, now
from glimpse.domain.tasks import RUNNING, TIME_TO_LIVE, Task, TaskRepository, TaskStatus, TaskType
from glimpse.errors import GlimpseError

log = logging.getLogger(__name__)


class LocationTasks:
    def __init__(self, tasks: TaskRepository, claim: Callable[[], dict[str, Any]],
                 events: Events | None = None) -> None:
        """``claim``: the fields naming this process (the node and incarnation) on a task;
        ``events``: where task.create and task.success/task.failure go."""
        self._tasks = tasks
        self._claim = claim
        self._events = events or Events()

    def start(self, principal: Principal, image: Image, url: str,
              expected: HashCheck | None, request_id: str | None = None) -> Task:
        """The task of one location's verification, recorded as processing (Glance's input:
        the image, the URL and the validation data given)."""
        stamp = now()
        validation: dict[str, str] = {}
        if expected is not None:
            validation = {"checksum": expected.value} if expected.algorithm == "md5" else {
                "os_hash_algo": expected.algorithm, "os_hash_value": expected.value}
        task = Task(
            id=str(uuid.uuid4()), type=TaskType.LOCATION_IMPORT, status=TaskStatus.PROCESSING,
            owner=image.owner, image_id=image.id,
            input={"image_id": image.id, "loc_url": url, "validation_data": validation},
            created_at=stamp, updated_at=stamp, request_id=request_id, user_id=principal.user,
            **self._claim())
        self._tasks.create_task(task)
        self._events.task("task.create", task)
        return task

    def ender(self, task: Task) -> Callable[[str | None], None]:
        """What to tell when the verification ends: None (verified) or why it did not."""
        return functools.partial(self.end, task)

    def end(self, task: Task, failure: str | None) -> None:
        stamp = now()
        fields: dict[str, Any] = {
            "status": TaskStatus.SUCCESS if failure is None else TaskStatus.FAILURE,
            "message": failure or "", "updated_at": stamp, "expires_at": stamp + TIME_TO_LIVE,
            "result": {"image_id": task.image_id} if failure is None else None}
        try:
            if self._tasks.set_task(task.id, fields, expected_status=list(RUNNING)):
                self._events.task("task.success" if failure is None else "task.failure", task)
        except GlimpseError as exc:
            # The image is settled whatever the task says; recover() fails it later.
            log.warning("location_import task %s of image %s could not be ended: %s",
                        task.id, task.image_id, exc.message)

"""Tasks: the record of an import (Glance's ``api_image_import`` task, the legacy ``import``
task of ``/v2/tasks``, and the locations API's ``location_import``), with the process running
it and how it ended.

A task is ``pending`` when recorded, ``processing`` while a process runs it (its claim names the
node and incarnation; ``updated_at`` is the heartbeat), and ends ``success`` or ``failure``
with a message naming the cause. A process that dies leaves its tasks ``processing``: any
process fails them once the claim's process is known to have ended (same node) or its heartbeat
is stale (other nodes), see ``imports.ImportService.recover``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence
from typing import Any, Protocol


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILURE = "failure"


class TaskType(enum.StrEnum):
    IMPORT = "import"  # the legacy /v2/tasks import
    API_IMAGE_IMPORT = "api_image_import"  # POST /v2/images/{id}/import
    LOCATION_IMPORT = "location_import"  # POST /v2/images/{id}/locations (location_tasks)


RUNNING = (TaskStatus.PENDING, TaskStatus.PROCESSING)
# How long an ended task is kept visible as current (Glance's task_time_to_live, 48 h).
TIME_TO_LIVE = dt.timedelta(hours=48)


@dataclasses.dataclass
class Task:
    id: str
    type: TaskType
    status: TaskStatus
    owner: str | None
    image_id: str | None
    input: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    message: str = ""
    result: dict[str, Any] | None = None
    request_id: str | None = None
    user_id: str | None = None
    expires_at: dt.datetime | None = None
    deleted: bool = False
    deleted_at: dt.datetime | None = None
    claim_node: str | None = None
    claim_incarnation: str | None = None


@dataclasses.dataclass(frozen=True)
class TaskQuery:
    """A page of the legacy tasks list."""

    type: str | None = None
    status: str | None = None
    owner: str | None = None  # None: every owner's (the API is admin-only)
    sort_key: str = "created_at"
    descending: bool = True
    limit: int = 25
    marker: Task | None = None


class TaskRepository(Protocol):
    def create_task(self, task: Task) -> None: ...

    def get_task(self, task_id: str) -> Task | None: ...

    def set_task(self, task_id: str, fields: dict[str, Any], *,
                 expected_status: Sequence[TaskStatus] | None = None,
                 expected_incarnation: str | None = None) -> bool:
        """Change a task's fields, only if in one of ``expected_status`` and claimed by
        ``expected_incarnation`` when given; whether it did."""
        ...

    def image_tasks(self, image_id: str) -> list[Task]:
        """An image's tasks, newest first."""
        ...

    def list_tasks(self, query: TaskQuery) -> list[Task]: ...

    def running_tasks(self) -> list[Task]:
        """Every pending or processing task (few: one per import in flight)."""
        ...

    def staging_image_ids(self) -> list[str]:
        """Images ``uploading`` whose stage is still being written (a claim is recorded):
        a stage whose process died leaves one."""
        ...

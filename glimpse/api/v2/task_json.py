"""Tasks as v2 renders them: the legacy ``/v2/tasks`` form and its schemas, and the form of
``GET /v2/images/{id}/tasks`` (2.12), whose keys differ (``request-id``, ``user``)."""

from __future__ import annotations

import copy
from typing import Any

from glimpse.api.v2.images_json import timestamp
from glimpse.domain.tasks import Task

TASK_SCHEMA_URL = "/v2/schemas/task"
TASKS_SCHEMA_URL = "/v2/schemas/tasks"
_UUID_PATTERN = ("^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                 "-([0-9a-fA-F]){12}$")
_PROPERTIES: dict[str, Any] = {
    "id": {"description": "An identifier for the task", "pattern": _UUID_PATTERN,
           "type": "string"},
    "type": {"description": "The type of task represented by this content",
             "enum": ["import"], "type": "string"},
    "status": {"description": "The current status of this task",
               "enum": ["pending", "processing", "success", "failure"], "type": "string"},
    "input": {"description": "The parameters required by task, JSON blob", "type": "object"},
    "result": {"description": "The result of current task, JSON blob", "type": "object"},
    "owner": {"description": "An identifier for the owner of this task", "type": "string"},
    "message": {"description": "Human-readable informative message only included when "
                               "appropriate (usually on failure)", "type": "string"},
    "expires_at": {"description": "Datetime when this resource would be subject to removal",
                   "type": "string"},
    "created_at": {"description": "Datetime when this resource was created", "type": "string"},
    "updated_at": {"description": "Datetime when this resource was updated", "type": "string"},
    "self": {"type": "string"},
    "schema": {"type": "string"},
}
_DETAILS = ("input", "result", "message")


def task_schema() -> dict[str, Any]:
    return {"name": "task", "properties": copy.deepcopy(_PROPERTIES)}


def tasks_schema() -> dict[str, Any]:
    partial = {k: v for k, v in copy.deepcopy(_PROPERTIES).items() if k not in _DETAILS}
    return {
        "name": "tasks",
        "properties": {
            "tasks": {"type": "array", "items": {"name": "task", "properties": partial}},
            "first": {"type": "string"}, "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


def task_json(task: Task, details: bool = True) -> dict[str, Any]:
    """The legacy form; a list shows no input, result nor message (Glance's partial task)."""
    document: dict[str, Any] = {"id": task.id, "type": str(task.type),
                                "status": str(task.status), "owner": task.owner}
    if details:
        document.update(input=task.input, result=task.result, message=task.message)
    if task.expires_at is not None:
        document["expires_at"] = timestamp(task.expires_at)
    document.update(created_at=timestamp(task.created_at), updated_at=timestamp(task.updated_at),
                    self=f"/v2/tasks/{task.id}", schema=TASK_SCHEMA_URL)
    return document


def image_task_json(task: Task) -> dict[str, Any]:
    # Glance answers request_id and user_id (Tempest reads request_id); its api-ref shows
    # request-id and user: both are given.
    return {
        "id": task.id, "image_id": task.image_id, "request_id": task.request_id,
        "user_id": task.user_id, "request-id": task.request_id, "user": task.user_id,
        "type": str(task.type), "status": str(task.status),
        "owner": task.owner, "expires_at": _plain(task.expires_at),
        "created_at": _plain(task.created_at), "updated_at": _plain(task.updated_at),
        "deleted_at": _plain(task.deleted_at), "deleted": task.deleted, "input": task.input,
        "result": task.result, "message": task.message,
    }


def _plain(value: Any) -> str | None:
    # Glance writes these as the database holds them: microseconds, no zone letter.
    return None if value is None else value.isoformat(timespec="microseconds")

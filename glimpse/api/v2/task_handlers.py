"""The legacy tasks API (``/v2/tasks``, admin only by ``tasks_api_access``) and the task
schemas. Tasks are the imports' records (glimpse.domain.tasks)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from glimpse.api.http import in_thread, json_response
from glimpse.api.v2.body import parse_create
from glimpse.api.v2.handlers import Call
from glimpse.api.v2.schemas import ImageSchemas
from glimpse.api.v2.task_json import TASKS_SCHEMA_URL, task_json, task_schema, tasks_schema
from glimpse.domain.imports import ImportService
from glimpse.domain.tasks import TaskQuery, TaskStatus, TaskType
from glimpse.errors import Invalid
from glimpse.log_format import REQUEST_IDS

_SORT_KEYS = ("created_at", "updated_at", "status", "type", "id", "expires_at", "owner")
_FILTERS = ("type", "status")


class TaskHandlers:
    def __init__(self, imports: ImportService, schemas: ImageSchemas, default_limit: int,
                 max_limit: int) -> None:
        self.imports = imports
        self.schemas = schemas
        self.default_limit = default_limit
        self.max_limit = max_limit

    async def task_schema(self, call: Call) -> Response:
        call.refuse_body()
        return json_response(task_schema())

    async def tasks_schema(self, call: Call) -> Response:
        call.refuse_body()
        return json_response(tasks_schema())

    async def create(self, call: Call) -> Response:
        """The legacy import task: ``{"type": "import", "input": {"import_from",
        "import_from_format", "image_properties"}}``; 201 with the task and its Location."""
        self.imports.tasks_access(call.principal, "add_task")  # 403 before any 400
        body = await call.json()
        if not isinstance(body, dict):
            raise Invalid("The request body must be a JSON object.")
        task_input = body.get("input")
        properties = task_input.get("image_properties") if isinstance(task_input, dict) else None
        image_input = parse_create(properties if isinstance(properties, dict) else {},
                                   call.principal, self.schemas)
        ids = REQUEST_IDS.get()
        task = await in_thread(self.imports.create_task, call.principal, body.get("type"),
                               task_input, image_input, None if ids is None else ids.local)
        location = f"{call.base_url_of(call.request)}/v2/tasks/{task.id}"
        return json_response(task_json(task), 201, [(b"location", location.encode())])

    async def show(self, call: Call) -> Response:
        call.refuse_body()
        task = await in_thread(self.imports.get_task, call.principal, call.params["task_id"])
        return json_response(task_json(task))

    async def list_tasks(self, call: Call) -> Response:
        call.refuse_body()
        params = call.query()
        query, marker_id = self._query(params)
        if marker_id is not None:
            marker = await in_thread(self.imports.get_task, call.principal, marker_id)
            query = TaskQuery(**{**query.__dict__, "marker": marker})
        found = await in_thread(self.imports.list_tasks, call.principal, query)
        kept = [(k, v) for k, v in params if k != "marker"]
        first = "/v2/tasks" + (f"?{urlencode(kept)}" if kept else "")
        document = {"tasks": [task_json(t, details=False) for t in found], "first": first,
                    "schema": TASKS_SCHEMA_URL}
        if len(found) == query.limit and found:
            document["next"] = "/v2/tasks?" + urlencode([*kept, ("marker", found[-1].id)])
        return json_response(document)

    def _query(self, params: list[tuple[str, str]]) -> tuple[TaskQuery, str | None]:
        values: dict[str, str] = {}
        for key, value in params:
            if key in values:
                raise Invalid(f"The query parameter {key} may be given once.")
            values[key] = value
        unknown = set(values) - {*_FILTERS, "sort_key", "sort_dir", "limit", "marker"}
        if unknown:
            raise Invalid(f"Unknown query parameter(s): {', '.join(sorted(unknown))}.")
        sort_key = values.get("sort_key", "created_at")
        if sort_key not in _SORT_KEYS:
            raise Invalid(f"Invalid sort_key {sort_key}: one of {', '.join(_SORT_KEYS)}.")
        sort_dir = values.get("sort_dir", "desc")
        if sort_dir not in ("asc", "desc"):
            raise Invalid("sort_dir must be asc or desc.")
        status = values.get("status")
        if status is not None and status not in {str(s) for s in TaskStatus}:
            raise Invalid(f"Invalid status value: {status}")
        task_type = values.get("type")
        if task_type is not None and task_type not in {str(t) for t in TaskType}:
            raise Invalid(f"Invalid type value: {task_type}")
        limit_text = values.get("limit")
        limit = self.default_limit
        if limit_text is not None:
            if not limit_text.isdigit() or not limit_text.isascii():
                raise Invalid("limit must be a non-negative integer.")
            limit = int(limit_text[:12])
        limit = min(limit, self.max_limit)
        return TaskQuery(type=task_type, status=status, sort_key=sort_key,
                         descending=sort_dir == "desc", limit=limit), values.get("marker")

"""SQLAlchemy implementation of the domain's TaskRepository (glimpse.domain.tasks).

Every state change of a task is a conditional update on its expected status (and claim), as
an image's is: a process that took a task over and the one that ran it cannot both end it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from glimpse.db import transactions
from glimpse.db.tables import images, tasks
from glimpse.domain.model import Status
from glimpse.domain.tasks import Task, TaskQuery, TaskStatus, TaskType
from glimpse.errors import Conflict

T = TypeVar("T")
_JSON_COLUMNS = ("input", "result")
_SORTABLE = ("created_at", "updated_at", "status", "type", "id", "expires_at", "owner")


class SqlTaskRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_task(self, task: Task) -> None:
        row = _row(task)
        try:
            self._write(lambda conn: conn.execute(tasks.insert(), row))
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"A task with identifier {task.id} already exists") from exc

    def get_task(self, task_id: str) -> Task | None:
        stmt = sa.select(tasks).where(tasks.c.id == task_id)
        found = self._read(lambda conn: conn.execute(stmt).first())
        return None if found is None else _task(found)

    def set_task(self, task_id: str, fields: dict[str, Any], *,
                 expected_status: Sequence[TaskStatus] | None = None,
                 expected_incarnation: str | None = None) -> bool:
        values = {k: (json.dumps(v) if k in _JSON_COLUMNS and v is not None else
                      str(v) if k in ("status", "type") else v) for k, v in fields.items()}
        stmt = tasks.update().where(tasks.c.id == task_id).values(**values)
        if expected_status is not None:
            stmt = stmt.where(tasks.c.status.in_([str(s) for s in expected_status]))
        if expected_incarnation is not None:
            stmt = stmt.where(tasks.c.claim_incarnation == expected_incarnation)
        return bool(self._write(lambda conn: conn.execute(stmt).rowcount))

    def image_tasks(self, image_id: str) -> list[Task]:
        stmt = (sa.select(tasks).where(tasks.c.image_id == image_id, tasks.c.deleted.is_(False))
                .order_by(tasks.c.created_at.desc(), tasks.c.id.desc()))
        return [_task(row) for row in self._read(lambda conn: conn.execute(stmt).all())]

    def list_tasks(self, query: TaskQuery) -> list[Task]:
        key = query.sort_key if query.sort_key in _SORTABLE else "created_at"
        column, tie = tasks.c[key], tasks.c.id
        stmt = sa.select(tasks).where(tasks.c.deleted.is_(False))
        if query.type is not None:
            stmt = stmt.where(tasks.c.type == query.type)
        if query.status is not None:
            stmt = stmt.where(tasks.c.status == query.status)
        if query.owner is not None:
            stmt = stmt.where(tasks.c.owner == query.owner)
        if query.marker is not None:
            value = getattr(query.marker, key)
            value = str(value) if key in ("status", "type") else value
            after = (column < value) if query.descending else (column > value)
            same = sa.and_(column == value,
                           (tie < query.marker.id) if query.descending else (tie > query.marker.id))
            stmt = stmt.where(sa.or_(after, same))
        if query.descending:
            stmt = stmt.order_by(column.desc(), tie.desc())
        else:
            stmt = stmt.order_by(column.asc(), tie.asc())
        stmt = stmt.limit(query.limit)
        return [_task(row) for row in self._read(lambda conn: conn.execute(stmt).all())]

    def running_tasks(self) -> list[Task]:
        stmt = sa.select(tasks).where(
            tasks.c.status.in_([str(TaskStatus.PENDING), str(TaskStatus.PROCESSING)]))
        return [_task(row) for row in self._read(lambda conn: conn.execute(stmt).all())]

    def staging_image_ids(self) -> list[str]:
        stmt = sa.select(images.c.id).where(images.c.status == str(Status.UPLOADING),
                                            images.c.claim_incarnation.is_not(None))
        return [row[0] for row in self._read(lambda conn: conn.execute(stmt).all())]

    def _read(self, work: Callable[[Connection], T]) -> T:
        return transactions.run(self._engine, work, write=False)

    def _write(self, work: Callable[[Connection], T]) -> T:
        return transactions.run(self._engine, work, write=True)


def _row(task: Task) -> dict[str, Any]:
    return {
        "id": task.id, "type": str(task.type), "status": str(task.status), "owner": task.owner,
        "image_id": task.image_id, "request_id": task.request_id, "user_id": task.user_id,
        "input": json.dumps(task.input),
        "result": None if task.result is None else json.dumps(task.result),
        "message": task.message, "expires_at": task.expires_at, "created_at": task.created_at,
        "updated_at": task.updated_at, "deleted_at": task.deleted_at, "deleted": task.deleted,
        "claim_node": task.claim_node, "claim_incarnation": task.claim_incarnation,
    }


def _task(row: Row[Any]) -> Task:
    m = row._mapping
    return Task(
        id=m["id"], type=TaskType(m["type"]), status=TaskStatus(m["status"]), owner=m["owner"],
        image_id=m["image_id"], input=json.loads(m["input"]),
        result=None if m["result"] is None else json.loads(m["result"]),
        created_at=m["created_at"], updated_at=m["updated_at"],
        message=m["message"], request_id=m["request_id"], user_id=m["user_id"],
        expires_at=m["expires_at"], deleted=bool(m["deleted"]),
        deleted_at=m["deleted_at"], claim_node=m["claim_node"],
        claim_incarnation=m["claim_incarnation"],
    )


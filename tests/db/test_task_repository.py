"""The task repository's contract (glimpse/db/tasks.py), run unchanged on SQLite, PostgreSQL
and MariaDB (each a fresh, migrated database; an unreachable server skips with the reason)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import pytest

from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.db.tasks import SqlTaskRepository
from glimpse.domain.model import Image, Status, now
from glimpse.domain.tasks import Task, TaskQuery, TaskStatus, TaskType
from glimpse.errors import Conflict
from tests import databases


@pytest.fixture(scope="module", params=databases.ENGINES)
def repos(request: pytest.FixtureRequest) -> Iterator[tuple[SqlTaskRepository,
                                                            SqlImageRepository]]:
    for url in databases.or_skip(request.param):
        engine = db_engine.create_engine(url)
        db_engine.upgrade(engine)
        yield SqlTaskRepository(engine), SqlImageRepository(engine)
        engine.dispose()


def new_task(owner: str, **fields: object) -> Task:
    stamp = now()
    values: dict[str, object] = {
        "id": str(uuid.uuid4()), "type": TaskType.API_IMAGE_IMPORT,
        "status": TaskStatus.PENDING, "owner": owner, "image_id": str(uuid.uuid4()),
        "input": {"import_req": {"method": {"name": "glance-direct"}}, "backend": ["file"],
                  "note": "ünïcode ✓"},
        "created_at": stamp, "updated_at": stamp, "claim_node": "host/abc",
        "claim_incarnation": uuid.uuid4().hex, **fields}
    return Task(**values)  # type: ignore[arg-type]


def test_a_task_round_trips(repos: tuple[SqlTaskRepository, SqlImageRepository]) -> None:
    tasks, _ = repos
    task = new_task("p1", request_id="req-1", user_id="u1", message="")
    tasks.create_task(task)
    found = tasks.get_task(task.id)
    assert found == task
    with pytest.raises(Conflict):
        tasks.create_task(task)
    assert tasks.get_task(str(uuid.uuid4())) is None


def test_set_task_is_conditional_on_status_and_claim(
        repos: tuple[SqlTaskRepository, SqlImageRepository]) -> None:
    tasks, _ = repos
    task = new_task("p2")
    tasks.create_task(task)
    assert not tasks.set_task(task.id, {"status": TaskStatus.SUCCESS},
                              expected_status=[TaskStatus.PROCESSING])
    assert not tasks.set_task(task.id, {"status": TaskStatus.PROCESSING},
                              expected_status=[TaskStatus.PENDING],
                              expected_incarnation="someone-else")
    assert tasks.set_task(task.id, {"status": TaskStatus.PROCESSING},
                          expected_status=[TaskStatus.PENDING],
                          expected_incarnation=task.claim_incarnation)
    later = now() + dt.timedelta(hours=48)
    assert tasks.set_task(task.id, {"status": TaskStatus.FAILURE, "message": "cut ✂",
                                    "result": {"image_id": "x"}, "expires_at": later},
                          expected_status=[TaskStatus.PENDING, TaskStatus.PROCESSING])
    found = tasks.get_task(task.id)
    assert found is not None and found.status is TaskStatus.FAILURE
    assert found.message == "cut ✂" and found.result == {"image_id": "x"}
    assert found.expires_at == later


def test_only_one_of_two_racing_enders_wins(
        repos: tuple[SqlTaskRepository, SqlImageRepository]) -> None:
    tasks, _ = repos
    task = new_task("p3", status=TaskStatus.PROCESSING)
    tasks.create_task(task)
    wins: list[bool] = []

    def end(status: TaskStatus) -> None:
        wins.append(tasks.set_task(task.id, {"status": status},
                                   expected_status=[TaskStatus.PROCESSING]))

    threads = [threading.Thread(target=end, args=(s,))
               for s in (TaskStatus.SUCCESS, TaskStatus.FAILURE) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1


def test_image_tasks_newest_first_and_running_tasks(
        repos: tuple[SqlTaskRepository, SqlImageRepository]) -> None:
    tasks, _ = repos
    image_id = str(uuid.uuid4())
    base = now()
    made = [new_task("p4", image_id=image_id, created_at=base + dt.timedelta(seconds=i),
                     status=TaskStatus.SUCCESS if i else TaskStatus.PROCESSING)
            for i in range(3)]
    for task in made:
        tasks.create_task(task)
    assert [t.id for t in tasks.image_tasks(image_id)] == [t.id for t in reversed(made)]
    running = {t.id for t in tasks.running_tasks()}
    assert made[0].id in running and made[1].id not in running


def test_list_filters_sorts_and_pages(
        repos: tuple[SqlTaskRepository, SqlImageRepository]) -> None:
    tasks, _ = repos
    owner = uuid.uuid4().hex
    base = now()
    made = [new_task(owner, created_at=base + dt.timedelta(seconds=i // 2),
                     status=TaskStatus.SUCCESS) for i in range(5)]
    for task in made:
        tasks.create_task(task)
    seen: list[str] = []
    marker = None
    while True:
        page = tasks.list_tasks(TaskQuery(owner=owner, status="success", limit=2,
                                          marker=marker))
        seen += [t.id for t in page]
        if len(page) < 2:
            break
        marker = page[-1]
    expected = sorted(made, key=lambda t: (t.created_at, t.id), reverse=True)
    assert seen == [t.id for t in expected]
    ascending = tasks.list_tasks(TaskQuery(owner=owner, descending=False, limit=10))
    assert [t.id for t in ascending] == [t.id for t in reversed(expected)]
    assert tasks.list_tasks(TaskQuery(owner=owner, status="failure")) == []


def test_staging_images_are_those_uploading_with_a_claim(
        repos: tuple[SqlTaskRepository, SqlImageRepository]) -> None:
    tasks, images = repos
    staging = Image(id=str(uuid.uuid4()), status=Status.UPLOADING, claim_node="n",
                    claim_incarnation=uuid.uuid4().hex)
    staged = Image(id=str(uuid.uuid4()), status=Status.UPLOADING)
    images.create(staging)
    images.create(staged)
    found = tasks.staging_image_ids()
    assert staging.id in found and staged.id not in found

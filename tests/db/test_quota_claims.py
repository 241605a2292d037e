"""Quota claims race on every database: concurrent creates and upload claims of one project,
admitted under its lock (quota_locks) inside their transactions, never pass a limit together.
SQLite, PostgreSQL and MariaDB, each a fresh migrated database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.domain.model import Changes, Image, Status, now
from glimpse.domain.quotas import (
    IMAGE_COUNT_TOTAL,
    IMAGE_COUNT_UPLOADING,
    IMAGE_SIZE_TOTAL,
    IMAGE_STAGE_TOTAL,
    Admission,
    MiB,
)
from glimpse.errors import OverLimit
from tests import databases

T = TypeVar("T")
THREADS = 8


@pytest.fixture(scope="module", params=databases.ENGINES)
def repo(request: pytest.FixtureRequest) -> Iterator[SqlImageRepository]:
    for url in databases.or_skip(request.param):
        engine = db_engine.create_engine(url)
        db_engine.upgrade(engine)
        yield SqlImageRepository(engine)
        engine.dispose()


def limits(**given: int | None) -> dict[str, int | None]:
    return {IMAGE_SIZE_TOTAL: None, IMAGE_STAGE_TOTAL: None, IMAGE_COUNT_TOTAL: None,
            IMAGE_COUNT_UPLOADING: None, **given}


def image(owner: str, status: Status = Status.QUEUED, size: int | None = None) -> Image:
    stamp = now()
    return Image(id=str(uuid.uuid4()), status=status, owner=owner, size=size,
                 created_at=stamp, updated_at=stamp)


def race(tasks: list[Callable[[], T]]) -> list[T | OverLimit]:
    """Run the tasks at once (a barrier lines them up); each one's result or OverLimit."""
    barrier = threading.Barrier(len(tasks))

    def run(task: Callable[[], T]) -> T | OverLimit:
        barrier.wait(30)
        try:
            return task()
        except OverLimit as exc:
            return exc

    with ThreadPoolExecutor(len(tasks)) as pool:
        return list(pool.map(run, tasks))


def claim(repo: SqlImageRepository, found: Image, admission: Admission) -> Image | None:
    return repo.update(found.id, Changes(fields={"status": Status.SAVING, "updated_at": now()}),
                       expected_status=Status.QUEUED, admit=admission)


def test_concurrent_creates_stop_at_the_count(repo: SqlImageRepository) -> None:
    owner = f"p-{uuid.uuid4().hex}"
    given = limits(**{IMAGE_COUNT_TOTAL: 3})
    repo.create(image(owner))  # one there already (the project's lock row is made below)

    def create() -> Image:
        new = image(owner)
        repo.create(new, admit=Admission(owner, given, new_image=True, upload=False))
        return new

    results = race([create] * THREADS)
    assert sum(isinstance(r, Image) for r in results) == 2
    assert repo.quota_usage(owner).count_total == 3


def test_concurrent_claims_stop_at_the_uploading_count(repo: SqlImageRepository) -> None:
    owner = f"p-{uuid.uuid4().hex}"
    given = limits(**{IMAGE_COUNT_UPLOADING: 2})
    queued = [image(owner) for _ in range(THREADS)]
    for each in queued:
        repo.create(each)
    results = race([lambda each=each: claim(repo, each, Admission(  # type: ignore[misc]
        owner, given, new_image=False, upload=True)) for each in queued])
    assert sum(isinstance(r, Image) for r in results) == 2
    usage = repo.quota_usage(owner)
    assert (usage.count_uploading, usage.count_total) == (2, THREADS)
    # The refused stay queued.
    assert sum(repo.get(each.id).status is Status.QUEUED for each in queued) == THREADS - 2


@pytest.mark.parametrize("declared", [400 * 1024, None], ids=["declared", "unknown"])
def test_concurrent_claims_reserve_the_size(repo: SqlImageRepository,
                                            declared: int | None) -> None:
    """Each claim reserves its declared length, or all that remains when unknown: together
    they never hold more than the limit."""
    owner = f"p-{uuid.uuid4().hex}"
    given = limits(**{IMAGE_SIZE_TOTAL: MiB})
    repo.create(image(owner, Status.ACTIVE, size=100 * 1024))
    queued = [image(owner) for _ in range(THREADS)]
    for each in queued:
        repo.create(each)
    admissions = [Admission(owner, given, new_image=False, upload=True, declared=declared)
                  for _ in queued]
    results = race([lambda each=each, admit=admit: claim(repo, each, admit)  # type: ignore[misc]
                    for each, admit in zip(queued, admissions, strict=True)])
    granted = [a.granted for a, r in zip(admissions, results, strict=True)
               if isinstance(r, Image)]
    assert len(granted) == (2 if declared else 1)
    assert all(g is not None for g in granted)
    assert sum(g or 0 for g in granted) <= MiB - 100 * 1024
    assert repo.quota_usage(owner).size_total <= MiB
    # A finished upload holds its size, no longer its reservation.
    done = next(each for each, r in zip(queued, results, strict=True) if isinstance(r, Image))
    repo.set_fields(done.id, {"status": Status.ACTIVE, "size": 1000},
                    expected_status=Status.SAVING)
    held = repo.quota_usage(owner).size_total
    assert held == 100 * 1024 + 1000 + (400 * 1024 if declared else 0)

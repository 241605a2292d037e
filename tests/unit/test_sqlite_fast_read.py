"""The SQLite read of one image through the driver gives what the SQLAlchemy read gives, and
falls back to it when the driver fails."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from glimpse.db import engine as db_engine
from glimpse.db import repository, transactions
from glimpse.domain.model import Image, Location, LocationStatus, Status, Visibility

ID = "6a7b0c1d-0000-4000-8000-000000000001"


@pytest.fixture
def repo(tmp_path: Path) -> repository.SqlImageRepository:
    engine = db_engine.create_engine(f"sqlite:///{tmp_path}/glimpse.sqlite")
    db_engine.upgrade(engine)
    return repository.SqlImageRepository(engine)


def _slow(repo: repository.SqlImageRepository, image_id: str) -> Image | None:
    return transactions.run(repo._engine, lambda conn: repository._one_image(conn, image_id),
                            write=False)


def test_same_image_as_sqlalchemy(repo: repository.SqlImageRepository) -> None:
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, 678901)
    image = Image(
        id=ID, status=Status.DEACTIVATED, name="ü", size=5, virtual_size=1 << 40,
        visibility=Visibility.COMMUNITY, protected=True, os_hidden=True, owner="o",
        created_at=stamp, updated_at=stamp, deleted_at=stamp, failure_status=Status.QUEUED,
        properties={"a": "1", "b": None}, tags=["z", "y"],
        locations=[Location("file", ID), Location("http", "http://example.com/x", {"k": 1},
                                                  LocationStatus.PENDING_DELETE)],
    )
    repo.create(image)
    assert repo._fast_get is not None
    fast = repo.get(ID)
    assert fast == _slow(repo, ID)
    assert fast is not None and fast.deleted_at == stamp and fast.protected is True
    assert repo.get("6a7b0c1d-0000-4000-8000-000000000002") is None


def test_driver_failure_falls_back(repo: repository.SqlImageRepository,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(image_id: str) -> Image | None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(repo, "_fast_get", broken)
    assert repo.get(ID) is None

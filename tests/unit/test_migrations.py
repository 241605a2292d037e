"""The Alembic history produces exactly the schema the code declares, on every engine, from an
empty database and from one left by the first release (revision 0001)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from glimpse.db import engine as db_engine
from glimpse.db.tables import images, metadata
from tests import databases


@pytest.fixture(params=databases.ENGINES)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from databases.or_skip(request.param)


def _schema_diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_migrated_schema_matches_models(database_url: str) -> None:
    engine = db_engine.create_engine(database_url)
    try:
        db_engine.upgrade(engine)
        assert _schema_diff(engine) == []
        db_engine.upgrade(engine)  # idempotent
    finally:
        engine.dispose()


def test_upgrade_from_first_release_keeps_rows(database_url: str) -> None:
    engine = db_engine.create_engine(database_url)
    try:
        db_engine.upgrade(engine, "0001")
        stamp = dt.datetime(2024, 1, 2, 3, 4, 5)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO images (id, name, size, status, min_disk, min_ram, is_public, "
                "protected, created_at, updated_at, deleted) VALUES ('a', NULL, 0, 'queued', 0, "
                "0, false, false, :t, :t, false)"), {"t": stamp})
        db_engine.upgrade(engine)
        assert _schema_diff(engine) == []
        later = dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
        with engine.begin() as conn:
            conn.execute(images.update().values(name="\U0001f600 emoji", updated_at=later))
            row = conn.execute(sa.select(images)).one()
        assert row.name == "\U0001f600 emoji" and row.name_sort == "\U0001f600 emoji"
        assert row.updated_at == later  # microseconds survive on every engine
        assert row.container_format_sort == ""  # null sorts as empty (spec §9.3)
    finally:
        engine.dispose()

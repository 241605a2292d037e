"""The Alembic history produces exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from glimpse.db import engine as db_engine
from glimpse.db.tables import metadata


def test_migrated_schema_matches_models(tmp_path: Path) -> None:
    engine = db_engine.create_engine(f"sqlite:///{tmp_path / 'm.sqlite'}")
    db_engine.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    db_engine.upgrade(engine)  # idempotent

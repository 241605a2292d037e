"""The Alembic history produces exactly the schema the code declares, on every engine, from an
empty database and from one left by the first release (revision 0001)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from glimpse import settings as glimpse_settings
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


def test_head_revision_constant_is_the_newest_migration() -> None:
    """Servers skip importing Alembic when the database is at HEAD_REVISION: it must name the
    real head, or a new migration would never run."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db_engine.alembic_config(sa.create_engine("sqlite://")))
    assert script.get_heads() == [db_engine.HEAD_REVISION]


def test_a_migrated_server_does_not_import_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, sqlalchemy as sa; from glimpse.db import engine as e; "
        f"u='sqlite:///{tmp_path}/db.sqlite'; e.upgrade(e.create_engine(u)); "
        "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith('alembic')]; "
        "e.upgrade(e.create_engine(u)); print(any(m.startswith('alembic') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_timestamps_keep_microseconds_on_mysql() -> None:
    """The Timestamp type renders DATETIME(6) on MySQL/MariaDB without the MySQL variant type
    (tables.Timestamp); Alembic's comparison above does not see a DATETIME's precision, so
    this checks the tables' DDL, and the round trip checks what MariaDB keeps."""
    from sqlalchemy.dialects import mysql
    from sqlalchemy.schema import CreateTable

    from glimpse.db import tables

    for table in tables.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=mysql.dialect()))
        for column in table.columns:
            if isinstance(column.type, tables.Timestamp):
                assert f"\t{column.name} DATETIME(6)" in ddl, (table.name, ddl)


def test_a_timestamp_round_trips_with_its_microseconds(database_url: str) -> None:
    engine = db_engine.create_engine(database_url)
    try:
        db_engine.upgrade(engine)
        stamp = dt.datetime(2024, 1, 2, 3, 4, 5, 678901)
        with engine.begin() as conn:
            conn.execute(images.insert().values(
                id="m", status="queued", created_at=stamp, updated_at=stamp))
            assert conn.execute(sa.select(images.c.created_at)).scalar_one() == stamp
    finally:
        engine.dispose()


def test_a_sqlite_server_imports_no_other_database_dialect(tmp_path: Path) -> None:
    """Each dialect is 1-2 MiB of a server's memory: on SQLite, PostgreSQL's and MySQL's are
    never imported (tables.MYSQL_TABLE_OPTIONS says why the tables carry no MySQL options)."""
    import subprocess
    import sys

    # As a server starts: the schema made beforehand (by a child process), then the app.
    settings = glimpse_settings.load(environ={"GLIMPSE_DATA_DIR": str(tmp_path)})
    engine = db_engine.create_engine(settings.effective_database_url)
    db_engine.upgrade(engine)
    engine.dispose()
    code = (
        "import sys; from glimpse import app, settings; "
        f"app.build_app(settings.load(environ={{'GLIMPSE_DATA_DIR': {str(tmp_path)!r}}}), "
        "migrate=False); "
        "print(sorted({m.split('.')[2] for m in sys.modules "
        "if m.startswith('sqlalchemy.dialects.')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "['_typing', 'sqlite']"

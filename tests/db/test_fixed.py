"""fixed.Fixed on every engine: SQLite's run through the driver answers as SQLAlchemy's does
elsewhere (rows changed, a scalar with a literal in it, converted values, errors as
SQLAlchemy's)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from glimpse.db import engine as db_engine
from glimpse.db import transactions
from glimpse.db.fixed import Fixed
from glimpse.db.tables import image_locations, images
from tests import databases

INSERT_IMAGE = Fixed(images.insert())
INSERT_LOCATION = Fixed(image_locations.insert())
NEXT_POSITION = Fixed(
    sa.select(sa.func.coalesce(sa.func.max(image_locations.c.position), -1) + 1)
    .where(image_locations.c.image_id == sa.bindparam("image_id")))
SET_STATUS = Fixed(images.update().where(
    images.c.id == sa.bindparam("_id"), images.c.status == sa.bindparam("_expected"))
    .values(status=sa.bindparam("_status"), updated_at=sa.bindparam("_at")))


@pytest.fixture(scope="module", params=databases.ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    for url in databases.or_skip(request.param):
        engine = db_engine.create_engine(url)
        db_engine.upgrade(engine)
        yield engine
        engine.dispose()


def _row(image_id: str, at: dt.datetime) -> dict[str, object]:
    return {"id": image_id, "status": "queued", "visibility": "shared", "min_disk": 0,
            "min_ram": 0, "protected": False, "os_hidden": False, "deleted": False,
            "created_at": at, "updated_at": at}


def _write(engine: Engine, work: object) -> object:
    return transactions.run(engine, work, write=True)  # type: ignore[arg-type]


def test_writes_read_back_as_sqlalchemy_wrote_them(engine: Engine) -> None:
    image_id = str(uuid.uuid4())
    at = dt.datetime(2026, 12, 6, 8, 30, 15, 123456)
    _write(engine, lambda conn: INSERT_IMAGE.run(conn, _row(image_id, at)))
    assert _write(engine, lambda conn: NEXT_POSITION.scalar(conn, {"image_id": image_id})) == 0
    locations = [{"image_id": image_id, "position": n, "store": "file", "url": f"u{n}",
                  "meta": "{}", "status": "active"} for n in range(3)]
    _write(engine, lambda conn: INSERT_LOCATION.run(conn, locations))
    assert _write(engine, lambda conn: NEXT_POSITION.scalar(conn, {"image_id": image_id})) == 3

    later = at + dt.timedelta(seconds=1)
    moved = {"_id": image_id, "_expected": "queued", "_status": "saving", "_at": later}
    assert _write(engine, lambda conn: SET_STATUS.rowcount(conn, moved)) == 1
    assert _write(engine, lambda conn: SET_STATUS.rowcount(conn, moved)) == 0  # not queued now
    with engine.connect() as conn:
        row = conn.execute(sa.select(images.c.status, images.c.created_at, images.c.updated_at,
                                     images.c.protected).where(images.c.id == image_id)).one()
    assert tuple(row) == ("saving", at, later, False)


def test_a_duplicate_is_sqlalchemys_integrity_error(engine: Engine) -> None:
    image_id = str(uuid.uuid4())
    row = _row(image_id, dt.datetime(2026, 12, 6))
    _write(engine, lambda conn: INSERT_IMAGE.run(conn, row))
    with pytest.raises(sa.exc.IntegrityError):
        _write(engine, lambda conn: INSERT_IMAGE.run(conn, row))


def test_a_failed_transaction_leaves_nothing(engine: Engine) -> None:
    image_id = str(uuid.uuid4())
    row = _row(image_id, dt.datetime(2026, 12, 6))

    def work(conn: sa.Connection) -> None:
        INSERT_IMAGE.run(conn, row)
        INSERT_IMAGE.run(conn, row)  # fails: the first insert rolls back with it

    with pytest.raises(sa.exc.IntegrityError):
        _write(engine, work)
    with engine.connect() as conn:
        assert conn.execute(sa.select(images.c.id).where(images.c.id == image_id)).first() is None

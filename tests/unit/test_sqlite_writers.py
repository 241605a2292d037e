"""SQLite write transactions of one process queue on a lock, not in SQLite's busy handler."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from glimpse.db import engine as db_engine
from glimpse.db import transactions


def test_a_writer_waits_for_the_one_before_it_without_meeting_the_lock_in_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db_engine.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")

    @sa.event.listens_for(engine, "connect")
    def _no_busy_handler(dbapi_conn: Any, _record: Any) -> None:
        # A writer that meets SQLite's lock now fails at once and is retried after a sleep,
        # which the test counts (the busy handler's own sleeps cannot be seen from Python).
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    retries: list[float] = []
    monkeypatch.setattr(transactions.time, "sleep", retries.append)
    first_in = threading.Event()
    order: list[str] = []

    def slow(conn: sa.Connection) -> None:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        first_in.set()
        threading.Event().wait(0.3)  # time.sleep is the patched one
        order.append("first commits")

    def quick(conn: sa.Connection) -> None:
        order.append("second begins")
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")

    first = threading.Thread(target=transactions.run, args=(engine, slow), kwargs={"write": True})
    first.start()
    assert first_in.wait(5)
    transactions.run(engine, quick, write=True)
    first.join()
    assert order == ["first commits", "second begins"]
    assert retries == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2

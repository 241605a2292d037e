"""Running one unit of database work: bounded retries, and outages turned into Unavailable.

Every repository call goes through ``run``. A transaction that lost a lock race (SQLite "database
is locked", a PostgreSQL serialization failure or deadlock, a MariaDB deadlock or lock wait
timeout) or whose connection was cut (the server restarted, an operator killed the session) is
rolled back and run again from the start, a few times with a short backoff. What still fails
because the database is out of reach becomes ``Unavailable`` (503 with a clear message); the pool
checks connections before use, so the service recovers by itself once the database is back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from glimpse.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 5
WRITE_OPTION = "glimpse_write"  # execution option: this transaction will write (SQLite: IMMEDIATE)
# Execution option: the work is a single read statement, which SQLite runs on a snapshot of its
# own without BEGIN (about a tenth of a HEAD request's CPU saved).
SINGLE_READ_OPTION = "glimpse_single_read"
_PG_RETRY_STATES = {"40001", "40P01"}  # serialization failure, deadlock detected
_MYSQL_RETRY_CODES = {1205, 1213}  # lock wait timeout, deadlock
UNAVAILABLE_MESSAGE = "The image metadata database is unavailable; try again shortly."


def run(
    engine: Engine, work: Callable[[Connection], T], *, write: bool, single_read: bool = False
) -> T:
    """``work`` in one transaction (committed if ``write``), retried on transient failures.
    ``single_read``: ``work`` runs one read statement, which needs no transaction of its own."""
    for attempt in range(ATTEMPTS):
        try:
            if write:
                with _writers(engine), _with_option(engine, WRITE_OPTION).begin() as conn:
                    return work(conn)
            reader = _with_option(engine, SINGLE_READ_OPTION) if single_read else engine
            with reader.connect() as conn:
                return work(conn)
        except sa.exc.DBAPIError as exc:
            transient = _lost_race(exc) or exc.connection_invalidated
            if transient and attempt + 1 < ATTEMPTS:
                # Jitter keeps racing writers from colliding again in lockstep.
                time.sleep(0.02 * (2**attempt) * (1 + random.random()))
                continue
            if transient or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
                log.warning("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
                raise Unavailable(UNAVAILABLE_MESSAGE) from exc
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


@functools.lru_cache(maxsize=32)
def _with_option(engine: Engine, option: str) -> Engine:
    """``engine`` with one execution option set, made once per engine and option: making it
    costs about 16 us, a few percent of a metadata request's CPU."""
    return engine.execution_options(**{option: True})


@functools.lru_cache(maxsize=32)
def _writers(engine: Engine) -> contextlib.AbstractContextManager[object]:
    """What a write transaction on ``engine`` holds while it runs: on SQLite, a lock shared by
    the process's threads; elsewhere nothing (the server's row locks order writers).

    SQLite lets one writer in at a time, and a writer that finds the database locked waits in
    SQLite's busy handler, which sleeps 1, 2, 5, 10, ... ms between tries instead of waking when
    the lock is free. Eight clients uploading 64 KiB images to one server made 5 such sleeps per
    image, 4.9 ms each on average (strace). Threads of one process now queue on this lock and
    start the moment the writer before them commits; writers in other processes still meet in
    the busy handler. Reentrant, so that a write started inside another one's work fails as
    SQLite's lock makes it fail, instead of deadlocking here.
    """
    if engine.dialect.name == "sqlite":
        return threading.RLock()
    return contextlib.nullcontext()


def _lost_race(exc: sa.exc.DBAPIError) -> bool:
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _PG_RETRY_STATES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRY_CODES:
        return True
    return isinstance(exc, sa.exc.OperationalError) and "database is locked" in str(orig)

"""Statements the upload path runs on every image, built once and run cheaply.

Every image's create, claim and finish write the same few statements (the images insert, the
field UPDATE, the property and location inserts). ``Fixed`` holds one such statement; on
SQLite it runs it straight through the driver connection of the caller's SQLAlchemy
connection, inside that connection's transaction: the SQL is compiled once per set of
parameter names, the parameters go in compiled order through the column types' own bind
conversions, and a driver error is raised as SQLAlchemy's (which ``transactions.run`` retries
or reports, and the repository reads as a Conflict). SQLAlchemy's execution context, compiled
cache lookup, parameter processing and result object cost about 35 us per statement, a tenth
of the CPU of a small upload. Elsewhere (PostgreSQL, MariaDB) the statement goes through
SQLAlchemy, where its network round trip costs more than the overhead and disconnects must
invalidate the pooled connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

Statement = sa.Insert | sa.Update | sa.Delete | sa.Select[Any]


class Fixed:
    """One statement, run with named parameters (one mapping, or a list for an executemany)."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def run(self, conn: Connection,
            params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Run it (an insert)."""
        if _direct(conn):
            self._run(conn, params)
        else:
            conn.execute(self.statement, params)

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run an UPDATE or DELETE; the number of rows it changed."""
        if _direct(conn):
            return self._run(conn, params).rowcount
        return int(conn.execute(self.statement, params).rowcount)

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run a query of one row and one column; its value."""
        if _direct(conn):
            row = self._run(conn, params).fetchone()
            assert row is not None, "a query of one row"
            return row[0]
        return conn.execute(self.statement, params).scalar_one()

    def _run(self, conn: Connection,
             params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> sqlite3.Cursor:
        many = not isinstance(params, Mapping)
        rows = [params] if isinstance(params, Mapping) else params
        keys = tuple(rows[0]) if rows else ()
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = self._compiled[keys] = _Compiled(self.statement, conn.dialect, keys)
        values = [compiled.values(row) for row in rows]
        cursor: sqlite3.Cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if many:
                cursor.executemany(compiled.sql, values)
            else:
                cursor.execute(compiled.sql, values[0])
        except sqlite3.Error as exc:
            raise driver_error(compiled.sql, values, exc, conn.dialect) from exc
        return cursor


def driver_error(sql: str, params: Any, exc: sqlite3.Error, dialect: Dialect
                 ) -> sa.exc.StatementError:
    """A driver error of a statement run past SQLAlchemy, as SQLAlchemy would have raised it
    (which ``transactions.run`` retries or reports, and the repository reads as a Conflict)."""
    return sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error, dialect=dialect)


class _Compiled:
    """The SQL of a statement for one set of parameter names, and how to order and convert
    their values."""

    def __init__(self, statement: Statement, dialect: Dialect,
                 keys: tuple[str, ...]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler), "a statement compiles to SQL"
        self.sql = str(compiled)
        names = list(compiled.positiontup or ())
        if compiled.insert_prefetch or compiled.update_prefetch:
            # Values SQLAlchemy computes itself (column defaults): not a fixed statement here.
            raise ValueError(f"{statement} needs SQLAlchemy's defaults for {sorted(keys)}")
        # A literal of the statement (a bound constant) is the only other parameter.
        self._constants = {name: compiled.binds[name].effective_value
                           for name in names if name not in keys}
        self._order: list[tuple[str, Callable[[Any], Any] | None]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names]

    def values(self, row: Mapping[str, Any]) -> list[Any]:
        if self._constants:
            row = {**self._constants, **row}
        return [row[name] if convert is None or row[name] is None else convert(row[name])
                for name, convert in self._order]


def _direct(conn: Connection) -> bool:
    return conn.dialect.driver == "pysqlite"

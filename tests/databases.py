"""Throw-away test databases on the PostgreSQL and MariaDB servers of this machine.

Each call makes a fresh database ``glimpse_test_<random>`` and drops it afterwards, so runs never
see each other's rows. The servers are found through ``GLIMPSE_TEST_POSTGRES_URL`` and
``GLIMPSE_TEST_MARIADB_URL`` (a server URL without a database), defaulting to the loopback
servers with the root/postgres users. ``scripts/test`` uses the command line:
``python -m tests.databases create postgresql`` prints a URL; ``drop URL`` removes it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

ENGINES = ("sqlite", "postgresql", "mariadb")

_SERVERS = {
    "postgresql": ("GLIMPSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/"),
    "mariadb": ("GLIMPSE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
}


class ServerMissing(Exception):
    """The database server is not reachable: tests needing it skip with this message."""


def server_url(kind: str) -> sa.URL:
    env, default = _SERVERS[kind]
    return sa.make_url(os.environ.get(env, default))


def _admin_engine(kind: str) -> sa.Engine:
    url = server_url(kind)
    url = url.set(database="postgres") if kind == "postgresql" else url.set(database=None)
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def _kind(url: sa.URL) -> str:
    return "postgresql" if url.get_backend_name() == "postgresql" else "mariadb"


def create(kind: str) -> str:
    """A new empty database on the ``kind`` server; its SQLAlchemy URL."""
    name = f"glimpse_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(kind)
    try:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" ENCODING \'UTF8\'')
            else:
                conn.exec_driver_sql(
                    f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    except sa.exc.OperationalError as exc:
        raise ServerMissing(f"{kind} server at {server_url(kind)} not reachable: {exc}") from exc
    finally:
        admin.dispose()
    url = server_url(kind).set(database=name)
    if kind == "mariadb":
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url.render_as_string(hide_password=False)


def drop(url: str) -> None:
    parsed = sa.make_url(url)
    kind = _kind(parsed)
    admin = _admin_engine(kind)
    try:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{parsed.database}`")
                while _OWN_USERS:
                    conn.execute(sa.text(f"DROP USER IF EXISTS '{_OWN_USERS.pop()}'@'%'"))
    finally:
        admin.dispose()


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL of ``kind`` for the duration of the block (SQLite: a temp file)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="glimpse-db-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'glimpse.sqlite'}"
        return
    url = create(kind)
    try:
        yield url
    finally:
        drop(url)


def or_skip(kind: str) -> Iterator[str]:
    """For fixtures: a fresh database of ``kind``, or a skip naming the missing server."""
    import pytest

    try:
        with database(kind) as url:
            yield url
    except ServerMissing as exc:
        pytest.skip(str(exc))


def kill_connections(url: str) -> int:
    """End every session on the database at ``url`` (the server's pool); how many."""
    parsed = sa.make_url(url)
    kind = _kind(parsed)
    admin = _admin_engine(kind)
    try:
        with admin.connect() as conn:
            if kind == "postgresql":
                return len(conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %(db)s AND pid <> pg_backend_pid()",
                    {"db": parsed.database}).all())
            ids = [r[0] for r in conn.exec_driver_sql(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = %(db)s AND id <> CONNECTION_ID()", {"db": parsed.database})]
            for session in ids:
                with contextlib.suppress(sa.exc.OperationalError):  # it ended meanwhile
                    conn.exec_driver_sql(f"KILL {int(session)}")
            return len(ids)
    finally:
        admin.dispose()


def set_reachable(url: str, reachable: bool) -> None:
    """Let the database at ``url`` accept new sessions or refuse them (PostgreSQL: the
    database's ALLOW_CONNECTIONS; MariaDB: the URL's user is locked, so it must not be root)."""
    parsed = sa.make_url(url)
    kind = _kind(parsed)
    admin = _admin_engine(kind)
    try:
        with admin.connect() as conn:
            if kind == "postgresql":
                allow = "true" if reachable else "false"
                conn.exec_driver_sql(
                    f'ALTER DATABASE "{parsed.database}" ALLOW_CONNECTIONS {allow}')
            else:
                lock = "UNLOCK" if reachable else "LOCK"
                conn.execute(sa.text(f"ALTER USER '{parsed.username}'@'%' ACCOUNT {lock}"))
    finally:
        admin.dispose()


_OWN_USERS: list[str] = []


def own_user(url: str) -> str:
    """MariaDB: the URL with a new user of its own holding every right on its database."""
    parsed = sa.make_url(url)
    user = f"glimpse_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine("mariadb")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE USER '{user}'@'%'"))
            conn.execute(sa.text(f"GRANT ALL ON `{parsed.database}`.* TO '{user}'@'%'"))
    finally:
        admin.dispose()
    _OWN_USERS.append(user)
    return parsed.set(username=user).render_as_string(hide_password=False)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "create":
        print(create(argv[1]))
        return 0
    if len(argv) == 2 and argv[0] == "drop":
        drop(argv[1])
        return 0
    print("usage: python -m tests.databases create postgresql|mariadb | drop URL",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

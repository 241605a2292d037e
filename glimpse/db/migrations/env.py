"""Alembic environment: runs migrations on the engine glimpse passes in.

Several processes may start at once over one database (workers of several hosts): the migration
holds a database-wide lock, so one migrates and the others then find the schema up to date.
"""

from __future__ import annotations

from alembic import context

from glimpse.db.tables import metadata
from glimpse.db.transactions import WRITE_OPTION

_LOCK_KEY = 7_476_583_112  # any constant shared by every glimpse process

engine = context.config.attributes["engine"].execution_options(**{WRITE_OPTION: True})
with engine.begin() as connection:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
    elif dialect in ("mysql", "mariadb"):
        connection.exec_driver_sql("SELECT GET_LOCK('glimpse_migrations', 300)")
    try:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        context.run_migrations()
    finally:
        if dialect in ("mysql", "mariadb"):
            connection.exec_driver_sql("SELECT RELEASE_LOCK('glimpse_migrations')")

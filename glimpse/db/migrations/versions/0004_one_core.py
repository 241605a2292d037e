"""One core for two APIs: visibility replaces is_public, members get a status and timestamps,
images get os_hidden, tags, a nullable size and a table of locations (several per image).

Existing rows keep what v1 showed: ``is_public`` true becomes ``public`` and false ``shared``
(so memberships keep working), every membership is ``accepted`` (v1 showed shared images to
their members at once), and the store/location columns become each image's first location.

Columns are added, copied and dropped rather than the tables rebuilt, on every engine: SQLite
cannot change a column's nullability in place, and rebuilding ``images`` there would drop it
under the foreign keys of properties and members (whose ON DELETE CASCADE would fire).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEYSET = ["created_at", "id"]
_MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _timestamp() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _drop_column(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops a plain column in place (3.35+); Alembic would rebuild the table.
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_column(table, column)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    persisted = True if dialect == "postgresql" else None

    # visibility and os_hidden, filled in for every existing row.
    op.add_column("images", sa.Column("visibility", sa.String(10), nullable=False,
                                      server_default="shared"))
    op.add_column("images", sa.Column("os_hidden", sa.Boolean, nullable=False,
                                      server_default=sa.false()))
    op.execute("UPDATE images SET visibility = 'public' WHERE is_public = "
               + ("1" if dialect in ("sqlite", "mysql", "mariadb") else "true"))
    op.drop_index("ix_images_is_public", table_name="images")
    _drop_column("images", "is_public")
    op.create_index("ix_images_visibility", "images",
                    ["deleted", "visibility", *_KEYSET])

    # Where a failed upload leaves the image, recorded with the claim (v1 killed, v2 queued).
    op.add_column("images", sa.Column("failure_status", sa.String(30)))

    # A nullable size: a new column takes the values, then the old one's place.
    op.drop_index("ix_images_size", table_name="images")
    op.add_column("images", sa.Column("size_new", sa.BigInteger))
    op.execute("UPDATE images SET size_new = size")
    _drop_column("images", "size")
    if dialect == "sqlite":
        op.execute("ALTER TABLE images RENAME COLUMN size_new TO size")
    else:
        op.alter_column("images", "size_new", new_column_name="size",
                        existing_type=sa.BigInteger, existing_nullable=True)
    op.add_column("images", sa.Column("size_sort", sa.BigInteger,
                                      sa.Computed("coalesce(size, 0)", persisted=persisted)))
    op.create_index("ix_images_size_sort", "images", ["deleted", "size_sort", *_KEYSET])

    # Members: status (v1 members were visible at once: accepted) and timestamps.
    op.add_column("image_members", sa.Column("status", sa.String(20), nullable=False,
                                             server_default="accepted"))
    op.add_column("image_members", sa.Column("created_at", _timestamp()))
    op.add_column("image_members", sa.Column("updated_at", _timestamp()))
    op.execute("UPDATE image_members SET created_at = (SELECT images.created_at FROM images "
               "WHERE images.id = image_members.image_id), updated_at = (SELECT "
               "images.updated_at FROM images WHERE images.id = image_members.image_id)")

    op.create_table(
        "image_tags",
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
        **_MYSQL,
    )
    op.create_index("ix_image_tags_value", "image_tags", ["value"])

    op.create_table(
        "image_locations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        **_MYSQL,
    )
    op.create_index("ix_image_locations_image_id", "image_locations", ["image_id", "position"])
    op.execute("INSERT INTO image_locations (image_id, position, store, url, meta, status) "
               "SELECT id, 0, store, location, '{}', 'active' FROM images "
               "WHERE store IS NOT NULL AND location IS NOT NULL")
    _drop_column("images", "store")
    _drop_column("images", "location")


def downgrade() -> None:
    raise NotImplementedError("glimpse does not downgrade past 0004: visibility and member "
                              "status have no v1-only form; restore a backup instead")

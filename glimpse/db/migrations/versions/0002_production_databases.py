"""Production databases: microsecond timestamps and utf8mb4 on MySQL/MariaDB, sort copies of the
nullable sort keys, and an index for every filter and sort key.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TIMESTAMPS = (("created_at", False), ("updated_at", False), ("deleted_at", True))
_SORT_COPIES = (("name", 255), ("container_format", 20), ("disk_format", 20))
_REPLACED = ("ix_images_updated_at", "ix_images_owner", "ix_images_status", "ix_images_is_public")
_NEW_INDEXES = {
    "ix_images_updated_at": ["updated_at", "created_at", "id"],
    "ix_images_name_sort": ["name_sort", "created_at", "id"],
    "ix_images_status": ["status", "created_at", "id"],
    "ix_images_container_format_sort": ["container_format_sort", "created_at", "id"],
    "ix_images_disk_format_sort": ["disk_format_sort", "created_at", "id"],
    "ix_images_size": ["size", "created_at", "id"],
    "ix_images_container_format": ["container_format"],
    "ix_images_disk_format": ["disk_format"],
    "ix_images_owner": ["owner", "created_at", "id"],
    "ix_images_is_public": ["is_public", "created_at", "id"],
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        _mysql_text_and_time()
    # PostgreSQL cannot index virtual columns; SQLite can add only virtual ones to a table.
    persisted = True if dialect == "postgresql" else None
    for name in _REPLACED:
        op.drop_index(name, table_name="images")
    for column, length in _SORT_COPIES:
        copy = sa.Computed(f"coalesce({column}, '')", persisted=persisted)
        op.add_column("images", sa.Column(f"{column}_sort", sa.String(length), copy))
    for name, columns in _NEW_INDEXES.items():
        op.create_index(name, "images", columns)
    op.drop_index("ix_image_properties_name", table_name="image_properties")
    op.create_index("ix_image_properties_name_value", "image_properties", ["name", "value"],
                    mysql_length={"value": 255})


def _mysql_text_and_time() -> None:
    # The tables reference each other, so their key columns change collation together.
    op.execute("SET FOREIGN_KEY_CHECKS = 0")
    for table in ("images", "image_properties", "image_members"):
        op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    op.execute("SET FOREIGN_KEY_CHECKS = 1")
    for column, nullable in _TIMESTAMPS:
        op.alter_column("images", column, type_=mysql.DATETIME(fsp=6),
                        existing_type=mysql.DATETIME(), existing_nullable=nullable)


def downgrade() -> None:
    op.drop_index("ix_image_properties_name_value", table_name="image_properties")
    op.create_index("ix_image_properties_name", "image_properties", ["name"])
    for name in _NEW_INDEXES:
        op.drop_index(name, table_name="images")
    for column, _ in _SORT_COPIES:
        op.drop_column("images", f"{column}_sort")
    op.create_index("ix_images_updated_at", "images", ["updated_at"])
    op.create_index("ix_images_owner", "images", ["owner"])
    op.create_index("ix_images_status", "images", ["status"])
    op.create_index("ix_images_is_public", "images", ["is_public"])

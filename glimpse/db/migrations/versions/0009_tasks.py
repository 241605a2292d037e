"""Tasks: every v2 import (and a legacy ``/v2/tasks`` import) is a row, with the process that
runs it (its node and incarnation, as an upload's claim), so a restarted or surviving process
resumes or fails it.

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(30), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("image_id", sa.String(36)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("user_id", sa.String(255)),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("expires_at", _TIMESTAMP),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("deleted_at", _TIMESTAMP),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("claim_node", sa.String(255)),
        sa.Column("claim_incarnation", sa.String(36)),
        sa.Index("ix_tasks_image_id", "image_id", "created_at"),
        sa.Index("ix_tasks_status", "status", "updated_at"),
        sa.Index("ix_tasks_created_at_id", "created_at", "id"),
        mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("tasks")

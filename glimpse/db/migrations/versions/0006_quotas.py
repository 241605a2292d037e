"""Quotas: a lock row per project, which admits its claims one at a time, and the bytes an
upload in flight has reserved against its project's size limit.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.add_column("images", sa.Column("upload_reserved", sa.BigInteger))
    op.create_table(
        "quota_locks",
        sa.Column("project", sa.String(255), primary_key=True),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("quota_locks")
    op.drop_column("images", "upload_reserved")

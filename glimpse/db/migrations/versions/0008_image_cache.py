"""The image cache's record of which node holds which image (GET /v2/cache/nodes/{id}).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from glimpse.db.tables import MYSQL_TABLE_OPTIONS, Timestamp

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_cache",
        sa.Column("node", sa.String(255), primary_key=True),
        sa.Column("image_id", sa.String(36), primary_key=True),
        sa.Column("node_url", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("cached_at", Timestamp, nullable=False),
        sa.Column("last_accessed", Timestamp, nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_image_cache_image_id", "image_cache", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_image_cache_image_id", "image_cache")
    op.drop_table("image_cache")

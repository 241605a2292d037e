"""A list of hidden images (v2's ``os_hidden=true``) is an index range like every other
filtered list: hidden images are few, so without it the planner reads the whole table.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_images_os_hidden", "images",
                    ["deleted", "os_hidden", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_images_os_hidden", table_name="images")

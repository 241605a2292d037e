"""Upload claims: the node and process incarnation running each upload and import, so that a
restarted process ends its predecessor's at once instead of after the heartbeat timeout.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("claim_node", sa.String(255)))
    op.add_column("images", sa.Column("claim_incarnation", sa.String(36)))


def downgrade() -> None:
    op.drop_column("images", "claim_incarnation")
    op.drop_column("images", "claim_node")

"""Initial schema: images, image_properties, image_members.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("virtual_size", sa.BigInteger),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("checksum", sa.String(32)),
        sa.Column("os_hash_algo", sa.String(64)),
        sa.Column("os_hash_value", sa.String(128)),
        sa.Column("disk_format", sa.String(20)),
        sa.Column("container_format", sa.String(20)),
        sa.Column("min_disk", sa.Integer, nullable=False),
        sa.Column("min_ram", sa.Integer, nullable=False),
        sa.Column("is_public", sa.Boolean, nullable=False),
        sa.Column("protected", sa.Boolean, nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("store", sa.String(255)),
        sa.Column("location", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("deleted_at", sa.DateTime),
        sa.Column("deleted", sa.Boolean, nullable=False),
    )
    op.create_index("ix_images_created_at_id", "images", ["created_at", "id"])
    op.create_index("ix_images_updated_at", "images", ["updated_at"])
    op.create_index("ix_images_owner", "images", ["owner"])
    op.create_index("ix_images_name", "images", ["name"])
    op.create_index("ix_images_status", "images", ["status"])
    op.create_index("ix_images_is_public", "images", ["is_public"])
    op.create_table(
        "image_properties",
        sa.Column(
            "image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text),
    )
    op.create_index("ix_image_properties_name", "image_properties", ["name"])
    op.create_table(
        "image_members",
        sa.Column(
            "image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("member", sa.String(255), primary_key=True),
        sa.Column("can_share", sa.Boolean, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_image_members_member", "image_members", ["member"])


def downgrade() -> None:
    op.drop_table("image_members")
    op.drop_table("image_properties")
    op.drop_table("images")

"""The schema, as SQLAlchemy Core tables. Alembic migrations must produce exactly this."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255)),
    sa.Column("size", sa.BigInteger, nullable=False, default=0),
    sa.Column("virtual_size", sa.BigInteger),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("checksum", sa.String(32)),
    sa.Column("os_hash_algo", sa.String(64)),
    sa.Column("os_hash_value", sa.String(128)),
    sa.Column("disk_format", sa.String(20)),
    sa.Column("container_format", sa.String(20)),
    sa.Column("min_disk", sa.Integer, nullable=False, default=0),
    sa.Column("min_ram", sa.Integer, nullable=False, default=0),
    sa.Column("is_public", sa.Boolean, nullable=False, default=False),
    sa.Column("protected", sa.Boolean, nullable=False, default=False),
    sa.Column("owner", sa.String(255)),
    sa.Column("store", sa.String(255)),
    sa.Column("location", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("deleted_at", sa.DateTime),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_images_created_at_id", "created_at", "id"),
    sa.Index("ix_images_updated_at", "updated_at"),
    sa.Index("ix_images_owner", "owner"),
    sa.Index("ix_images_name", "name"),
    sa.Index("ix_images_status", "status"),
    sa.Index("ix_images_is_public", "is_public"),
)

image_properties = sa.Table(
    "image_properties",
    metadata,
    sa.Column(
        "image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Index("ix_image_properties_name", "name"),
)

image_members = sa.Table(
    "image_members",
    metadata,
    sa.Column(
        "image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("member", sa.String(255), primary_key=True),
    sa.Column("can_share", sa.Boolean, nullable=False, default=False),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    sa.Index("ix_image_members_member", "member"),
)

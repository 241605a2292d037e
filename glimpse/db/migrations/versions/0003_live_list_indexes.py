"""List indexes lead with ``deleted`` (deleted rows outside every list's range), and the filter
indexes continue with the default order.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEYSET = ["created_at", "id"]
_BEFORE = {
    "ix_images_created_at_id": _KEYSET,
    "ix_images_name_sort": ["name_sort", *_KEYSET],
    "ix_images_container_format_sort": ["container_format_sort", *_KEYSET],
    "ix_images_disk_format_sort": ["disk_format_sort", *_KEYSET],
    "ix_images_size": ["size", *_KEYSET],
    "ix_images_name": ["name"],
    "ix_images_container_format": ["container_format"],
    "ix_images_disk_format": ["disk_format"],
    "ix_images_owner": ["owner", *_KEYSET],
    "ix_images_is_public": ["is_public", *_KEYSET],
}
_AFTER = {
    name: ["deleted", *columns, *([] if columns[-1] == "id" else _KEYSET)]
    for name, columns in _BEFORE.items()
}


def _replace(indexes: dict[str, list[str]]) -> None:
    for name, columns in indexes.items():
        op.drop_index(name, table_name="images")
        op.create_index(name, "images", columns)


def upgrade() -> None:
    _replace(_AFTER)


def downgrade() -> None:
    _replace(_BEFORE)

"""The schema, as SQLAlchemy Core tables. Alembic migrations must produce exactly this, plus
MySQL/MariaDB's table options and one index prefix length, which only the migrations give (see
MYSQL_TABLE_OPTIONS)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()


class Timestamp(sa.DateTime):
    """A timestamp that keeps microseconds on every engine: lists sort and page by timestamps,
    and changes-since compares them. MySQL/MariaDB's DATETIME drops microseconds unless given
    a fractional precision; its type compiler renders any DateTime's ``fsp``, as it does for
    its own DATETIME type, so this needs no import of the MySQL dialect (see below)."""

    fsp = 6


# MySQL/MariaDB: 4-byte UTF-8 (emoji), and a binary collation so names, member ids and property
# keys compare exactly as on SQLite and PostgreSQL (the default collation ignores case). The
# migrations give these to every table, and a prefix length to the one index over a long
# value; the tables below do not repeat them: SQLAlchemy checks a ``mysql_`` option by
# importing the MySQL dialect, 3.6 MiB of every server's memory whatever its engine.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

# Sort keys that may be null sort as if empty (spec §9.3). The list query orders by these
# generated copies so that one plain index per key serves the sort on every engine (MariaDB has
# no expression indexes).
SORT_COPIES = {"name": "name_sort", "container_format": "container_format_sort",
               "disk_format": "disk_format_sort", "size": "size_sort"}
# What a null sort key sorts as.
SORT_NULLS = {"name": "", "container_format": "", "disk_format": "", "size": 0}


def _sort_copy(column: str, kind: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    empty = "0" if isinstance(SORT_NULLS[column], int) else "''"
    return sa.Column(SORT_COPIES[column], kind, sa.Computed(f"coalesce({column}, {empty})"))


images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255)),
    sa.Column("size", sa.BigInteger),  # null until the data is known
    sa.Column("virtual_size", sa.BigInteger),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("checksum", sa.String(32)),
    sa.Column("os_hash_algo", sa.String(64)),
    sa.Column("os_hash_value", sa.String(128)),
    sa.Column("disk_format", sa.String(20)),
    sa.Column("container_format", sa.String(20)),
    sa.Column("min_disk", sa.Integer, nullable=False, default=0),
    sa.Column("min_ram", sa.Integer, nullable=False, default=0),
    sa.Column("visibility", sa.String(10), nullable=False, default="shared"),
    sa.Column("protected", sa.Boolean, nullable=False, default=False),
    sa.Column("os_hidden", sa.Boolean, nullable=False, default=False),
    sa.Column("owner", sa.String(255)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("deleted_at", Timestamp),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("failure_status", sa.String(30)),
    # The bytes an upload in flight may still write, held against its project's size limit
    # (counted only while the image is saving; no Image field: the repository's own).
    sa.Column("upload_reserved", sa.BigInteger),
    # The process running an upload or import: its node and incarnation (Image.claim_node).
    sa.Column("claim_node", sa.String(255)),
    sa.Column("claim_incarnation", sa.String(36)),
    _sort_copy("name", sa.String(255)),
    _sort_copy("container_format", sa.String(20)),
    _sort_copy("disk_format", sa.String(20)),
    _sort_copy("size", sa.BigInteger()),
    # Keyset pagination orders by (sort key, created_at, id): one index per sort key, in that
    # order, so a page is an index range scan wherever it starts. Lists of live images (all but
    # changes-since) say deleted = false, and deleted rows are never removed (ids are not
    # reused): the list indexes lead with it so that those rows, however many pile up, are
    # outside the range rather than read and skipped. Status and updated_at lead their own: the
    # upkeep queries seek deleted or killed images by status, changes-since wants every row.
    sa.Index("ix_images_created_at_id", "deleted", "created_at", "id"),
    sa.Index("ix_images_updated_at", "updated_at", "created_at", "id"),
    sa.Index("ix_images_name_sort", "deleted", "name_sort", "created_at", "id"),
    sa.Index("ix_images_status", "status", "created_at", "id"),
    sa.Index("ix_images_container_format_sort", "deleted", "container_format_sort", "created_at",
             "id"),
    sa.Index("ix_images_disk_format_sort", "deleted", "disk_format_sort", "created_at", "id"),
    sa.Index("ix_images_size_sort", "deleted", "size_sort", "created_at", "id"),
    # Filters: equality on the raw column, then the default order, so a filtered first page in
    # that order is a range too (status and size use the sort indexes above).
    sa.Index("ix_images_name", "deleted", "name", "created_at", "id"),
    sa.Index("ix_images_container_format", "deleted", "container_format", "created_at", "id"),
    sa.Index("ix_images_disk_format", "deleted", "disk_format", "created_at", "id"),
    # Visibility: a tenant's list is a union of these two ranges and its shares.
    sa.Index("ix_images_owner", "deleted", "owner", "created_at", "id"),
    sa.Index("ix_images_visibility", "deleted", "visibility", "created_at", "id"),
    # v2 lists hide os_hidden images unless asked for them: a list of the (few) hidden ones
    # is a range of its own.
    sa.Index("ix_images_os_hidden", "deleted", "os_hidden", "created_at", "id"),
)

image_properties = sa.Table(
    "image_properties",
    metadata,
    sa.Column(
        "image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),
    # property-<key>=<value> filters; MySQL/MariaDB index a TEXT column by a prefix only.
    sa.Index("ix_image_properties_name_value", "name", "value"),
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
    sa.Column("status", sa.String(20), nullable=False, default="accepted"),
    # Null only on memberships made before members had a status (migration 0004).
    sa.Column("created_at", Timestamp),
    sa.Column("updated_at", Timestamp),
    sa.Index("ix_image_members_member", "member"),
)

image_tags = sa.Table(
    "image_tags",
    metadata,
    sa.Column(
        "image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("value", sa.String(255), primary_key=True),
    # tag=<t> filters: the images that carry a tag.
    sa.Index("ix_image_tags_value", "value"),
)

# Every copy of an image's data: in one of glimpse's stores (url is the object's key there) or
# behind an external URL (store "http"). A row exists for as long as the data may exist, so
# a killed or deleted image that still has rows has data to delete (ImageService leftovers).
image_locations = sa.Table(
    "image_locations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    sa.Column("store", sa.String(255), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("meta", sa.Text, nullable=False, default="{}"),  # JSON object
    sa.Column("status", sa.String(30), nullable=False, default="active"),
    sa.Index("ix_image_locations_image_id", "image_id", "position"),
)

# One row per project whose quotas were checked: the lock (SELECT ... FOR UPDATE) that admits
# the project's creates and upload claims one at a time (domain/quotas.py).
quota_locks = sa.Table(
    "quota_locks",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
)

# Which node's image cache holds which image (glimpse.cache): written when a node publishes or
# drops an entry, read by GET /v2/cache/nodes/{image_id}. No foreign key: a node drops its
# rows as it drops its entries, after the image may be gone.
image_cache = sa.Table(
    "image_cache",
    metadata,
    sa.Column("node", sa.String(255), primary_key=True),
    sa.Column("image_id", sa.String(36), primary_key=True),
    sa.Column("node_url", sa.String(255), nullable=False, default=""),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("hits", sa.Integer, nullable=False, default=0),
    sa.Column("cached_at", Timestamp, nullable=False),
    sa.Column("last_accessed", Timestamp, nullable=False),
    sa.Index("ix_image_cache_image_id", "image_id"),
)

# Tasks (v2 imports and the legacy tasks API): the process running one is its claim, as an
# upload's; ``updated_at`` is its heartbeat while it runs (glimpse/db/tasks.py).
tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(30), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("owner", sa.String(255)),
    sa.Column("image_id", sa.String(36)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("user_id", sa.String(255)),
    sa.Column("input", sa.Text, nullable=False),  # JSON object
    sa.Column("result", sa.Text),  # JSON object or null
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("expires_at", Timestamp),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("deleted_at", Timestamp),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("claim_node", sa.String(255)),
    sa.Column("claim_incarnation", sa.String(36)),
    sa.Index("ix_tasks_image_id", "image_id", "created_at"),
    sa.Index("ix_tasks_status", "status", "updated_at"),
    sa.Index("ix_tasks_created_at_id", "created_at", "id"),
)

"""The image domain's data: images, members, callers, list queries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any


class Status(enum.StrEnum):
    QUEUED = "queued"
    SAVING = "saving"
    ACTIVE = "active"
    KILLED = "killed"
    DELETED = "deleted"
    PENDING_DELETE = "pending_delete"
    DEACTIVATED = "deactivated"


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: built by the auth layer, read by the domain's policy."""

    tenant: str | None
    user: str | None
    roles: tuple[str, ...]
    is_admin: bool
    owner: str | None  # the identity that owns what this caller creates


@dataclasses.dataclass
class Image:
    id: str
    status: Status
    name: str | None = None
    size: int = 0
    virtual_size: int | None = None
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    min_disk: int = 0
    min_ram: int = 0
    is_public: bool = False
    protected: bool = False
    owner: str | None = None
    created_at: dt.datetime = dataclasses.field(default_factory=lambda: now())
    updated_at: dt.datetime = dataclasses.field(default_factory=lambda: now())
    deleted_at: dt.datetime | None = None
    deleted: bool = False
    properties: dict[str, str | None] = dataclasses.field(default_factory=dict)
    # Internal: which store holds the data and where. Never rendered by any API.
    store: str | None = None
    location: str | None = None


@dataclasses.dataclass(frozen=True)
class Member:
    image_id: str
    member_id: str
    can_share: bool


# Core attributes a client may send, after the wire codec has parsed their types.
SETTABLE_FIELDS = (
    "name", "size", "virtual_size", "checksum", "disk_format", "container_format",
    "min_disk", "min_ram", "is_public", "protected", "owner",
)


@dataclasses.dataclass
class ImageInput:
    """What a create or update request asks for, in domain terms.

    ``fields`` holds only the core attributes present in the request (a None value means the
    client explicitly asked for null); ``properties`` the custom properties present.
    """

    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    properties: dict[str, str | None] = dataclasses.field(default_factory=dict)
    image_id: str | None = None
    status: str | None = None  # only compared: clients may not change it
    location: str | None = None
    copy_from: str | None = None
    store: str | None = None


class Scope(enum.Enum):
    """Which images a list may return, before filters."""

    VISIBLE = "visible"  # public, owned by the caller, or shared with the caller
    ALL = "all"
    NON_PUBLIC = "non_public"


SORT_KEYS = (
    "name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at",
)


@dataclasses.dataclass
class ListQuery:
    scope: Scope = Scope.VISIBLE
    owner: str | None = None  # the caller's owner identity, for Scope.VISIBLE
    filters: dict[str, Any] = dataclasses.field(default_factory=dict)
    properties: dict[str, str] = dataclasses.field(default_factory=dict)
    changes_since: dt.datetime | None = None
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    limit: int = 25
    marker: Image | None = None


def now() -> dt.datetime:
    """Naive UTC with microseconds: the form every API renders."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)

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


# What a list may sort and filter by: module constants the lead will derive from a field
# table. Every filterable field takes every operator (which operators an API offers on which
# field is that API's rule); sorting is by these only, each key either way.
SORT_KEYS = (
    "name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at",
)
FILTER_FIELDS = (
    "name", "status", "disk_format", "container_format", "size", "min_ram", "min_disk",
    "protected", "owner", "checksum", "os_hash_value", "created_at", "updated_at", "id",
    "virtual_size",
)


class Op(enum.StrEnum):
    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"


@dataclasses.dataclass(frozen=True)
class Filter:
    """One condition on a core image field.

    Null (an unset field) is a value of its own: ``EQ None`` matches it, ``NEQ v`` includes it
    (an unset name is not "x"), ``IN`` matches it when the tuple holds None, and the orderings
    never match it. The orderings take no None value.
    """

    field: str
    op: Op
    value: Any  # a tuple of values for Op.IN

    def __post_init__(self) -> None:
        # Programming errors, not client ones: an API checks what it accepts before this.
        if self.field not in FILTER_FIELDS:
            raise ValueError(f"not a filterable field: {self.field}")
        if self.op is Op.IN and not isinstance(self.value, tuple):
            raise TypeError("Op.IN takes a tuple of values")
        if self.value is None and self.op not in (Op.EQ, Op.NEQ):
            raise ValueError(f"{self.op} takes no None value")


@dataclasses.dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool = True

    def __post_init__(self) -> None:
        if self.field not in SORT_KEYS:
            raise ValueError(f"not a sort key: {self.field}")


@dataclasses.dataclass
class ListQuery:
    """One page of a list: which images (scope, filters), in which order, from where.

    ``sort`` is the order asked for. The repository makes it total by appending created_at
    and id where missing, in the sort's direction when all its keys share one and descending
    when they are mixed (the v2 rule; the repository's ``_sort_columns`` says why). ``marker``
    is the last image of the previous page: the page holds the images after it in that order.
    """

    scope: Scope = Scope.VISIBLE
    owner: str | None = None  # the caller's owner identity, for Scope.VISIBLE
    filters: list[Filter] = dataclasses.field(default_factory=list)  # ANDed
    properties: dict[str, str] = dataclasses.field(default_factory=dict)  # equality, ANDed
    changes_since: dt.datetime | None = None
    sort: list[SortKey] = dataclasses.field(default_factory=lambda: [SortKey("created_at")])
    limit: int = 25
    marker: Image | None = None


def now() -> dt.datetime:
    """Naive UTC with microseconds: the form every API renders."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)

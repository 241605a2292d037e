"""The image fields, each declared once: its type, limits, who may set it, and whether lists
may filter and sort by it.

Every API codec derives from this table: the v1 header codec (which fields it parses and how),
the list-query parsers (filterable and sortable keys), value validation (``check_value``) and
the v2 JSON schema. A new plain field is a column (db/tables.py and a migration), an attribute
of ``model.Image`` and one line here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from typing import Any

from glimpse.domain.model import Visibility
from glimpse.errors import Invalid

MAX_INT32 = 2147483647
MAX_BIGINT = 2**63 - 1
MAX_KEY_LENGTH = 255
_UUID_LIKE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                        r"[0-9a-fA-F]{12}$")


class Kind(enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    UUID = "uuid"
    VISIBILITY = "visibility"
    DISK_FORMAT = "disk_format"  # a string from the operator's disk_formats
    CONTAINER_FORMAT = "container_format"
    STATUS = "status"


class Setter(enum.Enum):
    """Who may give the field a value."""

    OWNER = "owner"  # the image's owner (and admins)
    ADMIN = "admin"  # admins only (others' values are ignored or refused by the API)
    CREATOR = "creator"  # only when the image is created (its id)
    DECLARED = "declared"  # facts about the data a client may declare before sending it
    # (v1 lets clients declare size and checksum, then checks the upload against them; v2
    # treats them as read-only)
    SERVER = "server"  # the service alone (status, hashes, timestamps)


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    setter: Setter
    nullable: bool = True
    max_length: int | None = None  # strings
    maximum: int | None = None  # integers (all are >= 0)
    filterable: bool = False  # lists may select on it (which operators: each API's rule)
    sortable: bool = False

    def check(self, value: Any) -> None:
        """Invalid naming the field unless ``value`` is one it may hold (formats aside:
        they depend on the deployment, see ``validation``)."""
        if value is None:
            if not self.nullable:
                raise Invalid(f"'{self.name}' may not be null")
            return
        if self.kind in (Kind.STRING, Kind.DISK_FORMAT, Kind.CONTAINER_FORMAT):
            if not isinstance(value, str):
                raise Invalid(f"'{self.name}' must be a string")
            if self.max_length is not None and len(value) > self.max_length:
                raise Invalid(f"Invalid {self.name}: it can't exceed {self.max_length} "
                              "characters")
        elif self.kind is Kind.INTEGER:
            if not isinstance(value, int) or isinstance(value, bool):
                raise Invalid(f"'{self.name}' must be an integer")
            if value < 0:
                raise Invalid(f"'{self.name}' can't be negative")
            if self.maximum is not None and value > self.maximum:
                raise Invalid(f"'{self.name}' value out of range")
        elif self.kind is Kind.BOOLEAN:
            if not isinstance(value, bool):
                raise Invalid(f"'{self.name}' must be a boolean")
        elif self.kind is Kind.UUID:
            if not isinstance(value, str) or not is_uuid_like(value):
                raise Invalid(f"Invalid {self.name} format: not a UUID")
        elif self.kind is Kind.VISIBILITY:
            if value not in tuple(Visibility):
                raise Invalid(f"'{self.name}' must be one of "
                              f"{', '.join(v.value for v in Visibility)}")
        elif self.kind is Kind.TIMESTAMP and not isinstance(value, dt.datetime):
            raise Invalid(f"'{self.name}' must be a timestamp")


S, N, B = Kind.STRING, Kind.INTEGER, Kind.BOOLEAN
FIELDS: tuple[Field, ...] = (
    Field("name", S, Setter.OWNER, max_length=255, filterable=True, sortable=True),
    Field("status", Kind.STATUS, Setter.SERVER, nullable=False, filterable=True, sortable=True),
    Field("visibility", Kind.VISIBILITY, Setter.OWNER, nullable=False, filterable=True),
    Field("protected", B, Setter.OWNER, nullable=False, filterable=True),
    Field("os_hidden", B, Setter.OWNER, nullable=False, filterable=True),
    Field("checksum", S, Setter.DECLARED, max_length=32, filterable=True),
    Field("os_hash_algo", S, Setter.SERVER, max_length=64, filterable=True),
    Field("os_hash_value", S, Setter.SERVER, max_length=128, filterable=True),
    Field("owner", S, Setter.ADMIN, max_length=MAX_KEY_LENGTH, filterable=True),
    Field("container_format", Kind.CONTAINER_FORMAT, Setter.OWNER, max_length=20,
          filterable=True, sortable=True),
    Field("disk_format", Kind.DISK_FORMAT, Setter.OWNER, max_length=20, filterable=True,
          sortable=True),
    Field("size", N, Setter.DECLARED, maximum=MAX_BIGINT, filterable=True, sortable=True),
    Field("virtual_size", N, Setter.DECLARED, maximum=MAX_BIGINT, filterable=True),
    Field("id", Kind.UUID, Setter.CREATOR, nullable=False, filterable=True, sortable=True),
    Field("min_ram", N, Setter.OWNER, nullable=False, maximum=MAX_INT32, filterable=True),
    Field("min_disk", N, Setter.OWNER, nullable=False, maximum=MAX_INT32, filterable=True),
    Field("created_at", Kind.TIMESTAMP, Setter.SERVER, nullable=False, filterable=True,
          sortable=True),
    Field("updated_at", Kind.TIMESTAMP, Setter.SERVER, nullable=False, filterable=True,
          sortable=True),
    Field("deleted_at", Kind.TIMESTAMP, Setter.SERVER),
    Field("deleted", B, Setter.SERVER, nullable=False),
)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
# In the table's order, which v1's error messages list them in.
SORTABLE: tuple[str, ...] = tuple(f.name for f in FIELDS if f.sortable)
FILTERABLE: tuple[str, ...] = tuple(f.name for f in FIELDS if f.filterable)
# Tags: at most this long each (the column's width).
MAX_TAG_LENGTH = 255
# The property namespace the service's own machinery (v2 import) owns: no client sets it.
RESERVED_PROPERTY_PREFIX = "os_glance"


def is_uuid_like(value: str) -> bool:
    # fullmatch: ``$`` alone also matches before a final newline.
    return bool(_UUID_LIKE.fullmatch(value))

"""Value rules for image attributes, shared by every API version; each field's own limits come
from the field table (``fields``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from glimpse.domain.fields import (
    BY_NAME,
    MAX_KEY_LENGTH,
    MAX_TAG_LENGTH,
    RESERVED_PROPERTY_PREFIX,
    Kind,
    is_uuid_like,
)
from glimpse.errors import Forbidden, Invalid

AMAZON_FORMATS = ("aki", "ari", "ami")
MAX_VALUE_BYTES = 65535

__all__ = ["is_uuid_like", "validate_fields", "validate_properties", "validate_property_values",
           "validate_tags"]


def validate_fields(
    fields: dict[str, Any], disk_formats: tuple[str, ...], container_formats: tuple[str, ...]
) -> None:
    """Check the core values a request carries and fill in the amazon format pairing.

    Runs before any state changes, so a request that fails here changes nothing.
    """
    for name, value in fields.items():
        spec = BY_NAME.get(name)
        if spec is None:
            raise Invalid(f"Unknown image attribute '{name}'")
        spec.check(value)
        if spec.kind is Kind.DISK_FORMAT and value is not None and value not in disk_formats:
            raise Invalid(f"Invalid disk format '{value}' for image.")
        if spec.kind is Kind.CONTAINER_FORMAT and value is not None and (
            value not in container_formats
        ):
            raise Invalid(f"Invalid container format '{value}' for image.")
    _pair_amazon_formats(fields)


def validate_properties(names: Iterable[str]) -> None:
    for key in names:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise Invalid(f"Invalid property name '{key}': 1 to 255 characters are allowed")
        if key.startswith(RESERVED_PROPERTY_PREFIX):
            raise Forbidden(f"Attribute '{key}' is reserved.")


def validate_property_values(values: Mapping[str, str | None]) -> None:
    """A value fits the narrowest column that holds it (MariaDB's TEXT, 65535 bytes): a
    longer one would fail in the database, on that engine only, rather than here."""
    for key, value in values.items():
        if value is not None and len(value) * 4 > MAX_VALUE_BYTES and (
            len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES
        ):
            raise Invalid(f"The value of property '{key}' is too long: at most "
                          f"{MAX_VALUE_BYTES} bytes of UTF-8 are allowed")


def validate_tags(tags: Iterable[str]) -> None:
    for tag in tags:
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise Invalid(f"Invalid tag: 1 to {MAX_TAG_LENGTH} characters are allowed")


def _pair_amazon_formats(fields: dict[str, Any]) -> None:
    disk = fields.get("disk_format")
    container = fields.get("container_format")
    if disk in AMAZON_FORMATS or container in AMAZON_FORMATS:
        if "container_format" not in fields or container is None:
            fields["container_format"] = disk
        elif "disk_format" not in fields or disk is None:
            fields["disk_format"] = container
        elif disk != container:
            raise Invalid(
                "Invalid mix of disk and container formats. When setting a disk or container "
                "format to one of 'aki', 'ari', or 'ami', the container and disk formats must "
                "match."
            )


def require_formats(disk_format: str | None, container_format: str | None) -> None:
    """Formats become mandatory once data or a location is attached."""
    if not disk_format:
        raise Invalid("Disk format is not specified.")
    if not container_format:
        raise Invalid("Container format is not specified.")


def check_member_id(member_id: str) -> None:
    if not isinstance(member_id, str) or not member_id or len(member_id) > MAX_KEY_LENGTH:
        raise Invalid("Member id must be 1 to 255 characters long")



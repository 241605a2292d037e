"""Value rules for image attributes (spec §5.4, §6), shared by every API version."""

from __future__ import annotations

import re
from typing import Any

from glimpse.domain.model import ImageInput
from glimpse.errors import Invalid

AMAZON_FORMATS = ("aki", "ari", "ami")
MAX_INT32 = 2147483647
MAX_BIGINT = 2**63 - 1
_UUID_LIKE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                        r"[0-9a-fA-F]{12}$")
MAX_KEY_LENGTH = 255


def is_uuid_like(value: str) -> bool:
    return bool(_UUID_LIKE.match(value))


def validate_input(
    data: ImageInput, disk_formats: tuple[str, ...], container_formats: tuple[str, ...]
) -> None:
    """Check the values a request carries; fill in the amazon format pairing.

    Runs before any state changes, so a request that fails here changes nothing.
    """
    fields = data.fields
    name = fields.get("name")
    if name is not None and len(name) > 255:
        raise Invalid("Image name too long: it can't exceed 255 characters")
    checksum = fields.get("checksum")
    if checksum is not None and len(checksum) > 32:
        raise Invalid(f"Invalid checksum '{checksum}': can't exceed 32 characters")
    for key in ("min_ram", "min_disk"):
        value = fields.get(key)
        if value is not None and value > MAX_INT32:
            raise Invalid(f"'{key}' value out of range")
    for key in ("size", "virtual_size"):
        value = fields.get(key)
        if value is not None and value > MAX_BIGINT:
            raise Invalid(f"Invalid value '{value}' for parameter '{key}': value out of range")
    owner = fields.get("owner")
    if owner is not None and len(owner) > MAX_KEY_LENGTH:
        raise Invalid("Owner can't exceed 255 characters")
    for key in data.properties:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise Invalid(f"Invalid property name '{key}': 1 to 255 characters are allowed")
    if data.image_id is not None and not is_uuid_like(data.image_id):
        raise Invalid("Invalid image id format")
    _validate_formats(fields, disk_formats, container_formats)


def _validate_formats(
    fields: dict[str, Any], disk_formats: tuple[str, ...], container_formats: tuple[str, ...]
) -> None:
    disk = fields.get("disk_format")
    container = fields.get("container_format")
    if disk is not None and disk not in disk_formats:
        raise Invalid(f"Invalid disk format '{disk}' for image.")
    if container is not None and container not in container_formats:
        raise Invalid(f"Invalid container format '{container}' for image.")
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

"""The v1 wire codec: image metadata in request and response headers (spec §5.3, §5.4).

Pure functions; the only place that knows the ``x-image-meta-*`` spellings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from glimpse.domain.fields import BY_NAME, Kind, is_uuid_like
from glimpse.domain.model import Image, ImageInput, Visibility
from glimpse.errors import Invalid

META = "x-image-meta-"
PROPERTY = "x-image-meta-property-"
COPY_FROM = "x-glance-api-copy-from"
PURGE_PROPS = "x-glance-registry-purge-props"
# Not image metadata: the hash the uploaded data must have (glimpse.api.expected_hash_header).
EXPECTED_HASH = "x-image-meta-expected-hash"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"

# ``is_public`` is v1's view of visibility, not a field.
IS_PUBLIC = "is_public"
# The core attributes of spec §5.3, in the order v1 renders them: the fields v1 knows (its
# wire format is frozen); how each parses comes from the field table.
_RENDERED = (
    "id", "name", "status", "size", "virtual_size", "checksum", "disk_format",
    "container_format", "min_disk", "min_ram", IS_PUBLIC, "protected", "owner",
    "created_at", "updated_at", "deleted_at", "deleted",
)
# Accepted and ignored: server-managed (validated when they are timestamps), or not fields.
_IGNORED_FIELDS = ("deleted", "uri", "copy_from")
_SOURCE_FIELDS = ("location", "store")
KNOWN_FIELDS = frozenset((*_RENDERED, *_IGNORED_FIELDS, *_SOURCE_FIELDS))
_TRUE_WORDS = frozenset(("1", "t", "true", "on", "y", "yes"))
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]{1,30}")
BRIEF_KEYS = ("id", "name", "size", "disk_format", "container_format", "checksum")


def decode_value(raw: bytes) -> str:
    """A request header value as text: UTF-8, then %XX escapes decoded as UTF-8 (Q14).

    A ``%`` not followed by two hex digits stays literal. Control characters, raw or escaped,
    are refused: they could never be stored or rendered back safely.
    """
    try:
        text = unquote(raw.decode("utf-8"), errors="strict")
    except UnicodeDecodeError as exc:
        raise Invalid("Header values must be UTF-8 text") from exc
    if _CONTROL.search(text):
        raise Invalid("Header values may not contain control characters")
    return text


def parse_bool(text: str) -> bool:
    """The lenient boolean of spec §5.4: anything unrecognised, including None, is false."""
    return text.strip().lower() in _TRUE_WORDS


def parse_int(name: str, text: str) -> int:
    if text.startswith("-") and _DIGITS.fullmatch(text[1:]):
        raise Invalid(f"Invalid value '{text}' for parameter '{name}': Cannot be a negative value.")
    if not _DIGITS.fullmatch(text):
        raise Invalid(
            f"Invalid value '{text}' for parameter '{name}': "
            f"Cannot convert image {name} '{text}' to an integer."
        )
    return int(text)


def parse_timestamp(name: str, text: str) -> dt.datetime:
    """An ISO 8601 instant as naive UTC; a year before 1900 is refused."""
    match = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})(.*)", text.strip())
    try:
        if not match:
            raise ValueError(text)
        year, month, day, rest = match.groups()
        value = dt.datetime.fromisoformat(f"{year}-{month}-{day}{rest}")
    except ValueError as exc:
        raise Invalid(f"Invalid time format for {name}.") from exc
    if value.year < 1900:
        raise Invalid(f"Invalid time format for {name}.")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def parse_image_headers(headers: Iterable[tuple[str, str]]) -> ImageInput:
    """Turn request headers (lower-case names, decoded values) into an ImageInput.

    ``is_public`` becomes a visibility: true is public, false shared (so v1 members see the
    image, as v1 always showed shared images to their members).
    """
    data = ImageInput()
    for name, value in headers:
        if name == COPY_FROM:
            data.source = dataclasses.replace(data.source, copy_from=value)
            continue
        if not name.startswith(META) or name == EXPECTED_HASH:
            continue
        if name.startswith(PROPERTY):
            key = name[len(PROPERTY):].replace("-", "_")
            data.properties[key] = value or None
            continue
        field = name[len(META):].replace("-", "_")
        if field not in KNOWN_FIELDS:
            raise Invalid(f"Bad header: {name}")
        _apply_field(data, field, value)
    return data


def _apply_field(data: ImageInput, field: str, value: str) -> None:
    fields = data.fields
    if field == IS_PUBLIC:
        fields["visibility"] = Visibility.PUBLIC if parse_bool(value) else Visibility.SHARED
        return
    if field == "location":
        data.source = dataclasses.replace(data.source, location=value)
        return
    if field == "store":
        data.source = dataclasses.replace(data.source, store=value or None)
        return
    if field in _IGNORED_FIELDS:
        return
    kind = BY_NAME[field].kind
    if kind is Kind.INTEGER:
        if not value or (field == "virtual_size" and value == "None"):
            fields[field] = None
        else:
            fields[field] = parse_int(field, value)
    elif kind is Kind.BOOLEAN:
        fields[field] = parse_bool(value)
    elif kind is Kind.TIMESTAMP:
        if value:
            parse_timestamp(field, value)  # validated, then ignored: server-managed (Q6)
    elif kind is Kind.UUID:
        if value:
            if not is_uuid_like(value):
                raise Invalid("Invalid image id format")
            fields[field] = value
    else:
        fields[field] = value or None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dt.datetime):
        return _iso(value)
    return str(value)


def format_time(value: dt.datetime | None) -> str | None:
    return None if value is None else _iso(value)


def _iso(value: dt.datetime) -> str:
    # The form of TIME_FORMAT (naive UTC, always six fractional digits), several times faster
    # than strftime: lists render thousands of timestamps per page.
    return value.isoformat(timespec="microseconds")


def _v1_value(image: Image, field: str) -> Any:
    """An attribute as v1 shows it: is_public from the visibility, size 0 until known."""
    if field == IS_PUBLIC:
        return image.visibility is Visibility.PUBLIC
    if field == "size":
        return image.size or 0
    return getattr(image, field)


def image_headers(image: Image) -> list[tuple[bytes, bytes]]:
    """The image as response headers: underscore names, null attributes left out."""
    out = []
    for field in _RENDERED:
        value = _v1_value(image, field)
        if value is not None:
            out.append(((META + field).encode(), _text(value).encode()))
    for key, value in image.properties.items():
        if value is not None:
            out.append(((PROPERTY + key).encode(), value.encode()))
    if image.checksum:
        out.append((b"etag", image.checksum.encode()))
    return out


def image_json(image: Image) -> dict[str, Any]:
    """The full image (spec §5.2): exactly these keys (_RENDERED's, then the properties), never
    a location or store. Spelled out rather than looped over _RENDERED: a detail list renders
    a thousand of these per page."""
    return {
        "id": image.id,
        "name": image.name,
        "status": str(image.status),
        "size": image.size or 0,
        "virtual_size": image.virtual_size,
        "checksum": image.checksum,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "is_public": image.visibility is Visibility.PUBLIC,
        "protected": image.protected,
        "owner": image.owner,
        "created_at": format_time(image.created_at),
        "updated_at": format_time(image.updated_at),
        "deleted_at": format_time(image.deleted_at),
        "deleted": image.deleted,
        "properties": dict(image.properties),
    }


def brief_json(image: Image) -> dict[str, Any]:
    return {key: _v1_value(image, key) for key in BRIEF_KEYS}

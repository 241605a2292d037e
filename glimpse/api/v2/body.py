"""v2 request bodies: a create request's JSON object as domain input (spec §2.2)."""

from __future__ import annotations

from typing import Any

from glimpse.domain.data import HashCheck
from glimpse.domain.fields import RESERVED_PROPERTY_PREFIX
from glimpse.domain.model import ImageInput, Principal
from glimpse.errors import Forbidden, Invalid

# Base attributes a client may give on create.
WRITABLE = frozenset({
    "id", "name", "visibility", "protected", "os_hidden", "owner", "min_ram", "min_disk",
    "disk_format", "container_format",
})
READ_ONLY = frozenset({
    "status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
    "created_at", "updated_at", "direct_url", "self", "file", "schema", "stores",
})
RESERVED = frozenset({"location", "locations", "deleted", "deleted_at"})
MAX_KEY_LENGTH = 255


def parse_create(document: Any, principal: Principal) -> ImageInput:
    if not isinstance(document, dict):
        raise Invalid("The request body must be a JSON object.")
    data = ImageInput()
    for key, value in document.items():
        if key in READ_ONLY:
            raise Forbidden(f"Attribute '{key}' is read-only.")
        if key in RESERVED or key.startswith(RESERVED_PROPERTY_PREFIX):
            raise Forbidden(f"Attribute '{key}' is reserved.")
        if key == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise Invalid("'tags' must be an array of strings.")
            data.tags = value
        elif key in WRITABLE:
            data.fields[key] = value
        else:
            if len(key) > MAX_KEY_LENGTH:
                raise Invalid(f"Property name too long: it can't exceed {MAX_KEY_LENGTH} "
                              "characters.")
            if not isinstance(value, str):
                raise Invalid(f"Property '{key}' must be a string.")
            data.properties[key] = value
    owner = data.fields.get("owner")
    if owner is not None and not principal.is_admin and owner != principal.owner:
        raise Forbidden(f"You are not permitted to create images owned by '{owner}'.")
    return data


LOCATION_KEYS = frozenset({"url", "validation_data"})
VALIDATION_KEYS = frozenset({"os_hash_algo", "os_hash_value"})
MAX_URL_LENGTH = 2048


def parse_location(document: Any) -> tuple[str, HashCheck | None]:
    """``POST /v2/images/{id}/locations``: the URL, and the hash its data must have if the
    caller gave one (both of os_hash_algo and os_hash_value, or neither)."""
    if not isinstance(document, dict):
        raise Invalid("The request body must be a JSON object.")
    unknown = sorted(set(document) - LOCATION_KEYS)
    if unknown:
        raise Invalid(f"Unknown key(s) in a location: {', '.join(unknown)}.")
    url = document.get("url")
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise Invalid(f"A location needs a 'url': a string of 1 to {MAX_URL_LENGTH} "
                      "characters.")
    validation = document.get("validation_data")
    if validation is None:
        return url, None
    if not isinstance(validation, dict) or set(validation) - VALIDATION_KEYS:
        raise Invalid("'validation_data' holds only os_hash_algo and os_hash_value.")
    if set(validation) != VALIDATION_KEYS:
        raise Invalid("'validation_data' needs both os_hash_algo and os_hash_value.")
    return url, HashCheck.of(validation["os_hash_algo"], validation["os_hash_value"])

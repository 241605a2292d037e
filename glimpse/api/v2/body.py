"""v2 request bodies: a create request's JSON object as domain input (spec §2.2).

The order of the checks is Glance's where it matters to a client: a key no client may give
is refused (403) before values are looked at, so a read-only key with a malformed value
still says "read-only".
"""

from __future__ import annotations

from typing import Any

from glimpse.api.v2.schemas import READ_ONLY_ON_CREATE, ImageSchemas, is_reserved
from glimpse.domain.data import HashCheck
from glimpse.domain.fields import MAX_KEY_LENGTH
from glimpse.domain.model import ImageInput, Principal
from glimpse.errors import Forbidden, Invalid


def parse_create(document: Any, principal: Principal, schemas: ImageSchemas) -> ImageInput:
    """The image a ``POST /v2/images`` body asks for: Invalid (400) for a body that is not an
    object or a value the image schema refuses, Forbidden (403) for read-only and reserved
    keys and for another project's owner named by a non-admin."""
    if not isinstance(document, dict):
        raise Invalid("The request body must be a JSON object.")
    for key in document:
        if key in READ_ONLY_ON_CREATE:
            raise Forbidden(f"Attribute '{key}' is read-only.")
        if is_reserved(key) or key == "locations":
            raise Forbidden(f"Attribute '{shown_key(key)}' is reserved.")
    data = ImageInput()
    for key, value in document.items():
        if not schemas.is_base(key) and len(key) > MAX_KEY_LENGTH:
            raise Invalid("Custom property should not be greater than 255 characters.")
        schemas.check_value(key, value)
        if key == "tags":
            data.tags = list(dict.fromkeys(value))
        elif schemas.is_base(key):
            data.fields[key] = value.lower() if key == "id" else value
        else:
            data.properties[key] = value
    schemas.check_required(document)
    if "owner" in data.fields and not principal.is_admin:
        owner = data.fields["owner"]
        if owner != principal.owner:
            raise Forbidden(f"You are not permitted to create images owned by '{owner}'.")
    return data


def shown_key(key: str) -> str:
    """A key as a message quotes it: the start of a hostile one only."""
    return key if len(key) <= 80 else f"{key[:80]}..."


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
    if validation is None or validation == {}:
        # Tempest's client sends an empty object for "none".
        return url, None
    if not isinstance(validation, dict) or set(validation) - VALIDATION_KEYS:
        raise Invalid("'validation_data' holds only os_hash_algo and os_hash_value.")
    if set(validation) != VALIDATION_KEYS:
        raise Invalid("'validation_data' needs both os_hash_algo and os_hash_value.")
    return url, HashCheck.of(validation["os_hash_algo"], validation["os_hash_value"])

"""v2 request bodies: strict JSON, and a create request's JSON object as domain input (spec
§2.2)."""

from __future__ import annotations

import json
import math
import re
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
# v2's schema pattern for ids: hyphenated, any case (stored lower-case, see parse_create).
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                          r"[0-9a-fA-F]{12}")


def load_json(raw: bytes) -> Any:
    """A request body as JSON, strictly: UTF-8 text (no BOM, no other encoding), no duplicate
    keys (which of two values counts is a guess a proxy and glimpse could make differently),
    no NaN or Infinity, no number too large for a float, and no string a database cannot hold
    (NUL characters, lone surrogates). Invalid for anything else, nesting too deep included."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("The request body must be UTF-8 text.") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys,
                              parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise Invalid("The request body is nested too deeply.") from None
    except ValueError:
        # Also numbers of more digits than int() converts (over 4300).
        raise Invalid("Malformed JSON in request body.") from None
    _check_strings(document)
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            # !a: the key may be a lone surrogate, which no response can carry as is.
            raise Invalid(f"Duplicate key {key!a} in the request body.")
        document[key] = value
    return document


def _no_constant(name: str) -> Any:
    raise Invalid(f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Invalid("A number in the request body is out of range.")
    return value


def _check_strings(document: Any) -> None:
    """Walks the document without recursion (its depth is the parser's to bound)."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                raise Invalid("Strings in the request body may not contain NUL characters.")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise Invalid("A string in the request body is not valid Unicode (a lone "
                              "surrogate).") from None


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
        elif key == "id":
            data.fields[key] = _canonical_id(value)
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
    if owner is not None and not isinstance(owner, str):
        raise Invalid("'owner' must be a string")
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


def _canonical_id(value: Any) -> Any:
    """An id as v2's pattern allows it (hyphenated, any case), lower-cased: the id that is
    stored, so an upper-case copy of an existing id conflicts with it rather than making a
    second image (Glance stores the case it is given, spec §7.14)."""
    if not isinstance(value, str) or not UUID_PATTERN.fullmatch(value):
        raise Invalid("Invalid id format: not a UUID")
    return value.lower()

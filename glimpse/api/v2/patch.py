"""``PATCH /v2/images/{id}``: a JSON-patch document as domain commands (spec §2.4).

Two media types: ``application/openstack-images-v2.1-json-patch`` (RFC 6902's add, remove and
replace, where ``add`` of an existing key replaces it: the SDK and OSC send ``add`` for
everything) and ``application/openstack-images-v2.0-json-patch`` (the draft-4 form
``{"replace": "/name", "value": ...}``, where ``add`` of an existing key is a conflict; Tempest
sends only this one).

Everything that needs only the document and the caller is decided here, in the order of the
operations; what needs the image (a custom property present or not, formats of an image that
has data, quotas on the result) is a command's expectation the service checks on the image as
read, before anything is written, so a failing operation anywhere leaves the image unchanged.
"""

from __future__ import annotations

import enum
import re
from typing import Any

from glimpse.api.v2.body import shown_key
from glimpse.api.v2.schemas import READ_ONLY, ImageSchemas, is_reserved
from glimpse.domain.model import (
    AddLocation,
    Command,
    LocationInput,
    Presence,
    Principal,
    RemoveLocation,
    RemoveProperties,
    ReplaceLocations,
    SetFields,
    SetProperties,
    SetTags,
)
from glimpse.errors import Conflict, Forbidden, Invalid, UnsupportedMediaType

V20 = "application/openstack-images-v2.0-json-patch"
V21 = "application/openstack-images-v2.1-json-patch"
# The header a 415 for a PATCH carries (the error's code is PATCH_MEDIA_TYPE).
ACCEPT_PATCH = f"{V20}, {V21}"
PATCH_MEDIA_TYPE = "patch_media_type"
OPERATIONS = ("add", "remove", "replace")
# Pointers with more than one token: a location's position (add and remove).
_DEPTH = {("locations", "add"): 2, ("locations", "remove"): 2}
_ADJACENT_SLASHES = re.compile(r"/\s*?/")
_BAD_ESCAPE = re.compile(r"~[^01]")
# A location's position: digits, and no more of them than a list could need.
_MAX_POSITION_DIGITS = 9


class Draft(enum.Enum):
    V20 = "draft-4"  # {"add": "/path", "value": ...}
    V21 = "RFC 6902"  # {"op": "add", "path": "/path", "value": ...}


def patch_draft(content_type: str | None) -> Draft:
    """The patch form a Content-Type names (parameters such as charset ignored), or
    UnsupportedMediaType (415, with ``Accept-Patch: ACCEPT_PATCH``). A handler may call this
    before reading the body: Glance answers 415 whatever the body holds."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == V21:
        return Draft.V21
    if media == V20:
        return Draft.V20
    raise UnsupportedMediaType(
        f"The request media type {shown_key(media) or 'None'} is not supported by this "
        "server.", code=PATCH_MEDIA_TYPE)


def parse_patch(document: Any, content_type: str | None, principal: Principal,
                schemas: ImageSchemas, *, locations: bool = False) -> list[Command]:
    """The commands a patch document asks for, in its order (``[]`` for ``[]``).

    ``locations``: whether ``/locations`` may be changed (the operator's
    ``show_multiple_locations``); otherwise any operation on it is Forbidden, as in Glance."""
    draft = patch_draft(content_type)
    if not isinstance(document, list):
        raise Invalid("Request body must be a JSON array of operation objects.")
    commands: list[Command] = []
    for raw in document:
        if not isinstance(raw, dict):
            raise Invalid("Operations must be JSON objects.")
        op, pointer = _operation(raw, draft)
        path = decode_pointer(pointer)
        _check_depth(op, path)
        value = None if op == "remove" else _value(raw, op)
        commands.append(_command(op, path, value, draft, principal, schemas, locations))
    return commands


def _operation(raw: dict[str, Any], draft: Draft) -> tuple[str, Any]:
    available = ", ".join(OPERATIONS)
    if draft is Draft.V21:
        op = raw.get("op")
        if op is None:
            raise Invalid("Unable to find `op` in JSON Schema change. It must be one of the "
                          f"following: {available}.")
        if op not in OPERATIONS:
            raise Invalid(f"Invalid operation: `{shown_key(str(op))}`. It must be one of the "
                          f"following: {available}.")
        if "path" not in raw:
            raise Invalid("Unable to find 'path' in JSON Schema change")
        return op, raw["path"]
    named = [op for op in OPERATIONS if op in raw]
    if len(named) != 1:
        raise Invalid('Operation objects must contain exactly one member named "add", '
                      '"remove", or "replace".')
    return named[0], raw[named[0]]


def decode_pointer(pointer: Any) -> list[str]:
    """A JSON pointer's tokens, ``~1`` and ``~0`` decoded; only the forms Glance accepts."""
    if not isinstance(pointer, str):
        raise Invalid("A JSON pointer must be a string.")
    shown = shown_key(pointer)
    if not pointer.startswith("/"):
        raise Invalid(f'Pointer `{shown}` does not start with "/".')
    if _ADJACENT_SLASHES.search(pointer):
        raise Invalid(f'Pointer `{shown}` contains adjacent "/".')
    if len(pointer) > 1 and pointer.endswith("/"):
        raise Invalid(f'Pointer `{shown}` end with "/".')
    if _BAD_ESCAPE.search(pointer) or pointer.endswith("~"):
        raise Invalid(f'Pointer `{shown}` contains "~" not part of a recognized escape '
                      "sequence.")
    # Glance strips the blanks around each token; a client's "/ name" is "/name" there too.
    return [part.replace("~1", "/").replace("~0", "~").strip()
            for part in pointer[1:].split("/")]


def _check_depth(op: str, path: list[str]) -> None:
    if len(path) != _DEPTH.get((path[0], op), 1):
        raise Invalid("Invalid JSON pointer for this resource: "
                      f"'/{shown_key('/'.join(path))}'")


def _value(raw: dict[str, Any], op: str) -> Any:
    if "value" not in raw:
        raise Invalid(f'Operation "{op}" requires a member named "value".')
    return raw["value"]


def _command(op: str, path: list[str], value: Any, draft: Draft, principal: Principal,
             schemas: ImageSchemas, locations: bool) -> Command:
    name = path[0]
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if is_reserved(name):
        raise Forbidden(f"Attribute '{shown_key(name)}' is reserved.")
    if op != "remove":
        # A location's position addresses one item of the list.
        schemas.check_value(name, [value] if len(path) == 2 else value)
    if name == "locations":
        if not locations:
            # The legacy locations API exposes and accepts backend URLs (OSSN-0065,
            # OSSN-0090): only where the operator shows locations are they taken.
            raise Forbidden(f"It's not allowed to {'update' if op != 'remove' else 'remove'} "
                            "locations if locations are invisible.")
        return _location_command(op, path, value)
    if schemas.is_base(name):
        return _base_command(op, name, value, draft, principal)
    if op == "remove":
        if name in schemas.required:
            raise Forbidden(f"Property {shown_key(name)} may not be removed.")
        return RemoveProperties(frozenset({name}), missing_ok=False)
    presence = (Presence.PRESENT if op == "replace"
                else Presence.ABSENT if draft is Draft.V20 else Presence.ANY)
    return SetProperties({name: value}, presence)


def _base_command(op: str, name: str, value: Any, draft: Draft,
                  principal: Principal) -> Command:
    if op == "remove":
        raise Forbidden(f"Property {name} may not be removed.")
    if name == "owner" and not principal.is_admin:
        raise Forbidden("Owner can't be updated by non admin.")
    if op == "add" and draft is Draft.V20:
        # Draft 4's add creates what is absent, and a base attribute is always present.
        raise Conflict(f"Property {name} already present.")
    if name == "tags":
        return SetTags(tuple(value))
    return SetFields({name: value}, formats_need_no_data=True)


def _location_command(op: str, path: list[str], value: Any) -> Command:
    """``replace /locations`` with a list, ``add /locations/N|-`` one, ``remove
    /locations/N|-`` (values already checked against the schema's ``locations``)."""
    if op == "replace":
        return ReplaceLocations(tuple(_location_input(item) for item in value))
    position = _position(path[1], "adding" if op == "add" else "removing")
    if op == "add":
        return AddLocation(_location_input(value), position)
    return RemoveLocation(position)


def _position(token: str, verb: str) -> int | None:
    if token == "-":
        return None
    if token.isascii() and token.isdigit() and len(token) <= _MAX_POSITION_DIGITS:
        return int(token)
    raise Invalid(f"Invalid position for {verb} a location.")


def _location_input(value: dict[str, Any]) -> LocationInput:
    return LocationInput(value["url"], dict(value["metadata"]),
                         dict(value.get("validation_data") or {}))

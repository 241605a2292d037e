"""An image as v2 renders it (spec §2.1): the 22 base keys always, null when unset, then the
custom properties, always strings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from glimpse.domain.locations import shown_url
from glimpse.domain.model import Image, Location, Member, Status

IMAGE_SCHEMA = "/v2/schemas/image"
MEMBER_SCHEMA = "/v2/schemas/member"
MEMBERS_SCHEMA = "/v2/schemas/members"
# Properties the import machinery keeps for itself (which host staged the data, which host
# hashes it): never shown.
HIDDEN_PROPERTIES = frozenset({"os_glance_stage_host", "os_glance_hash_op_host"})


def timestamp(value: dt.datetime | None) -> str | None:
    # isoformat rather than strftime: a quarter of the time (2 vs 9 us), and a list page
    # renders two thousand of them. Glance's form: seconds, "Z", no offset.
    return None if value is None else value.isoformat(timespec="seconds")[:19] + "Z"


def shown_as_is(properties: dict[str, str | None]) -> bool:
    """Whether image_json shows these properties exactly as they are: none shadowed by a base
    key or hidden, none null."""
    return properties.keys().isdisjoint(NOT_SHOWN_AS_IS) and None not in properties.values()


def timestamps(image: Image) -> tuple[str | None, str | None]:
    """The image's created_at and updated_at as shown. An image never changed since its
    creation shows one instant twice: formatted once (a list page renders a thousand)."""
    created_at = timestamp(image.created_at)
    if image.updated_at == image.created_at:
        return created_at, created_at
    return created_at, timestamp(image.updated_at)


def image_json(image: Image, null_properties: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``null_properties``: the operator's schema properties that may be null, shown as null
    (any other null property, which only v1 can store, is shown as "")."""
    # Spelled out rather than looped over the field table: a list page renders a thousand.
    created_at, updated_at = timestamps(image)
    document: dict[str, Any] = {
        "id": image.id,
        "name": image.name,
        "status": str(image.status),
        "visibility": str(image.visibility),
        "protected": image.protected,
        "os_hidden": image.os_hidden,
        "checksum": image.checksum,
        "os_hash_algo": image.os_hash_algo,
        "os_hash_value": image.os_hash_value,
        "owner": image.owner,
        "size": image.size,
        "virtual_size": image.virtual_size,
        "container_format": image.container_format,
        "disk_format": image.disk_format,
        "min_ram": image.min_ram,
        "min_disk": image.min_disk,
        "tags": list(image.tags),
        "created_at": created_at,
        "updated_at": updated_at,
        "self": f"/v2/images/{image.id}",
        "file": f"/v2/images/{image.id}/file",
        "schema": IMAGE_SCHEMA,
    }
    properties = image.properties
    if not properties:
        return document  # (and NOT_SHOWN_AS_IS is made from such a document, below)
    if shown_as_is(properties):
        # The usual case, in one step (a list page renders a thousand images).
        document.update(properties)
        return document
    for name, value in properties.items():
        # A base key wins over a property of the same name (v1 may have stored one), and a
        # null property (v1 allows it) is shown as an empty string: v2 values are strings.
        if name not in document and name not in HIDDEN_PROPERTIES:
            document[name] = value if value is not None or name in null_properties else ""
    return document


# Property names image_json does not copy as they are: the base keys (which win over a
# property of the same name) and the hidden properties.
NOT_SHOWN_AS_IS = HIDDEN_PROPERTIES | frozenset(image_json(Image(id="", status=Status.QUEUED)))


def member_json(member: Member) -> dict[str, Any]:
    return {
        "member_id": member.member_id,
        "image_id": member.image_id,
        "status": str(member.status),
        "created_at": timestamp(member.created_at),
        "updated_at": timestamp(member.updated_at),
        "schema": MEMBER_SCHEMA,
    }


def location_json(location: Location) -> dict[str, Any]:
    """A location for the service callers that may read them. An external URL is shown
    without any credentials it holds; data in one of glimpse's stores is shown by its key there,
    with the store's name in the metadata."""
    return {"url": shown_url(location), "metadata": {**location.metadata, "store": location.store}}


def add_location_keys(document: dict[str, Any], shown: Sequence[Location], *, locations: bool,
                      direct_url: bool) -> None:
    """v2's conditional keys (spec §2.1), each only where the operator turned it on:
    ``locations`` (``[]`` when the caller is shown none) and ``direct_url``, the URL data is
    read from, only when there is one. ``shown``: what the caller may see of the image's."""
    if locations:
        document["locations"] = [location_json(location) for location in shown]
    if direct_url and shown:
        document["direct_url"] = shown_url(shown[0])

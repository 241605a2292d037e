"""A list page's images as JSON text, written directly: exactly the text ``json.dumps`` makes of
``image_json`` (``ensure_ascii=False``, default separators), without the dictionary in between.

A 1,000-image page spent more of its CPU in ``json.dumps`` than anywhere else: the C encoder
escapes every key of every image anew (27 per image). Here the keys are constants of the
template, and only the values go through the encoder's own string escaper. An image the
template does not cover (a property named as a base key or hidden, a null property) is
rendered by ``image_json`` and ``json.dumps``.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # the escaper of json.dumps(ensure_ascii=False)
from typing import cast

from glimpse.api.v2.images_json import IMAGE_SCHEMA, image_json, shown_as_is, timestamps
from glimpse.domain.model import Image

_SCHEMA = encode_basestring(IMAGE_SCHEMA)


def _string(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def _integer(value: int | None) -> str:
    return "null" if value is None else int.__repr__(value) if type(value) is int else json.dumps(
        value)


def _boolean(value: bool) -> str:
    return "true" if value else "false"


def image_text(image: Image, null_properties: frozenset[str] = frozenset()) -> str:
    """``json.dumps(image_json(image, null_properties), ensure_ascii=False)``."""
    properties = image.properties
    if (type(image.protected) is not bool or type(image.os_hidden) is not bool
            or not shown_as_is(properties)):
        return json.dumps(image_json(image, null_properties), ensure_ascii=False)
    created_at, updated_at = timestamps(image)
    path = "/v2/images/" + image.id
    return "".join((
        '{"id": ', encode_basestring(image.id),
        ', "name": ', _string(image.name),
        ', "status": ', encode_basestring(str(image.status)),
        ', "visibility": ', encode_basestring(str(image.visibility)),
        ', "protected": ', _boolean(image.protected),
        ', "os_hidden": ', _boolean(image.os_hidden),
        ', "checksum": ', _string(image.checksum),
        ', "os_hash_algo": ', _string(image.os_hash_algo),
        ', "os_hash_value": ', _string(image.os_hash_value),
        ', "owner": ', _string(image.owner),
        ', "size": ', _integer(image.size),
        ', "virtual_size": ', _integer(image.virtual_size),
        ', "container_format": ', _string(image.container_format),
        ', "disk_format": ', _string(image.disk_format),
        ', "min_ram": ', _integer(image.min_ram),
        ', "min_disk": ', _integer(image.min_disk),
        ', "tags": [', ", ".join(map(encode_basestring, image.tags)),
        '], "created_at": ', _string(created_at),
        ', "updated_at": ', _string(updated_at),
        ', "self": ', encode_basestring(path),
        ', "file": ', encode_basestring(path + "/file"),
        ', "schema": ', _SCHEMA,
        *(f", {encode_basestring(name)}: {encode_basestring(cast(str, value))}"
          for name, value in properties.items()),
        "}",
    ))


def images_page_text(images: list[str], first: str, schema: str, following: str | None) -> str:
    """``json.dumps`` of ``{"images": [...], "first": first, "schema": schema}`` and ``next``
    after them when there is one, the images given as their text (``image_text``)."""
    tail = "" if following is None else ', "next": ' + encode_basestring(following)
    return "".join(('{"images": [', ", ".join(images), '], "first": ', encode_basestring(first),
                    ', "schema": ', encode_basestring(schema), tail, "}"))

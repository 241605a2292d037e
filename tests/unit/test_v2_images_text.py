"""A list page written as JSON text is byte for byte what json.dumps makes of image_json."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from glimpse.api.v2.images_json import image_json
from glimpse.api.v2.images_text import image_text, images_page_text
from glimpse.domain.model import Image, Status, Visibility

STAMP = dt.datetime(2026, 12, 6, 9, 30, 1, 654321)
ODD = 'q"uote \\ back\nline \x00 \x1f tab\t caf\u00e9 \u2603 \U0001f680 \u2028 </script>'
BASE = Image(id="5a49b295-4e7b-4cf9-9078-2fd662dc209c", status=Status.QUEUED, name="bench",
             disk_format="raw", container_format="bare", visibility=Visibility.PRIVATE,
             owner="bench", created_at=STAMP, updated_at=STAMP,
             properties={f"bench_{n}": f"v{n}" for n in range(5)})
VARIANTS: dict[str, dict[str, Any]] = {
    "listing set": {},
    "no properties": {"properties": {}},
    "every field set": {
        "status": Status.ACTIVE, "size": 2**63 - 1, "virtual_size": 0, "checksum": "a" * 32,
        "os_hash_algo": "sha512", "os_hash_value": "b" * 128, "min_ram": 512, "min_disk": 1,
        "protected": True, "os_hidden": True, "visibility": Visibility.COMMUNITY,
        "tags": ["a", ODD, ""], "updated_at": STAMP + dt.timedelta(days=1)},
    "every optional field null": {"name": None, "disk_format": None, "container_format": None,
                                  "owner": None},
    "odd text everywhere": {"id": ODD, "name": ODD, "owner": ODD, "tags": [ODD],
                            "properties": {ODD: ODD, "": ""}},
    "aware timestamps": {"created_at": STAMP.replace(tzinfo=dt.UTC),
                         "updated_at": STAMP.replace(tzinfo=dt.UTC)},
    "updated a microsecond later": {"updated_at": STAMP + dt.timedelta(microseconds=1)},
    "a property named as a base key": {"properties": {"name": "shadow", "size": "7", "x": "y"}},
    "a hidden property": {"properties": {"os_glance_stage_host": "h", "x": "y"}},
    "a null property": {"properties": {"x": None, "y": "z"}},
    "a null property the schema allows": {"properties": {"nullable": None}},
}


@pytest.mark.parametrize("changes", VARIANTS.values(), ids=VARIANTS.keys())
def test_an_image_is_the_text_of_its_json_document(changes: dict[str, Any]) -> None:
    image = dataclasses.replace(BASE, **changes)
    for null_properties in (frozenset(), frozenset({"nullable"})):
        assert image_text(image, null_properties) == json.dumps(
            image_json(image, null_properties), ensure_ascii=False)


@pytest.mark.parametrize("following", [None, "/v2/images?limit=2&marker=x"])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_page_is_the_text_of_its_json_document(following: str | None, count: int) -> None:
    images = [dataclasses.replace(BASE, id=str(n), tags=[str(n)]) for n in range(count)]
    document: dict[str, Any] = {"images": [image_json(image) for image in images],
                                "first": "/v2/images?limit=2&name=caf%C3%A9+x",
                                "schema": "/v2/schemas/images"}
    if following is not None:
        document["next"] = following
    assert images_page_text([image_text(image) for image in images], document["first"],
                            document["schema"], following) == json.dumps(document,
                                                                         ensure_ascii=False)

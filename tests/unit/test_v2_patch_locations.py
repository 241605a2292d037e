"""PATCH operations on v2's legacy ``/locations`` into domain commands (spec §2.4, §2.10):
refused (403) unless the operator shows locations; positions; values against the schema;
hostile input, whose URLs are never echoed with their credentials."""

from __future__ import annotations

from typing import Any

import pytest

from glimpse.api.v2.patch import V20, V21, parse_patch
from glimpse.api.v2.schemas import ImageSchemas
from glimpse.domain.model import (
    AddLocation,
    Command,
    LocationInput,
    Principal,
    RemoveLocation,
    ReplaceLocations,
)
from glimpse.errors import Forbidden, Invalid
from glimpse.settings import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS

USER = Principal(tenant="p", user="u", roles=("member", "reader"), is_admin=False, owner="p")
SCHEMAS = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS, None)
URL = "http://example.test/image.raw"
VALUE = {"url": URL, "metadata": {"k": "v"}}
HASHES = {"os_hash_algo": "sha512", "os_hash_value": "a" * 128}


def parse(*ops: dict[str, Any], content_type: str = V21, on: bool = True) -> list[Command]:
    return parse_patch(list(ops), content_type, USER, SCHEMAS, locations=on)


@pytest.mark.parametrize("op", [
    {"op": "add", "path": "/locations/-", "value": VALUE},
    {"op": "replace", "path": "/locations", "value": [VALUE]},
    {"op": "remove", "path": "/locations/0"},
])
def test_refused_unless_locations_are_shown(op: dict[str, Any]) -> None:
    with pytest.raises(Forbidden, match="locations are invisible"):
        parse(op, on=False)
    # The default is off.
    with pytest.raises(Forbidden):
        parse_patch([op], V21, USER, SCHEMAS)


@pytest.mark.parametrize(("op", "command"), [
    ({"op": "add", "path": "/locations/-", "value": VALUE},
     AddLocation(LocationInput(URL, {"k": "v"}), None)),
    ({"op": "add", "path": "/locations/3", "value": {**VALUE, "validation_data": HASHES}},
     AddLocation(LocationInput(URL, {"k": "v"}, HASHES), 3)),
    ({"op": "add", "path": "/locations/ 0 ", "value": VALUE},
     AddLocation(LocationInput(URL, {"k": "v"}), 0)),
    ({"op": "remove", "path": "/locations/-"}, RemoveLocation(None)),
    ({"op": "remove", "path": "/locations/12"}, RemoveLocation(12)),
    ({"op": "replace", "path": "/locations", "value": []}, ReplaceLocations(())),
    ({"op": "replace", "path": "/locations", "value": [VALUE, VALUE]},
     ReplaceLocations((LocationInput(URL, {"k": "v"}),) * 2)),
])
def test_commands(op: dict[str, Any], command: Command) -> None:
    assert parse(op) == [command]


def test_draft_4_too() -> None:
    # Tempest sends only the v2.0 media type; a location's add is no "already present" 409.
    assert parse({"add": "/locations/-", "value": VALUE}, content_type=V20) == [
        AddLocation(LocationInput(URL, {"k": "v"}), None)]


@pytest.mark.parametrize("op", [
    {"op": "add", "path": "/locations", "value": VALUE},  # add needs a position
    {"op": "remove", "path": "/locations"},
    {"op": "replace", "path": "/locations/0", "value": VALUE},
    {"op": "add", "path": "/locations/x", "value": VALUE},
    {"op": "add", "path": "/locations/-1", "value": VALUE},
    {"op": "add", "path": "/locations/1.5", "value": VALUE},
    {"op": "add", "path": "/locations/" + "9" * 5000, "value": VALUE},
    {"op": "add", "path": "/locations/\u0661", "value": VALUE},  # a non-ASCII digit
    {"op": "remove", "path": "/locations/0/1"},
    {"op": "add", "path": "/locations/-", "value": {"url": URL}},  # metadata required
    {"op": "add", "path": "/locations/-", "value": {"metadata": {}}},
    {"op": "add", "path": "/locations/-", "value": {"url": 5, "metadata": {}}},
    {"op": "add", "path": "/locations/-", "value": {"url": URL, "metadata": []}},
    {"op": "add", "path": "/locations/-", "value": [VALUE]},
    {"op": "add", "path": "/locations/-", "value": None},
    {"op": "add", "path": "/locations/-", "value": {"url": "h" * 256, "metadata": {}}},
    {"op": "add", "path": "/locations/-",
     "value": {**VALUE, "validation_data": {"os_hash_algo": "sha512"}}},
    {"op": "add", "path": "/locations/-",
     "value": {**VALUE, "validation_data": {**HASHES, "size": "1"}}},
    {"op": "add", "path": "/locations/-",
     "value": {**VALUE, "validation_data": {**HASHES, "checksum": 5}}},
    {"op": "replace", "path": "/locations", "value": VALUE},
    {"op": "replace", "path": "/locations", "value": [VALUE, 5]},
    {"op": "replace", "path": "/locations", "value": None},
])
def test_bad_operations_are_400(op: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as caught:
        parse(op)
    assert len(caught.value.message) < 400


def test_credentials_are_never_echoed() -> None:
    secret = "http://admin:hunter2@example.test/" + "x" * 300
    with pytest.raises(Invalid) as caught:
        parse({"op": "add", "path": "/locations/-", "value": {"url": secret, "metadata": {}}})
    assert "hunter2" not in caught.value.message
    with pytest.raises(Invalid) as caught:
        parse({"op": "replace", "path": "/locations", "value": [{"url": secret}]})
    assert "hunter2" not in caught.value.message

"""v2 create bodies (spec §2.2, §7 items 1, 2, 15) and the strict JSON loader every v2 body
goes through."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from glimpse.api.v2.body import parse_create
from glimpse.api.v2.json_input import MAX_DEPTH, load_json
from glimpse.api.v2.schemas import ImageSchemas, OperatorSchema, parse_operator_schema
from glimpse.domain.model import Principal
from glimpse.errors import Forbidden, GlimpseError, Invalid
from glimpse.settings import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS

USER = Principal(tenant="p", user="u", roles=("member", "reader"), is_admin=False, owner="p")
ADMIN = Principal(tenant="a", user="r", roles=("admin", "member", "reader"),
                  is_admin=True, owner="a")
SCHEMAS = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS)


def create(document: Any, who: Principal = USER, schemas: ImageSchemas = SCHEMAS) -> Any:
    return parse_create(document, who, schemas)


def test_full_body() -> None:
    image_id = str(uuid.uuid4())
    data = create({
        "id": image_id, "name": "n", "visibility": "community", "protected": True,
        "os_hidden": False, "min_ram": 1, "min_disk": 2, "disk_format": "raw",
        "container_format": "bare", "tags": ["b", "a", "b"], "owner": "p",
        "hw_disk_bus": "scsi", "owner_specified.openstack.md5": "",
    })
    assert data.fields == {
        "id": image_id, "name": "n", "visibility": "community", "protected": True,
        "os_hidden": False, "min_ram": 1, "min_disk": 2, "disk_format": "raw",
        "container_format": "bare", "owner": "p",
    }
    assert data.tags == ["b", "a"]
    assert data.properties == {"hw_disk_bus": "scsi", "owner_specified.openstack.md5": ""}


def test_empty_object() -> None:
    data = create({})
    assert (data.fields, data.properties, data.tags) == ({}, {}, [])


def test_ids_are_lower_case() -> None:
    """An upper-case copy of an existing id names the same image (and so conflicts)."""
    image_id = str(uuid.uuid4())
    assert create({"id": image_id.upper()}).fields["id"] == image_id


@pytest.mark.parametrize("document", [[], [{"name": "x"}], "x", 5, None, True, 1.5])
def test_not_an_object(document: Any) -> None:
    with pytest.raises(Invalid, match="must be a JSON object"):
        create(document)


@pytest.mark.parametrize("key", [
    "status", "checksum", "size", "virtual_size", "created_at", "updated_at",
    "os_hash_algo", "os_hash_value", "self", "file", "schema", "direct_url", "stores",
])
def test_read_only(key: str) -> None:
    for value in ("x", 5, None, ["a"]):
        with pytest.raises(Forbidden, match=f"Attribute '{key}' is read-only."):
            create({"name": "n", key: value}, who=ADMIN)


@pytest.mark.parametrize("key", [
    "location", "locations", "deleted", "deleted_at", "os_glance_import_task", "os_glance",
    "os_glance_stage_host",
])
def test_reserved(key: str) -> None:
    with pytest.raises(Forbidden, match=f"Attribute '{key}' is reserved."):
        create({key: "x"}, who=ADMIN)


@pytest.mark.parametrize(("key", "value"), [
    ("id", "not-a-uuid"), ("id", "7d4d0f5c5e0b4c399c531b9c2c6c0e11"), ("id", None), ("id", 5),
    ("name", 5), ("name", "x" * 256), ("visibility", "everyone"), ("visibility", None),
    ("protected", "true"), ("os_hidden", "true"), ("min_ram", "1"), ("min_ram", 1.0),
    ("min_disk", True), ("disk_format", "floppy"), ("container_format", "crate"),
    ("owner", 5), ("tags", "a"), ("tags", [1]), ("tags", ["x" * 256]), ("tags", None),
    ("custom", 5), ("custom", None), ("custom", True), ("custom", ["a"]),
    ("custom", {"a": "b"}),
])
def test_values_failing_the_schema(key: str, value: Any) -> None:
    with pytest.raises(Invalid, match="does not match schema 'image'"):
        create({key: value}, who=ADMIN)


def test_long_custom_keys() -> None:
    assert create({"k" * 255: "v"}).properties == {"k" * 255: "v"}
    with pytest.raises(Invalid, match="should not be greater than 255"):
        create({"k" * 256: "v"})


def test_owner() -> None:
    assert create({"owner": "p"}).fields["owner"] == "p"
    with pytest.raises(Forbidden,
                       match=r"You are not permitted to create images owned by 'q'\."):
        create({"owner": "q"})
    with pytest.raises(Forbidden, match="owned by 'None'"):
        create({"owner": None})
    assert create({"owner": "q"}, who=ADMIN).fields["owner"] == "q"
    assert create({"owner": None}, who=ADMIN).fields["owner"] is None


def test_operator_schema() -> None:
    schemas = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS,
                           parse_operator_schema({
                               "os_distro": {"type": "string", "enum": ["debian", "fedora"]},
                               "kernel_id": {"type": ["null", "string"]},
                               "required": ["os_distro", "disk_format"],
                           }))
    data = create({"os_distro": "debian", "kernel_id": None, "disk_format": "raw"},
                  schemas=schemas)
    assert data.properties == {"os_distro": "debian", "kernel_id": None}
    with pytest.raises(Invalid, match="'os_distro' is a required property"):
        create({"disk_format": "raw"}, schemas=schemas)
    with pytest.raises(Invalid, match="'disk_format' is a required property"):
        create({"os_distro": "fedora"}, schemas=schemas)
    with pytest.raises(Invalid, match="is not one of"):
        create({"os_distro": "arch", "disk_format": "raw"}, schemas=schemas)


def test_refusal_order() -> None:
    """Glance's: a key nobody may give is refused before values are looked at."""
    with pytest.raises(Forbidden):
        create({"name": 5, "status": "queued"})
    with pytest.raises(Forbidden):
        create({"owner": "q", "name": 5, "deleted": True})


# -- the strict loader -------------------------------------------------------------------------


def test_load_json() -> None:
    assert load_json(b' {"a": [1, 2.5, null, true, "\\u2713"]} ') == {
        "a": [1, 2.5, None, True, "\u2713"]}
    assert load_json('{"n": "\u00e9"}'.encode()) == {"n": "\u00e9"}
    assert load_json(b'"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is one char
    assert load_json(b"[]") == []


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "Body expected"), (b"  \n", "Body expected"),
    (b"{", "Malformed JSON"), (b"{'a': 1}", "Malformed JSON"), (b"[1,]", "Malformed JSON"),
    (b'{"a": NaN}', "Malformed JSON"), (b"Infinity", "Malformed JSON"),
    (b"-Infinity", "Malformed JSON"), (b"1" * 5000, "Malformed JSON"),
    (b'\xef\xbb\xbf{"a": 1}', "Malformed JSON"),
    (b'{"a": 1} x', "Malformed JSON"),
    (b'{"a": "\xff"}', "must be UTF-8"), (b"\xfe\xff\x00{", "must be UTF-8"),
    ('{"a": 1}'.encode("utf-16"), "must be UTF-8"),
    (b'{"a": 1, "a": 2}', 'Duplicate key in JSON object: "a"'),
    (b'[{"x": {"b": 1, "b": 1}}]', 'Duplicate key in JSON object: "b"'),
    (b'{"a": "\\u0000"}', "NUL"), (b'{"\\u0000": "a"}', "NUL"),
    (b'{"a": "\\ud800"}', "surrogates"), (b'{"\\udc00x": "a"}', "surrogates"),
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nests deeper"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nests deeper"),
])
def test_load_json_refusals(raw: bytes, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        load_json(raw)


def test_depth_bound_is_inclusive() -> None:
    assert load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


def test_duplicate_key_message_is_short() -> None:
    key = "k" * 100_000
    with pytest.raises(Invalid) as caught:
        load_json(json.dumps({key: 1}).encode()[:-1] + f', "{key}": 2}}'.encode())
    assert len(caught.value.message) < 200


def test_hostile_bodies_end_in_domain_errors() -> None:
    schemas = ImageSchemas(("raw",), ("bare",), OperatorSchema())
    bodies = [
        b'{"tags": [[[]]]}', b'{"name": {"a": 1}}', b'{"min_ram": 1e999}',
        b'{"min_ram": -1e999}', b'{"id": "' + b"0" * 100_000 + b'"}',
        b'{"tags": ' + json.dumps(["t"] * 100_000).encode() + b"}",
        json.dumps({f"k{i}": "v" for i in range(100_000)}).encode(),
    ]
    for raw in bodies:
        try:
            data = parse_create(load_json(raw), USER, schemas)
        except GlimpseError:
            continue
        assert len(data.tags) <= 1 or len(data.properties) == 100_000

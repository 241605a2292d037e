"""v2 JSON-patch documents into domain commands (spec §2.4): media types, both drafts,
pointers, what is read-only, reserved or base, values against the schema, hostile input."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest

from glimpse.api.v2.json_input import load_json
from glimpse.api.v2.patch import (
    ACCEPT_PATCH,
    PATCH_MEDIA_TYPE,
    V20,
    V21,
    Draft,
    decode_pointer,
    parse_patch,
    patch_draft,
)
from glimpse.api.v2.schemas import ImageSchemas, OperatorSchema, parse_operator_schema
from glimpse.domain.model import (
    Command,
    Presence,
    Principal,
    RemoveProperties,
    SetFields,
    SetProperties,
    SetTags,
)
from glimpse.errors import Conflict, Forbidden, GlimpseError, Invalid, UnsupportedMediaType
from glimpse.settings import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS

USER = Principal(tenant="p", user="u", roles=("member", "reader"), is_admin=False, owner="p")
ADMIN = Principal(tenant="a", user="r", roles=("admin", "member", "reader"),
                  is_admin=True, owner="a")
SCHEMAS = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS, parse_operator_schema({
    "os_distro": {"type": "string"},
    "kernel_id": {"type": ["null", "string"], "pattern": "^[0-9a-f-]{36}$"},
    "required": ["os_distro"],
}))


def field(name: str, value: Any) -> SetFields:
    return SetFields({name: value}, formats_need_no_data=True)


def v21(*ops: dict[str, Any], who: Principal = USER) -> list[Command]:
    return parse_patch(list(ops), V21, who, SCHEMAS)


def v20(*ops: dict[str, Any], who: Principal = USER) -> list[Command]:
    return parse_patch(list(ops), V20, who, SCHEMAS)


# -- media types --------------------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "draft"), [
    (V21, Draft.V21), (V20, Draft.V20), (f"{V21}; charset=UTF-8", Draft.V21),
    (f" {V20.upper()} ;x=y", Draft.V20),
])
def test_media_types(content_type: str, draft: Draft) -> None:
    assert patch_draft(content_type) is draft


@pytest.mark.parametrize("content_type", [
    None, "", "application/json", "application/json-patch+json",
    "application/openstack-images-v2.2-json-patch", f"{V21}x", "x" * 10_000,
])
def test_other_media_types_are_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_patch([], content_type, USER, SCHEMAS)
    assert caught.value.code == PATCH_MEDIA_TYPE
    assert len(caught.value.message) < 200


def test_accept_patch_header() -> None:
    assert ACCEPT_PATCH == ("application/openstack-images-v2.0-json-patch, "
                            "application/openstack-images-v2.1-json-patch")


# -- the document --------------------------------------------------------------------------------


def test_empty_patch_is_no_commands() -> None:
    assert v21() == [] and v20() == []


@pytest.mark.parametrize(("document", "message"), [
    ({}, "must be a JSON array"), ({"op": "add"}, "must be a JSON array"),
    ("x", "must be a JSON array"), (None, "must be a JSON array"), (5, "must be a JSON array"),
    ([[]], "Operations must be JSON objects"), (["add"], "Operations must be JSON objects"),
    ([None], "Operations must be JSON objects"),
])
def test_document_shape(document: Any, message: str) -> None:
    for media in (V20, V21):
        with pytest.raises(Invalid, match=message):
            parse_patch(document, media, USER, SCHEMAS)


@pytest.mark.parametrize(("op", "message"), [
    ({"path": "/name", "value": "x"}, "Unable to find `op`"),
    ({"op": "move", "from": "/a", "path": "/name"}, "Invalid operation: `move`"),
    ({"op": "copy", "from": "/a", "path": "/name"}, "Invalid operation: `copy`"),
    ({"op": "test", "path": "/name", "value": "x"}, "Invalid operation: `test`"),
    ({"op": "Add", "path": "/name", "value": "x"}, "Invalid operation: `Add`"),
    ({"op": "REPLACE", "path": "/name", "value": "x"}, "Invalid operation"),
    ({"op": ["add"], "path": "/name", "value": "x"}, "Invalid operation"),
    ({"op": {"a": 1}, "path": "/name", "value": "x"}, "Invalid operation"),
    ({"op": "add", "value": "x"}, "Unable to find 'path'"),
    ({"op": "add", "path": "/name"}, 'Operation "add" requires a member named "value"'),
    ({"op": "replace", "path": "/name"}, 'Operation "replace" requires'),
    ({"op": "add", "path": 5, "value": "x"}, "must be a string"),
    ({"op": "add", "path": ["/name"], "value": "x"}, "must be a string"),
])
def test_v21_operation_errors(op: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        v21(op)


@pytest.mark.parametrize(("op", "message"), [
    ({"value": "x"}, "exactly one member"),
    ({"op": "add", "path": "/name", "value": "x"}, "exactly one member"),
    ({"add": "/a", "replace": "/b", "value": "x"}, "exactly one member"),
    ({"remove": "/a", "replace": "/a"}, "exactly one member"),
    ({"replace": "/name"}, 'Operation "replace" requires'),
    ({"replace": None, "value": "x"}, "must be a string"),
])
def test_v20_operation_errors(op: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        v20(op)


# -- pointers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pointer", "tokens"), [
    ("/name", ["name"]), ("/a~1b", ["a/b"]), ("/a~0b", ["a~b"]), ("/~01", ["~1"]),
    ("/~10", ["/0"]), ("/ name ", ["name"]), ("/locations/0", ["locations", "0"]),
    ("/", [""]), ("/\u2713", ["\u2713"]),
])
def test_pointers_decoded(pointer: str, tokens: list[str]) -> None:
    assert decode_pointer(pointer) == tokens


@pytest.mark.parametrize(("pointer", "message"), [
    ("name", 'does not start with "/"'), ("", 'does not start with "/"'),
    ("//name", 'adjacent "/"'), ("/a//b", 'adjacent "/"'), ("/a/ /b", 'adjacent "/"'),
    ("///twoslash", 'adjacent "/"'), ("/      /      ", 'adjacent "/"'),
    ("/name/", 'end with "/"'), ("/a~2", '"~" not part of'), ("/a~", '"~" not part of'),
    ("/~a", '"~" not part of'),
])
def test_bad_pointers(pointer: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        decode_pointer(pointer)
    with pytest.raises(Invalid, match=message):
        v21({"op": "replace", "path": pointer, "value": "x"})


@pytest.mark.parametrize("pointer", [
    "/name/x", "/tags/-", "/tags/0", "/a/b/c", "/locations", "/locations/0/url",
    "/mine/sub",
])
def test_pointer_depth(pointer: str) -> None:
    op = "add" if pointer == "/locations" else "replace"
    with pytest.raises(Invalid, match="Invalid JSON pointer for this resource"):
        v21({"op": op, "path": pointer, "value": "x"})


def test_long_pointers_are_quoted_short() -> None:
    for pointer in ("x" * 100_000, "/" + "a/" * 50_000 + "a", "/" + "~2" * 50_000):
        with pytest.raises(Invalid) as caught:
            v21({"op": "replace", "path": pointer, "value": "x"})
        assert len(caught.value.message) < 300
    # One long token: a custom property name (the domain refuses names over 255).
    assert v21({"op": "add", "path": "/" + "k" * 100_000, "value": "x"}) == [
        SetProperties({"k" * 100_000: "x"})]


# -- what each path means ------------------------------------------------------------------------


def test_base_attributes_are_set_fields() -> None:
    assert v21({"op": "replace", "path": "/name", "value": "n"},
               {"op": "add", "path": "/min_ram", "value": 5},
               {"op": "replace", "path": "/visibility", "value": "community"},
               {"op": "add", "path": "/disk_format", "value": "qcow2"},
               {"op": "replace", "path": "/name", "value": None}) == [
        field("name", "n"), field("min_ram", 5), field("visibility", "community"),
        field("disk_format", "qcow2"), field("name", None)]


def test_tags_replace_the_list() -> None:
    assert v21({"op": "replace", "path": "/tags", "value": ["a", "b", "a"]},
               {"op": "add", "path": "/tags", "value": []}) == [
        SetTags(("a", "b", "a")), SetTags(())]
    assert v20({"replace": "/tags", "value": ["x"]}) == [SetTags(("x",))]


def test_custom_properties() -> None:
    assert v21({"op": "add", "path": "/mine", "value": "1"},
               {"op": "replace", "path": "/mine", "value": "2"},
               {"op": "remove", "path": "/mine"},
               {"op": "add", "path": "/a~1b", "value": ""}) == [
        SetProperties({"mine": "1"}, Presence.ANY),
        SetProperties({"mine": "2"}, Presence.PRESENT),
        RemoveProperties(frozenset({"mine"}), missing_ok=False),
        SetProperties({"a/b": ""})]


def test_v20_add_needs_absence() -> None:
    assert v20({"add": "/mine", "value": "1"}, {"replace": "/mine", "value": "2"},
               {"remove": "/mine"}) == [
        SetProperties({"mine": "1"}, Presence.ABSENT),
        SetProperties({"mine": "2"}, Presence.PRESENT),
        RemoveProperties(frozenset({"mine"}), missing_ok=False)]


@pytest.mark.parametrize("name", ["name", "tags", "min_ram", "visibility", "disk_format"])
def test_v20_add_of_a_base_attribute_is_409(name: str) -> None:
    with pytest.raises(Conflict, match=f"Property {name} already present"):
        v20({"add": f"/{name}", "value": SCHEMAS.base[name].get("type") and _valid(name)})


def _valid(name: str) -> Any:
    return {"name": "n", "tags": [], "min_ram": 1, "visibility": "private",
            "disk_format": "raw"}[name]


def test_operator_properties_are_custom() -> None:
    assert v21({"op": "add", "path": "/kernel_id", "value": None}) == [
        SetProperties({"kernel_id": None})]
    with pytest.raises(Invalid, match="does not match"):
        v21({"op": "add", "path": "/kernel_id", "value": "nope"})
    assert v21({"op": "remove", "path": "/kernel_id"}) == [
        RemoveProperties(frozenset({"kernel_id"}), missing_ok=False)]
    with pytest.raises(Forbidden, match="os_distro may not be removed"):
        v21({"op": "remove", "path": "/os_distro"})


@pytest.mark.parametrize("name", [
    "id", "status", "checksum", "size", "virtual_size", "created_at", "updated_at",
    "os_hash_algo", "os_hash_value", "self", "file", "schema", "direct_url", "stores",
])
@pytest.mark.parametrize("op", ["add", "replace", "remove"])
def test_read_only(name: str, op: str) -> None:
    raw: dict[str, Any] = {"op": op, "path": f"/{name}"}
    if op != "remove":
        raw["value"] = 5  # a bad value still says read-only
    with pytest.raises(Forbidden, match=f"Attribute '{name}' is read-only."):
        v21(raw, who=ADMIN)


@pytest.mark.parametrize("name", ["location", "deleted", "deleted_at", "os_glance_import_task",
                                  "os_glance", "os_glancefoo"])
@pytest.mark.parametrize("op", ["add", "replace", "remove"])
def test_reserved(name: str, op: str) -> None:
    raw: dict[str, Any] = {"op": op, "path": f"/{name}", "value": "x"}
    with pytest.raises(Forbidden, match=f"Attribute '{name}' is reserved."):
        v21(raw, who=ADMIN)


@pytest.mark.parametrize("name", ["name", "tags", "visibility", "protected", "os_hidden",
                                  "owner", "min_ram", "min_disk", "disk_format",
                                  "container_format"])
def test_base_attributes_may_not_be_removed(name: str) -> None:
    for parse in (v21, v20):
        op = {"op": "remove", "path": f"/{name}"} if parse is v21 else {"remove": f"/{name}"}
        with pytest.raises(Forbidden, match=f"Property {name} may not be removed."):
            parse(op, who=ADMIN)


def test_owner_needs_an_admin() -> None:
    for op in ("add", "replace"):
        with pytest.raises(Forbidden, match=r"Owner can't be updated by non admin\."):
            v21({"op": op, "path": "/owner", "value": "p"})
        assert v21({"op": op, "path": "/owner", "value": "q"}, who=ADMIN) == [
            field("owner", "q")]


@pytest.mark.parametrize(("op", "path", "value"), [
    ("add", "/locations/-", {"url": "http://x", "metadata": {}}),
    ("add", "/locations/0", {"url": "http://x", "metadata": {}}),
    ("replace", "/locations", [{"url": "http://x", "metadata": {}}]),
    ("replace", "/locations", []),
    ("remove", "/locations/0", None),
])
def test_legacy_locations_are_refused(op: str, path: str, value: Any) -> None:
    raw: dict[str, Any] = {"op": op, "path": path}
    if op != "remove":
        raw["value"] = value
    with pytest.raises(Forbidden, match="locations if locations are invisible"):
        v21(raw, who=ADMIN)


def test_malformed_locations_are_400() -> None:
    with pytest.raises(Invalid):
        v21({"op": "add", "path": "/locations/-", "value": {"url": 5}})


@pytest.mark.parametrize(("path", "value"), [
    ("/name", 5), ("/name", "x" * 256), ("/name", ["n"]), ("/visibility", "everyone"),
    ("/protected", "true"), ("/os_hidden", "true"), ("/min_ram", "5"), ("/min_ram", None),
    ("/min_disk", 1.5), ("/min_disk", False), ("/disk_format", "floppy"),
    ("/container_format", 5), ("/tags", "a"), ("/tags", ["x" * 256]), ("/tags", [None]),
    ("/tags", None), ("/owner", 5), ("/mine", 5), ("/mine", None), ("/mine", ["a"]),
    ("/mine", {"a": "b"}), ("/mine", 1e308), ("/mine", True),
])
def test_values_failing_the_schema(path: str, value: Any) -> None:
    for parse, raw in ((v21, {"op": "replace", "path": path, "value": value}),
                       (v20, {"replace": path, "value": value})):
        with pytest.raises(Invalid, match="does not match schema 'image'"):
            parse(raw, who=ADMIN)


def test_first_failing_operation_decides() -> None:
    with pytest.raises(Forbidden):
        v21({"op": "replace", "path": "/status", "value": "active"},
            {"op": "replace", "path": "/name", "value": 5})
    with pytest.raises(Invalid):
        v21({"op": "replace", "path": "/name", "value": 5},
            {"op": "replace", "path": "/status", "value": "active"})


# -- hostile input -----------------------------------------------------------------------------


@pytest.mark.serial
def test_a_hundred_thousand_operations_parse_in_linear_time() -> None:
    ops = [{"op": "add", "path": f"/p{i}", "value": str(i)} for i in range(100_000)]
    raw = json.dumps(ops).encode()
    started = time.monotonic()
    commands = parse_patch(load_json(raw), V21, USER, SCHEMAS)
    assert len(commands) == 100_000
    # About a second alone; a quadratic step would take hours. Generous for busy machines.
    assert time.monotonic() - started < 30


def test_deep_values_are_refused() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    raw = f'[{{"op": "add", "path": "/mine", "value": {deep}}}]'.encode()
    with pytest.raises(Invalid, match="nests deeper"):
        load_json(raw)
    nested: Any = "x"
    for _ in range(20):
        nested = [nested]
    with pytest.raises(Invalid, match="does not match"):
        v21({"op": "add", "path": "/mine", "value": nested})


def test_duplicate_keys_in_an_operation() -> None:
    raw = b'[{"op": "add", "op": "remove", "path": "/mine", "value": "x"}]'
    with pytest.raises(Invalid, match='Duplicate key in JSON object: "op"'):
        load_json(raw)


def test_every_refusal_is_a_domain_error() -> None:
    """Whatever a client sends, the parser answers a GlimpseError, never a crash."""
    samples: list[Any] = [
        [{"op": 1, "path": 1}], [{"op": "add", "path": {"a": 1}, "value": 1}],
        [{"add": 1, "value": 1}], [{"op": "remove", "path": "/"}],
        [{"op": "add", "path": "/", "value": "x"}], [{"op": None}], [{"path": None}],
        [{"op": "add", "path": "/tags", "value": [{"a": 1}]}],
        [{"op": "add", "path": "/locations/x", "value": {"url": "u", "metadata": {}}}],
    ]
    schemas = ImageSchemas(("raw",), ("bare",), OperatorSchema())
    for sample in samples:
        for media in (V20, V21):
            with contextlib.suppress(GlimpseError):
                parse_patch(sample, media, USER, schemas)

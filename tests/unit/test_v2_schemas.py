"""The v2 schema documents: Glance's shapes (what glanceclient validates and builds patches
from), derived from the field table and the deployment's formats, and the operator's
schema-image.json, checked at start-up."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from glimpse import settings as settings_mod
from glimpse.api.v2.images_json import image_json, member_json
from glimpse.api.v2.json_schema import SchemaError, check_schema, problem
from glimpse.api.v2.patch import V21, parse_patch
from glimpse.api.v2.schemas import (
    ImageSchemas,
    OperatorSchema,
    load_operator_schema,
    parse_operator_schema,
)
from glimpse.cli.main import main as cli_main
from glimpse.domain.model import (
    Image,
    Member,
    MemberStatus,
    Principal,
    SetFields,
    SetProperties,
    SetTags,
    Status,
    now,
)
from glimpse.errors import Invalid
from glimpse.settings import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS

BASE_KEYS = {
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
    "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size", "container_format",
    "disk_format", "min_ram", "min_disk", "tags", "created_at", "updated_at", "self", "file",
    "schema", "direct_url", "stores", "locations",
}
READ_ONLY = {"status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
             "created_at", "updated_at", "direct_url", "self", "file", "schema", "stores"}
# Glance's etc/schema-image.json, in part.
OPERATOR = {
    "kernel_id": {
        "type": ["null", "string"],
        "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                   "-([0-9a-fA-F]){12}$",
        "description": "ID of the kernel image",
    },
    "os_distro": {"type": "string", "description": "Distribution"},
    "architecture": {"type": "string", "enum": ["x86_64", "aarch64"]},
}
USER = Principal(tenant="p", user="u", roles=("member", "reader"), is_admin=False, owner="p")


@pytest.fixture
def schemas() -> ImageSchemas:
    return ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS)


def test_image_schema_shape(schemas: ImageSchemas) -> None:
    doc = schemas.image()
    assert doc["name"] == "image"
    assert set(doc["properties"]) == BASE_KEYS
    assert doc["additionalProperties"] == {"type": "string"}
    assert doc["links"] == [{"rel": "self", "href": "{self}"},
                            {"rel": "enclosure", "href": "{file}"},
                            {"rel": "describedby", "href": "{schema}"}]
    assert "required" not in doc
    props = doc["properties"]
    assert {k for k, v in props.items() if v.get("readOnly")} == READ_ONLY
    assert props["name"] == {"type": ["null", "string"], "maxLength": 255,
                             "description": props["name"]["description"]}
    assert props["id"]["type"] == "string" and "pattern" in props["id"]
    assert props["visibility"]["enum"] and set(props["visibility"]["enum"]) == {
        "public", "private", "shared", "community"}
    assert set(props["status"]["enum"]) == {s.value for s in Status}
    assert props["disk_format"]["enum"] == [None, *DEFAULT_DISK_FORMATS]
    assert props["container_format"]["enum"] == [None, *DEFAULT_CONTAINER_FORMATS]
    assert props["disk_format"]["type"] == ["null", "string"]
    assert props["protected"]["type"] == "boolean" and props["os_hidden"]["type"] == "boolean"
    assert props["min_ram"]["type"] == "integer" and props["min_disk"]["type"] == "integer"
    assert props["size"]["type"] == ["null", "integer"]
    assert props["checksum"]["maxLength"] == 32 and props["os_hash_value"]["maxLength"] == 128
    assert props["owner"] == {"type": ["null", "string"], "maxLength": 255,
                              "description": props["owner"]["description"]}
    assert props["tags"]["items"] == {"type": "string", "maxLength": 255}
    assert props["locations"]["items"]["required"] == ["url", "metadata"]
    jsonschema.Draft4Validator.check_schema(doc)


def test_formats_are_the_deployments() -> None:
    doc = ImageSchemas(("raw", "qcow2"), ("bare",)).image()
    assert doc["properties"]["disk_format"]["enum"] == [None, "raw", "qcow2"]
    assert doc["properties"]["container_format"]["enum"] == [None, "bare"]


def test_collections_and_members(schemas: ImageSchemas) -> None:
    images = schemas.images()
    assert images["name"] == "images"
    assert images["properties"]["images"] == {"type": "array", "items": schemas.image()}
    assert set(images["properties"]) == {"images", "first", "next", "schema"}
    assert [link["rel"] for link in images["links"]] == ["first", "next", "describedby"]
    member = schemas.member()
    assert member["name"] == "member" and member["additionalProperties"] is False
    assert set(member["properties"]) == {"member_id", "image_id", "created_at", "updated_at",
                                         "status", "schema"}
    assert member["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    members = schemas.members()
    assert members["properties"]["members"]["items"] == member
    assert schemas.document("members") == members
    assert schemas.document("tasks") is None and schemas.document("") is None


def test_documents_are_copies(schemas: ImageSchemas) -> None:
    schemas.image()["properties"].clear()
    schemas.member()["properties"].clear()
    assert schemas.image()["properties"] and schemas.member()["properties"]


def _image(**values: Any) -> Image:
    return Image(id=str(uuid.uuid4()), status=Status.ACTIVE, **values)


@pytest.mark.parametrize("image", [
    _image(),
    _image(name="n", size=5, virtual_size=5, checksum="0" * 32, os_hash_algo="sha512",
           os_hash_value="f" * 128, disk_format="raw", container_format="bare",
           owner="p", tags=["a", "b"], properties={"kernel_id": str(uuid.uuid4()),
                                                   "free": "x", "v1_null": None}),
])
def test_rendered_images_pass_the_clients_validation(image: Image) -> None:
    """What warlock does with every image glanceclient receives."""
    schemas = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS,
                           parse_operator_schema(OPERATOR))
    jsonschema.validate(image_json(image), schemas.image())
    page = {"images": [image_json(image)], "first": "/v2/images", "schema": "/v2/schemas/images"}
    jsonschema.validate(page, schemas.images())


def test_rendered_members_pass_the_clients_validation(schemas: ImageSchemas) -> None:
    member = Member(str(uuid.uuid4()), "proj", MemberStatus.PENDING, created_at=now(),
                    updated_at=now())
    jsonschema.validate(member_json(member), schemas.member())


def test_glanceclient_builds_patches_we_parse(schemas: ImageSchemas) -> None:
    """glanceclient's own model (warlock over our schema) makes the PATCH it would send."""
    schemas_mod = pytest.importorskip("glanceclient.v2.schemas")
    warlock = pytest.importorskip("warlock")
    operator = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS,
                            parse_operator_schema(OPERATOR))
    model = warlock.model_factory(operator.image(), base_class=schemas_mod.SchemaBasedModel)
    image = model(image_json(_image(name="old", tags=["t"], properties={"free": "x"})))
    image["name"] = "new"
    image["min_ram"] = 64
    image["os_distro"] = "debian"  # an operator property, not base: an "add"
    image["mine"] = "yes"
    image["tags"] = ["t", "u"]
    del image["free"]
    patch = json.loads(image.patch)
    ops = {(p["op"], p["path"]) for p in patch}
    assert ("add", "/os_distro") in ops and ("replace", "/tags") in ops
    commands = parse_patch(patch, V21, USER, operator)
    assert SetFields({"name": "new"}, formats_need_no_data=True) in commands
    assert SetProperties({"os_distro": "debian"}) in commands
    assert SetTags(("t", "u")) in commands


# -- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("name", 5), ("name", "x" * 256), ("name", ["x"]), ("visibility", "everyone"),
    ("visibility", None), ("protected", "true"), ("protected", 1), ("min_ram", "5"),
    ("min_ram", 1.5), ("min_ram", True), ("min_ram", None), ("disk_format", "floppy"),
    ("container_format", 5), ("id", "not-a-uuid"), ("id", "0" * 32), ("tags", "a"),
    ("tags", [1]), ("tags", ["x" * 256]), ("tags", {"a": 1}), ("owner", 5),
    ("custom", 5), ("custom", None), ("custom", ["a"]), ("custom", {"a": "b"}),
    ("custom", True), ("kernel_id", "abc"), ("architecture", "sparc"),
    ("locations", [{"url": "x"}]), ("locations", {"url": "x", "metadata": {}}),
])
def test_values_refused(name: str, value: Any) -> None:
    schemas = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS,
                           parse_operator_schema(OPERATOR))
    with pytest.raises(Invalid, match="does not match schema 'image'"):
        schemas.check_value(name, value)


@pytest.mark.parametrize(("name", "value"), [
    ("name", None), ("name", "x" * 255), ("name", "\u2713"), ("visibility", "community"),
    ("min_ram", 0), ("min_ram", 2**70), ("disk_format", None), ("disk_format", "qcow2"),
    ("id", "7D4D0F5C-5E0B-4C39-9C53-1B9C2C6C0E11"), ("tags", []), ("kernel_id", None),
    ("kernel_id", "7d4d0f5c-5e0b-4c39-9c53-1b9c2c6c0e11"), ("architecture", "x86_64"),
    ("custom", ""),
    ("locations", [{"url": "http://x", "metadata": {}}]),
])
def test_values_accepted(name: str, value: Any) -> None:
    schemas = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS,
                           parse_operator_schema(OPERATOR))
    schemas.check_value(name, value)


def test_messages_cut_hostile_values_short(schemas: ImageSchemas) -> None:
    with pytest.raises(Invalid) as caught:
        schemas.check_value("name", "x" * 100_000)
    assert len(caught.value.message) < 300
    with pytest.raises(Invalid) as caught:
        schemas.check_value("k" * 100_000, 5)
    assert len(caught.value.message) < 300


def test_json_equality_in_enums() -> None:
    assert problem(True, {"type": ["boolean", "integer"], "enum": [1]}) is not None
    assert problem(1, {"type": ["boolean", "integer"], "enum": [True]}) is not None
    assert problem(1, {"type": "integer", "enum": [1]}) is None


# -- the operator's file ------------------------------------------------------------------------


def test_operator_properties_merged() -> None:
    operator = parse_operator_schema({**OPERATOR, "required": ["os_distro"]})
    doc = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS, operator).image()
    for name, schema in OPERATOR.items():
        assert doc["properties"][name] == {**schema, "is_base": False}
    assert doc["required"] == ["os_distro"]
    assert all(doc["properties"][k].get("is_base", True) for k in BASE_KEYS)
    jsonschema.Draft4Validator.check_schema(doc)


def test_null_properties() -> None:
    schemas = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS,
                           parse_operator_schema(OPERATOR))
    assert schemas.null_properties == {"kernel_id"}
    image = image_json(_image(properties={"kernel_id": None}))
    image["kernel_id"] = None  # as the renderer must show it
    jsonschema.validate(image, schemas.image())


def test_a_property_named_required_is_still_a_property() -> None:
    operator = parse_operator_schema({"required": {"type": "string"}})
    assert "required" in operator.properties and operator.required == ()


def test_required_is_enforced(schemas: ImageSchemas) -> None:
    strict = ImageSchemas(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS,
                          OperatorSchema({}, ("os_distro", "name")))
    strict.check_required({"os_distro": "x", "name": "n"})
    with pytest.raises(Invalid, match="'name' is a required property"):
        strict.check_required({"os_distro": "x"})
    schemas.check_required({})


@pytest.mark.parametrize(("document", "problem_text"), [
    ([], "must be a JSON object"),
    ({"x": "string"}, "must be a JSON object"),
    ({"x": {"type": "integer"}}, "custom properties are strings"),
    ({"x": {"type": ["string", "integer"]}}, "custom properties are strings"),
    ({"x": {"type": "null"}}, "custom properties are strings"),
    ({"x": {}}, "'type' must be one of"),
    ({"x": {"type": "text"}}, "'type' must be one of"),
    ({"x": {"type": "string", "oneOf": []}}, "unsupported keyword(s) oneOf"),
    ({"x": {"type": "string", "$ref": "#/a"}}, "unsupported keyword(s) $ref"),
    ({"x": {"type": "string", "pattern": "("}}, "'pattern' is not a regular expression"),
    ({"x": {"type": "string", "maxLength": -1}}, "'maxLength' must be a non-negative"),
    ({"x": {"type": "string", "enum": "a"}}, "'enum' must be a list"),
    ({"name": {"type": ["null", "string"]}}, "conflicts with the base property"),
    ({"os_glance_x": {"type": "string"}}, "is reserved"),
    ({"deleted": {"type": "string"}}, "is reserved"),
    ({"locations": {"type": "string"}}, "is reserved"),
    ({"k" * 256: {"type": "string"}}, "names are 1 to 255"),
    ({"required": [5]}, "'required' must be a list of property names"),
    ({"required": ["status"]}, "which a client cannot give"),
    ({"required": ["os_glance_task"]}, "which a client cannot give"),
])
def test_operator_file_refused(document: Any, problem_text: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_operator_schema(document)
    assert problem_text in str(caught.value)


def test_nested_schemas_are_checked() -> None:
    with pytest.raises(SchemaError, match=r"x\.items uses unsupported keyword"):
        check_schema({"type": "array", "items": {"type": "string", "anyOf": []}}, "x")


def test_load_operator_schema(tmp_path: Path) -> None:
    assert load_operator_schema(None) == OperatorSchema()
    good = tmp_path / "schema-image.json"
    good.write_text(json.dumps(OPERATOR))
    assert set(load_operator_schema(good).properties) == set(OPERATOR)
    missing = tmp_path / "missing.json"
    with pytest.raises(Invalid, match=r"missing\.json: cannot be read"):
        load_operator_schema(missing)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{\"x\": ")
    with pytest.raises(Invalid, match=r"bad\.json: not JSON"):
        load_operator_schema(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(Invalid, match=r"bad\.json: not JSON"):
        load_operator_schema(bad)
    bad.write_text(json.dumps({"x": {"type": "integer"}}))
    with pytest.raises(Invalid, match=r"bad\.json: property 'x': custom properties"):
        load_operator_schema(bad)


def test_setting(tmp_path: Path) -> None:
    assert settings_mod.load(environ={}).image_schema_file is None
    path = tmp_path / "s.json"
    loaded = settings_mod.load(environ={"GLIMPSE_IMAGE_SCHEMA_FILE": str(path)})
    assert loaded.image_schema_file == path
    assert settings_mod.from_json(settings_mod.to_json(loaded)) == loaded
    empty = settings_mod.load(environ={"GLIMPSE_IMAGE_SCHEMA_FILE": ""})
    assert settings_mod.from_json(settings_mod.to_json(empty)).image_schema_file is None


def test_bad_file_is_a_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "schema-image.json"
    bad.write_text(json.dumps({"x": {"type": "string", "allOf": []}}))
    config = tmp_path / "glimpse.toml"
    config.write_text(f'image_schema_file = "{bad}"\ndata_dir = "{tmp_path / "data"}"\n')
    assert cli_main(["--config", str(config), "db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "allOf" in err and "schema-image.json" in err

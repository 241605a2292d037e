"""The v2 JSON-schema documents (``GET /v2/schemas/{image,images,member,members}``, spec §2.1)
and the value rules v2 bodies are checked against.

Clients depend on these shapes: glanceclient validates every image it receives against the
image schema (warlock), builds its PATCH from it (a base property it has not seen is a
``replace``, an ``is_base: false`` one an ``add``), and python-openstackclient lists the
formats from its enums. So the base properties are Glance's: their types, enums, lengths,
patterns and readOnly marks are derived from the field table (``domain/fields.py``) and the
deployment's formats, plus the keys v2 renders that the table does not hold (tags, links,
locations). An operator's ``schema-image.json`` adds custom properties (and, as since Glance
2026.1, a ``required`` list); it is read and checked once, at start-up.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glimpse.api.v2.json_schema import SchemaError, check_schema, problem
from glimpse.domain.fields import (
    FIELDS,
    MAX_KEY_LENGTH,
    MAX_TAG_LENGTH,
    RESERVED_PROPERTY_PREFIX,
    Field,
    Kind,
    Setter,
)
from glimpse.domain.model import MemberStatus, Status, Visibility
from glimpse.errors import Invalid

UUID_PATTERN = ("^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                "-([0-9a-fA-F]){12}$")
# Keys a client never writes: what the service computes and the links it renders; a create
# may name the new image's id, a PATCH may not change it.
READ_ONLY_ON_CREATE = frozenset({
    "status", "checksum", "size", "virtual_size", "created_at", "updated_at",
    "os_hash_algo", "os_hash_value", "self", "file", "schema", "direct_url", "stores",
})
READ_ONLY = READ_ONLY_ON_CREATE | {"id"}
# Names that mean something to the service (v1's location, the deletion columns) or belong
# to its import machinery (the os_glance namespace): not custom properties either.
RESERVED = frozenset({"location", "deleted", "deleted_at"})
# Field-table columns v2 does not show (deletion is a status there).
_NOT_SHOWN = frozenset({"deleted", "deleted_at"})
_DESCRIPTIONS = {
    "id": "An identifier for the image",
    "name": "Descriptive name for the image",
    "status": "Status of the image",
    "visibility": "Scope of image accessibility",
    "protected": "If true, image will not be deletable.",
    "os_hidden": "If true, image will not appear in default image list response.",
    "checksum": "md5 hash of image contents.",
    "os_hash_algo": "Algorithm to calculate the os_hash_value",
    "os_hash_value": "Hexdigest of the image contents using the algorithm specified by the "
                     "os_hash_algo",
    "owner": "Owner of the image",
    "size": "Size of image file in bytes",
    "virtual_size": "Virtual size of image in bytes",
    "container_format": "Format of the container",
    "disk_format": "Format of the disk",
    "created_at": "Date and time of image registration",
    "updated_at": "Date and time of the last image modification",
    "min_ram": "Amount of ram (in MB) required to boot image.",
    "min_disk": "Amount of disk space (in GB) required to boot image.",
}


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PROPERTY_PREFIX)


@dataclasses.dataclass(frozen=True)
class OperatorSchema:
    """What an operator's ``schema-image.json`` adds: custom properties with their schemas,
    and the names every new image must carry."""

    properties: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    required: tuple[str, ...] = ()


def load_operator_schema(path: Path | None) -> OperatorSchema:
    """The operator's file read and checked; Invalid naming the file and the problem (a
    configuration error at start-up). No path: nothing added."""
    if path is None:
        return OperatorSchema()
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise Invalid(f"image_schema_file {path}: cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise Invalid(f"image_schema_file {path}: not JSON: {exc}") from exc
    try:
        return parse_operator_schema(document)
    except SchemaError as exc:
        raise Invalid(f"image_schema_file {path}: {exc}") from exc


def parse_operator_schema(document: Any) -> OperatorSchema:
    """Glance's format: an object of property schemas; a ``required`` key holding a list of
    names (rather than a property schema) is the required list."""
    if not isinstance(document, dict):
        raise SchemaError("must be a JSON object of property schemas")
    properties = dict(document)
    required: Any = []
    if isinstance(properties.get("required"), list):
        required = properties.pop("required")
    base = _base_properties((), ())
    for name, schema in properties.items():
        where = f"property {name!r}"
        if is_reserved(name) or name in ("locations", "tags"):
            raise SchemaError(f"{where} is reserved")
        if len(name) > MAX_KEY_LENGTH or not name:
            raise SchemaError(f"{where}: names are 1 to {MAX_KEY_LENGTH} characters")
        check_schema(schema, where)
        if name in base:
            # Glance refuses a redefinition of a base property (formats aside, whose enums
            # are the deployment's): the base definition is what clients rely on.
            raise SchemaError(f"{where} conflicts with the base property of that name")
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not set(kinds) <= {"string", "null"} or "string" not in kinds:
            # Custom properties are stored and rendered as strings; any other type would
            # make every image carrying one fail the clients' validation.
            raise SchemaError(f"{where}: custom properties are strings ('type' may be "
                              "\"string\" or [\"null\", \"string\"])")
    if not all(isinstance(r, str) for r in required):
        raise SchemaError("'required' must be a list of property names")
    for name in required:
        if name in READ_ONLY or is_reserved(name) or name == "locations":
            raise SchemaError(f"'required' names {name!r}, which a client cannot give")
    return OperatorSchema(
        {k: {**v, "is_base": False} for k, v in properties.items()},
        tuple(dict.fromkeys(required)),
    )


class ImageSchemas:
    """The four schema documents of one deployment, built once (app.py) and shared by the
    v2 handlers and codecs; the document methods return fresh copies a caller may change."""

    def __init__(self, disk_formats: tuple[str, ...], container_formats: tuple[str, ...],
                 operator: OperatorSchema | None = None) -> None:
        operator = operator or OperatorSchema()
        self.base: Mapping[str, Mapping[str, Any]] = _base_properties(
            disk_formats, container_formats)
        self.custom: Mapping[str, Mapping[str, Any]] = operator.properties
        self.required: tuple[str, ...] = operator.required
        # Operator properties that may be null: an image shows a null one as null (the
        # renderer shows other null properties, which only v1 can store, as "").
        self.null_properties: frozenset[str] = frozenset(
            name for name, schema in self.custom.items()
            if "null" in (schema["type"] if isinstance(schema["type"], list)
                          else [schema["type"]]))
        self._image = _image_document(self.base, self.custom, self.required)
        self._member = _member_document()

    # -- the documents ------------------------------------------------------------------------

    def image(self) -> dict[str, Any]:
        return copy.deepcopy(self._image)

    def images(self) -> dict[str, Any]:
        return _collection("images", self.image())

    def member(self) -> dict[str, Any]:
        return copy.deepcopy(self._member)

    def members(self) -> dict[str, Any]:
        return _collection("members", self.member())

    def document(self, name: str) -> dict[str, Any] | None:
        """The document ``GET /v2/schemas/{name}`` answers; None for an unknown name (404)."""
        build = {"image": self.image, "images": self.images, "member": self.member,
                 "members": self.members}.get(name)
        return None if build is None else build()

    # -- what bodies are checked against --------------------------------------------------------

    def is_base(self, name: str) -> bool:
        """A base attribute (present on every image, never removed), not a custom property."""
        return name in self.base

    def check_value(self, name: str, value: Any) -> None:
        """Invalid (400) unless ``value`` is one the image schema allows for ``name``: a base
        attribute's type, enum and length, an operator property's rule, or a string."""
        schema = self.base.get(name) or self.custom.get(name) or _CUSTOM_VALUE
        found = problem(value, schema)
        if found is not None:
            raise Invalid(f"Provided object does not match schema 'image': {found} "
                          f"(in {_short(name)})")

    def check_required(self, document: Mapping[str, Any]) -> None:
        for name in self.required:
            if name not in document:
                raise Invalid(f"Provided object does not match schema 'image': "
                              f"'{name}' is a required property")


_CUSTOM_VALUE: Mapping[str, Any] = {"type": "string"}


def _base_properties(disk_formats: tuple[str, ...],
                     container_formats: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    properties = {f.name: _field_schema(f, disk_formats, container_formats)
                  for f in FIELDS if f.name not in _NOT_SHOWN}
    properties["tags"] = {
        "type": "array", "description": "List of strings related to the image",
        "items": {"type": "string", "maxLength": MAX_TAG_LENGTH},
    }
    for name, description in (
        ("direct_url", "URL to access the image file kept in external store"),
        ("self", "An image self url"),
        ("file", "An image file url"),
        ("stores", "Store in which image data resides. Only present when the operator has "
                   "enabled multiple stores. May be a comma-separated list of store "
                   "identifiers."),
        ("schema", "An image schema url"),
    ):
        properties[name] = {"type": "string", "readOnly": True, "description": description}
    properties["locations"] = _LOCATIONS
    return properties


def _field_schema(field: Field, disk_formats: tuple[str, ...],
                  container_formats: tuple[str, ...]) -> dict[str, Any]:
    kind = field.kind
    json_type = {Kind.INTEGER: "integer", Kind.BOOLEAN: "boolean"}.get(kind, "string")
    schema: dict[str, Any] = {"type": ["null", json_type] if field.nullable else json_type}
    if field.setter in (Setter.SERVER, Setter.DECLARED):
        schema["readOnly"] = True
    schema["description"] = _DESCRIPTIONS.get(field.name, field.name)
    if kind is Kind.STRING and field.max_length is not None:
        schema["maxLength"] = field.max_length
    elif kind is Kind.UUID:
        schema["pattern"] = UUID_PATTERN
    elif kind is Kind.STATUS:
        schema["enum"] = [str(s) for s in Status]
    elif kind is Kind.VISIBILITY:
        schema["enum"] = [str(v) for v in Visibility]
    elif kind is Kind.DISK_FORMAT:
        schema["enum"] = [None, *disk_formats]
    elif kind is Kind.CONTAINER_FORMAT:
        schema["enum"] = [None, *container_formats]
    return schema


_LOCATIONS: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "maxLength": 255},
            "metadata": {"type": "object"},
            "validation_data": {
                "description": "Values to be used to populate the corresponding image "
                               "properties. If the image status is not 'queued', values "
                               "must exactly match those already contained in the image "
                               "properties.",
                "type": "object",
                "writeOnly": True,
                "additionalProperties": False,
                "properties": {
                    "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
                    "os_hash_algo": {"type": "string", "maxLength": 64},
                    "os_hash_value": {"type": "string", "maxLength": 128},
                },
                "required": ["os_hash_algo", "os_hash_value"],
            },
        },
        "required": ["url", "metadata"],
    },
    "description": "A set of URLs to access the image file kept in external store",
}


def _image_document(base: Mapping[str, Any], custom: Mapping[str, Any],
                    required: tuple[str, ...]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "image",
        "properties": {**copy.deepcopy(dict(base)), **copy.deepcopy(dict(custom))},
        # Glance's PermissiveSchema: any other key is a custom property, and a string.
        "additionalProperties": {"type": "string"},
    }
    if required:
        document["required"] = list(required)
    document["links"] = [
        {"rel": "self", "href": "{self}"},
        {"rel": "enclosure", "href": "{file}"},
        {"rel": "describedby", "href": "{schema}"},
    ]
    return document


def _member_document() -> dict[str, Any]:
    return {
        "name": "member",
        "properties": {
            "member_id": {"type": "string",
                          "description": "An identifier for the image member (tenantId)"},
            "image_id": {"type": "string", "description": "An identifier for the image",
                         "pattern": UUID_PATTERN},
            "created_at": {"type": "string",
                           "description": "Date and time of image member creation"},
            "updated_at": {"type": "string", "description": "Date and time of last "
                                                            "modification of image member"},
            "status": {"type": "string", "description": "The status of this image member",
                       "enum": [str(s) for s in MemberStatus]},
            "schema": {"type": "string"},
        },
        "additionalProperties": False,
    }


def _collection(name: str, item: dict[str, Any]) -> dict[str, Any]:
    """Glance's CollectionSchema around an item schema."""
    return {
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def _short(name: str) -> str:
    return repr(name) if len(name) <= 60 else repr(f"{name[:60]}...")

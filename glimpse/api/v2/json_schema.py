"""The part of JSON Schema the v2 documents use, checked here rather than by a general library.

The image schema and an operator's ``schema-image.json`` use a handful of keywords (types,
enums, string lengths and patterns, arrays of items, objects with properties); checking just
those keeps every request's validation a few dictionary lookups, with messages of our own
that never echo more than a short prefix of a hostile value. An operator file that uses any
other assertion keyword is refused at start-up (``check_schema``), so no rule is silently
ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from glimpse.redaction import redact_urls

# Keywords that describe and assert nothing (glanceclient reads ``is_base``).
ANNOTATIONS = frozenset({
    "description", "title", "readOnly", "writeOnly", "is_base", "default", "format",
    "examples", "$comment",
})
ASSERTIONS = frozenset({
    "type", "enum", "pattern", "maxLength", "minLength", "minimum", "maximum", "items",
    "maxItems", "minItems", "properties", "additionalProperties", "required",
})
TYPES = frozenset({"null", "string", "integer", "number", "boolean", "array", "object"})
_SHOWN = 60  # characters of a value a message shows


class SchemaError(ValueError):
    """A schema document uses something this checker does not implement (a start-up error)."""


def check_schema(schema: Any, where: str) -> None:
    """Refuse a schema this module cannot apply faithfully; ``where`` names it in messages."""
    if not isinstance(schema, Mapping):
        raise SchemaError(f"{where} must be a JSON object")
    unknown = sorted(set(schema) - ANNOTATIONS - ASSERTIONS)
    if unknown:
        raise SchemaError(f"{where} uses unsupported keyword(s) {', '.join(unknown)} "
                          f"(supported: {', '.join(sorted(ASSERTIONS))})")
    kinds = schema.get("type")
    names = kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []
    if not names or not all(isinstance(k, str) and k in TYPES for k in names):
        raise SchemaError(f"{where}: 'type' must be one of {', '.join(sorted(TYPES))} "
                          "or a list of them")
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise SchemaError(f"{where}: 'enum' must be a list")
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise SchemaError(f"{where}: 'pattern' must be a string")
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            raise SchemaError(f"{where}: 'pattern' is not a regular expression: {exc}") from exc
    for key in ("maxLength", "minLength", "maxItems", "minItems"):
        if key in schema and (not _is_int(schema[key]) or schema[key] < 0):
            raise SchemaError(f"{where}: '{key}' must be a non-negative integer")
    for key in ("minimum", "maximum"):
        if key in schema and not _is_number(schema[key]):
            raise SchemaError(f"{where}: '{key}' must be a number")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise SchemaError(f"{where}: 'properties' must be an object")
    for name, sub in properties.items():
        check_schema(sub, f"{where}.properties.{name}")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        check_schema(extra, f"{where}.additionalProperties")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{where}: 'required' must be a list of names")


def problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not match ``schema`` (checked by ``check_schema``), or None."""
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(value, k) for k in names):
            return f"{shown(value)} is not of type {', '.join(repr(k) for k in names)}"
    if "enum" in schema and not _one_of(value, schema["enum"]):
        return f"{shown(value)} is not one of {schema['enum']!r}"
    if isinstance(value, str):
        return _string_problem(value, schema)
    if _is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{shown(value)} is less than the minimum of {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{shown(value)} is greater than the maximum of {schema['maximum']}"
    if isinstance(value, list):
        return _array_problem(value, schema)
    if isinstance(value, dict):
        return _object_problem(value, schema)
    return None


def shown(value: Any) -> str:
    """A value as a message shows it: its repr, cut short, and without the credentials of any
    URL in it (a location's URL may carry some)."""
    text = redact_urls(repr(value))
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


def _string_problem(value: str, schema: Mapping[str, Any]) -> str | None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{shown(value)} is too long (at most {schema['maxLength']} characters)"
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"{shown(value)} is too short (at least {schema['minLength']} characters)"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return f"{shown(value)} does not match {schema['pattern']!r}"
    return None


def _array_problem(value: list[Any], schema: Mapping[str, Any]) -> str | None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"the array has more than {schema['maxItems']} items"
    if "minItems" in schema and len(value) < schema["minItems"]:
        return f"the array has fewer than {schema['minItems']} items"
    items = schema.get("items")
    if items is not None:
        for index, item in enumerate(value):
            found = problem(item, items)
            if found is not None:
                return f"{found} (item {index})"
    return None


def _object_problem(value: dict[str, Any], schema: Mapping[str, Any]) -> str | None:
    for name in schema.get("required", ()):
        if name not in value:
            return f"{name!r} is a required property"
    properties: Mapping[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        sub = properties.get(name)
        if sub is None:
            if extra is False:
                return f"additional property {shown(name)} is not allowed"
            if extra is True:
                continue
            sub = extra
        found = problem(item, sub)
        if found is not None:
            return f"{found} (in {shown(name)})"
    return None


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        # JSON has no integer type of its own: 1.0 is written as a float and refused, as a
        # count must be a whole number the database can hold as written.
        return _is_int(value)
    if kind == "number":
        return _is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _one_of(value: Any, enum: list[Any]) -> bool:
    # A string equals only strings, whatever the rest: list containment (in C) is JSON's
    # equality then, where comparing value by value cost a tenth of a create's event-loop time.
    if isinstance(value, str):
        return value in enum
    return any(_same(value, e) for e in enum)


def _same(value: Any, expected: Any) -> bool:
    """JSON equality: true is not 1, whatever Python says."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return bool(value == expected)

"""Turning a store's option table (as configured) into a driver's typed options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from glimpse.errors import Invalid
from glimpse.scalars import Scalar, scalar

T = TypeVar("T")


def parse_options(cls: type[T], store: str, raw: Mapping[str, Scalar]) -> T:
    """Build the options dataclass ``cls`` from ``raw``, converting by each field's type.

    Fields whose name ends in ``_size`` take sizes with suffixes. A ValueError from the
    dataclass itself (its ``__post_init__`` checking ranges and choices) becomes Invalid
    naming the store. Error messages name the store and the option but never echo a value:
    it may be a secret.
    """
    assert dataclasses.is_dataclass(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise Invalid(f"Store {store!r}: unknown option(s) {', '.join(unknown)} "
                      f"(known: {', '.join(sorted(fields)) or 'none'})")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in raw:
            if field.default is dataclasses.MISSING:
                raise Invalid(f"Store {store!r}: option {name} is required")
            continue
        values[name] = _convert(store, name, field.default, raw[name])
    try:
        return cls(**values)
    except ValueError as exc:
        raise Invalid(f"Store {store!r}: {exc}") from exc


def _convert(store: str, name: str, default: Any, value: Scalar) -> Any:
    size = name.endswith("_size")
    if not size and not isinstance(default, int | float):
        return str(value)
    try:
        return scalar(default, value, size=size)
    except (Invalid, ValueError, TypeError) as exc:
        raise Invalid(f"Store {store!r}: invalid value for option {name}") from exc

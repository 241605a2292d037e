"""Metadata injection: properties the operator adds to every imported image (Glance's
inject_image_metadata plugin: ``inject_metadata_properties`` and ``ignore_user_roles``)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from glimpse.domain.fields import BY_NAME
from glimpse.domain.validation import validate_properties, validate_property_values
from glimpse.errors import Invalid


def parse_properties(entries: Iterable[str]) -> dict[str, str]:
    """``key:value`` entries (Glance's spelling) as properties; Invalid naming a bad one."""
    found: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise Invalid(f"import_inject_properties: {entry!r} is not key:value")
        if key in BY_NAME:
            raise Invalid(f"import_inject_properties: {key} is an image attribute, "
                          "not a property")
        found[key] = value
    validate_properties(found)
    validate_property_values(found)
    return found


class MetadataInjection:
    def __init__(self, properties: Mapping[str, str], ignore_roles: Collection[str]) -> None:
        self.properties = dict(properties)
        self.ignore_roles = frozenset(ignore_roles)

    def for_roles(self, roles: Collection[str]) -> dict[str, str]:
        """The properties to add to an image imported by a user with ``roles``: none when
        one of them is ignored (Glance: admins' imports are left as they are)."""
        if self.ignore_roles & set(roles):
            return {}
        return dict(self.properties)

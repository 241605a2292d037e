"""Image ids: one spelling per UUID, and finding an image by any spelling of its id.

A client may write a UUID in upper case or (v1) without hyphens. Stored as written, on a
case-sensitive database (SQLite, PostgreSQL, MariaDB with its binary collation) an upper-case
copy of an existing id would create a second image (spec v2-api.md §7 item 14). So a new
image's id is stored canonical (lower case, hyphenated) and a lookup tries the canonical
spelling after the one given: rows written as given before ids were made canonical are
still found by exactly that spelling.
"""

from __future__ import annotations

import uuid

from glimpse.domain.fields import is_uuid_like
from glimpse.domain.model import Image
from glimpse.domain.ports import ImageRepository


def canonical(value: str) -> str:
    """The canonical spelling of a UUID-like id; any other string unchanged (it is refused
    or found nowhere elsewhere)."""
    if not is_uuid_like(value):
        return value
    return str(uuid.UUID(value))


def find(repo: ImageRepository, image_id: str) -> Image | None:
    """The image this id names, deleted ones included; None if none does. Every stored id is
    UUID-like (checked on create), so another string names none and costs no query."""
    if not is_uuid_like(image_id):
        return None
    image = repo.get(image_id)
    if image is None:
        spelled = canonical(image_id)
        if spelled != image_id:
            image = repo.get(spelled)
    return image

"""Interfaces the domain needs from the outside: implemented by db/ and stores/."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO, Protocol

from glimpse.domain.model import Image, ListQuery, Member, Status


class ImageRepository(Protocol):
    def create(self, image: Image) -> None:
        """Insert a new image with its properties. Conflict if the id was ever used."""

    def get(self, image_id: str) -> Image | None:
        """The image with that id, deleted ones included."""

    def set_fields(
        self, image_id: str, fields: dict[str, Any], *, expected_status: Status | None = None
    ) -> bool:
        """Change core fields, only if the image has ``expected_status`` when given; whether
        it did. For callers that need no fresh copy of the image (no reload)."""
        ...

    def update(
        self,
        image_id: str,
        fields: dict[str, Any],
        *,
        properties: dict[str, str | None] | None = None,
        purge_properties: bool = False,
        expected_status: Status | None = None,
        check_property_count: Callable[[int], None] | None = None,
    ) -> Image | None:
        """Change fields and properties in one transaction.

        ``properties`` are set (replacing same-named ones); with ``purge_properties`` every
        other property is removed. Changes are applied to the stored set, not to an earlier
        read, so concurrent updates of one image do not lose each other's properties.
        ``check_property_count`` gets the resulting count and may raise to undo it all.

        With ``expected_status``, change nothing and return None unless the image is still in
        that status: the compare-and-swap every status change goes through.
        """

    def mark_deleted(
        self, image_id: str, status: Status, when: dt.datetime, expected_status: Status
    ) -> Image | None:
        """Soft-delete: set status, deleted flags, drop properties and memberships."""

    def list_images(self, query: ListQuery) -> list[Image]: ...

    def images_holding_data(self, statuses: list[str] | None = None) -> list[Image]:
        """Images that have a store (and so may own a stored object), in these statuses if
        given."""

    def find_stale_uploads(self, before: dt.datetime) -> list[Image]:
        """Images still ``saving`` whose ``updated_at`` (the upload heartbeat) is older."""

    def usage(self, owner: str | None, exclude_id: str) -> int:
        """Bytes held by the owner's live (not killed, not deleted) images, but one."""

    def leftovers(self, stores: Sequence[str], limit: int) -> list[Image]:
        """Killed or deleted images that still record a location in one of ``stores``: their
        data could not be deleted when they ended."""

    def members(self, image_id: str) -> list[Member]: ...

    def is_member(self, image_id: str, member_id: str) -> bool: ...

    def set_member(
        self,
        image_id: str,
        member_id: str,
        can_share: bool | None,
        check_member_count: Callable[[int], None] | None = None,
    ) -> None:
        """Create the membership (can_share defaults to False) or update can_share if given.
        ``check_member_count`` gets the resulting count and may raise to undo it. NotFound if
        the image is deleted meanwhile; membership changes of one image apply one at a time."""

    def remove_member(self, image_id: str, member_id: str) -> bool:
        """False when there was no such membership; NotFound if the image is deleted."""

    def replace_members(self, image_id: str, members: list[tuple[str, bool | None]]) -> None:
        """Make the memberships exactly ``members``; NotFound if the image is deleted."""

    def shared_with(self, member_id: str) -> list[tuple[Member, str | None]]:
        """Memberships naming member_id on images that are not deleted, with each image's
        owner."""


class Store(Protocol):
    """A place that holds image data. It only moves bytes: no hashing, no limits."""

    name: str
    writable: bool

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write all chunks under key and return the byte count. If the iterable or the write
        fails, nothing remains under key (the exception propagates)."""

    def open(self, key: str, offset: int = 0) -> Iterator[bytes]: ...

    def object_keys(self) -> Iterator[str]:
        """Every object key in the store (for audits); not partial writes in progress."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    def size(self, key: str) -> int: ...

    def open_file(self, key: str) -> BinaryIO | None:
        """The data as an open local file, for zero-copy sending; None when the store is not
        local. The caller closes it."""


class ExternalSource(Protocol):
    """Read-only data behind an external URL (``x-image-meta-location``, copy-from)."""

    def validate(self, url: str) -> None: ...

    def size(self, url: str) -> int | None: ...

    def open(self, url: str, offset: int = 0) -> Iterator[bytes]: ...

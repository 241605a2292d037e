"""Interfaces the domain needs from the outside: implemented by db/ and stores/."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from glimpse.domain.model import Changes, Image, ListQuery, Location, Member, MemberStatus, Status
from glimpse.domain.quotas import Usage

# A quota check run inside a claim's transaction (domain/quotas.py Admission): given the
# owner's usage, read under the owner's lock with the image counted, it raises OverLimit to
# undo everything, or returns the bytes the image's upload reserves (None: none).
Admit = Callable[[Usage], int | None]


class ProcessIdentity(Protocol):
    """Who runs an upload: the node (a host and its data directory) and this process's
    incarnation on it (new at every start), recorded on each claim; and, for the other
    incarnations of the same node, whether their process has ended."""

    @property
    def node(self) -> str: ...

    @property
    def incarnation(self) -> str: ...

    def ended(self, incarnation: str) -> bool:
        """Whether the process of this node's ``incarnation`` is gone (never this one's)."""
        ...

    def forget_ended(self) -> int:
        """Drop what this node keeps about incarnations whose process ended; how many."""
        ...


class ImageRepository(Protocol):
    def create(self, image: Image, admit: Admit | None = None) -> None:
        """Insert a new image with its properties, tags and locations. Conflict if the id was
        ever used. ``admit``: its owner's quotas, checked in the same transaction."""

    def get(self, image_id: str) -> Image | None:
        """The image with that id, deleted ones included."""

    def set_fields(
        self, image_id: str, fields: dict[str, Any], *, expected_status: Status | None = None,
        expected_incarnation: str | None = None,
    ) -> bool:
        """Change core fields, only if the image has ``expected_status`` when given, and is
        claimed by ``expected_incarnation`` when given; whether it did. For callers that need
        no fresh copy of the image (no reload)."""
        ...

    def update(
        self,
        image_id: str,
        changes: Changes,
        *,
        expected_status: Status | None = None,
        check_counts: Callable[[int, int], None] | None = None,
        add_locations: Sequence[Location] = (),
        admit: Admit | None = None,
    ) -> Image | None:
        """Apply ``changes`` (fields, properties, tags) and add locations in one transaction;
        the image as it then is. ``admit``: the owner's quotas, checked on the result in the
        same transaction (an upload's claim), its reservation recorded.

        Changes are applied to the stored state, not to an earlier read, so concurrent updates
        of one image do not lose each other's properties or tags. ``check_counts`` gets the
        resulting property and tag counts and may raise to undo it all.

        With ``expected_status``, change nothing and return None unless the image is still in
        that status: the compare-and-swap every status change goes through.
        """

    def remove_location(self, image_id: str, store: str, url: str) -> None:
        """Forget one location (its data is gone)."""

    def mark_deleted(
        self, image_id: str, status: Status, when: dt.datetime, expected_status: Status
    ) -> Image | None:
        """Soft-delete: set status, deleted flags, drop properties, tags and memberships (the
        locations stay until their data is deleted)."""

    def list_images(self, query: ListQuery) -> list[Image]:
        """A page of images with their properties and tags; without their locations (no API
        lists them, and they cost a lookup per image)."""

    def images_holding_data(self, statuses: list[str] | None = None) -> list[Image]:
        """Images that have a location (and so may own a stored object), in these statuses if
        given."""

    def find_stale_uploads(self, before: dt.datetime) -> list[Image]:
        """Images still ``saving`` or ``importing`` (an external location being verified) whose
        ``updated_at`` (the heartbeat) is older."""

    def find_node_uploads(self, node: str) -> list[Image]:
        """Images still ``saving`` or ``importing`` whose claim names ``node``."""

    def usage(self, owner: str | None, exclude_id: str) -> int:
        """Bytes held by the owner's live (not killed, not deleted) images, but one."""

    def quota_usage(self, owner: str | None) -> Usage:
        """The owner's usage of every quota resource (no lock: a report)."""

    def leftovers(self, stores: Sequence[str], limit: int) -> list[Image]:
        """Killed or deleted images that still have a location in one of ``stores``: their
        data could not be deleted when they ended; and images with a location being deleted
        (``LocationStatus.PENDING_DELETE``) in one of them."""

    def members(self, image_id: str) -> list[Member]: ...

    def is_member(self, image_id: str, member_id: str) -> bool:
        """Whether member_id has a membership of the image, of any status."""

    def set_member(
        self,
        image_id: str,
        member_id: str,
        can_share: bool | None,
        check_member_count: Callable[[int], None] | None = None,
        status: MemberStatus | None = None,
    ) -> None:
        """Create the membership (can_share defaults to False, status to accepted) or update
        can_share and status where given.
        ``check_member_count`` gets the resulting count and may raise to undo it. NotFound if
        the image is deleted meanwhile; membership changes of one image apply one at a time."""

    def add_member(
        self,
        image_id: str,
        member_id: str,
        status: MemberStatus,
        check_member_count: Callable[[int], None] | None = None,
    ) -> Member:
        """Create the membership with ``status`` (can_share false) and return it. Conflict if
        it exists; ``check_member_count`` as for set_member; NotFound if the image is
        deleted."""

    def set_member_status(
        self, image_id: str, member_id: str, status: MemberStatus
    ) -> Member | None:
        """Set an existing membership's status (and updated_at); the membership then, or None
        when there is none. NotFound if the image is deleted."""

    def remove_member(self, image_id: str, member_id: str) -> bool:
        """False when there was no such membership; NotFound if the image is deleted."""

    def replace_members(
        self, image_id: str, members: list[tuple[str, bool | None]], status: MemberStatus
    ) -> None:
        """Make the memberships exactly ``members`` (new ones with ``status``); NotFound if the
        image is deleted."""

    def shared_with(self, member_id: str) -> list[tuple[Member, str | None]]:
        """Memberships naming member_id on images that are not deleted nor private (where
        memberships have no effect), with each image's owner."""


class Store(Protocol):
    """A place that holds image data. It only moves bytes: no hashing, no limits."""

    name: str
    writable: bool

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write all chunks under key and return the byte count. If the iterable or the write
        fails, nothing remains under key (the exception propagates)."""

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The object's bytes from ``offset`` on, ``length`` of them (to the end when None;
        a length past the end stops there), in chunks of bounded size. The store reads from
        that offset (a seek, a ranged request): never by reading and dropping the bytes
        before it. Callers keep ``offset`` below the object's size (0 for an empty object)
        and ``length`` None or positive. Errors the store reports at once are raised here,
        errors while reading (a connection cut mid-object) by the iterator."""

    def object_keys(self) -> Iterator[str]:
        """Every object key in the store (for audits); not partial writes in progress."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    def size(self, key: str) -> int: ...

    def open_file(self, key: str) -> BinaryIO | None:
        """The data as an open local file, for zero-copy sending; None when the store is not
        local. The caller closes it."""


class SharedStore(Protocol):
    """A store whose objects other services use in place: Ceph RBD, whose images nova and
    cinder clone copy-on-write. Such a store names its objects by URLs those services
    understand (recorded as the locations, and taken as keys), and an object they depend on
    is not deleted."""

    def location_url(self, key: str) -> str:
        """The URL other services know the object of ``key`` by."""

    def in_use(self, key: str) -> bool:
        """Whether another service depends on the object (a clone of it exists)."""


def shared_store(store: Store | None) -> SharedStore | None:
    """``store`` as a SharedStore when it is one. Asked by attribute, not by isinstance: a
    wrapper that forwards attributes to the store it wraps (stores.observed) is one too, and a
    runtime-checkable Protocol does not look past it on every Python."""
    if callable(getattr(store, "location_url", None)) and callable(getattr(store, "in_use", None)):
        return cast(SharedStore, store)
    return None


class SizedStore(Protocol):
    """A store that knows how much room it has: a filesystem, a Ceph cluster (object stores
    such as Swift and S3 do not say)."""

    def space(self) -> tuple[int, int] | None:
        """(free, total) bytes, what operators read in ``glimpse status``; None when the
        store cannot tell now."""


def sized_store(store: Store | None) -> SizedStore | None:
    """``store`` as a SizedStore when it is one (asked by attribute, as shared_store)."""
    if callable(getattr(store, "space", None)):
        return cast(SizedStore, store)
    return None


class ExternalSource(Protocol):
    """Read-only data behind an external URL (``x-image-meta-location``, copy-from)."""

    def validate(self, url: str) -> None: ...

    def size(self, url: str) -> int | None: ...

    def open(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """As Store.open: a remote that does not honour the range is an error, never taken
        for the bytes asked for."""


class Notifier(Protocol):
    """Where the domain reports what happened (Glance's notifications, docs/notifications.md):
    called once per event, after the change it reports is committed. It must return at once
    and never raise: a notification is never a reason for an operation to fail or wait."""

    def notify(self, event_type: str, payload: dict[str, Any] | str,
               error: bool = False) -> None:
        """One event: its type (``image.create``...), Glance's payload for it (a message
        string for a failed upload, as Glance sends), and whether it reports an error (sent
        at the ERROR priority instead of INFO)."""


@dataclass(frozen=True)
class TransformOutcome:
    """What an import transform made of a staged image: the file to store now (the staged one
    when nothing changed) and the image fields it learnt (None: unchanged)."""

    path: Path
    disk_format: str | None = None
    container_format: str | None = None
    virtual_size: int | None = None
    extra_properties: Mapping[str, str] = field(default_factory=dict)


class ImportTransform(Protocol):
    """The import plugins (decompression, conversion, metadata injection) as one step between
    staging and storing an imported image. It may write at most one scratch copy into
    ``scratch_dir`` and must refuse hostile input with a domain exception naming the cause."""

    def apply(self, staged: Path, scratch_dir: Path, image: Image, *,
              roles: Collection[str] = ()) -> TransformOutcome:
        """``roles``: the importing user's (metadata injection spares some roles)."""
        ...

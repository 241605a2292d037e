"""The image cache as the domain sees it: what may be cached, what must leave the cache, and
the operator's cache API (list, queue for prefetch, delete, clear, prune, nodes).

The cache itself (glimpse.cache) only keeps verified copies of bytes on a node's disk; the
rules live here. A cached copy is only ever reached through ``ImageService.open_data``, after
the image's visibility, policy and status checks, so a node whose copy is stale (the image was
deleted or deactivated elsewhere) still refuses the download; its sweep then drops the copy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol

from glimpse.domain.model import Image, Principal, Status
from glimpse.domain.policy import Policy
from glimpse.domain.ports import ImageRepository
from glimpse.domain.progress import NO_PROGRESS, ProgressObserver
from glimpse.errors import Invalid, NotFound

# Given (offset, length or None for the rest), the image's bytes from its store.
Source = Callable[[int, "int | None"], Iterator[bytes]]


@dataclasses.dataclass(frozen=True)
class CachedImage:
    """One image held in a node's cache (Glance's ``cached_images`` entry)."""

    image_id: str
    size: int
    hits: int
    last_accessed: dt.datetime
    last_modified: dt.datetime


@dataclasses.dataclass(frozen=True)
class CacheRead:
    """A read through the cache: a verified cache file to send from the read's offset (the
    caller closes it), or chunks of exactly the bytes asked for."""

    file: BinaryIO | None = None
    chunks: Iterator[bytes] | None = None


@dataclasses.dataclass(frozen=True)
class Pruned:
    files: int
    bytes: int


class ImageCache(Protocol):
    """A node's cache of verified image data (implemented by glimpse.cache.local)."""

    def read(self, image: Image, offset: int, length: int, source: Source,
             fill: bool) -> CacheRead:
        """``length`` bytes at ``offset``: from an open verified cache file, or chunks. On a
        miss, with ``fill``, the whole image is read from ``source`` once per node and kept
        if its hashes match the image's."""
        ...

    def warm(self, image: Image, source: Source) -> bool:
        """Fill the cache with the image now (a prefetch); whether it is cached after."""
        ...

    def discard(self, image_id: str) -> bool:
        """Drop the image from this node's cache and queue; whether there was anything."""
        ...

    def cached(self) -> list[CachedImage]: ...

    def queued(self) -> list[str]: ...

    def queue(self, image_id: str) -> None:
        """Ask for the image to be prefetched soon (the prefetcher reads the queue)."""
        ...

    def clear_cached(self, progress: ProgressObserver = NO_PROGRESS) -> int:
        """Drop every entry; how many. ``progress`` is told of each."""
        ...

    def clear_queued(self) -> int: ...

    def prune(self, *, progress: ProgressObserver = NO_PROGRESS) -> Pruned:
        """Evict least recently used entries until the cache is within its size limit;
        ``progress`` is told of each entry evicted and its size."""
        ...

    def clean(self) -> int:
        """Remove partial fills no process is writing; how many."""
        ...

    def held_ids(self) -> list[str]:
        """Ids of the images with an entry on disk (for the sweep)."""
        ...

    def nodes(self, image_id: str) -> list[str]:
        """The URLs of the nodes whose cache holds the image (from the database)."""
        ...


def is_cacheable(image: Image) -> bool:
    """Data the cache can verify: an active image of known size with a hash to check."""
    return (image.status is Status.ACTIVE and bool(image.size)
            and bool(image.checksum or image.os_hash_value))


def stale(image: Image | None) -> bool:
    """Whether a node's copy of the image must go: the image is gone, deleted, or no longer
    active (deactivated, killed, requeued)."""
    return image is None or image.deleted or image.status is not Status.ACTIVE


def canonical_id(image_id: str) -> str | None:
    """The id as the cache names entries (a lower-case UUID), or None for anything else: no
    client text becomes a path."""
    try:
        canonical = str(uuid.UUID(image_id))
    except (ValueError, TypeError, AttributeError):
        return None
    return canonical if canonical == image_id.lower() else None


# Glance's values: empty (or no header) for both; anything else is refused, "both" too.
CLEAR_TARGETS = ("", "cache", "queue")


class CacheService:
    """The cache API's rules (Glance's CacheController): admin-only by policy, checked before
    anything is looked up (Glance looks the image up first, which tells a caller refused the
    API which image ids exist); an image is looked up without visibility checks, as Glance
    does: the admin manages the node."""

    def __init__(self, repo: ImageRepository, cache: ImageCache, policy: Policy,
                 prefetch: Callable[[], None] = lambda: None) -> None:
        self._repo = repo
        self.cache = cache
        self.policy = policy
        self._prefetch = prefetch  # wakes the prefetcher

    def state(self, principal: Principal) -> tuple[list[CachedImage], list[str]]:
        self.policy.enforce("cache_list", principal)
        return self.cache.cached(), self.cache.queued()

    def queue(self, principal: Principal, image_id: str) -> None:
        self.policy.enforce("cache_image", principal)
        image = self._image(image_id)
        if image is None:
            raise NotFound(f"Image {image_id} not found.")
        if image.status is not Status.ACTIVE:
            raise Invalid("Only images with status active can be targeted for queueing")
        canonical = canonical_id(image.id)
        assert canonical is not None  # an image found by a canonical id has one
        self.cache.queue(canonical)
        self._prefetch()

    def delete(self, principal: Principal, image_id: str) -> None:
        """Drop the image from the cache and the queue; NotFound when it is neither an image
        nor anything the cache holds."""
        self.policy.enforce("cache_delete", principal)
        canonical = canonical_id(image_id)
        image = self._image(image_id)
        if image is None and (canonical is None or (
                canonical not in self.cache.queued() and canonical not in self.cache.held_ids())):
            raise NotFound(f"Image {image_id} not found.")
        if canonical is not None:
            self.cache.discard(canonical)

    def clear(self, principal: Principal, target: str,
              progress: ProgressObserver = NO_PROGRESS) -> tuple[int | None, int | None]:
        """Empty the cache, the queue or both (``target`` ""); the counts removed
        (None: not asked)."""
        self.policy.enforce("cache_delete", principal)
        target = target.strip().lower()
        if target not in CLEAR_TARGETS:
            raise Invalid("If provided 'x-image-cache-clear-target' must be 'cache', 'queue' "
                          "or empty string.")
        cached = self.cache.clear_cached(progress) if target != "queue" else None
        queued = self.cache.clear_queued() if target != "cache" else None
        return cached, queued

    def prune(self, principal: Principal, progress: ProgressObserver = NO_PROGRESS) -> Pruned:
        self.policy.enforce("cache_prune", principal)
        return self.cache.prune(progress=progress)

    def clean(self, principal: Principal) -> int:
        self.policy.enforce("cache_clean", principal)
        return self.cache.clean()

    def nodes(self, principal: Principal, image_id: str) -> list[str]:
        self.policy.enforce("list_cached_nodes", principal)
        image = self._image(image_id)
        if image is None:
            raise NotFound(f"Image {image_id} not found.")
        return self.cache.nodes(image.id)

    def _image(self, image_id: str) -> Image | None:
        canonical = canonical_id(image_id)
        if canonical is None:
            return None
        image = self._repo.get(canonical)
        return None if image is None or image.deleted else image

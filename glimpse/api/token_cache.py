"""The in-process cache of validated tokens (keystone mode).

Keyed by a SHA-256 of the token, never the token itself, so neither memory dumps of the keys
nor logs of them hold a usable credential. Bounded in entries (least recently used goes first),
an entry lives at most ``ttl`` seconds and never past the lifetime its loader gives (the token's
expiry), and concurrent lookups of one missing key share one load. Failed loads are not cached
(no negative cache): a token Keystone rejected is asked about again, so a token that was
invalid only because of a race or an outage cannot stay refused.

The hit path is a hash, a dict lookup and a clock read: it runs on the event loop, without a
lock, because everything that touches the cache runs there.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")


def token_key(token: str) -> str:
    """The cache key of a token, also how logs may name one (its first 8 characters)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Loaded(Generic[V]):
    """A loader's answer: the value, and how many more seconds it may be used (the token's
    remaining validity; zero or less: use it for this request only)."""

    value: V
    lifetime: float


@dataclasses.dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    deadline: float  # on the cache's monotonic clock


class TokenCache(Generic[V]):
    def __init__(
        self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl  # <= 0: nothing is kept (loads are still shared while in flight)
        self.max_entries = max_entries
        self._clock = clock
        self._entries: collections.OrderedDict[str, _Entry[V]] = collections.OrderedDict()
        self._loading: dict[str, asyncio.Future[Loaded[V] | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> V | None:
        """The live value under ``key``, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.deadline <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def get_or_load(
        self, key: str, load: Callable[[], Awaitable[Loaded[V] | None]]
    ) -> V | None:
        """The value under ``key``, loading it when missing. Concurrent callers of one key
        share the first one's load (its result or its exception). None (the loader found
        nothing) is returned to every waiter and not kept."""
        value = self.get(key)
        if value is not None:
            return value
        pending = self._loading.get(key)
        if pending is None:
            # A task of its own, so that a caller cancelled mid-load (its client went away)
            # does not cancel the load the others wait on.
            pending = asyncio.ensure_future(self._load(key, load))
            self._loading[key] = pending
        loaded = await asyncio.shield(pending)
        return None if loaded is None else loaded.value

    async def _load(
        self, key: str, load: Callable[[], Awaitable[Loaded[V] | None]]
    ) -> Loaded[V] | None:
        try:
            loaded = await load()
            if loaded is not None:
                self._keep(key, loaded)
            return loaded
        finally:
            del self._loading[key]

    def _keep(self, key: str, loaded: Loaded[V]) -> None:
        lifetime = min(self.ttl, loaded.lifetime)
        if lifetime <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = _Entry(loaded.value, self._clock() + lifetime)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

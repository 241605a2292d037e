"""Handing an upload's blocks from the event loop to the thread that consumes them."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """Items from the event loop to another thread, at most ``depth`` of them waiting.

    ``put`` runs on the loop and waits while ``depth`` items wait; ``take`` runs in any thread
    and blocks until an item comes, or returns None once ``close`` was called and every item
    put before was taken. One plain queue, and a loop callback only for a ``put`` that waits:
    anyio's memory stream read through ``anyio.from_thread.run`` cost about 75 µs per item (a
    task, a cancel scope and futures each time), a large part of an upload's Python time.

    The loop side must call ``close`` however it ends: the taker would wait for ever.
    """

    def __init__(self, depth: int) -> None:
        self._items: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._free = depth  # how many more may be put before one is taken
        self._waiter: asyncio.Future[None] | None = None  # a put waiting for room

    async def put(self, item: T) -> None:
        while True:
            with self._lock:
                if self._free > 0:
                    self._free -= 1
                    break
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None
        self._items.put(item)

    def close(self) -> None:
        self._items.put(None)

    def take(self) -> T | None:
        item = self._items.get()
        if item is None:
            self._items.put(None)  # every later take ends too
            return None
        with self._lock:
            self._free += 1
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        return item


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

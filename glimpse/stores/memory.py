"""The memory store: image data held in the process, for tests and development.

Nothing survives the process, every worker process has a store of its own, and memory grows
with the images stored.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from glimpse.errors import NotFound
from glimpse.stores.driver import StoreDriver

_READ_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class MemoryOptions:
    """No options: the table of a memory store holds only its driver."""


def create(name: str, options: MemoryOptions, data_dir: Path) -> MemoryStore:
    return MemoryStore(name)


class MemoryStore:
    """Objects are tuples of the chunks they arrived in, so a put copies nothing and a reader
    holding an object is never disturbed by a put or delete of the same key."""

    writable = True

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._objects: dict[str, tuple[bytes, ...]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        # Gathered outside the lock and published in one assignment: until the last chunk has
        # arrived nothing is visible under key, and a failing iterable leaves nothing.
        data = tuple(bytes(chunk) for chunk in chunks if chunk)
        with self._lock:
            self._objects[key] = data
        return sum(len(chunk) for chunk in data)

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self._read(self._get(key), offset, length)

    @staticmethod
    def _read(data: tuple[bytes, ...], offset: int, length: int | None) -> Iterator[bytes]:
        left = sum(len(chunk) for chunk in data) - offset if length is None else length
        for chunk in data:
            if offset >= len(chunk):
                offset -= len(chunk)
                continue
            view = memoryview(chunk)[offset:offset + left]
            offset = 0
            left -= len(view)
            for start in range(0, len(view), _READ_CHUNK):
                yield bytes(view[start:start + _READ_CHUNK])
            if left <= 0:
                return

    def object_keys(self) -> Iterator[str]:
        with self._lock:
            keys = list(self._objects)
        return iter(keys)

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def size(self, key: str) -> int:
        return sum(len(chunk) for chunk in self._get(key))

    def open_file(self, key: str) -> BinaryIO | None:
        return None  # not a local file: readers use open()

    def _get(self, key: str) -> tuple[bytes, ...]:
        with self._lock:
            data = self._objects.get(key)
        if data is None:
            raise NotFound(f"Image data {key} not found in store {self.name}")
        return data


DRIVER = StoreDriver(MemoryOptions, create)

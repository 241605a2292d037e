"""What operations sees of a store: its errors counted, and a cheap probe of it.

``ObservedStore`` wraps a configured store for the API's metrics: an operation that fails
counts as a store error, unless it failed for a missing object (an answer, not an error) or
because the data handed to ``put`` failed (a client that hung up, an upload over its limit:
the client's doing, not the store's). ``probe`` asks a store about an object that never
exists: a real round trip (a stat, a HEAD on Swift or S3, with the store's credentials) that
moves no data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, ParamSpec, TypeVar

from glimpse.domain.ports import Store
from glimpse.errors import NotFound

# A canonical UUID (the filesystem store takes no other key) that no image ever has: image ids
# are random (version 4) UUIDs.
P = ParamSpec("P")
T = TypeVar("T")
PROBE_KEY = "00000000-0000-0000-0000-000000000000"


def probe(store: Store) -> str:
    """Details of a store that answered; raises what the store raised when it did not."""
    try:
        store.size(PROBE_KEY)
    except NotFound:
        return "answered"
    return "answered"  # an object under the probe key is odd, but the store works


class ObservedStore:
    """``store`` with its failures reported to ``on_error(store name, operation)``."""

    def __init__(self, store: Store, on_error: Callable[[str, str], None]) -> None:
        self.inner = store
        self.name = store.name
        self.writable = store.writable
        self._on_error = on_error

    def __getattr__(self, attribute: str) -> Any:
        # A driver's own extras (beyond the Store protocol) stay reachable.
        return getattr(self.inner, attribute)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        source = _Source(chunks)
        try:
            return self.inner.put(key, source)
        except Exception:
            if not source.failed:
                self._on_error(self.name, "put")
            raise

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        try:
            chunks = self.inner.open(key, offset, length)
        except NotFound:
            raise
        except Exception:
            self._on_error(self.name, "get")
            raise
        return self._reading(chunks)

    def _reading(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
        except NotFound:
            raise
        except Exception:
            self._on_error(self.name, "get")
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def object_keys(self) -> Iterator[str]:
        return self._counted("list", self.inner.object_keys)

    def delete(self, key: str) -> None:
        self._counted("delete", self.inner.delete, key)

    def size(self, key: str) -> int:
        return self._counted("stat", self.inner.size, key)

    def open_file(self, key: str) -> BinaryIO | None:
        return self._counted("get", self.inner.open_file, key)

    def _counted(self, operation: str, call: Callable[P, T], *args: P.args,
                 **kwargs: P.kwargs) -> T:
        try:
            return call(*args, **kwargs)
        except NotFound:
            raise
        except Exception:
            self._on_error(self.name, operation)
            raise


class _Source:
    """The data of a put, remembering whether it (not the store) failed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.failed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            raise
        except BaseException:
            self.failed = True
            raise

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

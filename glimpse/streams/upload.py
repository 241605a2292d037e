"""The upload stream: size limits and hashing, applied once, as the bytes pass to a store."""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from glimpse.errors import Invalid, OverLimit

# Below this a chunk is hashed inline: handing it to another thread would cost more.
PARALLEL_MIN = 256 * 1024
# How many chunks the hashes may be behind the write (each holds its chunk in memory).
HASH_LAG = 2


class UploadStream:
    """Wraps the body's chunks; yields them on while counting and hashing.

    ``limit`` is the most bytes allowed (size cap or remaining quota) and ``limit_error`` the
    error raised past it; ``expected_size`` (when known) is also enforced while streaming, so a
    body longer than declared stops at the first byte too many.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        limit: int,
        limit_error: OverLimit,
        expected_size: int | None = None,
        hash_algo: str = "sha512",
    ) -> None:
        self._chunks = chunks
        self._limit = limit
        self._limit_error = limit_error
        self._expected = expected_size
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.hash_algo = hash_algo
        self._multihash = hashlib.new(hash_algo)

    def __iter__(self) -> Iterator[bytes]:
        # The two hashes run in helper threads, one per hash (so each sees the chunks in
        # order), while this one hands the chunk on to the store: hashlib releases the GIL on
        # large updates and so does the write, so the three overlap instead of adding up. The
        # hashes may fall up to HASH_LAG chunks behind, so a chunk whose hashing takes longer
        # than its write does not hold up receiving and writing the next one.
        md5: ThreadPoolExecutor | None = None
        multihash: ThreadPoolExecutor | None = None
        pending: collections.deque[tuple[Future[None], Future[None]]] = collections.deque()
        try:
            for chunk in self._chunks:
                if not chunk:
                    continue
                self.size += len(chunk)
                if self._expected is not None and self.size > self._expected:
                    raise Invalid(
                        f"Size of the uploaded data exceeds the declared size {self._expected}"
                    )
                if self.size > self._limit:
                    raise self._limit_error
                if len(chunk) < PARALLEL_MIN:
                    _wait(pending, 0)
                    self._md5.update(chunk)
                    self._multihash.update(chunk)
                    yield chunk
                    continue
                if md5 is None or multihash is None:
                    md5 = ThreadPoolExecutor(1, thread_name_prefix="md5")
                    multihash = ThreadPoolExecutor(1, thread_name_prefix="multihash")
                pending.append((md5.submit(self._md5.update, chunk),
                                multihash.submit(self._multihash.update, chunk)))
                yield chunk
                _wait(pending, HASH_LAG)
            _wait(pending, 0)
        finally:
            for helper in (md5, multihash):
                if helper is not None:
                    helper.shutdown(wait=True, cancel_futures=True)

    @property
    def checksum(self) -> str:
        return self._md5.hexdigest()

    @property
    def multihash(self) -> str:
        return self._multihash.hexdigest()


def _wait(pending: collections.deque[tuple[Future[None], Future[None]]], keep: int) -> None:
    """Wait for the oldest chunks' hashes until at most ``keep`` are still running."""
    while len(pending) > keep:
        for done in pending.popleft():
            done.result()

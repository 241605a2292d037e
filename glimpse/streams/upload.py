"""The upload stream: size limits and hashing, applied once, as the bytes pass to a store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from glimpse.errors import Invalid, OverLimit

# Below this a chunk is hashed inline: handing it to another thread would cost more.
PARALLEL_MIN = 256 * 1024


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
        # The two hashes run in helper threads while this one hands the chunk to the store:
        # hashlib releases the GIL on large updates and so does the write, so the three
        # overlap instead of adding up.
        helper: ThreadPoolExecutor | None = None
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
                    self._md5.update(chunk)
                    self._multihash.update(chunk)
                    yield chunk
                    continue
                if helper is None:
                    helper = ThreadPoolExecutor(2, thread_name_prefix="hash")
                hashed = [helper.submit(self._md5.update, chunk),
                          helper.submit(self._multihash.update, chunk)]
                try:
                    yield chunk
                finally:
                    for done in hashed:
                        done.result()
        finally:
            if helper is not None:
                helper.shutdown(wait=True)

    @property
    def checksum(self) -> str:
        return self._md5.hexdigest()

    @property
    def multihash(self) -> str:
        return self._multihash.hexdigest()

"""The upload stream: size limits and hashing, applied once, as the bytes pass to a store."""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from glimpse.errors import Invalid, OverLimit
from glimpse.streams.expected_hash import ExpectedHash

# Below this a chunk is hashed inline, unless the helper threads already run (they must see
# the chunks in order): handing it to another thread would cost more.
PARALLEL_MIN = 256 * 1024
# How many chunks the hashes may be behind the write (each holds its chunk in memory; see
# glimpse.api.http.UPLOAD_BLOCK for what one more costs and gains).
HASH_LAG = 4


class UploadStream:
    """Wraps the body's chunks; yields them on while counting and hashing.

    ``limit`` is the most bytes allowed (size cap or remaining quota) and ``limit_error`` the
    error raised past it; ``expected_size`` (when known) is also enforced while streaming, so a
    body longer than declared stops at the first byte too many.

    ``expected_hash``: the hash the client said the data has, checked when the chunks end
    (Invalid before the store commits). Its algorithm's hash is the multihash when they are
    the same; otherwise it is one more hasher, with a helper thread of its own.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        limit: int,
        limit_error: OverLimit,
        expected_size: int | None = None,
        hash_algo: str = "sha512",
        expected_hash: ExpectedHash | None = None,
    ) -> None:
        self._chunks = chunks
        self._limit = limit
        self._limit_error = limit_error
        self._expected = expected_size
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.hash_algo = hash_algo
        self._multihash = hashlib.new(hash_algo)
        self._expected_hash = expected_hash
        self._hashers = [self._md5, self._multihash]
        if expected_hash is not None and expected_hash.algorithm != hash_algo:
            self._hashers.append(expected_hash.hasher())

    def __iter__(self) -> Iterator[bytes]:
        # The hashes run in helper threads, one per hash (so each sees the chunks in
        # order), while this one hands the chunk on to the store: hashlib releases the GIL on
        # large updates and so does the write, so they overlap instead of adding up. The
        # hashes may fall up to HASH_LAG chunks behind, so a chunk whose hashing takes longer
        # than its write does not hold up receiving and writing the next one.
        helpers: list[ThreadPoolExecutor] = []
        pending: collections.deque[list[Future[None]]] = collections.deque()
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
                if len(chunk) < PARALLEL_MIN and not helpers:
                    for hasher in self._hashers:
                        hasher.update(chunk)
                    yield chunk
                    continue
                if not helpers:
                    helpers = [ThreadPoolExecutor(1, thread_name_prefix=hasher.name)
                               for hasher in self._hashers]
                pending.append([helper.submit(hasher.update, chunk)
                                for helper, hasher in zip(helpers, self._hashers, strict=True)])
                yield chunk
                _wait(pending, HASH_LAG)
            _wait(pending, 0)
            if self._expected_hash is not None:
                self._expected_hash.check(self._hashers[-1].hexdigest())
        finally:
            for helper in helpers:
                helper.shutdown(wait=True, cancel_futures=True)

    @property
    def checksum(self) -> str:
        return self._md5.hexdigest()

    @property
    def multihash(self) -> str:
        return self._multihash.hexdigest()


def _wait(pending: collections.deque[list[Future[None]]], keep: int) -> None:
    """Wait for the oldest chunks' hashes until at most ``keep`` are still running."""
    while len(pending) > keep:
        for done in pending.popleft():
            done.result()

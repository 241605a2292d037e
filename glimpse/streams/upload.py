"""The upload stream: size limits and hashing, applied once, as the bytes pass to a store."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from glimpse.errors import Invalid, OverLimit
from glimpse.streams.expected_hash import ExpectedHash

# Chunks go to the hash threads in groups of at least this many bytes: fewer would cost more
# in hand-overs than hashing them inline. A stream shorter than this (a small image) is hashed
# inline, with no thread started.
PARALLEL_MIN = 256 * 1024
# How many groups the hashes may be behind the write (each holds its chunks in memory; see
# glimpse.api.http.UPLOAD_BLOCK for what one more costs and gains).
HASH_LAG = 2


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
        # order), while this one hands the chunks on to the store: hashlib releases the GIL on
        # large updates and so does the write, so they overlap instead of adding up. Chunks are
        # grouped up to PARALLEL_MIN bytes first: a client that sends small chunks (glanceclient
        # sends 64 KiB) would otherwise be hashed inline, both hashes on one core. The hashes
        # may fall up to HASH_LAG groups behind, so a group whose hashing takes longer than its
        # write does not hold up receiving and writing the next one.
        hashes: HashThreads | None = None  # started by the first full group
        group: list[bytes] = []  # chunks passed on, not yet given to the hashes
        grouped = 0  # their bytes
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
                group.append(chunk)
                grouped += len(chunk)
                if grouped >= PARALLEL_MIN:
                    hashes = hashes or HashThreads(self._hashers)
                    hashes.give(group)
                    group, grouped = [], 0
                yield chunk
                if hashes is not None:
                    hashes.wait_down_to(HASH_LAG)
            if hashes is None:
                for hasher in self._hashers:
                    for chunk in group:
                        hasher.update(chunk)
            else:
                if group:
                    hashes.give(group)
                hashes.wait_down_to(0)
            if self._expected_hash is not None:
                self._expected_hash.check(self._hashers[-1].hexdigest())
        finally:
            if hashes is not None:
                hashes.stop()

    @property
    def checksum(self) -> str:
        return self._md5.hexdigest()

    @property
    def multihash(self) -> str:
        return self._multihash.hexdigest()


class HashThreads:
    """The stream's hashes, each in a thread of its own (a HashThread), given the same groups
    of chunks in order."""

    def __init__(self, hashers: list[Any]) -> None:
        self._threads = [HashThread(hasher) for hasher in hashers]
        self._behind = 0  # groups given and not yet hashed by all

    def give(self, group: list[bytes]) -> None:
        for thread in self._threads:
            thread.give(group)
        self._behind += 1

    def wait_down_to(self, behind: int) -> None:
        """Wait for the oldest groups' hashes until at most ``behind`` are still running."""
        while self._behind > behind:
            for thread in self._threads:
                thread.wait_one()
            self._behind -= 1

    def stop(self) -> None:
        for thread in self._threads:
            thread.stop()


class HashThread:
    """One hash, updated with groups of chunks in the order given, in a thread of its own.

    Two plain queues, where a thread pool cost a future, a condition and a work item per
    chunk. Every ``give`` is answered once, in order, by ``wait_one`` (which raises what the
    updates raised)."""

    def __init__(self, hasher: Any) -> None:
        self._hasher = hasher
        self._todo: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=hasher.name, daemon=True)
        self._thread.start()

    def give(self, group: list[bytes]) -> None:
        self._todo.put(group)

    def wait_one(self) -> None:
        error = self._done.get()
        if error is not None:
            raise error

    def stop(self) -> None:
        """End the thread, skipping what it was given and has not started."""
        self._stopped = True
        self._todo.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (group := self._todo.get()) is not None:
            if self._stopped:
                continue
            try:
                for chunk in group:
                    self._hasher.update(chunk)
            except BaseException as exc:  # handed to the stream's thread, which raises it
                self._done.put(exc)
            else:
                self._done.put(None)

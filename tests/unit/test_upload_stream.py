"""The upload stream: limits and hashes, whatever the chunking."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from glimpse.errors import Invalid, OverLimit
from glimpse.streams.upload import PARALLEL_MIN, UploadStream

DATA = os.urandom(3 * PARALLEL_MIN + 12345)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1000, PARALLEL_MIN, 1 << 20])
@pytest.mark.parametrize("algo", ["sha512", "sha256"])
def test_hashes_and_passes_every_byte(size: int, algo: str) -> None:
    stream = UploadStream(chunked(DATA, size), limit=len(DATA), limit_error=OverLimit("cap"),
                          expected_size=len(DATA), hash_algo=algo)
    assert b"".join(stream) == DATA
    assert stream.size == len(DATA)
    assert stream.checksum == hashlib.md5(DATA).hexdigest()
    assert stream.multihash == hashlib.new(algo, DATA).hexdigest()


def test_limit_stops_before_the_byte_too_many_is_passed_on() -> None:
    stream = UploadStream(chunked(DATA, 1 << 20), limit=PARALLEL_MIN,
                          limit_error=OverLimit("cap"))
    passed = []
    with pytest.raises(OverLimit, match="cap"):
        for chunk in stream:
            passed.append(chunk)
    assert passed == []


def test_body_longer_than_declared() -> None:
    stream = UploadStream(chunked(DATA, 4096), limit=len(DATA), limit_error=OverLimit("cap"),
                          expected_size=10_000)
    received = 0
    with pytest.raises(Invalid, match="exceeds the declared size 10000"):
        for chunk in stream:
            received += len(chunk)
    assert received <= 10_000


def test_consumer_failure_propagates_and_stream_stops() -> None:
    stream = UploadStream(chunked(DATA, 1 << 20), limit=len(DATA), limit_error=OverLimit("c"))
    iterator = iter(stream)
    next(iterator)
    with pytest.raises(OSError):
        iterator.throw(OSError("disk full"))


def test_body_pump_never_passes_a_cut_short_body_as_whole() -> None:
    """If the pump stops before the request body ended (shutdown), the consumer gets an
    error, not a clean end of stream."""
    import anyio
    from starlette.requests import Request

    from glimpse.api.http import BodyPump

    async def main() -> None:
        sent = 0

        async def receive() -> dict[str, object]:
            nonlocal sent
            sent += 1
            if sent > 3:
                await anyio.sleep(3600)  # the rest of the body never arrives
            return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": True}

        request = Request({"type": "http", "method": "PUT", "headers": []}, receive)
        pump = BodyPump(request)

        def consume() -> int:
            return sum(len(c) for c in pump.chunks())

        task = anyio.to_thread.run_sync(consume)
        async with anyio.create_task_group() as group:
            group.start_soon(pump.run)
            await anyio.sleep(0.2)
            group.cancel_scope.cancel()
        await task

    with pytest.raises(Exception) as info:
        anyio.run(main)
    assert "cut short" in str(info.value) or any(
        "cut short" in str(e) for e in getattr(info.value, "exceptions", [])
    )


def test_hashes_lagging_behind_see_every_chunk_in_order() -> None:
    """Chunks are hashed behind the write in groups of at least PARALLEL_MIN bytes: large and
    small mixed, in any order, the digests are those of the whole stream."""
    sizes = [PARALLEL_MIN, 1000, 3 * PARALLEL_MIN, 3 * PARALLEL_MIN, 1, PARALLEL_MIN + 7] * 5
    data = os.urandom(sum(sizes))
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start:start + size])
        start += size
    stream = UploadStream(chunks, limit=len(data), limit_error=OverLimit("cap"))
    passed = []
    for chunk in stream:
        passed.append(chunk)
    assert b"".join(passed) == data
    assert stream.checksum == hashlib.md5(data).hexdigest()
    assert stream.multihash == hashlib.sha512(data).hexdigest()


def _hash_threads() -> set[str]:
    return {t.name for t in threading.enumerate()} & {"md5", "sha512"}


@pytest.mark.parametrize("chunk_size", [1, 4096, 65_536])
def test_small_chunks_are_hashed_in_the_hash_threads_and_a_small_stream_inline(
    chunk_size: int
) -> None:
    """glanceclient sends 64 KiB chunks: grouped, they still go to the hash threads (both
    hashes inline would put them on one core). A stream shorter than a group starts none."""
    data = os.urandom(2 * PARALLEL_MIN + 999) if chunk_size > 1 else os.urandom(PARALLEL_MIN + 5)
    chunks = [data[at:at + chunk_size] for at in range(0, len(data), chunk_size)]
    stream = UploadStream(chunks, limit=len(data), limit_error=OverLimit("cap"))
    seen: set[str] = set()
    for _ in stream:
        seen |= _hash_threads()
    assert seen == {"md5", "sha512"}
    assert stream.checksum == hashlib.md5(data).hexdigest()
    assert stream.multihash == hashlib.sha512(data).hexdigest()

    small = os.urandom(PARALLEL_MIN - 1)
    stream = UploadStream([small[:1000], small[1000:]], limit=len(small),
                          limit_error=OverLimit("cap"))
    for _ in stream:
        assert not _hash_threads()
    assert stream.multihash == hashlib.sha512(small).hexdigest()

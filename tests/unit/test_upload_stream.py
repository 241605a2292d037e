"""The upload stream: limits and hashes, whatever the chunking."""

from __future__ import annotations

import hashlib
import os

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

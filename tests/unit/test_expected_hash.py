"""The expected hash of an upload: parsing the client's value, and the check as data streams
(in UploadStream, reusing the multihash or with a hasher of its own, and on its own)."""

from __future__ import annotations

import hashlib
import random

import pytest

from glimpse.api.expected_hash_header import V2_HEADER, parse_expected_hash, with_expected_hash
from glimpse.domain.data import Upload
from glimpse.errors import Invalid, OverLimit
from glimpse.streams.expected_hash import HASH_MISMATCH, ExpectedHash, verified
from glimpse.streams.upload import PARALLEL_MIN, UploadStream

# Fixed bytes: the digests name parametrized tests, which pytest-xdist's workers must agree on.
DATA = random.Random(0).randbytes(3 * PARALLEL_MIN + 777)
SHA256 = hashlib.sha256(DATA).hexdigest()
SHA512 = hashlib.sha512(DATA).hexdigest()


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_parse_accepts_both_algorithms_any_case() -> None:
    assert ExpectedHash.parse(f"sha256:{SHA256.upper()}") == ExpectedHash("sha256", SHA256)
    assert ExpectedHash.parse(f" SHA512:{SHA512} ") == ExpectedHash("sha512", SHA512)


@pytest.mark.parametrize("text, problem", [
    (SHA256, "must be <algorithm>:<hex digest>"),
    (f"md5:{hashlib.md5(DATA).hexdigest()}", "unsupported algorithm"),
    (f"sha1:{hashlib.sha1(DATA).hexdigest()}", "unsupported algorithm"),
    (f"blake2b:{SHA256}", "unsupported algorithm"),
    (f"sha256:{SHA256[:-1]}", "64 hexadecimal digits"),
    (f"sha256:{SHA256}0", "64 hexadecimal digits"),
    (f"sha256:{SHA512}", "64 hexadecimal digits"),
    (f"sha512:{SHA256}", "128 hexadecimal digits"),
    ("sha256:" + "g" * 64, "64 hexadecimal digits"),
    ("sha256:" + "é" * 64, "64 hexadecimal digits"),
    ("sha256:" + "0" * 10_000, "too long"),
    ("", "must be <algorithm>:<hex digest>"),
    ("sha256:", "64 hexadecimal digits"),
])
def test_parse_refuses_malformed_values_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(Invalid, match=problem) as caught:
        ExpectedHash.parse(text, "The test header")
    assert caught.value.message.startswith("The test header")
    assert "0" * 100 not in caught.value.message  # a huge value is not echoed back


@pytest.mark.parametrize("size", [1000, PARALLEL_MIN, 1 << 20])
@pytest.mark.parametrize("expected", [f"sha256:{SHA256}", f"sha512:{SHA512}"])
@pytest.mark.parametrize("multihash", ["sha512", "sha256"])
def test_upload_stream_passes_data_with_the_expected_hash(size: int, expected: str,
                                                          multihash: str) -> None:
    stream = UploadStream(chunked(DATA, size), limit=len(DATA), limit_error=OverLimit("cap"),
                          hash_algo=multihash, expected_hash=ExpectedHash.parse(expected))
    assert b"".join(stream) == DATA
    assert stream.multihash == hashlib.new(multihash, DATA).hexdigest()
    assert stream.checksum == hashlib.md5(DATA).hexdigest()


@pytest.mark.parametrize("size", [1000, 1 << 20])
@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_upload_stream_refuses_other_data_at_its_end(size: int, algorithm: str) -> None:
    other = hashlib.new(algorithm, b"something else").hexdigest()
    stream = UploadStream(chunked(DATA, size), limit=len(DATA), limit_error=OverLimit("cap"),
                          expected_hash=ExpectedHash(algorithm, other))
    passed = 0
    with pytest.raises(Invalid, match=f"expected {algorithm} hash") as caught:
        for chunk in stream:
            passed += len(chunk)
    # Every byte went by (the hash is known only at the end), and the refusal came before
    # the consumer (a store) saw the stream end, so it commits nothing.
    assert passed == len(DATA)
    assert caught.value.code == HASH_MISMATCH
    assert other in caught.value.message
    assert hashlib.new(algorithm, DATA).hexdigest() in caught.value.message


def test_a_stream_without_an_expected_hash_has_two_hashers() -> None:
    stream = UploadStream([DATA], limit=len(DATA), limit_error=OverLimit("cap"))
    assert len(stream._hashers) == 2
    same = UploadStream([DATA], limit=len(DATA), limit_error=OverLimit("cap"),
                        expected_hash=ExpectedHash("sha512", SHA512))
    assert len(same._hashers) == 2  # the multihash is the expected hash's
    other = UploadStream([DATA], limit=len(DATA), limit_error=OverLimit("cap"),
                         expected_hash=ExpectedHash("sha256", SHA256))
    assert len(other._hashers) == 3


def test_verified_on_its_own() -> None:
    assert b"".join(verified(chunked(DATA, 5000), ExpectedHash("sha256", SHA256))) == DATA
    with pytest.raises(Invalid, match="expected sha256 hash"):
        b"".join(verified(chunked(DATA, 5000), ExpectedHash("sha256", "0" * 64)))
    with pytest.raises(Invalid):
        b"".join(verified([DATA[:-1]], ExpectedHash("sha512", SHA512)))  # truncated


def test_header_helpers() -> None:
    assert parse_expected_hash(None, V2_HEADER) is None
    expected = parse_expected_hash(f"sha256:{SHA256}", V2_HEADER)
    assert expected == ExpectedHash("sha256", SHA256)
    with pytest.raises(Invalid, match=f"The {V2_HEADER} header"):
        parse_expected_hash("sha256:xyz", V2_HEADER)
    with pytest.raises(Invalid, match="has none"):
        with_expected_hash(None, expected, V2_HEADER)
    upload = with_expected_hash(Upload([DATA], len(DATA)), expected, V2_HEADER)
    assert upload is not None and upload.expected_hash == expected

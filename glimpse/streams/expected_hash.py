"""The hash a client expects its image data to have, checked as the data streams.

A client names it as ``<algorithm>:<hex digest>`` (``sha256:9f86...``); the APIs carry it in
a header (v1 ``x-image-meta-expected-hash``, v2 ``OpenStack-Image-Expected-Hash``, see
docs/import-plugins.md). Any stream of image data can be held to it: the upload stream does
(``UploadStream(expected_hash=...)``, reusing its multihash when the algorithm is the same),
and so can a stage or a download with ``verified(chunks, expected)``. A mismatch raises
``Invalid`` at the end of the stream, before a store commits the data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator

from glimpse.errors import Invalid

# The algorithms a client may name, with the length of their digests in hex digits. Only
# these two: distributions publish SHA256SUMS and SHA512SUMS, and md5/sha1 prove nothing.
HEX_LENGTHS = {"sha256": 64, "sha512": 128}
# Longer than any accepted value: text past this is refused without being looked at further.
MAX_TEXT = len("sha512:") + 128
# The code of a refusal because the data does not have the expected hash.
HASH_MISMATCH = "hash_mismatch"
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclasses.dataclass(frozen=True)
class ExpectedHash:
    """An algorithm of HEX_LENGTHS and the lower-case hex digest the data must have."""

    algorithm: str
    value: str

    @classmethod
    def parse(cls, text: str, source: str = "the expected hash") -> ExpectedHash:
        """``<algorithm>:<hex>`` from a client; Invalid naming what is wrong (``source``
        names where it came from, e.g. a header). The value itself is never echoed back."""
        text = text.strip()
        if len(text) > MAX_TEXT:
            raise Invalid(f"{source} is too long: it is <algorithm>:<hex digest>, "
                          f"at most {MAX_TEXT} characters.")
        algorithm, sep, value = text.partition(":")
        algorithm = algorithm.strip().lower()
        if not sep:
            raise Invalid(f"{source} must be <algorithm>:<hex digest> "
                          f"(algorithm one of {', '.join(HEX_LENGTHS)}).")
        if algorithm not in HEX_LENGTHS:
            raise Invalid(f"{source} names an unsupported algorithm: use one of "
                          f"{', '.join(HEX_LENGTHS)}.")
        value = value.strip()
        length = HEX_LENGTHS[algorithm]
        if len(value) != length or not set(value) <= _HEX:
            raise Invalid(f"{source}: a {algorithm} digest is {length} hexadecimal digits.")
        return cls(algorithm, value.lower())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def check(self, actual: str) -> None:
        """Invalid (code HASH_MISMATCH) unless ``actual``, a hex digest of the data by this
        algorithm, is the expected one."""
        if actual.lower() != self.value:
            raise Invalid(
                f"The image data does not have the expected {self.algorithm} hash: expected "
                f"{self.value}, got {actual.lower()}.", code=HASH_MISMATCH)


def verified(chunks: Iterable[bytes], expected: ExpectedHash) -> Iterator[bytes]:
    """The chunks, passed on unchanged; at their end, Invalid if their hash is not the
    expected one. For streams that do not go through UploadStream (which checks it for
    free when its multihash is the same algorithm)."""
    hasher = expected.hasher()
    for chunk in chunks:
        hasher.update(chunk)
        yield chunk
    expected.check(hasher.hexdigest())

"""The expected-hash header of an upload, shared by both API versions (each names its own:
v1 ``x-image-meta-expected-hash``, v2 ``OpenStack-Image-Expected-Hash``)."""

from __future__ import annotations

import dataclasses

from glimpse.domain.data import Upload
from glimpse.errors import Invalid
from glimpse.streams.expected_hash import ExpectedHash

V1_HEADER = "x-image-meta-expected-hash"
V2_HEADER = "openstack-image-expected-hash"


def parse_expected_hash(text: str | None, header: str) -> ExpectedHash | None:
    """The header's value as an ExpectedHash (None when absent); Invalid, before any byte of
    the body is read, when it is malformed."""
    if text is None:
        return None
    return ExpectedHash.parse(text, f"The {header} header")


def with_expected_hash(upload: Upload | None, expected: ExpectedHash | None,
                       header: str) -> Upload | None:
    """The upload held to ``expected``; Invalid when the header came without image data."""
    if expected is None:
        return upload
    if upload is None:
        raise Invalid(f"The {header} header applies to image data: this request has none.")
    return dataclasses.replace(upload, expected_hash=expected)

"""Tests for glimpse.redaction: URL userinfo is never rendered."""

from __future__ import annotations

import pytest

from glimpse.redaction import redact_url, redact_urls

SECRET = "s3cr3t"


@pytest.mark.parametrize(("url", "redacted"), [
    ("http://user:s3cr3t@example.com/x", "http://***@example.com/x"),
    ("https://user:s3cr3t@example.com:8443/x?y=1", "https://***@example.com:8443/x?y=1"),
    ("HTTP://s3cr3t@example.com/", "HTTP://***@example.com/"),
    ("https://:s3cr3t@example.com/", "https://***@example.com/"),
    ("swift+http://account:s3cr3t@auth.example/v1/c/o", "swift+http://***@auth.example/v1/c/o"),
    ("swift+https://tenant%3Auser:s3cr3t@auth.example/c/o", "swift+https://***@auth.example/c/o"),
    ("swift://account:s3cr3t@auth/container/obj", "swift://***@auth/container/obj"),
    ("s3://access:s3cr3t@s3.example/bucket/key", "s3://***@s3.example/bucket/key"),
    # S3 secret keys often hold an unencoded "/": the authority a parser sees ends early.
    ("s3://access:ab/s3cr3t/cd@s3.example/bucket/key", "s3://***@s3.example/bucket/key"),
    ("s3+https://access:s3cr3t@s3.example/b/k", "s3+https://***@s3.example/b/k"),
    ("rbd://client:s3cr3t@fsid/pool/image/snap", "rbd://***@fsid/pool/image/snap"),
    ("file://user:s3cr3t@/etc/passwd", "file://***@/etc/passwd"),
    # Malformed: no parser would accept these, they are redacted all the same.
    ("http://user:s3cr3t@[bad", "http://***@[bad"),
    ("http://user:s3c?r#3t@host/", "http://***@host/"),
    ("http://user:s3cr3t@@host/", "http://***@host/"),
    ("//user:s3cr3t@host/path", "//***@host/path"),
])
def test_userinfo_redacted(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert redact_urls(f"see '{url}' there") == f"see '{redacted}' there"


def test_url_without_scheme_redacted_as_a_whole() -> None:
    """Where the text is known to be a URL, even one without a scheme is redacted."""
    assert redact_url("user:s3cr3t@host/path") == "***@host/path"


@pytest.mark.parametrize("url", [
    "http://example.com/image.img",
    "https://example.com:8443/a/b?c=d&e=f",
    "file:///etc/passwd",
    "http://[2001:db8::1]:8080/x",
    "",
    "not a url",
])
def test_url_without_userinfo_unchanged(url: str) -> None:
    assert redact_url(url) == url
    assert redact_urls(url) == url


def test_every_url_in_a_text_redacted() -> None:
    text = ("copy of http://a:one@h1/x failed, then s3://b:two@h2/y; "
            "headers [(b'x-image-meta-location', b'swift://c:three@h3/z')]")
    assert redact_urls(text) == (
        "copy of http://***@h1/x failed, then s3://***@h2/y; "
        "headers [(b'x-image-meta-location', b'swift://***@h3/z')]"
    )


def test_words_with_at_signs_outside_urls_kept() -> None:
    text = "mail admin@example.com about http://example.com/x"
    assert redact_urls(text) == text

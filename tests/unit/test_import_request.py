"""The import request's wire rules (glimpse/api/v2/import_handlers.py) and web-download's
resumable transfer (glimpse/domain/web_download.py), against hostile input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from glimpse.api.expected_hash_header import V2_HEADER, parse_expected_hash
from glimpse.api.v2.import_handlers import parse_import
from glimpse.domain.web_download import NOT_ALLOWED, resumable
from glimpse.errors import Invalid, NotFound, Unavailable
from glimpse.streams.expected_hash import ExpectedHash

DIRECT = {"method": {"name": "glance-direct"}}


def test_a_plain_request_and_its_options() -> None:
    request = parse_import(DIRECT, None, None)
    assert (request.method, request.stores, request.all_stores, request.must_succeed) == (
        "glance-direct", None, False, True)
    assert parse_import(DIRECT, " file ", None).stores == ("file",)
    both = parse_import({**DIRECT, "stores": ["a", "b"], "all_stores_must_succeed": False},
                        None, None)
    assert both.stores == ("a", "b") and not both.must_succeed
    assert parse_import({**DIRECT, "all_stores": True}, None, None).all_stores
    assert parse_import({**DIRECT, "stores": None}, None, None).stores is None


@pytest.mark.parametrize("body", [
    None, [], "glance-direct", {}, {"method": None}, {"method": {}}, {"method": {"name": ""}},
    {"method": {"name": 5}}, {"method": {"name": "glance-download"}},
    {"method": {"name": "GLANCE-DIRECT"}}, {**DIRECT, "all_stores": "true"},
    {**DIRECT, "all_stores": 1}, {**DIRECT, "all_stores_must_succeed": None},
    {**DIRECT, "stores": "file"}, {**DIRECT, "stores": [""]}, {**DIRECT, "stores": [1]},
    {**DIRECT, "stores": ["file"], "all_stores": True},
    {"method": {"name": "web-download"}}, {"method": {"name": "web-download", "uri": 7}},
])
def test_refused_bodies(body: object) -> None:
    with pytest.raises(Invalid):
        parse_import(body, None, None)


def test_the_store_header_excludes_stores_and_all_stores() -> None:
    with pytest.raises(Invalid):
        parse_import({**DIRECT, "stores": ["file"]}, "file", None)
    with pytest.raises(Invalid):
        parse_import({**DIRECT, "all_stores": True}, "file", None)


def expected_hash(text: str | None) -> ExpectedHash | None:
    """The import's header, read as the upload's (one parser for both)."""
    return parse_expected_hash(text, V2_HEADER)


def test_expected_hash_header() -> None:
    value = "ab" * 32
    found = expected_hash(f" SHA256:{value.upper()} ")
    assert found is not None and (found.algorithm, found.value) == ("sha256", value)
    assert expected_hash(None) is None
    for text in ("", "sha256", f"md5:{'a' * 32}", f"sha1:{'a' * 40}", "sha256:xyz",
                 f"sha512:{value}", f"sha256:{value}0", "sha256:" + "é" * 64):
        with pytest.raises(Invalid):
            expected_hash(text)
    # Only web-download carries it on the import; glance-direct carries it on the stage.
    with pytest.raises(Invalid):
        parse_import(DIRECT, None, f"sha256:{value}")
    web = parse_import({"method": {"name": "web-download", "uri": "http://x/y"}}, None,
                       f"sha256:{value}")
    assert web.expected is not None and web.uri == "http://x/y"


class FlakySource:
    """An ExternalSource whose first ``cuts`` reads end with Unavailable after ``keep``
    bytes; ``size`` is what its HEAD says."""

    def __init__(self, data: bytes, cuts: int, keep: int = 3, size: int | None = -1,
                 refuse: bool = False) -> None:
        self.data, self.cuts, self.keep = data, cuts, keep
        self.announced = len(data) if size == -1 else size
        self.refuse = refuse
        self.offsets: list[int] = []

    def validate(self, url: str) -> None:
        pass

    def size(self, url: str) -> int | None:
        if self.refuse:
            raise Invalid("not allowed", code=NOT_ALLOWED)
        if self.announced is None:
            raise NotFound("no HEAD here")
        return self.announced

    def open(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        self.offsets.append(offset)
        part = self.data[offset:]
        if self.cuts > 0:
            self.cuts -= 1
            yield part[:self.keep]
            raise Unavailable("connection reset")
        yield part


def test_a_dropped_transfer_resumes_from_the_missing_byte(monkeypatch:
                                                         pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("glimpse.domain.web_download.time.sleep", lambda _: None)
    source = FlakySource(b"0123456789", cuts=2)
    assert b"".join(resumable(source, "http://x", retries=2)) == b"0123456789"
    assert source.offsets == [0, 3, 6]


def test_resumption_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("glimpse.domain.web_download.time.sleep", lambda _: None)
    source = FlakySource(b"0123456789", cuts=5, keep=1)
    with pytest.raises(Unavailable, match="after 3 attempts"):
        b"".join(resumable(source, "http://x", retries=2))
    assert len(source.offsets) == 3


def test_a_remote_that_sends_more_or_less_than_it_announced() -> None:
    with pytest.raises(Invalid, match="more than"):
        b"".join(resumable(FlakySource(b"0123456789", cuts=0, size=4), "http://x", 0))
    with pytest.raises(Invalid, match="announced 20"):
        b"".join(resumable(FlakySource(b"0123456789", cuts=0, size=20), "http://x", 0))
    # No HEAD answer: whatever arrives, checked by the import's own stages.
    assert b"".join(resumable(FlakySource(b"abc", cuts=0, size=None), "http://x", 0)) == b"abc"


def test_a_refusal_by_the_network_rules_is_not_retried() -> None:
    source = FlakySource(b"abc", cuts=0, refuse=True)
    with pytest.raises(Invalid):
        b"".join(resumable(source, "http://x", 3))
    assert source.offsets == []

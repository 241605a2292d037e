"""glance-download's rules without a network (glimpse.domain.glance_download): the request's
400s, the catalog lookup, the remote record's checks, the copied properties, and the check of
the bytes against the remote's size and hash. The e2e module proves it between two real
servers on a real Keystone (tests/e2e/test_glance_download.py)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from glimpse.domain.glance_download import (
    GlanceDownload,
    RemoteImage,
    endpoint_in,
    parse_remote,
    read_record,
    verified,
)
from glimpse.domain.web_download import NOT_ALLOWED
from glimpse.errors import Invalid, NotFound, PreconditionFailed, Unavailable
from glimpse.settings import load

ID = str(uuid.uuid4())
REMOTE = RemoteImage(ID, "RegionTwo")
PREFIXES = ("hw_", "trait:", "os_distro", "os_secure_boot", "os_type")


@pytest.mark.parametrize(("method", "phrase"), [
    ({"glance_image_id": ID}, "'glance_region' needs to be set"),
    ({"glance_region": "R"}, "'glance_image_id' needs to be set"),
    ({"glance_region": "R", "glance_image_id": "nope"}, "does not look like a UUID"),
    ({"glance_region": "R", "glance_image_id": 7}, "does not look like a UUID"),
    ({"glance_region": "R", "glance_image_id": None}, "'glance_image_id' needs"),
    ({"glance_region": "R", "glance_image_id": "x" * 10000}, "does not look like a UUID"),
    ({"glance_region": "", "glance_image_id": ID}, "glance_region must be"),
    ({"glance_region": ["R"], "glance_image_id": ID}, "glance_region must be"),
    ({"glance_region": "R\nforged log line", "glance_image_id": ID}, "glance_region must be"),
    ({"glance_region": "R" * 256, "glance_image_id": ID}, "glance_region must be"),
    ({"glance_region": "R", "glance_image_id": ID, "glance_service_interface": None},
     "glance_service_interface"),
    ({"glance_region": "R", "glance_image_id": ID, "glance_service_interface": "x" * 65},
     "glance_service_interface"),
    ({"glance_region": "R", "glance_image_id": ID, "glance_service_interface": "a\x1bb"},
     "glance_service_interface"),
])
def test_parse_refuses(method: dict[str, Any], phrase: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_remote(method)
    assert phrase in info.value.message
    assert len(info.value.message) < 300


def test_parse_fills_the_interface_and_canonicalises_the_id() -> None:
    remote = parse_remote({"glance_region": "RegionTwo", "glance_image_id": ID.upper()})
    assert remote == RemoteImage(ID, "RegionTwo", "public")
    assert remote.as_method() == {"name": "glance-download", "glance_image_id": ID,
                                  "glance_region": "RegionTwo",
                                  "glance_service_interface": "public"}
    assert parse_remote({"glance_region": "R", "glance_image_id": ID,
                         "glance_service_interface": "internal"}).interface == "internal"
    # A name the catalog does not have is the task's failure, not a 400 (as Glance).
    assert parse_remote({"glance_region": "not a region", "glance_image_id": ID,
                         "glance_service_interface": "not an interface"}).interface == \
        "not an interface"


CATALOG = [
    {"type": "identity", "endpoints": [{"interface": "public", "region_id": "RegionTwo",
                                        "url": "http://keystone"}]},
    {"type": "image", "endpoints": [
        {"interface": "internal", "region_id": "RegionTwo", "url": "http://internal:9292"},
        {"interface": "public", "region_id": "RegionOne", "url": "http://one:9292"},
        {"interface": "public", "region_id": "RegionTwo", "region": "RegionTwo",
         "url": "http://two:9292/"},
    ]},
]


def test_endpoint_in_the_catalog() -> None:
    assert endpoint_in(CATALOG, "RegionTwo", "public") == "http://two:9292/"
    assert endpoint_in(CATALOG, "regiontwo", "public") == "http://two:9292/"  # as Glance
    assert endpoint_in(CATALOG, "RegionTwo", "internal") == "http://internal:9292"
    assert endpoint_in(CATALOG, "RegionTwo", "admin") is None
    assert endpoint_in(CATALOG, "RegionThree", "public") is None


@pytest.mark.parametrize("catalog", [
    None, {}, "x", [None, 5, "image"], [{"type": "image"}],
    [{"type": "image", "endpoints": [None, {"interface": "public"}]}],
    [{"type": "image", "endpoints": [{"interface": "public", "region_id": "R", "url": 5}]}],
    [{"type": "image", "endpoints": [{"interface": "public", "region_id": "R", "url": ""}]}],
])
def test_endpoint_in_a_malformed_catalog(catalog: Any) -> None:
    assert endpoint_in(catalog, "R", "public") is None


def record(**extra: Any) -> dict[str, Any]:
    data = b"data"
    return {"id": ID, "status": "active", "size": len(data), "disk_format": "qcow2",
            "container_format": "bare", "checksum": hashlib.md5(data).hexdigest(),
            "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest(),
            **extra}


def test_read_record_copies_the_prefixed_properties() -> None:
    found = read_record(record(hw_disk_bus="scsi", os_distro="cirros", os_type="linux",
                               os_secure_boot="required", **{"trait:CUSTOM_X": "required"},
                               os_hidden=False, hw_numa=4, colour="blue", owner="them"),
                        REMOTE, PREFIXES)
    assert found.properties == {"hw_disk_bus": "scsi", "os_distro": "cirros",
                                "os_type": "linux", "os_secure_boot": "required",
                                "trait:CUSTOM_X": "required"}
    assert (found.size, found.disk_format, found.container_format) == (4, "qcow2", "bare")
    assert found.digest == ("sha512", hashlib.sha512(b"data").hexdigest())
    assert read_record(record(hw_x="1"), REMOTE, ()).properties == {}


def test_read_record_digest_falls_back_to_the_checksum() -> None:
    md5 = hashlib.md5(b"data").hexdigest()
    assert read_record(record(os_hash_algo="whirlpool-9"), REMOTE, ()).digest == ("md5", md5)
    assert read_record(record(os_hash_value=None), REMOTE, ()).digest == ("md5", md5)
    bare = record(os_hash_value=None, checksum=None)
    assert read_record(bare, REMOTE, ()).digest is None


@pytest.mark.parametrize(("data", "error", "phrase"), [
    (record(status="queued"), PreconditionFailed, "is queued"),
    (record(status="deactivated"), PreconditionFailed, "is deactivated"),
    ({"status": None}, PreconditionFailed, "is None"),
    ([], Invalid, "image record"),
    (record(size=None), Invalid, "Size attribute"),
    (record(size="4"), Invalid, "Size attribute"),
    (record(size=True), Invalid, "Size attribute"),
    (record(size=-1), Invalid, "Size attribute"),
    (record(disk_format=None), Invalid, "no disk_format"),
    (record(container_format=""), Invalid, "no container_format"),
])
def test_read_record_refuses(data: Any, error: type[Exception], phrase: str) -> None:
    with pytest.raises(error) as info:
        read_record(data, REMOTE, PREFIXES)
    assert phrase in str(info.value) and ID in str(info.value)


def test_read_record_holds_formats_to_those_allowed() -> None:
    formats = (("raw", "qcow2"), ("bare",))
    assert read_record(record(), REMOTE, (), formats).disk_format == "qcow2"
    with pytest.raises(Invalid, match="disk_format 'ploop'"):
        read_record(record(disk_format="ploop"), REMOTE, (), formats)
    with pytest.raises(Invalid, match="container_format 'ova'"):
        read_record(record(container_format="ova"), REMOTE, (), formats)


def test_verified_checks_size_and_hash() -> None:
    good = read_record(record(), REMOTE, ())
    assert b"".join(verified(iter([b"da", b"ta"]), good, REMOTE)) == b"data"
    with pytest.raises(Invalid, match="4 bytes; 5 were received"):
        b"".join(verified(iter([b"data!"]), good, REMOTE))
    with pytest.raises(Invalid, match="sha512 hash"):
        b"".join(verified(iter([b"DATA"]), good, REMOTE))
    md5_only = read_record(record(os_hash_value=None, checksum="0" * 32), REMOTE, ())
    with pytest.raises(Invalid, match="md5 hash"):
        b"".join(verified(iter([b"data"]), md5_only, REMOTE))


class FakeCatalog:
    def __init__(self, url: str | None) -> None:
        self.url = url
        self.asked: list[tuple[str, str, str]] = []

    def image_endpoint(self, token: str, region: str, interface: str) -> str | None:
        self.asked.append((token, region, interface))
        return self.url


class FakeSource:
    """An image service: paths -> bodies (None: 404); records the requests' headers."""

    def __init__(self, bodies: dict[str, bytes | None], refused: str = "") -> None:
        self.bodies = bodies
        self.refused = refused
        self.requests: list[tuple[str, int, dict[str, str]]] = []

    def check_address(self, url: str) -> None:
        if self.refused and self.refused in url:
            raise Invalid("the URL does not pass filtering", code=NOT_ALLOWED)

    def open(self, url: str, offset: int = 0, length: int | None = None, *,
             headers: Mapping[str, str] | None = None) -> Iterator[bytes]:
        self.requests.append((url, offset, dict(headers or {})))
        body = self.bodies.get(url.split("://", 1)[1].split("/", 1)[1])
        if body is None:
            raise NotFound("External source not found (remote returned 404)")
        return iter([body[offset:]])


def test_endpoint_checks() -> None:
    source = FakeSource({}, refused="inward")
    with pytest.raises(Invalid, match="token"):
        GlanceDownload(FakeCatalog("http://two"), source).endpoint(None, REMOTE)
    with pytest.raises(Invalid, match="No image service endpoint for region 'RegionTwo'"):
        GlanceDownload(FakeCatalog(None), source).endpoint("tok", REMOTE)
    with pytest.raises(Invalid, match="filtering") as info:
        GlanceDownload(FakeCatalog("http://inward:9292"), source).endpoint("tok", REMOTE)
    assert info.value.code == NOT_ALLOWED  # refused when asked for (the others: the task)
    catalog = FakeCatalog("http://two:9292/")
    assert GlanceDownload(catalog, source).endpoint("tok", REMOTE) == "http://two:9292"
    assert catalog.asked == [("tok", "RegionTwo", "public")]


def test_fetch_sends_the_token_and_checks_the_bytes() -> None:
    source = FakeSource({f"v2/images/{ID}": json.dumps(record(hw_x="y")).encode(),
                         f"v2/images/{ID}/file": b"data"})
    gdl = GlanceDownload(FakeCatalog("http://two"), source, prefixes=PREFIXES)
    chunks, found = gdl.fetch("http://two", "tok", REMOTE)
    assert b"".join(chunks) == b"data" and found.properties == {"hw_x": "y"}
    assert [(url, headers) for url, _, headers in source.requests] == [
        (f"http://two/v2/images/{ID}", {"X-Auth-Token": "tok"}),
        (f"http://two/v2/images/{ID}/file", {"X-Auth-Token": "tok"})]


@pytest.mark.parametrize(("body", "error", "phrase"), [
    (None, NotFound, "was not found in region RegionTwo"),
    (b"not json", Invalid, "not JSON"),
    (b"[" + b" " * (2 << 20) + b"]", Invalid, "too large"),
])
def test_fetch_refuses_a_bad_record(body: bytes | None, error: type[Exception],
                                    phrase: str) -> None:
    source = FakeSource({f"v2/images/{ID}": body})
    with pytest.raises(error, match=phrase):
        GlanceDownload(FakeCatalog("http://two"), source).fetch("http://two", "tok", REMOTE)


def test_fetch_wraps_transport_errors() -> None:
    class Down(FakeSource):
        def open(self, url: str, offset: int = 0, length: int | None = None, *,
                 headers: Mapping[str, str] | None = None) -> Iterator[bytes]:
            raise Unavailable("External source returned an unexpected status 401")

    with pytest.raises(Invalid, match=f"Fetching remote image {ID} from region RegionTwo "
                                      "failed: .*401"):
        GlanceDownload(FakeCatalog("x"), Down({})).fetch("http://two", "tok", REMOTE)


def test_settings_need_keystone_for_glance_download() -> None:
    methods = {"GLIMPSE_IMPORT_METHODS": "glance-direct,glance-download"}
    with pytest.raises(Invalid, match="needs auth_strategy keystone"):
        load(environ=methods)
    keystone = {"GLIMPSE_AUTH_STRATEGY": "keystone",
                "GLIMPSE_KEYSTONE_AUTH_URL": "http://127.0.0.1:5000/v3",
                "GLIMPSE_KEYSTONE_PASSWORD": "pw", **methods,
                "GLIMPSE_GLANCE_DOWNLOAD_PROPERTIES": "hw_,os_"}
    loaded = load(environ=keystone)
    assert "glance-download" in loaded.import_methods
    assert loaded.glance_download_properties == ("hw_", "os_")
    assert load(environ={}).glance_download_properties == PREFIXES

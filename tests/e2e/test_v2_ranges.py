"""v2 partial downloads over HTTP (spec §2.6, §7.3, §7.8): 200 with Accept-Ranges, 206 for
each form of a range with its Content-Range and Content-Length and without Content-MD5, 416
naming the size, 400 for several ranges, 204 for an image without data whatever the range.

On the filesystem store (zero-copy sending from the offset) and, with
GLIMPSE_TEST_STORE=swift|s3|rbd, on the object stores with small segments, parts and RBD
objects, so that ranges cross their boundaries."""

from __future__ import annotations

import hashlib
import http.server
import os
from collections.abc import Iterator
from typing import ClassVar

import httpx
import pytest

from tests.e2e.server import GlimpseServer
from tests.http_remote import serving

pytestmark = pytest.mark.e2e

MiB = 1 << 20
SIZE = 6 * MiB + 5  # six 1 MiB Swift segments and a bit; two 5 MiB S3 parts
DATA = os.urandom(SIZE)
MEMBER = {"X-Tenant-Id": "ranges", "X-User-Id": "user-ranges", "X-Roles": "member"}
OCTETS = {**MEMBER, "Content-Type": "application/octet-stream"}
STORE = os.environ.get("GLIMPSE_TEST_STORE", "file")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    small = {"swift": {"default_store_segment_size": "1MB"},
             "s3": {"default_store_part_size": "5MB"},
             "rbd": {"default_store_chunk_size": "1MB"}}.get(STORE, {})
    server = GlimpseServer(small)
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as c:
            yield c
    finally:
        server.stop()


def _image(client: httpx.Client, data: bytes | None) -> str:
    resp = client.post("/v2/images", json={"name": "ranged", "disk_format": "raw",
                                           "container_format": "bare"}, headers=MEMBER)
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    if data is not None:
        put = client.put(f"/v2/images/{image_id}/file", content=data, headers=OCTETS)
        assert put.status_code == 204, put.text
    return image_id


@pytest.fixture(scope="module")
def url(client: httpx.Client) -> str:
    return f"/v2/images/{_image(client, DATA)}/file"


def test_a_whole_download_offers_ranges(client: httpx.Client, url: str) -> None:
    resp = client.get(url, headers=MEMBER)
    assert resp.status_code == 200
    assert resp.content == DATA
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["content-length"] == str(SIZE)
    assert resp.headers["content-md5"] == hashlib.md5(DATA).hexdigest()
    assert "content-range" not in resp.headers


@pytest.mark.parametrize(("header", "start", "end"), [
    ({"Range": "bytes=0-0"}, 0, 0),
    ({"Range": "bytes=3-10"}, 3, 10),
    ({"Range": f"bytes={MiB - 2}-{MiB + 1}"}, MiB - 2, MiB + 1),  # across a segment
    ({"Range": f"bytes={5 * MiB - 1}-{5 * MiB}"}, 5 * MiB - 1, 5 * MiB),  # across a part
    ({"Range": f"bytes={MiB}-"}, MiB, SIZE - 1),
    ({"Range": "bytes=0-"}, 0, SIZE - 1),  # the whole data, still as a range
    ({"Range": "bytes=-7"}, SIZE - 7, SIZE - 1),
    ({"Range": f"bytes=-{SIZE + 100}"}, 0, SIZE - 1),
    ({"Range": f"bytes={SIZE - 1}-{SIZE * 10}"}, SIZE - 1, SIZE - 1),  # clamped
    ({"Range": "BYTES = 3 - 10"}, 3, 10),
    ({"Content-Range": "bytes 3-10/*"}, 3, 10),  # the legacy request header
    ({"Content-Range": f"bytes 100-199/{SIZE}"}, 100, 199),
    ({"Range": "bytes=1-2", "Content-Range": "bytes 3-10/*"}, 1, 2),  # Range wins
])
def test_a_range_is_206(client: httpx.Client, url: str, header: dict[str, str], start: int,
                        end: int) -> None:
    resp = client.get(url, headers={**MEMBER, **header})
    assert resp.status_code == 206, resp.text
    assert resp.content == DATA[start:end + 1]
    assert resp.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["content-length"] == str(end - start + 1)
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["content-type"] == "application/octet-stream"
    # The hash of the whole image describes no range: left off (Glance sends it; §7.8).
    assert "content-md5" not in resp.headers


@pytest.mark.parametrize("header", [
    {"Range": f"bytes={SIZE}-"}, {"Range": f"bytes={SIZE}-{SIZE + 5}"}, {"Range": "bytes=10-3"},
    {"Range": "bytes=-0"}, {"Range": "bytes=junk"}, {"Range": "items=0-5"}, {"Range": ""},
    {"Range": "bytes=-5-10"}, {"Range": "bytes=" + "9" * 4000 + "-"},
    {"Content-Range": "bytes 5-3/*"}, {"Content-Range": f"bytes {SIZE}-{SIZE}/*"},
    {"Content-Range": "bytes */100"}, {"Content-Range": "junk"},
])
def test_an_unsatisfiable_range_is_416_naming_the_size(
    client: httpx.Client, url: str, header: dict[str, str]
) -> None:
    resp = client.get(url, headers={**MEMBER, **header, "Accept": "application/json"})
    assert resp.status_code == 416, resp.text
    assert resp.headers["content-range"] == f"bytes */{SIZE}"
    assert resp.json()["code"] == "416 Requested Range Not Satisfiable"


@pytest.mark.parametrize("value", ["bytes=0-1,3-4", "bytes=0-1, 5-", "bytes=-1,-2", "junk,"])
def test_several_ranges_are_400(client: httpx.Client, url: str, value: str) -> None:
    resp = client.get(url, headers={**MEMBER, "Range": value})
    assert resp.status_code == 400, resp.text
    assert "multiple ranges" in resp.text
    assert "content-range" not in resp.headers


def test_an_image_without_data_is_204_whatever_the_range(client: httpx.Client) -> None:
    """Glance answers a range of an image without data with a 500 and a dropped connection
    (§7.3); the answer is the 204 of a download without data."""
    url = f"/v2/images/{_image(client, None)}/file"
    for header in ({}, {"Range": "bytes=0-10"}, {"Range": "bytes=junk"},
                   {"Content-Range": "bytes 0-1/*"}):
        resp = client.get(url, headers={**MEMBER, **header})
        assert resp.status_code == 204, (header, resp.text)
        assert resp.content == b""


def test_empty_data_has_no_satisfiable_range(client: httpx.Client) -> None:
    url = f"/v2/images/{_image(client, b'')}/file"
    whole = client.get(url, headers=MEMBER)
    assert whole.status_code == 200 and whole.content == b""
    assert whole.headers["content-length"] == "0"
    resp = client.get(url, headers={**MEMBER, "Range": "bytes=-1"})
    assert resp.status_code == 416
    assert resp.headers["content-range"] == "bytes */0"


def test_invisible_images_are_404_before_any_range(client: httpx.Client, url: str) -> None:
    other = {**MEMBER, "X-Tenant-Id": "stranger", "X-User-Id": "stranger"}
    for header in ({"Range": "bytes=0-1"}, {"Range": "bytes=0-1,2-3"}, {"Range": "junk"}):
        assert client.get(url, headers={**other, **header}).status_code == 404


def test_a_deactivated_image_is_403_before_any_range_but_admins_read_it(
    client: httpx.Client
) -> None:
    image_id = _image(client, DATA[:100])
    url = f"/v2/images/{image_id}/file"
    admin = {"X-Tenant-Id": "admin", "X-User-Id": "root", "X-Roles": "admin"}
    resp = client.post(f"/v2/images/{image_id}/actions/deactivate", headers=admin)
    assert resp.status_code == 204, resp.text
    for header in ({"Range": "bytes=0-1"}, {"Range": "bytes=500-"}, {"Range": "junk"}):
        assert client.get(url, headers={**MEMBER, **header}).status_code == 403
    resp = client.get(url, headers={**admin, "Range": "bytes=10-19"})
    assert resp.status_code == 206 and resp.content == DATA[10:20]
    assert resp.headers["content-range"] == "bytes 10-19/100"


def test_v1_downloads_stay_whole(client: httpx.Client, url: str) -> None:
    """v1 has no ranges: a Range is ignored and no Accept-Ranges offers them."""
    image_id = url.split("/")[3]
    resp = client.get(f"/v1/images/{image_id}", headers={**MEMBER, "Range": "bytes=0-9"})
    assert resp.status_code == 200
    assert resp.content == DATA
    assert "accept-ranges" not in resp.headers and "content-range" not in resp.headers


REMOTE_DATA = bytes(range(256)) * 64  # 16 KiB


class _Remote(http.server.BaseHTTPRequestHandler):
    """/ranged honours one "bytes=a-b" or "bytes=a-" range; /plain ignores every range."""

    seen: ClassVar[list[str | None]] = []

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        wanted = self.headers.get("Range")
        if not head:
            _Remote.seen.append(wanted)
        status, body = 200, REMOTE_DATA
        if wanted and self.path == "/ranged":
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            end = min(int(last), len(REMOTE_DATA) - 1) if last else len(REMOTE_DATA) - 1
            status, body = 206, REMOTE_DATA[int(first):end + 1]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{end}/{len(REMOTE_DATA)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def remote() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Remote)
    with serving(httpd) as port:
        yield f"http://127.0.0.1:{port}"


def _external(client: httpx.Client, url: str) -> str:
    """An image whose data stays behind an external URL (v1's x-image-meta-location)."""
    resp = client.post("/v1/images", headers={
        **MEMBER, "x-image-meta-name": "external", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare", "x-image-meta-location": url})
    assert resp.status_code == 201, resp.text
    return f"/v2/images/{resp.json()['image']['id']}/file"


def test_a_range_of_an_external_location_is_asked_of_the_remote(
    client: httpx.Client, remote: str
) -> None:
    url = _external(client, f"{remote}/ranged")
    _Remote.seen = []
    resp = client.get(url, headers={**MEMBER, "Range": "bytes=100-199"})
    assert resp.status_code == 206
    assert resp.content == REMOTE_DATA[100:200]
    assert resp.headers["content-range"] == f"bytes 100-199/{len(REMOTE_DATA)}"
    assert _Remote.seen == ["bytes=100-199"]
    tail = client.get(url, headers={**MEMBER, "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == REMOTE_DATA[-10:]
    assert _Remote.seen[-1] == f"bytes={len(REMOTE_DATA) - 10}-"


def test_a_remote_that_ignores_ranges_is_never_sent_as_a_range(
    client: httpx.Client, remote: str
) -> None:
    """Glance sends the whole image with a 206 when a store cannot seek (§7.8); here the
    range is refused (503) rather than answered with the wrong bytes."""
    url = _external(client, f"{remote}/plain")
    resp = client.get(url, headers={**MEMBER, "Range": "bytes=100-199"})
    assert resp.status_code == 503, resp.text
    # All of the data needs no range: the same remote serves it.
    whole = client.get(url, headers={**MEMBER, "Range": "bytes=0-"})
    assert whole.status_code == 206 and whole.content == REMOTE_DATA
    assert client.get(url, headers=MEMBER).content == REMOTE_DATA

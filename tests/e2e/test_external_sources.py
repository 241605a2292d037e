"""External locations and copy-from over HTTP (spec §5.1, §7, §8.1.5, §8.1.6, §8.3, §8.4.4, §17).

A small threaded HTTP server on 127.0.0.1 plays the remote side; it logs every request it
receives so the tests can prove that refused URLs were never fetched.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.e2e.server import GlimpseServer, free_port
from tests.http_remote import serving

pytestmark = pytest.mark.e2e

DATA = bytes((i * 7 + i // 251) % 256 for i in range(5 * 1024 + 123))
DATA_MD5 = hashlib.md5(DATA).hexdigest()
OTHER = b"second remote file\n" * 200
OTHER_MD5 = hashlib.md5(OTHER).hexdigest()
FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
OCTET = {"Content-Type": "application/octet-stream"}
LOCATION = "x-image-meta-location"
COPY_FROM = "x-glance-api-copy-from"
EVERYTHING = "2000-01-01T00:00:00"
POLL_SECONDS = 5.0


# --------------------------------------------------------------------------- remote server


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _RemoteHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self) -> str:
        with self.server.lock:
            self.server.requests.append((self.command, self.path))
        return self.path.split("?", 1)[0]

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _send(self, status: int, body: bytes = b"", head: bool = False,
              headers: dict[str, str] | None = None, length: int | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        path = self._record()
        octet = {"Content-Type": "application/octet-stream"}
        if path == "/data":
            self._send(200, DATA, head, octet)
        elif path == "/other":
            self._send(200, OTHER, head, octet)
        elif path == "/missing":
            self._send(404, b"not here", head)
        elif path == "/error":
            self._send(500, b"boom", head)
        elif path == "/redirect":
            self._send(302, b"", head, {"Location": "/data"})
        elif path == "/redirect-metadata":
            self._send(302, b"", head,
                       {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/redirect-private":
            self._send(302, b"", head, {"Location": "http://10.0.0.1/data"})
        elif path == "/redirect-file":
            self._send(302, b"", head, {"Location": "file:///etc/passwd"})
        elif path == "/nolength":
            # No Content-Length at all: the body (on GET) is delimited by closing.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(DATA)
            self.close_connection = True
        elif path == "/short":
            # Announces the full length but sends a third, then closes the connection.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(DATA)))
            self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(DATA[: len(DATA) // 3])
                self.wfile.flush()
            self.close_connection = True
        elif path == "/get-error":
            # HEAD looks fine; the actual download fails.
            if head:
                self._send(200, DATA, head, octet)
            else:
                self._send(500, b"boom")
        else:
            self._send(404, b"unknown path", head)


class _RemoteHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []


@dataclass
class Remote:
    httpd: _RemoteHTTPServer
    port: int = field(init=False)

    def __post_init__(self) -> None:
        self.port = self.httpd.server_address[1]

    def url(self, path: str, token: str | None = None, host: str = "127.0.0.1") -> str:
        url = f"http://{host}:{self.port}{path}"
        return f"{url}?t={token}" if token else url

    def hits(self, token: str) -> list[tuple[str, str]]:
        with self.httpd.lock:
            return [r for r in self.httpd.requests if token in r[1]]


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    httpd = _RemoteHTTPServer()
    with serving(httpd):
        yield Remote(httpd)


@pytest.fixture(scope="module")
def strict_server() -> Iterator[GlimpseServer]:
    """A server with the default (empty) allow-list: loopback and private nets are refused."""
    srv = GlimpseServer({"external_allowed_networks": ""})
    yield srv
    srv.stop()


# --------------------------------------------------------------------------- helpers


class Recorder:
    """Keeps the text (status line, headers, body) of every response a client received."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def hook(self, response: httpx.Response) -> None:
        response.read()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        body = response.content.decode("utf-8", errors="replace")
        self.texts.append(f"{response.request.method} {response.url}\n{headers}\n\n{body}")

    def assert_never_contains(self, *needles: str) -> None:
        assert self.texts
        for text in self.texts:
            for needle in needles:
                assert needle not in text, f"{needle!r} leaked in response:\n{text[:2000]}"


_RECORDER = Recorder()


@pytest.fixture
def recorder() -> Recorder:
    """The recorder of the module's clients, emptied for each test."""
    _RECORDER.texts.clear()
    return _RECORDER


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=15.0,
                        event_hooks={"response": [_RECORDER.hook]})


@pytest.fixture(scope="module")
def _api(server: GlimpseServer) -> Iterator[httpx.Client]:
    with _client(server.url) as c:
        yield c


@pytest.fixture(scope="module")
def _strict_api(strict_server: GlimpseServer) -> Iterator[httpx.Client]:
    with _client(strict_server.url) as c:
        yield c


@pytest.fixture
def api(_api: httpx.Client, recorder: Recorder) -> httpx.Client:
    return _api


@pytest.fixture
def strict_api(_strict_api: httpx.Client, recorder: Recorder) -> httpx.Client:
    return _strict_api


def tagged(unique: str, **extra: str) -> dict[str, str]:
    return {"x-image-meta-property-tag": unique, "x-image-meta-name": f"ext-{unique}", **extra}


def create(api: httpx.Client, headers: dict[str, str],
           content: bytes | None = None) -> httpx.Response:
    hdrs = dict(headers)
    if content is not None:
        hdrs.update(OCTET)
    return api.post("/v1/images", headers=hdrs, content=content)


def tagged_images(api: httpx.Client, unique: str) -> list[dict[str, object]]:
    """Every image carrying the tag, in any status (changes-since includes killed/deleted)."""
    found: dict[object, dict[str, object]] = {}
    for params in (
        {"property-tag": unique, "is_public": "none"},
        {"property-tag": unique, "is_public": "none", "changes-since": EVERYTHING},
    ):
        resp = api.get("/v1/images/detail", params=params)
        assert resp.status_code == 200, resp.text
        for image in resp.json()["images"]:
            found[image["id"]] = image
    return list(found.values())


def assert_nothing_created(api: httpx.Client, unique: str) -> None:
    assert tagged_images(api, unique) == []


def assert_nothing_usable(api: httpx.Client, unique: str) -> None:
    """For refusals after the reservation (§15 Q4): no record, or a queued one at most."""
    for image in tagged_images(api, unique):
        assert image["status"] == "queued", image


def head(api: httpx.Client, image_id: object) -> httpx.Headers:
    resp = api.head(f"/v1/images/{image_id}")
    assert resp.status_code == 200
    return resp.headers


def poll_status(api: httpx.Client, image_id: object, until: set[str]) -> tuple[str, list[str]]:
    """HEAD the image until its status is in ``until`` (bounded); returns it and the history."""
    seen: list[str] = []
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        status = head(api, image_id)["x-image-meta-status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in until or time.monotonic() > deadline:
            return status, seen
        time.sleep(0.05)


# --------------------------------------------------------------------------- location: create


def test_location_create_active_with_remote_size_no_checksum(
        api: httpx.Client, remote: Remote, recorder: Recorder, unique: str) -> None:
    secret = uuid.uuid4().hex
    url = remote.url("/data", secret)
    resp = create(api, tagged(unique, **FORMATS, **{LOCATION: url}))
    assert resp.status_code == 201, resp.text
    image = resp.json()["image"]
    assert image["status"] == "active"
    assert image["size"] == len(DATA)
    assert image["checksum"] is None
    assert "location" not in image and "store" not in image
    assert "location" not in {k.lower() for k in image["properties"]}
    assert resp.headers.get("ETag") is None
    assert ("HEAD", f"/data?t={secret}") in remote.hits(secret)

    headers = head(api, image["id"])
    assert headers["x-image-meta-status"] == "active"
    assert headers["x-image-meta-size"] == str(len(DATA))
    assert "x-image-meta-checksum" not in headers
    assert "etag" not in headers
    assert "x-image-meta-location" not in headers

    assert api.get("/v1/images", params={"name": f"ext-{unique}"}).status_code == 200
    listed = api.get("/v1/images/detail", params={"property-tag": unique, "is_public": "none"})
    assert [i["id"] for i in listed.json()["images"]] == [image["id"]]
    assert listed.json()["images"][0]["checksum"] is None
    changes = api.get("/v1/images/detail",
                      params={"property-tag": unique, "is_public": "none",
                              "changes-since": EVERYTHING})
    assert [i["id"] for i in changes.json()["images"]] == [image["id"]]
    update = api.put(f"/v1/images/{image['id']}",
                     headers={"x-image-meta-name": "renamed",
                              "x-glance-registry-purge-props": "false"})
    assert update.status_code == 200, update.text

    download = api.get(f"/v1/images/{image['id']}")
    assert download.status_code == 200, download.text
    assert download.content == DATA
    assert download.headers["Content-Length"] == str(len(DATA))
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["x-image-meta-size"] == str(len(DATA))
    assert "etag" not in download.headers
    assert ("GET", f"/data?t={secret}") in remote.hits(secret)

    recorder.assert_never_contains(secret, url, f"127.0.0.1:{remote.port}")


def test_location_declared_size_matching_remote(api: httpx.Client, remote: Remote,
                                                unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{
        LOCATION: remote.url("/data"), "x-image-meta-size": str(len(DATA))}))
    assert resp.status_code == 201, resp.text
    assert resp.json()["image"]["size"] == len(DATA)
    assert resp.json()["image"]["status"] == "active"


def test_location_head_without_content_length_uses_declared_size(
        api: httpx.Client, remote: Remote, unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{
        LOCATION: remote.url("/nolength"), "x-image-meta-size": str(len(DATA))}))
    assert resp.status_code == 201, resp.text
    image = resp.json()["image"]
    assert image["status"] == "active"
    assert image["size"] == len(DATA)
    assert image["checksum"] is None
    download = api.get(f"/v1/images/{image['id']}")
    assert download.status_code == 200
    assert download.headers["Content-Length"] == str(len(DATA))
    assert download.content == DATA


def test_location_head_without_content_length_and_no_declared_size(
        api: httpx.Client, remote: Remote, unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{LOCATION: remote.url("/nolength")}))
    assert resp.status_code == 201, resp.text
    image = resp.json()["image"]
    assert image["status"] == "active"
    assert image["size"] == 0  # §8.1.2: declared, else reported by the remote, else 0
    assert image["checksum"] is None


def test_location_through_redirect(api: httpx.Client, remote: Remote, recorder: Recorder,
                                   unique: str) -> None:
    secret = uuid.uuid4().hex
    resp = create(api, tagged(unique, **FORMATS, **{LOCATION: remote.url("/redirect", secret)}))
    assert resp.status_code == 201, resp.text
    image = resp.json()["image"]
    assert image["status"] == "active"
    assert image["size"] == len(DATA)
    download = api.get(f"/v1/images/{image['id']}")
    assert download.status_code == 200
    assert download.content == DATA
    recorder.assert_never_contains(secret)


@pytest.mark.parametrize("missing, message", [
    ("x-image-meta-disk_format", "Disk format is not specified"),
    ("x-image-meta-container_format", "Container format is not specified"),
])
def test_location_requires_formats(api: httpx.Client, remote: Remote, unique: str,
                                   missing: str, message: str) -> None:
    formats = {k: v for k, v in FORMATS.items() if k != missing}
    resp = create(api, tagged(unique, **formats, **{LOCATION: remote.url("/data")}))
    assert resp.status_code == 400, resp.text
    assert message in resp.text
    assert_nothing_usable(api, unique)


def test_location_without_any_format(api: httpx.Client, remote: Remote, unique: str) -> None:
    resp = create(api, tagged(unique, **{LOCATION: remote.url("/data")}))
    assert resp.status_code == 400, resp.text
    assert "format is not specified" in resp.text
    assert_nothing_usable(api, unique)


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
def test_empty_source_refused(api: httpx.Client, unique: str, header: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{header: ""}))
    assert resp.status_code == 400, resp.text
    assert "External source should not be empty" in resp.text
    assert_nothing_created(api, unique)


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
@pytest.mark.parametrize("uri", [
    "file:///etc/passwd", "filesystem://x", "swift+config://x", "ftp://x",
    "swift://user:key@auth/container/obj", "gopher://example.com/",
])
def test_unsupported_scheme_refused(api: httpx.Client, recorder: Recorder, unique: str,
                                    header: str, uri: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{header: uri}))
    assert resp.status_code == 400, resp.text
    assert "External sources are not supported" in resp.text
    assert_nothing_created(api, unique)


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
@pytest.mark.parametrize("uri", ["http://", "https://", "http:///path", "http://[::1",
                                 "http://exa mple.com/"])
def test_malformed_uri_refused(api: httpx.Client, unique: str, header: str, uri: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{header: uri}))
    assert resp.status_code == 400, resp.text
    assert "Invalid location" in resp.text
    assert_nothing_created(api, unique)


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
def test_remote_404_gives_404(api: httpx.Client, remote: Remote, unique: str,
                              header: str) -> None:
    secret = uuid.uuid4().hex
    resp = create(api, tagged(unique, **FORMATS, **{header: remote.url("/missing", secret)}))
    assert resp.status_code == 404, resp.text
    assert remote.hits(secret), "glimpse never asked the remote"
    assert_nothing_created(api, unique)


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
def test_remote_error_or_unreachable_gives_400(api: httpx.Client, remote: Remote, unique: str,
                                               header: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{header: remote.url("/error")}))
    assert resp.status_code == 400, resp.text
    dead = f"http://127.0.0.1:{free_port()}/data"
    resp = create(api, tagged(unique, **FORMATS, **{header: dead}))
    assert resp.status_code == 400, resp.text
    assert_nothing_created(api, unique)


def test_location_declared_size_conflicts_with_remote(api: httpx.Client, remote: Remote,
                                                      unique: str) -> None:
    for size in (len(DATA) + 1, len(DATA) - 1, 1):
        resp = create(api, tagged(unique, **FORMATS, **{
            LOCATION: remote.url("/data"), "x-image-meta-size": str(size)}))
        assert resp.status_code == 409, resp.text
        assert "Provided image size must match the stored image size" in resp.text
    assert_nothing_usable(api, unique)


def test_location_with_body_is_multiple_sources(api: httpx.Client, remote: Remote,
                                                unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{LOCATION: remote.url("/data")}),
                  content=b"some image data")
    assert resp.status_code == 400, resp.text
    assert "It's invalid to provide multiple image sources." in resp.text
    assert_nothing_usable(api, unique)


def test_location_with_copy_from_is_multiple_sources(api: httpx.Client, remote: Remote,
                                                     unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{
        LOCATION: remote.url("/data"), COPY_FROM: remote.url("/other")}))
    assert resp.status_code == 400, resp.text
    assert "It's invalid to provide multiple image sources." in resp.text
    time.sleep(0.3)  # a wrongly started copy would have had time to activate the image
    assert_nothing_usable(api, unique)


def test_copy_from_with_body_is_multiple_sources(api: httpx.Client, remote: Remote,
                                                 unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{COPY_FROM: remote.url("/data")}),
                  content=b"some image data")
    assert resp.status_code == 400, resp.text
    assert "It's invalid to provide multiple image sources." in resp.text
    time.sleep(0.3)
    assert_nothing_usable(api, unique)


def test_location_download_of_short_remote_is_aborted(api: httpx.Client, remote: Remote,
                                                      unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{LOCATION: remote.url("/short")}))
    assert resp.status_code == 201, resp.text
    image = resp.json()["image"]
    assert image["size"] == len(DATA)
    try:
        download = api.get(f"/v1/images/{image['id']}")
    except httpx.HTTPError:
        return  # the connection was aborted mid-body (§8.3)
    # A completed response must at least not be a successful download.
    assert download.status_code != 200, (download.status_code, len(download.content))


# --------------------------------------------------------------------------- location: update


def test_put_location_activates_queued_image(api: httpx.Client, remote: Remote,
                                             recorder: Recorder, unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS))
    assert resp.status_code == 201
    image = resp.json()["image"]
    assert image["status"] == "queued"
    secret = uuid.uuid4().hex
    url = remote.url("/data", secret)
    resp = api.put(f"/v1/images/{image['id']}",
                   headers={LOCATION: url, "x-glance-registry-purge-props": "false"})
    assert resp.status_code == 200, resp.text
    updated = resp.json()["image"]
    assert updated["status"] == "active"
    assert updated["size"] == len(DATA)
    assert updated["checksum"] is None
    assert updated["properties"] == {"tag": unique}
    download = api.get(f"/v1/images/{image['id']}")
    assert download.status_code == 200
    assert download.content == DATA

    again = api.put(f"/v1/images/{image['id']}", headers={LOCATION: remote.url("/other")})
    assert again.status_code == 400, again.text
    assert "Attempted to update Location field for an image not in queued status." in again.text
    assert api.get(f"/v1/images/{image['id']}").content == DATA
    recorder.assert_never_contains(secret, url)


def test_put_location_with_formats_in_same_request(api: httpx.Client, remote: Remote,
                                                   unique: str) -> None:
    image = create(api, tagged(unique)).json()["image"]
    resp = api.put(f"/v1/images/{image['id']}",
                   headers={**FORMATS, LOCATION: remote.url("/data"),
                            "x-glance-registry-purge-props": "false"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["image"]["status"] == "active"
    assert resp.json()["image"]["disk_format"] == "raw"


def test_put_location_without_formats_refused(api: httpx.Client, remote: Remote,
                                              unique: str) -> None:
    image = create(api, tagged(unique)).json()["image"]
    resp = api.put(f"/v1/images/{image['id']}", headers={LOCATION: remote.url("/data")})
    assert resp.status_code == 400, resp.text
    assert "format is not specified" in resp.text
    assert head(api, image["id"])["x-image-meta-status"] == "queued"


def test_put_location_on_active_uploaded_image_refused(api: httpx.Client, remote: Remote,
                                                       unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS), content=b"uploaded bytes")
    assert resp.status_code == 201, resp.text
    image_id = resp.json()["image"]["id"]
    resp = api.put(f"/v1/images/{image_id}", headers={LOCATION: remote.url("/data")})
    assert resp.status_code == 400, resp.text
    assert "Attempted to update Location field for an image not in queued status." in resp.text
    assert api.get(f"/v1/images/{image_id}").content == b"uploaded bytes"


def test_put_location_with_body_refused(api: httpx.Client, remote: Remote, unique: str) -> None:
    image = create(api, tagged(unique, **FORMATS)).json()["image"]
    resp = api.put(f"/v1/images/{image['id']}",
                   headers={**OCTET, LOCATION: remote.url("/data")}, content=b"data")
    assert resp.status_code == 400, resp.text
    assert "multiple image sources" in resp.text
    assert head(api, image["id"])["x-image-meta-status"] != "active"


def test_put_location_remote_404(api: httpx.Client, remote: Remote, unique: str) -> None:
    image = create(api, tagged(unique, **FORMATS)).json()["image"]
    resp = api.put(f"/v1/images/{image['id']}", headers={LOCATION: remote.url("/missing")})
    assert resp.status_code == 404, resp.text
    assert head(api, image["id"])["x-image-meta-status"] == "queued"


@pytest.mark.parametrize("uri, message", [
    ("", "External source should not be empty"),
    ("file:///etc/passwd", "External sources are not supported"),
])
def test_put_bad_location_on_queued_image(api: httpx.Client, unique: str, uri: str,
                                          message: str) -> None:
    image = create(api, tagged(unique, **FORMATS)).json()["image"]
    resp = api.put(f"/v1/images/{image['id']}", headers={LOCATION: uri})
    assert resp.status_code == 400, resp.text
    assert message in resp.text
    assert head(api, image["id"])["x-image-meta-status"] == "queued"


# --------------------------------------------------------------------------- copy-from


def test_copy_from_copies_data(api: httpx.Client, remote: Remote, recorder: Recorder,
                               unique: str) -> None:
    secret = uuid.uuid4().hex
    url = remote.url("/data", secret)
    resp = create(api, tagged(unique, **FORMATS, **{COPY_FROM: url}))
    assert resp.status_code == 201, resp.text
    image = resp.json()["image"]
    assert image["status"] == "queued"
    status, seen = poll_status(api, image["id"], {"active", "killed"})
    assert status == "active", seen
    assert set(seen) <= {"queued", "saving", "active"}, seen

    headers = head(api, image["id"])
    assert headers["x-image-meta-size"] == str(len(DATA))
    assert headers["x-image-meta-checksum"] == DATA_MD5
    assert headers["etag"] == DATA_MD5
    download = api.get(f"/v1/images/{image['id']}")
    assert download.status_code == 200
    assert download.content == DATA
    assert download.headers["Content-Length"] == str(len(DATA))
    assert download.headers["etag"] == DATA_MD5
    detail = api.get("/v1/images/detail",
                     params={"property-tag": unique, "is_public": "none"}).json()["images"]
    assert [(i["id"], i["size"], i["checksum"]) for i in detail] == [
        (image["id"], len(DATA), DATA_MD5)]
    assert [m for m, _ in remote.hits(secret)].count("GET") >= 1
    recorder.assert_never_contains(secret, url)


def test_copy_from_without_content_length_and_redirect(api: httpx.Client, remote: Remote,
                                                       unique: str) -> None:
    ids = []
    for path in ("/nolength", "/redirect"):
        resp = create(api, tagged(unique, **FORMATS, **{COPY_FROM: remote.url(path)}))
        assert resp.status_code == 201, resp.text
        assert resp.json()["image"]["status"] == "queued"
        ids.append(resp.json()["image"]["id"])
    for image_id in ids:
        status, seen = poll_status(api, image_id, {"active", "killed"})
        assert status == "active", seen
        headers = head(api, image_id)
        assert headers["x-image-meta-size"] == str(len(DATA))
        assert headers["x-image-meta-checksum"] == DATA_MD5
        assert api.get(f"/v1/images/{image_id}").content == DATA


def test_copy_from_short_body_ends_killed(api: httpx.Client, remote: Remote,
                                          unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{COPY_FROM: remote.url("/short")}))
    assert resp.status_code == 201, resp.text
    image_id = resp.json()["image"]["id"]
    status, seen = poll_status(api, image_id, {"active", "killed"})
    assert status == "killed", seen
    assert "active" not in seen
    time.sleep(0.2)
    assert head(api, image_id)["x-image-meta-status"] == "killed"
    assert api.get(f"/v1/images/{image_id}").status_code == 404
    listed = api.get("/v1/images/detail", params={"property-tag": unique, "is_public": "none"})
    assert listed.json()["images"] == []


def test_copy_from_failing_download_ends_killed(api: httpx.Client, remote: Remote,
                                                unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{COPY_FROM: remote.url("/get-error")}))
    assert resp.status_code == 201, resp.text
    image_id = resp.json()["image"]["id"]
    status, seen = poll_status(api, image_id, {"active", "killed"})
    assert status == "killed", seen


def test_copy_from_declared_size_mismatch_never_active(api: httpx.Client, remote: Remote,
                                                       unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{
        COPY_FROM: remote.url("/data"), "x-image-meta-size": str(len(DATA) + 10)}))
    if resp.status_code == 201:
        status, seen = poll_status(api, resp.json()["image"]["id"], {"active", "killed"})
        assert status == "killed", seen
    else:
        assert resp.status_code in (400, 409), resp.text
        assert_nothing_usable(api, unique)


def test_copy_from_checksum_mismatch_ends_killed(api: httpx.Client, remote: Remote,
                                                 unique: str) -> None:
    resp = create(api, tagged(unique, **FORMATS, **{
        COPY_FROM: remote.url("/data"), "x-image-meta-checksum": OTHER_MD5}))
    assert resp.status_code == 201, resp.text
    status, seen = poll_status(api, resp.json()["image"]["id"], {"active", "killed"})
    assert status == "killed", seen


def test_put_copy_from_on_queued_image(api: httpx.Client, remote: Remote, recorder: Recorder,
                                       unique: str) -> None:
    image = create(api, tagged(unique, **FORMATS)).json()["image"]
    assert image["status"] == "queued"
    secret = uuid.uuid4().hex
    url = remote.url("/other", secret)
    resp = api.put(f"/v1/images/{image['id']}",
                   headers={COPY_FROM: url, "x-glance-registry-purge-props": "false"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["image"]["status"] in ("queued", "saving", "active")
    status, seen = poll_status(api, image["id"], {"active", "killed"})
    assert status == "active", seen
    headers = head(api, image["id"])
    assert headers["x-image-meta-size"] == str(len(OTHER))
    assert headers["x-image-meta-checksum"] == OTHER_MD5
    assert headers["x-image-meta-property-tag"] == unique
    assert api.get(f"/v1/images/{image['id']}").content == OTHER

    again = api.put(f"/v1/images/{image['id']}", headers={COPY_FROM: remote.url("/data")})
    assert again.status_code in (400, 409), again.text
    time.sleep(0.3)
    assert head(api, image["id"])["x-image-meta-checksum"] == OTHER_MD5
    assert api.get(f"/v1/images/{image['id']}").content == OTHER
    recorder.assert_never_contains(secret, url)


def test_put_copy_from_remote_404(api: httpx.Client, remote: Remote, unique: str) -> None:
    image = create(api, tagged(unique, **FORMATS)).json()["image"]
    resp = api.put(f"/v1/images/{image['id']}", headers={COPY_FROM: remote.url("/missing")})
    assert resp.status_code == 404, resp.text
    assert head(api, image["id"])["x-image-meta-status"] == "queued"


# --------------------------------------------------------------------------- network safety


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
@pytest.mark.parametrize("path", ["/redirect-metadata", "/redirect-private", "/redirect-file"])
def test_redirect_to_forbidden_target_refused(api: httpx.Client, remote: Remote, unique: str,
                                              header: str, path: str) -> None:
    secret = uuid.uuid4().hex
    resp = create(api, tagged(unique, **FORMATS, **{header: remote.url(path, secret)}))
    assert resp.status_code == 400, resp.text
    assert remote.hits(secret), "the redirect itself should have been fetched"
    time.sleep(0.2)
    assert_nothing_usable(api, unique)


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
@pytest.mark.parametrize("userinfo", ["user:pass@", "user@", ":secret@"])
def test_credentials_in_url_refused(api: httpx.Client, remote: Remote, recorder: Recorder,
                                    unique: str, header: str, userinfo: str) -> None:
    secret = uuid.uuid4().hex
    url = f"http://{userinfo}127.0.0.1:{remote.port}/data?t={secret}"
    resp = create(api, tagged(unique, **FORMATS, **{header: url}))
    assert resp.status_code == 400, resp.text
    assert remote.hits(secret) == []
    assert_nothing_created(api, unique)
    recorder.assert_never_contains(secret)


FORBIDDEN_HOSTS = [
    "127.0.0.1", "localhost", "LOCALHOST.", "[::1]", "2130706433", "0x7f.1", "0x7f000001",
    "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "[::]",
    "169.254.169.254", "10.0.0.1", "192.168.0.1", "172.16.0.1", "100.64.0.1",
    "224.0.0.1", "240.0.0.1", "[fe80::1]", "[fd00::1]", "[::ffff:169.254.169.254]",
]


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_strict_server_refuses_internal_addresses(
        strict_api: httpx.Client, remote: Remote, unique: str, header: str, host: str) -> None:
    secret = uuid.uuid4().hex
    url = f"http://{host}:{remote.port}/data?t={secret}"
    resp = strict_api.post("/v1/images", headers=tagged(unique, **FORMATS, **{header: url}),
                           timeout=10.0)
    assert resp.status_code == 400, resp.text
    assert remote.hits(secret) == []
    time.sleep(0 if header == LOCATION else 0.1)
    assert remote.hits(secret) == []
    assert_nothing_created(strict_api, unique)


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
def test_strict_server_refuses_credentials(strict_api: httpx.Client, remote: Remote,
                                           unique: str, header: str) -> None:
    secret = uuid.uuid4().hex
    url = f"http://user:pass@127.0.0.1:{remote.port}/data?t={secret}"
    resp = strict_api.post("/v1/images", headers=tagged(unique, **FORMATS, **{header: url}))
    assert resp.status_code == 400, resp.text
    assert remote.hits(secret) == []
    assert_nothing_created(strict_api, unique)


@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
def test_strict_server_put_refuses_loopback(strict_api: httpx.Client, remote: Remote,
                                            unique: str, header: str) -> None:
    image = strict_api.post("/v1/images", headers=tagged(unique, **FORMATS)).json()["image"]
    secret = uuid.uuid4().hex
    resp = strict_api.put(f"/v1/images/{image['id']}",
                          headers={header: remote.url("/data", secret)})
    assert resp.status_code == 400, resp.text
    time.sleep(0.2)
    assert remote.hits(secret) == []
    assert head(strict_api, image["id"])["x-image-meta-status"] == "queued"

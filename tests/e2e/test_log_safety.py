"""What a client sends cannot leak credentials or forge log lines (docs/reliability.md).

One server runs at log level debug, so every record any level would write is checked. A small
HTTP server on 127.0.0.1 plays the remote side: its redirects send credential-bearing
``Location:`` targets back.
"""

from __future__ import annotations

import http.server
import re
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.server import GlimpseServer
from tests.http_remote import serving

pytestmark = pytest.mark.e2e

FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
LOCATION = "x-image-meta-location"
COPY_FROM = "x-glance-api-copy-from"
DATA = b"remote image data\n" * 100
# The record prefix of glimpse's log format: "%(asctime)s %(levelname)s %(name)s ".
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ ")

# Every form of credential-bearing URL a client may send; {s} is the secret, {port} the remote.
URL_FORMS = [
    "http://user:{s}@127.0.0.1:{port}/data",
    "https://user:{s}@127.0.0.1:{port}/data",
    "http://{s}@127.0.0.1:{port}/data",
    "swift+http://account:{s}@swift.example/v1/AUTH_a/container/object",
    "swift+https://account:{s}@swift.example/v1/AUTH_a/container/object",
    "swift://account:{s}@swift.example/container/object",
    "s3://access:{s}@s3.example/bucket/key",
    "s3://access:{s}/with/slashes@s3.example/bucket/key",  # S3 secret keys may hold a '/'
    "rbd://client:{s}@fsid/pool/image/snap",
    "file://user:{s}@/etc/passwd",
    "http://user:{s}@[bad",
    "https://user:{s}@[::1",
    "user:{s}@host/no-scheme",
    # The remote answers with a redirect whose target carries the credentials.
    "http://127.0.0.1:{port}/redirect/ftp?secret={s}",
    "http://127.0.0.1:{port}/redirect/http?secret={s}",
    "http://127.0.0.1:{port}/redirect/malformed?secret={s}",
]
REDIRECTS = {
    "/redirect/ftp": "ftp://user:{s}@ftp.example/image",
    "/redirect/http": "http://user:{s}@127.0.0.1:{port}/data",
    "/redirect/malformed": "http://user:{s}@[bad",
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path, _, query = self.path.partition("?")
        secret = query.removeprefix("secret=")
        if path in REDIRECTS:
            port = self.connection.getsockname()[1]
            target = REDIRECTS[path].format(s=secret, port=port)
            self._answer(302, b"", {"Location": target})
        elif path == "/redirect-on-get/ftp" and not head:
            # HEAD looks fine, so a copy-from is accepted; the copy then meets the redirect.
            self._answer(302, b"", {"Location": f"ftp://user:{secret}@ftp.example/image"})
        elif path in ("/data", "/redirect-on-get/ftp"):
            self._answer(200, DATA, {"Content-Type": "application/octet-stream"}, head)
        else:
            self._answer(404, b"not here")

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                head: bool = False) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


@pytest.fixture(scope="module")
def remote_port() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    with serving(httpd) as port:
        yield port


@pytest.fixture(scope="module")
def debug_server() -> Iterator[GlimpseServer]:
    srv = GlimpseServer({"log_level": "debug"})
    yield srv
    srv.stop()


@pytest.fixture
def api(debug_server: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=debug_server.url, timeout=15.0) as c:
        yield c


def _response_text(resp: httpx.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    return f"{resp.status_code}\n{headers}\n\n{resp.text}"


def _logged(server: GlimpseServer, needle: str, times: int = 1) -> str:
    """The server log once request lines (written after the response, carrying the request
    id and path) hold ``needle`` ``times`` times."""
    deadline = time.monotonic() + 5.0
    while True:
        log = server.log()
        if log.count(needle) >= times or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def _queued_image(api: httpx.Client) -> str:
    resp = api.post("/v1/images", headers={"x-image-meta-name": "redact", **FORMATS})
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["image"]["id"]
    return image_id


SENDERS: dict[str, Callable[[httpx.Client, dict[str, str]], httpx.Response]] = {
    "POST": lambda api, headers: api.post(
        "/v1/images", headers={"x-image-meta-name": "redact", **FORMATS, **headers}),
    "PUT": lambda api, headers: api.put(f"/v1/images/{_queued_image(api)}", headers=headers),
}


@pytest.mark.parametrize("method", sorted(SENDERS))
@pytest.mark.parametrize("header", [LOCATION, COPY_FROM])
@pytest.mark.parametrize("form", URL_FORMS)
def test_url_credentials_never_echoed_nor_logged(
        debug_server: GlimpseServer, api: httpx.Client, remote_port: int, form: str,
        header: str, method: str) -> None:
    secret = uuid.uuid4().hex
    url = form.format(s=secret, port=remote_port)
    resp = SENDERS[method](api, {header: url})
    assert resp.status_code == 400, _response_text(resp)
    assert secret not in _response_text(resp)
    log = _logged(debug_server, resp.headers["x-openstack-request-id"])
    assert secret not in log, log[-3000:]


@pytest.mark.parametrize("method", sorted(SENDERS))
def test_copy_from_failing_on_a_credential_redirect_logs_no_secret(
        debug_server: GlimpseServer, api: httpx.Client, remote_port: int, method: str) -> None:
    """The copy runs after the response: its failure reaches only the log, redacted."""
    secret = uuid.uuid4().hex
    url = f"http://127.0.0.1:{remote_port}/redirect-on-get/ftp?secret={secret}"
    resp = SENDERS[method](api, {COPY_FROM: url})
    assert resp.status_code in (200, 201), _response_text(resp)
    assert secret not in _response_text(resp)
    image_id = resp.json()["image"]["id"]
    deadline = time.monotonic() + 5.0
    log = ""
    while f"copy-from for image {image_id} failed" not in log:
        assert time.monotonic() < deadline, log[-3000:]
        time.sleep(0.05)
        log = debug_server.log()
    assert api.head(f"/v1/images/{image_id}").headers["x-image-meta-status"] == "killed"
    assert secret not in log, log[-3000:]
    assert "ftp://***@ftp.example/image" in log


FORGED = "%0d%0a2001-01-01 00:00:00,000 INFO glimpse.request forged%0d%0a%20indented%0a%0d"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/images/{forged}"),
    ("HEAD", "/v1/images/{forged}"),
    ("DELETE", "/v1/images/{forged}"),
    ("PUT", "/v1/images/{forged}"),
    ("GET", "/v1/images/{image}/members/{forged}"),
    ("PUT", "/v1/images/{image}/members/{forged}"),
    ("DELETE", "/v1/images/{image}/members/{forged}"),
    ("GET", "/v1/shared-images/{forged}"),
    ("GET", "/v1/{forged}"),
    ("GET", "/{forged}"),
])
def test_cr_lf_in_the_path_forges_no_log_line(
        debug_server: GlimpseServer, api: httpx.Client, method: str, path: str) -> None:
    image = _queued_image(api)
    token = uuid.uuid4().hex
    target = path.format(forged=f"{token}{FORGED}", image=image)
    resp = api.request(method, target, headers={"x-auth-token": "t"})
    assert resp.status_code < 500, _response_text(resp)
    log = _logged(debug_server, token)
    lines = log.splitlines()
    for line in lines:
        assert RECORD_START.match(line), f"not a record of its own: {line!r}"
        assert not line.startswith("2001-"), f"forged record: {line!r}"
    # The request line is there, with the path's control characters escaped.
    mine = [line for line in lines if token in line]
    assert mine, log[-3000:]
    assert all(f"{token}\\r\\n2001-01-01" in line for line in mine), mine


def test_worker_processes_log_the_same_way() -> None:
    """Workers are started by uvicorn, not by glimpse's command line: they get the same
    logging configuration (before, their records reached no handler at all)."""
    srv = GlimpseServer({"workers": "2", "log_level": "debug"})
    try:
        token = uuid.uuid4().hex
        for _ in range(4):  # whichever worker answers
            resp = httpx.get(f"{srv.url}/v1/images/{token}{FORGED}", timeout=15.0)
            assert resp.status_code == 404
        log = _logged(srv, token, times=4)
    finally:
        srv.stop()
    lines = log.splitlines()
    assert all(RECORD_START.match(line) for line in lines), log[-3000:]
    assert sum(f"{token}\\r\\n2001-01-01" in line for line in lines) == 4, log[-3000:]

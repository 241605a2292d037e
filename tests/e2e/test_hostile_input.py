"""Hostile and malformed input: every answer is a clean 4xx and the server keeps serving.

Uses a dedicated server so a crash here cannot take other test modules down with it.
Raw sockets are used wherever httpx would sanitise the input.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
OCTET = {"Content-Type": "application/octet-stream"}
RAW_FORMATS = [
    ("x-image-meta-disk_format", "raw"),
    ("x-image-meta-container_format", "bare"),
]


@pytest.fixture(scope="module")
def hs() -> Iterator[GlimpseServer]:
    srv = GlimpseServer()
    yield srv
    srv.stop()


_CLIENTS: dict[str, httpx.Client] = {}


def _client_for(hs: GlimpseServer) -> httpx.Client:
    if hs.url not in _CLIENTS:
        _CLIENTS[hs.url] = httpx.Client(base_url=hs.url, timeout=15)
    return _CLIENTS[hs.url]


@pytest.fixture(scope="module")
def hc(hs: GlimpseServer) -> Iterator[httpx.Client]:
    yield _client_for(hs)
    _CLIENTS.pop(hs.url).close()


@pytest.fixture(autouse=True)
def _still_serving(hs: GlimpseServer, hc: httpx.Client) -> Iterator[None]:
    yield
    assert hs.process.poll() is None, "server process died"
    resp = hc.get("/versions")
    assert resp.status_code == 200
    assert "versions" in resp.json()


# --- raw HTTP helpers ------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


Header = tuple[str, str | bytes]


def build(method: str, path: str, port: int, headers: list[Header], body: bytes = b"",
          close: bool = True) -> bytes:
    """A raw HTTP/1.1 request; ``close``: it asks for the connection to close after it."""
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode()]
    if close:
        lines.append(b"Connection: close")
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode("latin-1") + b": " + raw)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _complete(buf: bytes) -> bool:
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    lines = head.split(b"\r\n")
    if lines[0].split(b" ")[1:2] in ([b"204"], [b"304"]):
        return True  # no body, whatever the head says (RFC 9110 6.4.1)
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            return body.endswith(b"0\r\n\r\n")
    return False


def read_response(sock: socket.socket, timeout: float = 10.0) -> RawResponse | None:
    sock.settimeout(timeout)
    buf = b""
    try:
        while not _complete(buf):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (ConnectionResetError, TimeoutError, OSError):
        pass
    if not buf:
        return None
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    assert parts[0].startswith(b"HTTP/1."), lines[0]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return RawResponse(int(parts[1]), headers, body)


def exchange(port: int, data: bytes, *, shutdown: bool = False) -> RawResponse | None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        try:
            sock.sendall(data)
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_response(sock)
    finally:
        sock.close()


def assert_clean_4xx(resp: RawResponse | httpx.Response | None,
                     allowed: tuple[int, ...] | None = None) -> None:
    assert resp is not None, "connection closed without an HTTP response"
    status = resp.status if isinstance(resp, RawResponse) else resp.status_code
    body = resp.body if isinstance(resp, RawResponse) else resp.content
    assert 400 <= status < 500, (status, body[:500])
    if allowed is not None:
        assert status in allowed, (status, body[:500])
    assert b"Traceback" not in body
    assert b'File "' not in body


def status_of(hs: GlimpseServer, image_id: str) -> str | None:
    resp = _client_for(hs).head(f"/v1/images/{image_id}")
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200
    return resp.headers["x-image-meta-status"]


def wait_for(hs: GlimpseServer, image_id: str, wanted: set[str | None],
             timeout: float = 5.0) -> str | None:
    deadline = time.monotonic() + timeout
    status = status_of(hs, image_id)
    while status not in wanted and time.monotonic() < deadline:
        time.sleep(0.05)
        status = status_of(hs, image_id)
    return status


def reserve(hc: httpx.Client, size: int | None = None) -> str:
    headers = dict(FORMATS)
    if size is not None:
        headers["x-image-meta-size"] = str(size)
    resp = hc.post("/v1/images", headers=headers)
    assert resp.status_code == 201
    image_id: str = resp.json()["image"]["id"]
    return image_id


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}".encode() + b"\r\n" + data + b"\r\n"


# --- header sizes ----------------------------------------------------------------------------


def test_8k_header_line_accepted(hc: httpx.Client) -> None:
    value = "v" * 8192
    resp = hc.post("/v1/images", headers={"x-image-meta-property-big": value,
                                          "X-Padding": "p" * 8000})
    assert resp.status_code == 201, resp.text
    assert resp.json()["image"]["properties"] == {"big": value}
    head = hc.head(f"/v1/images/{resp.json()['image']['id']}")
    assert head.headers["x-image-meta-property-big"] == value


def test_header_line_over_16k_rejected(hs: GlimpseServer) -> None:
    image_id = str(uuid.uuid4())
    data = build("POST", "/v1/images", hs.port, [
        ("x-image-meta-id", image_id), ("x-image-meta-property-big", "v" * 17000),
    ])
    assert_clean_4xx(exchange(hs.port, data), (400,))
    assert status_of(hs, image_id) is None


def test_very_long_unrelated_header_rejected(hs: GlimpseServer) -> None:
    data = build("GET", "/v1/images", hs.port, [("X-Junk", "j" * 40000)])
    assert_clean_4xx(exchange(hs.port, data), (400,))


def test_endless_header_is_cut_off(hs: GlimpseServer) -> None:
    """A request head that never ends is refused once it passes the server's bound, instead of
    being buffered without limit."""
    sock = socket.create_connection(("127.0.0.1", hs.port), timeout=10)
    try:
        sock.sendall(b"GET /v1/images HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 8 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        assert sent < 8 * 1024 * 1024, "the server kept reading an endless header"
        resp = read_response(sock)
    finally:
        sock.close()
    if resp is not None:
        assert resp.status == 400
        assert b"Traceback" not in resp.body


def test_configured_max_header_line(server_factory: Callable[..., GlimpseServer]) -> None:
    srv = server_factory(max_header_line=2048)
    ok = httpx.post(srv.url + "/v1/images",
                    headers={"x-image-meta-property-p": "n" * 1500}, timeout=10)
    assert ok.status_code == 201, ok.text
    data = build("POST", "/v1/images", srv.port, [("x-image-meta-property-p", "n" * 4000)])
    assert_clean_4xx(exchange(srv.port, data), (400,))


def test_huge_number_of_property_headers(hs: GlimpseServer) -> None:
    image_id = str(uuid.uuid4())
    headers: list[Header] = [("x-image-meta-id", image_id)]
    headers += [(f"x-image-meta-property-p{i}", str(i)) for i in range(5000)]
    assert_clean_4xx(exchange(hs.port, build("POST", "/v1/images", hs.port, headers)))
    assert status_of(hs, image_id) is None


def test_huge_number_of_unrelated_headers(hs: GlimpseServer) -> None:
    headers: list[Header] = [(f"X-Junk-{i}", "x") for i in range(10000)]
    resp = exchange(hs.port, build("GET", "/v1/images", hs.port, headers))
    assert resp is not None
    assert resp.status < 500, resp.status
    assert b"Traceback" not in resp.body


# --- absurd numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "fragment"),
    [
        ("x-image-meta-size", "99999999999999999999999999", None),
        ("x-image-meta-min_ram", "2147483648", "'min_ram' value out of range"),
        ("x-image-meta-min_ram", "99999999999999999999999999", "'min_ram' value out of range"),
        ("x-image-meta-min_disk", "99999999999999999999999999", "'min_disk' value out of range"),
        ("x-image-meta-size", "1e10", None),
        ("x-image-meta-size", "0x10", None),
        ("x-image-meta-min_ram", "-0x1", None),
    ],
)
def test_absurd_integers_on_create(hc: httpx.Client, hs: GlimpseServer, header: str,
                                   value: str, fragment: str | None) -> None:
    image_id = str(uuid.uuid4())
    resp = hc.post("/v1/images", headers={"x-image-meta-id": image_id, header: value})
    assert_clean_4xx(resp, (400,))
    if fragment:
        assert fragment in resp.text
    assert status_of(hs, image_id) is None


def test_absurd_virtual_size(hc: httpx.Client, hs: GlimpseServer) -> None:
    value = "99999999999999999999999999"
    image_id = str(uuid.uuid4())
    resp = hc.post("/v1/images", headers={"x-image-meta-id": image_id,
                                          "x-image-meta-virtual_size": value})
    if resp.status_code == 201:
        assert resp.json()["image"]["virtual_size"] == int(value)
    else:
        assert_clean_4xx(resp, (400,))
        assert status_of(hs, image_id) is None


def test_absurd_integers_on_update(hc: httpx.Client) -> None:
    image_id = reserve(hc)
    for header, value in [("x-image-meta-size", "99999999999999999999999999"),
                          ("x-image-meta-min_ram", "2147483648"),
                          ("x-image-meta-min_disk", "99999999999999999999")]:
        resp = hc.put(f"/v1/images/{image_id}", headers={header: value})
        assert_clean_4xx(resp, (400,))
    meta = hc.head(f"/v1/images/{image_id}").headers
    assert meta["x-image-meta-size"] == "0"
    assert meta["x-image-meta-min_ram"] == "0"


def test_absurd_content_length(hs: GlimpseServer) -> None:
    data = build("POST", "/v1/images", hs.port, [
        *RAW_FORMATS, ("Content-Type", "application/octet-stream"),
        ("Content-Length", "99999999999999999999999"),
    ], b"abc")
    assert_clean_4xx(exchange(hs.port, data), (400, 413))


# --- ids ---------------------------------------------------------------------------------------

BAD_PATH_IDS = [
    "not-a-uuid",
    "6b3ecfca-d445-4946-a8d1-c4938352b2510",
    "6b3ecfca-d445-4946-a8d1-c4938352b251-extra",
    "a" * 1000,
    "%00",
    "%FF%FE",
    "..%2F..%2Fversions",
    "6b3ecfca-d445-4946-a8d1-c4938352b25%00",
    "'%20OR%201=1--",
]


@pytest.mark.parametrize("bad", BAD_PATH_IDS)
def test_invalid_ids_in_paths_are_404(hs: GlimpseServer, bad: str) -> None:
    for method, suffix in [("GET", ""), ("HEAD", ""), ("PUT", ""), ("DELETE", ""),
                           ("GET", "/members")]:
        data = build(method, f"/v1/images/{bad}{suffix}", hs.port, [("Content-Length", "0")])
        resp = exchange(hs.port, data)
        assert_clean_4xx(resp, (404,))


@pytest.mark.parametrize("bad", [
    "not-a-uuid",
    "6b3ecfca-d445-4946-a8d1-c4938352b2510",
    "x" * 1000,
    "6b3ecfca-d445-4946-a8d1-c4938352b25g",
    "../../etc/passwd",
    "6b3ecfca-d445-4946-a8d1-c4938352b251%00",
])
def test_invalid_x_image_meta_id_is_400(hc: httpx.Client, bad: str) -> None:
    resp = hc.post("/v1/images", headers={"x-image-meta-id": bad})
    assert_clean_4xx(resp, (400,))


# --- truncated and abandoned uploads ---------------------------------------------------------


def test_body_shorter_than_content_length(hs: GlimpseServer) -> None:
    image_id = str(uuid.uuid4())
    data = build("POST", "/v1/images", hs.port, [
        ("x-image-meta-id", image_id), *RAW_FORMATS,
        ("Content-Type", "application/octet-stream"), ("Content-Length", "1000"),
    ], b"x" * 100)
    resp = exchange(hs.port, data, shutdown=True)
    if resp is not None:
        assert_clean_4xx(resp, (400,))
    assert wait_for(hs, image_id, {None, "killed"}) in (None, "killed")


def test_put_body_shorter_than_content_length(hs: GlimpseServer, hc: httpx.Client) -> None:
    image_id = reserve(hc)
    data = build("PUT", f"/v1/images/{image_id}", hs.port, [
        ("Content-Type", "application/octet-stream"), ("Content-Length", "1000"),
    ], b"x" * 100)
    resp = exchange(hs.port, data, shutdown=True)
    if resp is not None:
        assert_clean_4xx(resp, (400,))
    assert wait_for(hs, image_id, {"killed"}) == "killed"


def _abandon(hs: GlimpseServer, image_id: str, request: bytes,
             started: set[str | None]) -> str | None:
    """Send the start of an upload, wait (bounded) for the server to begin it, then vanish."""
    sock = socket.create_connection(("127.0.0.1", hs.port), timeout=10)
    try:
        sock.sendall(request)
        return wait_for(hs, image_id, started, timeout=2.0)
    finally:
        sock.close()


def _assert_abandoned_post_cleaned_up(hs: GlimpseServer, image_id: str,
                                      seen: str | None) -> None:
    if seen is not None:
        # the record existed while the upload was running: it must end up killed
        assert wait_for(hs, image_id, {"killed"}) == "killed"
    else:
        status = wait_for(hs, image_id, {"killed", "saving", "queued", "active"}, timeout=1.0)
        if status is not None:
            status = wait_for(hs, image_id, {"killed"})
        assert status in (None, "killed")


def test_client_disconnects_mid_chunked_post(hs: GlimpseServer) -> None:
    image_id = str(uuid.uuid4())
    request = build("POST", "/v1/images", hs.port, [
        ("x-image-meta-id", image_id), *RAW_FORMATS,
        ("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked"),
    ], chunk(b"a" * 1000) + chunk(b"b" * 1000))
    seen = _abandon(hs, image_id, request, {"saving", "queued", "killed"})
    _assert_abandoned_post_cleaned_up(hs, image_id, seen)


def test_client_disconnects_mid_content_length_post(hs: GlimpseServer) -> None:
    image_id = str(uuid.uuid4())
    request = build("POST", "/v1/images", hs.port, [
        ("x-image-meta-id", image_id), *RAW_FORMATS,
        ("Content-Type", "application/octet-stream"), ("Content-Length", "100000"),
    ], b"c" * 5000)
    seen = _abandon(hs, image_id, request, {"saving", "queued", "killed"})
    _assert_abandoned_post_cleaned_up(hs, image_id, seen)


@pytest.mark.parametrize("use_chunked", [True, False])
def test_client_disconnects_mid_put(hs: GlimpseServer, hc: httpx.Client,
                                    use_chunked: bool) -> None:
    image_id = reserve(hc)
    framing: list[Header] = (
        [("Transfer-Encoding", "chunked")] if use_chunked else [("Content-Length", "100000")]
    )
    body = chunk(b"d" * 3000) if use_chunked else b"d" * 3000
    request = build("PUT", f"/v1/images/{image_id}", hs.port,
                    [("Content-Type", "application/octet-stream"), *framing], body)
    _abandon(hs, image_id, request, {"saving", "killed"})
    assert wait_for(hs, image_id, {"killed"}) == "killed"
    # and it stays killed: no late activation
    assert hc.put(f"/v1/images/{image_id}", headers=OCTET, content=b"x").status_code == 409


# --- bodies longer than declared ------------------------------------------------------------


def test_chunked_body_longer_than_declared_size(hc: httpx.Client, hs: GlimpseServer) -> None:
    image_id = str(uuid.uuid4())

    def body() -> Iterator[bytes]:
        yield b"e" * 100
        yield b"f" * 100

    resp = hc.post("/v1/images", headers={**FORMATS, **OCTET, "x-image-meta-id": image_id,
                                          "x-image-meta-size": "100"}, content=body())
    assert_clean_4xx(resp, (400,))
    assert status_of(hs, image_id) == "killed"


def test_content_length_body_longer_than_declared_size(
    hc: httpx.Client, hs: GlimpseServer
) -> None:
    image_id = str(uuid.uuid4())
    resp = hc.post("/v1/images", headers={**FORMATS, **OCTET, "x-image-meta-id": image_id,
                                          "x-image-meta-size": "100"}, content=b"g" * 200)
    assert_clean_4xx(resp, (400,))
    assert status_of(hs, image_id) in (None, "killed")


def test_put_body_longer_than_reserved_size(hc: httpx.Client, hs: GlimpseServer) -> None:
    image_id = reserve(hc, size=100)

    def body() -> Iterator[bytes]:
        yield b"h" * 150
        yield b"i" * 150

    resp = hc.put(f"/v1/images/{image_id}", headers=OCTET, content=body())
    assert_clean_4xx(resp, (400,))
    assert status_of(hs, image_id) == "killed"
    assert hc.get(f"/v1/images/{image_id}").status_code == 404


# --- malformed chunked encoding --------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX0\r\n\r\n",
    b"fffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    b"-5\r\nhello\r\n0\r\n\r\n",
])
def test_malformed_chunked_encoding(hs: GlimpseServer, body: bytes) -> None:
    image_id = str(uuid.uuid4())
    data = build("POST", "/v1/images", hs.port, [
        ("x-image-meta-id", image_id), *RAW_FORMATS,
        ("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked"),
    ], body)
    assert_clean_4xx(exchange(hs.port, data))
    status = wait_for(hs, image_id, {None, "killed"})
    assert status in (None, "killed")


# --- non-UTF-8 header values --------------------------------------------------------------


@pytest.mark.parametrize("header", ["x-image-meta-name", "x-image-meta-property-desc",
                                    "x-image-meta-owner"])
@pytest.mark.parametrize("value", [b"\xff\xfe\xfd", b"caf\xe9", b"\xc3\x28", b"\xed\xa0\x80"])
def test_non_utf8_header_values_on_create(hs: GlimpseServer, header: str, value: bytes) -> None:
    image_id = str(uuid.uuid4())
    data = build("POST", "/v1/images", hs.port, [("x-image-meta-id", image_id), (header, value)])
    assert_clean_4xx(exchange(hs.port, data), (400,))
    assert status_of(hs, image_id) is None


def test_non_utf8_header_values_on_update(hs: GlimpseServer, hc: httpx.Client) -> None:
    image_id = reserve(hc)
    assert hc.put(f"/v1/images/{image_id}", headers={"x-image-meta-name": "clean"}
                  ).status_code == 200
    data = build("PUT", f"/v1/images/{image_id}", hs.port,
                 [("x-image-meta-name", b"bad\xff"), ("Content-Length", "0")])
    assert_clean_4xx(exchange(hs.port, data), (400,))
    assert hc.head(f"/v1/images/{image_id}").headers["x-image-meta-name"] == "clean"


def test_raw_utf8_upload_still_works_after_abuse(hc: httpx.Client) -> None:
    data = b"after the storm"
    resp = hc.post("/v1/images", headers={**FORMATS, **OCTET}, content=data)
    assert resp.status_code == 201
    assert resp.json()["image"]["checksum"] == hashlib.md5(data).hexdigest()
    assert hc.get(f"/v1/images/{resp.json()['image']['id']}").content == data

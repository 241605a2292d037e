"""Tests for glimpse.stores.http.HttpSource against a real local HTTP server.

No test sends traffic to a non-loopback address: refusals are checked with socket
connects monkeypatched to record (and fail on) any attempt.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from glimpse.errors import Invalid, NotFound, Unavailable
from glimpse.stores.http import HttpSource
from tests.http_remote import serving

DATA = bytes(range(256)) * 40  # 10240 bytes
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


class _Handler(BaseHTTPRequestHandler):
    server_version = "test"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _port(self) -> int:
        return int(self.connection.getsockname()[1])

    def _redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, body: bytes, length: int | None = None, **extra: str) -> None:
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        port = self._port()
        if path == "/file":
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                first, _, last = rng[len("bytes="):].partition("-")
                start = int(first)
                end = min(int(last), len(DATA) - 1) if last else len(DATA) - 1
                body = DATA[start:end + 1]
                cr = f"bytes {start}-{end}/{len(DATA)}"
                self._send(206, body, len(body), Content_Range=cr)
            else:
                self._send(200, DATA, len(DATA))
        elif path == "/wrongrange":  # answers every range with the first 10 bytes
            self._send(206, DATA[:10], 10, Content_Range=f"bytes 0-9/{len(DATA)}")
        elif path == "/norange":
            self._send(200, DATA, len(DATA))
        elif path == "/missing":
            self._send(404, b"nope", 4)
        elif path == "/error":
            self._send(500, b"boom", 4)
        elif path == "/forbidden":
            self._send(403, b"no", 2)
        elif path == "/nolength":
            self._send(200, DATA)  # HTTP/1.0: the body ends when the connection closes
        elif path == "/short":
            self._send(200, DATA[:100], 1000)
        elif path == "/echo":
            body = json.dumps(
                {"host": self.headers.get("Host"), "ua": self.headers.get("User-Agent"),
                 "token": self.headers.get("X-Auth-Token")}
            ).encode()
            self._send(200, body, len(body))
        elif path == "/redirect":
            self._redirect(302, "/file")
        elif path == "/redirect-abs":
            self._redirect(301, f"http://127.0.0.1:{port}/file")
        elif path == "/redirect-303":
            self._redirect(303, "file")
        elif path == "/redirect-307":
            self._redirect(307, "/file")
        elif path == "/redirect-meta":
            self._redirect(302, "http://169.254.169.254/latest/meta-data/")
        elif path == "/redirect-private":
            self._redirect(308, "http://10.0.0.1/image")
        elif path == "/redirect-decimal":
            self._redirect(302, f"http://2130706433:{port}/file")
        elif path == "/redirect-file":
            self._redirect(302, "file:///etc/passwd")
        elif path == "/redirect-creds":
            self._redirect(302, f"http://user:pw@127.0.0.1:{port}/file")
        elif path == "/redirect-creds-ftp":
            self._redirect(302, "ftp://user:s3cr3t@ftp.example/image")
        elif path == "/redirect-creds-malformed":
            self._redirect(302, "http://user:s3cr3t@[bad")
        elif path == "/redirect-nolocation":
            self._send(302, b"", 0)
        elif path == "/loop":
            self._redirect(302, "/loop")
        elif path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            if n == 0:
                self._send(200, DATA, len(DATA))
            else:
                self._redirect(302, f"/chain/{n - 1}")
        elif path == "/slow":
            time.sleep(1.0)
            self._send(200, DATA, len(DATA))
        elif path == "/bigheader":
            self._send(200, b"x", 1, X_Big="a" * 70000)
        else:
            self._send(404, b"", 0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up early (timeouts, short reads) are expected


def _serve(server: _Server) -> Iterator[int]:
    with serving(server) as port:
        yield port


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from _serve(_Server(("127.0.0.1", 0), _Handler))


@pytest.fixture
def base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def src() -> HttpSource:
    return HttpSource(allowed_networks=LOOPBACK, timeout=5.0, chunk_size=1000)


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every outgoing connect; refuse (without sending) any non-loopback one."""
    calls: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        calls.append(address)
        host = address[0] if isinstance(address, tuple) else ""
        if not ipaddress.ip_address(str(host).split("%")[0]).is_loopback:
            raise AssertionError(f"attempted to connect to non-loopback {address!r}")
        real_connect(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        calls.append(("create_connection", address))
        raise AssertionError("socket.create_connection must not be used")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", create_connection)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return calls


def _fake_dns(
    monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]
) -> list[str]:
    """Make getaddrinfo resolve the given names to the given IPs; returns the lookups made."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(str(host))
        if host in names:
            out: list[tuple[Any, ...]] = []
            for ip in names[host]:
                if ":" in ip:
                    out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)))
                else:
                    out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


# ---------------------------------------------------------------- validate() (§8.1.5)


def test_validate_accepts_http_and_https(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validate() must not touch the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    source = HttpSource()
    for url in (
        "http://example.com/image.img",
        "https://example.com:8443/a/b?c=d&e=f",
        "HTTP://Example.COM/",
        "http://example.com",
        "http://[2001:db8::1]:8080/x",
        "http://10.0.0.1/x",  # refused later, at resolution time, not by validate()
    ):
        source.validate(url)


@pytest.mark.parametrize("url", ["", "   "])
def test_validate_empty(url: str) -> None:
    with pytest.raises(Invalid) as info:
        HttpSource().validate(url)
    assert info.value.message == "External source should not be empty"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "filesystem:///var/lib/glance/images/x",
        "swift+config://ref1/container/obj",
        "ftp://example.com/x",
        "gopher://example.com/",
        "unknown://x",
        "example.com/image",
    ],
)
def test_validate_unsupported_scheme(url: str) -> None:
    with pytest.raises(Invalid) as info:
        HttpSource().validate(url)
    assert info.value.message == f"External sources are not supported: '{url}'"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("swift://user:s3cr3t@auth/container/obj", "swift://***@auth/container/obj"),
        ("swift+https://acct:s3cr3t@auth/v1/c/o", "swift+https://***@auth/v1/c/o"),
        ("s3://access:ab/s3cr3t@s3.example/bucket/key", "s3://***@s3.example/bucket/key"),
        ("rbd://client:s3cr3t@fsid/pool/image/snap", "rbd://***@fsid/pool/image/snap"),
        ("file://user:s3cr3t@/etc/passwd", "file://***@/etc/passwd"),
        ("user:s3cr3t@host/x", "***@host/x"),
    ],
)
def test_unsupported_scheme_message_redacts_credentials(url: str, shown: str) -> None:
    with pytest.raises(Invalid) as info:
        HttpSource().validate(url)
    assert info.value.message == f"External sources are not supported: '{shown}'"
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://",
        "https://",
        "http:///path",
        "http://:80/",
        "http://example.com:99999/",
        "http://example.com:abc/",
        "http://example.com:0/",
        "http://[::1/",
        "http://[not-an-ip]/",
        "http://exa$mple.com/",
        "http://a..b/",
    ],
)
def test_validate_malformed(url: str) -> None:
    with pytest.raises(Invalid) as info:
        HttpSource().validate(url)
    assert info.value.message.startswith("Invalid location")


@pytest.mark.parametrize(
    "url",
    ["http://user:pass@example.com/x", "http://user@example.com/x", "https://:pw@example.com/"],
)
def test_validate_rejects_credentials(url: str) -> None:
    with pytest.raises(Invalid) as info:
        HttpSource().validate(url)
    assert "credentials are not allowed" in info.value.message
    assert "pass" not in info.value.message and "pw" not in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a\r\nX-Injected: 1",
        "http://example.com/a\nb",
        "http://example.com/a\x00b",
        "http://example.com/a b",
        "http://example.com/a\tb",
        " http://example.com/a",
        "http://exa\u00a0mple.com/",
    ],
)
def test_validate_rejects_whitespace_and_control(url: str) -> None:
    with pytest.raises(Invalid) as info:
        HttpSource().validate(url)
    assert info.value.message.startswith("Invalid location")


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        HttpSource(timeout=0)
    with pytest.raises(ValueError):
        HttpSource(max_redirects=-1)
    with pytest.raises(ValueError):
        HttpSource(chunk_size=0)


# ---------------------------------------------------------------- refusals (§17)

REFUSED = [
    ("http://127.0.0.1:{port}/file", "loopback"),
    ("http://localhost:{port}/file", "loopback"),
    ("http://[::1]:{port}/file", "loopback"),
    ("http://2130706433:{port}/file", "loopback"),
    ("http://0x7f.1:{port}/file", "loopback"),
    ("http://127.1:{port}/file", "loopback"),
    ("http://0.0.0.0:{port}/file", "unspecified"),
    ("http://[::]:{port}/file", "unspecified"),
    ("http://[::ffff:127.0.0.1]:{port}/file", "loopback"),
    ("http://[2002:7f00:1::]:{port}/file", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.0.0.1/image", "private"),
    ("http://192.168.1.1/image", "private"),
    ("http://172.16.0.1/image", "private"),
    ("http://[fc00::1]/image", "private"),
    ("http://[::ffff:10.0.0.1]/image", "private"),
    ("http://224.0.0.1/image", "multicast"),
    ("http://100.64.0.1/image", "not globally routable"),
]


@pytest.mark.parametrize(("template", "reason"), REFUSED)
@pytest.mark.parametrize("method", ["size", "open"])
def test_refused_without_allowed_networks(
    template: str, reason: str, method: str, port: int, connects: list[Any]
) -> None:
    source = HttpSource(timeout=2.0)
    url = template.format(port=port)
    call: Callable[[str], Any] = getattr(source, method)
    with pytest.raises(Invalid) as info:
        call(url)
    assert not isinstance(info.value, NotFound)
    assert reason in info.value.message
    assert "not allowed" in info.value.message
    assert connects == []  # refused before any connection attempt


def test_refusal_names_reason_not_resolved_addresses(port: int, connects: list[Any]) -> None:
    with pytest.raises(Invalid) as info:
        HttpSource().size(f"http://localhost:{port}/file")
    assert "127.0.0.1" not in info.value.message
    assert "loopback" in info.value.message
    assert connects == []


def test_allowed_networks_do_not_widen_other_ranges(connects: list[Any]) -> None:
    source = HttpSource(allowed_networks=LOOPBACK)
    for url in ("http://169.254.169.254/", "http://10.0.0.1/", "http://0.0.0.0/"):
        with pytest.raises(Invalid):
            source.size(url)
    assert connects == []


def test_hostname_resolving_to_private_address_refused(
    monkeypatch: pytest.MonkeyPatch, connects: list[Any]
) -> None:
    _fake_dns(monkeypatch, {"internal.example": ["10.1.2.3"], "meta.example": ["fd00::1"]})
    source = HttpSource(allowed_networks=LOOPBACK)
    for url in ("http://internal.example/x", "https://meta.example/x"):
        with pytest.raises(Invalid) as info:
            source.open(url)
        assert "10.1.2.3" not in info.value.message
    assert connects == []


# ---------------------------------------------------------------- allowed local server


def test_size_and_open(src: HttpSource, base: str, connects: list[Any]) -> None:
    assert src.size(f"{base}/file") == len(DATA)
    chunks = list(src.open(f"{base}/file"))
    assert b"".join(chunks) == DATA
    assert max(len(c) for c in chunks) <= 1000
    assert len(chunks) > 1
    assert all(addr[0] == "127.0.0.1" for addr in connects)


@pytest.mark.parametrize("host", ["localhost", "2130706433", "127.1", "0x7f.1"])
def test_numeric_and_named_loopback_allowed(src: HttpSource, port: int, host: str) -> None:
    assert src.size(f"http://{host}:{port}/file") == len(DATA)


def test_connects_to_vetted_address_with_original_host_header(
    src: HttpSource, port: int, monkeypatch: pytest.MonkeyPatch, connects: list[Any]
) -> None:
    lookups = _fake_dns(monkeypatch, {"images.example": ["10.9.9.9", "127.0.0.1"]})
    body = b"".join(src.open(f"http://images.example:{port}/echo"))
    seen = json.loads(body)
    assert seen == {"host": f"images.example:{port}", "ua": "glimpse/0.1", "token": None}
    assert lookups == ["images.example"]  # resolved once: no second lookup to rebind
    assert connects == [("127.0.0.1", port)]  # the refused address was skipped


def test_not_found(src: HttpSource, base: str) -> None:
    with pytest.raises(NotFound):
        src.size(f"{base}/missing")
    with pytest.raises(NotFound):
        src.open(f"{base}/missing")


def test_head_without_content_length(src: HttpSource, base: str) -> None:
    assert src.size(f"{base}/nolength") is None
    assert b"".join(src.open(f"{base}/nolength")) == DATA


def test_short_body_raises_unavailable_from_iteration(src: HttpSource, base: str) -> None:
    assert src.size(f"{base}/short") == 1000
    body = src.open(f"{base}/short")  # headers are fine: no error yet
    received = b""
    with pytest.raises(Unavailable) as info:
        for chunk in body:
            received += chunk
    assert received == DATA[:100]
    assert "100 of 1000" in info.value.message


def test_range(src: HttpSource, base: str) -> None:
    assert b"".join(src.open(f"{base}/file", offset=100)) == DATA[100:]
    assert b"".join(src.open(f"{base}/file", offset=0)) == DATA


def test_range_with_a_length(src: HttpSource, base: str) -> None:
    """A bounded range is asked for as such: the remote sends those bytes only."""
    assert b"".join(src.open(f"{base}/file", offset=100, length=50)) == DATA[100:150]
    assert b"".join(src.open(f"{base}/file", offset=0, length=1)) == DATA[:1]
    last = len(DATA) - 1
    assert b"".join(src.open(f"{base}/file", offset=last, length=1)) == DATA[last:]
    # A remote clamps a range past the end of the object: the bytes up to it are the answer.
    assert b"".join(src.open(f"{base}/file", offset=100, length=len(DATA))) == DATA[100:]


def test_range_not_honoured(src: HttpSource, base: str) -> None:
    """A remote that ignores the range (200, the whole object) or answers another one is an
    error: its bytes are never taken for the range."""
    for offset, length in ((100, None), (0, 10), (100, 10)):
        with pytest.raises(Unavailable):
            src.open(f"{base}/norange", offset=offset, length=length)
    for offset, length in ((100, None), (5, 10), (0, 5)):
        with pytest.raises(Unavailable):
            src.open(f"{base}/wrongrange", offset=offset, length=length)
    assert b"".join(src.open(f"{base}/wrongrange", offset=0, length=10)) == DATA[:10]
    with pytest.raises(Invalid):
        src.open(f"{base}/file", offset=-1)
    with pytest.raises(Invalid):
        src.open(f"{base}/file", offset=0, length=0)


def test_server_errors(src: HttpSource, base: str) -> None:
    with pytest.raises(Invalid) as info:
        src.size(f"{base}/error")
    assert type(info.value) is Invalid
    with pytest.raises(Unavailable):
        src.open(f"{base}/error")
    with pytest.raises(Invalid):
        src.size(f"{base}/forbidden")
    with pytest.raises(Unavailable):
        src.open(f"{base}/forbidden")


def test_unreachable(src: HttpSource) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(Invalid) as info:
        src.size(f"http://127.0.0.1:{closed_port}/x")
    assert "unreachable" in info.value.message
    with pytest.raises(Unavailable):
        src.open(f"http://127.0.0.1:{closed_port}/x")


@pytest.mark.serial
def test_timeout(base: str) -> None:
    source = HttpSource(allowed_networks=LOOPBACK, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(Invalid) as info:
        source.size(f"{base}/slow")
    assert "timed out" in info.value.message
    with pytest.raises(Unavailable):
        source.open(f"{base}/slow")
    assert time.monotonic() - started < 1.5


def test_oversized_header_rejected(src: HttpSource, base: str) -> None:
    with pytest.raises(Invalid):
        src.size(f"{base}/bigheader")
    with pytest.raises(Unavailable):
        src.open(f"{base}/bigheader")


# ---------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    "path", ["/redirect", "/redirect-abs", "/redirect-303", "/redirect-307", "/redirect-decimal"]
)
def test_redirect_to_self(src: HttpSource, base: str, path: str) -> None:
    assert src.size(f"{base}{path}") == len(DATA)
    assert b"".join(src.open(f"{base}{path}")) == DATA


def test_redirect_limit(base: str) -> None:
    source = HttpSource(allowed_networks=LOOPBACK, max_redirects=5)
    assert source.size(f"{base}/chain/5") == len(DATA)
    with pytest.raises(Invalid) as info:
        source.size(f"{base}/chain/6")
    assert "redirected more than 5 times" in info.value.message
    with pytest.raises(Invalid):
        source.open(f"{base}/loop")
    with pytest.raises(Invalid):
        HttpSource(allowed_networks=LOOPBACK, max_redirects=0).size(f"{base}/redirect")


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/redirect-meta", "link-local"), ("/redirect-private", "private")],
)
@pytest.mark.parametrize("method", ["size", "open"])
def test_redirect_to_refused_address(
    src: HttpSource, base: str, port: int, path: str, reason: str, method: str,
    connects: list[Any],
) -> None:
    call: Callable[[str], Any] = getattr(src, method)
    with pytest.raises(Invalid) as info:
        call(f"{base}{path}")
    assert reason in info.value.message
    assert connects == [("127.0.0.1", port)]  # only the first, allowed hop


def test_redirect_revalidates_scheme_and_credentials(
    src: HttpSource, base: str, port: int, connects: list[Any]
) -> None:
    with pytest.raises(Invalid) as info:
        src.open(f"{base}/redirect-file")
    assert "not supported" in info.value.message
    with pytest.raises(Invalid) as info:
        src.size(f"{base}/redirect-creds")
    assert "credentials" in info.value.message
    assert connects == [("127.0.0.1", port)] * 2


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/redirect-creds-ftp",
         "External sources are not supported: 'ftp://***@ftp.example/image'"),
        ("/redirect-creds-malformed", "External source redirected to an invalid location"),
    ],
)
@pytest.mark.parametrize("method", ["size", "open"])
def test_redirect_target_credentials_never_in_the_error(
    src: HttpSource, base: str, path: str, message: str, method: str
) -> None:
    call: Callable[[str], Any] = getattr(src, method)
    with pytest.raises(Invalid) as info:
        call(f"{base}{path}")
    assert info.value.message == message
    assert "s3cr3t" not in str(info.value)


def test_redirect_without_location(src: HttpSource, base: str) -> None:
    with pytest.raises(Invalid):
        src.size(f"{base}/redirect-nolocation")


def test_redirect_refused_without_allowed_networks(
    base: str, monkeypatch: pytest.MonkeyPatch, connects: list[Any]
) -> None:
    # A public-looking name that "resolves" to loopback is refused, not connected to.
    _fake_dns(monkeypatch, {"cdn.example": ["127.0.0.1"]})
    with pytest.raises(Invalid):
        HttpSource().size("http://cdn.example/image")
    assert connects == []


# ---------------------------------------------------------------- https


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_port(tls_cert: tuple[Path, Path]) -> Iterator[int]:
    cert, key = tls_cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


def _trusting(source: HttpSource, cert: Path) -> HttpSource:
    source._ssl_context = ssl.create_default_context(cafile=str(cert))
    return source


def test_https_verifies_certificate_against_url_host(
    tls_cert: tuple[Path, Path], tls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, _key = tls_cert
    source = _trusting(HttpSource(allowed_networks=LOOPBACK, timeout=5.0), cert)
    assert b"".join(source.open(f"https://localhost:{tls_port}/file")) == DATA
    assert source.size(f"https://127.0.0.1:{tls_port}/file") == len(DATA)
    # Same vetted address, but the URL's host does not match the certificate.
    _fake_dns(monkeypatch, {"other.example": ["127.0.0.1"]})
    with pytest.raises(Invalid) as info:
        source.size(f"https://other.example:{tls_port}/file")
    assert "certificate" in info.value.message


def test_https_untrusted_certificate(tls_port: int) -> None:
    source = HttpSource(allowed_networks=LOOPBACK, timeout=5.0)
    with pytest.raises(Invalid) as info:
        source.size(f"https://localhost:{tls_port}/file")
    assert "certificate" in info.value.message
    with pytest.raises(Unavailable):
        source.open(f"https://localhost:{tls_port}/file")


# ---------------------------------------------------------------- credentials (glance-download)


def test_headers_are_sent_and_redirects_not_followed(src: HttpSource, base: str) -> None:
    token = {"X-Auth-Token": "tok-123"}
    assert json.loads(b"".join(src.open(f"{base}/echo", headers=token)))["token"] == "tok-123"
    assert b"".join(src.open(f"{base}/file", 10, 5, headers=token)) == DATA[10:15]
    # A request carrying credentials does not take them along a redirect, not even to itself.
    for path in ("/redirect", "/redirect-abs", "/redirect-meta"):
        with pytest.raises(Invalid, match="redirect"):
            src.open(f"{base}{path}", headers=token)
    assert b"".join(src.open(f"{base}/redirect")) == DATA  # without headers: followed


def test_check_address(src: HttpSource, port: int, connects: list[Any],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    src.check_address(f"http://127.0.0.1:{port}/v2/images/x")
    for url in ("http://169.254.169.254/v2", "http://10.1.2.3:9292/"):
        with pytest.raises(Invalid, match="does not pass filtering"):
            src.check_address(url)
    with pytest.raises(Invalid):
        src.check_address("ftp://127.0.0.1/")
    _fake_dns(monkeypatch, {})
    src.check_address("http://no-such-host.invalid/")  # unresolvable: the request fails later
    assert connects == []  # it never connects

"""Read-only external image source over http(s), with network safety (spec §8.1.5, §17).

Used for ``x-image-meta-location`` and ``x-glance-api-copy-from``. Every hop of a request
(including each redirect) is checked the same way:

* the URL must be ``http``/``https``, well formed, without user credentials, whitespace or
  control characters; an error message that quotes a URL (the client's or a redirect
  target the remote sent) quotes it with its userinfo redacted, and no other message quotes
  one;
* the host is resolved once with ``getaddrinfo``; an address that is loopback, private,
  link-local, multicast, reserved, unspecified or otherwise not globally routable is refused
  unless it lies in one of the operator's ``allowed_networks``; IPv4 addresses embedded in
  IPv6 ones (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) are checked too;
* the socket is connected to the vetted address itself (no second lookup, so no DNS
  rebinding), the original ``Host`` header is sent, and for https the certificate is
  verified against the URL's host name.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from glimpse.domain.web_download import NOT_ALLOWED
from glimpse.errors import GlimpseError, Invalid, NotFound, Unavailable
from glimpse.redaction import redact_url
from glimpse.stores.ranged import answers_range, range_header

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

USER_AGENT = "glimpse/0.1"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HOSTNAME_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_.])?")
_MAX_LOCATION = 8192  # longest redirect target followed

# Embedded-IPv4 ranges of IPv6 that ipaddress (3.11) does not unwrap itself.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

# Response header sizes are bounded by http.client itself: the status line and each header
# line to 64 KiB, and at most 100 header lines (LineTooLong / HTTPException otherwise).


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # lower-case host name or IP literal, without brackets
    port: int
    path: str  # request target: path plus query, never empty


Candidate = tuple[socket.AddressFamily, tuple[Any, ...]]


class _Refused(Invalid):
    """The host resolves only to addresses external sources may not reach."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=NOT_ALLOWED)  # web-download tells it apart


class _Unreachable(Exception):
    """A transport-level failure; the public method picks the error class."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ip_reason(addr: Address) -> str | None:
    """Why an address may not be reached, or None when it is globally routable."""
    if isinstance(addr, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = addr.ipv4_mapped
        if embedded is None and addr in _NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is None and addr.sixtofour is not None:
            embedded = addr.sixtofour
        if embedded is None and addr.teredo is not None:
            embedded = addr.teredo[1]
        if embedded is not None:
            reason = _ip_reason(embedded)
            if reason is not None or addr.ipv4_mapped is not None or addr in _NAT64:
                return reason
        if addr in _NAT64_LOCAL:
            return "not globally routable"
        if addr in _IPV4_COMPATIBLE and not (addr.is_loopback or addr.is_unspecified):
            return "reserved"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr.is_private:
        return "private"
    if addr.is_reserved:
        return "reserved"
    if not addr.is_global:
        return "not globally routable"
    return None


def _parse_ip(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to already-vetted socket addresses.

    ``host``/``port`` are only used for the ``Host`` header and TLS server name; the socket
    goes to one of ``candidates``, tried in order.
    """

    def __init__(
        self,
        host: str,
        port: int,
        candidates: list[Candidate],
        timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.default_port = 443 if ssl_context is not None else 80
        self._candidates = candidates
        self._ssl_context = ssl_context
        self._timeout = timeout

    def connect(self) -> None:
        last: OSError | None = None
        for family, sockaddr in self._candidates:
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.settimeout(self._timeout)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._ssl_context is not None:
                    sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)
            except OSError:
                sock.close()
                raise
            self.sock = sock
            return
        raise last if last is not None else OSError("no address to connect to")


def _transport_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "the host name could not be resolved"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, http.client.HTTPException):
        return f"invalid HTTP response ({type(exc).__name__})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return "connection failed"


def _content_length(response: http.client.HTTPResponse) -> int | None:
    """The Content-Length header as an int; None when absent. ValueError when malformed."""
    raw = response.getheader("Content-Length")
    if raw is None:
        return None
    values = {v.strip() for v in raw.split(",")}
    if len(values) != 1:
        raise ValueError("conflicting Content-Length headers")
    value = values.pop()
    if not value.isascii() or not value.isdigit():
        raise ValueError("malformed Content-Length header")
    return int(value)


class _Body(Iterator[bytes]):
    """Streams a response body in bounded chunks; short bodies raise Unavailable."""

    def __init__(
        self,
        conn: _PinnedConnection,
        response: http.client.HTTPResponse,
        expected: int | None,
        chunk_size: int,
    ) -> None:
        self._conn = conn
        self._response = response
        self._expected = expected
        self._chunk_size = chunk_size
        self._received = 0
        self._done = False

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        want = self._chunk_size
        if self._expected is not None:
            want = min(want, self._expected - self._received)
            if want <= 0:
                self.close()
                raise StopIteration
        try:
            chunk = self._response.read(want)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unavailable(
                f"External source failed while reading data: {_transport_reason(exc)}"
            ) from exc
        if not chunk:
            self.close()
            if self._expected is not None and self._received < self._expected:
                raise Unavailable(
                    f"External source ended early: received {self._received} of "
                    f"{self._expected} bytes"
                )
            raise StopIteration
        self._received += len(chunk)
        return chunk

    def close(self) -> None:
        self._done = True
        self._conn.close()

    def __del__(self) -> None:
        self._conn.close()


class HttpSource:
    """Reads image data from http(s) URLs, refusing internal network addresses."""

    def __init__(
        self,
        allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (),
        timeout: float = 30.0,
        max_redirects: int = 5,
        chunk_size: int = 1 << 20,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.allowed_networks = tuple(allowed_networks)
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.chunk_size = chunk_size
        self._ssl_context = ssl.create_default_context()

    # ------------------------------------------------------------------ public API

    def validate(self, url: str) -> None:
        """Syntactic check only (no network); raises Invalid with the spec's messages."""
        self._parse(url)

    def check_address(self, url: str) -> None:
        """The URL's form, and where its host leads, without connecting: Invalid (code
        NOT_ALLOWED) when the network rules refuse every address it resolves to. A host that
        does not resolve passes (the request that needs it fails then)."""
        target = self._parse(url)
        try:
            self._resolve(target)
        except _Unreachable:
            return

    def size(self, url: str) -> int | None:
        """HEAD the URL; return its Content-Length, or None when the remote gives none."""
        try:
            conn, response = self._request("HEAD", url, {})
        except _Unreachable as exc:
            raise Invalid(f"External source is unreachable: {exc.reason}") from None
        try:
            status = response.status
            if status == 404:
                raise NotFound("External source not found (remote returned 404)")
            if not 200 <= status < 300:
                raise Invalid(f"External source returned an unexpected status {status}")
            try:
                return _content_length(response)
            except ValueError as exc:
                raise Invalid(f"External source returned a {exc}") from None
        finally:
            conn.close()

    def open(self, url: str, offset: int = 0, length: int | None = None, *,
             headers: Mapping[str, str] | None = None) -> Iterator[bytes]:
        """GET the URL and stream its body (``length`` bytes from ``offset``; to the end when
        None) in chunks of bounded size. A range is asked for with a Range header; a remote
        that does not answer it with those bytes (a 200 with the whole object) is an error.
        ``headers``: sent with the request (credentials: glance-download's token); a request
        that carries them follows no redirect (they would go along to wherever it leads).

        Errors before the body starts are raised here; errors while reading (including a
        body shorter than its Content-Length) are raised as Unavailable by the iterator.
        """
        if offset < 0 or (length is not None and length <= 0):
            raise Invalid("Offset must not be negative, nor the length below 1")
        wanted = range_header(offset, length)
        sent = {**(headers or {}), **({"Range": wanted} if wanted else {})}
        try:
            conn, response = self._request("GET", url, sent, follow=headers is None)
        except _Unreachable as exc:
            raise Unavailable(f"External source is unreachable: {exc.reason}") from None
        try:
            status = response.status
            if status in _REDIRECT_STATUSES and headers is not None:
                raise Invalid(f"External source answered a redirect (status {status}), which "
                              "a request carrying credentials does not follow")
            if status == 404:
                raise NotFound("External source not found (remote returned 404)")
            if wanted:
                if status != 206:
                    raise Unavailable(
                        f"External source did not honour the range request (status {status})"
                    )
                if not answers_range(response.getheader("Content-Range"), offset, length):
                    raise Unavailable("External source returned an unexpected Content-Range")
            elif status not in (200, 203):
                raise Unavailable(f"External source returned an unexpected status {status}")
            try:
                expected = _content_length(response)
            except ValueError as exc:
                raise Unavailable(f"External source returned a {exc}") from None
        except GlimpseError:
            conn.close()
            raise
        return _Body(conn, response, expected, self.chunk_size)

    # ------------------------------------------------------------------ internals

    def _parse(self, url: str) -> _Target:
        if not url or not url.strip():
            raise Invalid("External source should not be empty")
        if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
            raise Invalid(
                "Invalid location: the URL must not contain whitespace or control characters"
            )
        try:
            parts = urlsplit(url)
        except ValueError:
            raise Invalid("Invalid location") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise Invalid(f"External sources are not supported: '{redact_url(url)}'")
        if not url.isascii():
            raise Invalid("Invalid location: the URL must be ASCII (percent-encode other text)")
        if "@" in parts.netloc:
            raise Invalid("Invalid location: user credentials are not allowed in the URL")
        host = parts.hostname
        if not host:
            raise Invalid("Invalid location")
        try:
            port = parts.port
        except ValueError:
            raise Invalid("Invalid location") from None
        if port == 0:
            raise Invalid("Invalid location")
        if parts.netloc.startswith("["):
            if _parse_ip(host) is None or "%" in host:
                raise Invalid("Invalid location")
        elif not _HOSTNAME_RE.fullmatch(host) or ".." in host:
            raise Invalid("Invalid location")
        path = parts.path or "/"
        if not path.startswith("/"):
            raise Invalid("Invalid location")
        if parts.query:
            path = f"{path}?{parts.query}"
        return _Target(scheme, host, port or _DEFAULT_PORTS[scheme], path)

    def _allowed(self, addr: Address) -> bool:
        addrs: list[Address] = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addrs.append(addr.ipv4_mapped)
        return any(a in net for a in addrs for net in self.allowed_networks)

    def _resolve(self, target: _Target) -> list[Candidate]:
        """Resolve the host once and keep only the addresses that may be reached.

        Raises _Refused (before any connection) when no resolved address may be reached.
        """
        try:
            infos = socket.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as exc:
            raise _Unreachable(_transport_reason(exc)) from None
        vetted: list[Candidate] = []
        reasons: list[str] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            addr = _parse_ip(str(sockaddr[0]))
            if addr is None:
                continue
            reason = None if self._allowed(addr) else _ip_reason(addr)
            if reason is not None:
                reasons.append(reason)
                continue
            vetted.append((family, sockaddr))
        if not vetted:
            why = f"it resolves to a {reasons[0]} address" if reasons else "no usable address"
            # "does not pass filtering" is Glance's wording, which clients (Tempest) look for.
            raise _Refused(f"External source host '{target.host}' is not allowed (the URL does "
                           f"not pass filtering): {why}")
        return vetted

    def _connect(self, target: _Target) -> _PinnedConnection:
        candidates = self._resolve(target)
        context = self._ssl_context if target.scheme == "https" else None
        return _PinnedConnection(target.host, target.port, candidates, self.timeout, context)

    def _request(
        self, method: str, url: str, headers: dict[str, str], follow: bool = True
    ) -> tuple[_PinnedConnection, http.client.HTTPResponse]:
        """Send ``method`` following redirects (unless not ``follow``); every hop is
        re-parsed and re-vetted."""
        current = url
        for _hop in range(self.max_redirects + 1):
            target = self._parse(current)
            conn = self._connect(target)
            try:
                conn.request(
                    method,
                    target.path,
                    headers={
                        "User-Agent": USER_AGENT,
                        "Accept": "*/*",
                        "Connection": "close",
                        **headers,
                    },
                )
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise _Unreachable(_transport_reason(exc)) from None
            location = response.getheader("Location")
            if response.status not in _REDIRECT_STATUSES or not location or not follow:
                return conn, response
            conn.close()
            location = location.strip()
            if len(location) > _MAX_LOCATION:
                raise Invalid("External source redirected to an over-long location")
            try:
                current = urljoin(current, location)
            except ValueError:  # e.g. "http://user:secret@[bad": not quoted, nor raised on
                raise Invalid("External source redirected to an invalid location") from None
        raise Invalid(f"External source redirected more than {self.max_redirects} times")

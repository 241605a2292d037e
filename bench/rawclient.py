"""A small HTTP/1.1 client for the benchmark, standard library only.

The client shares the machine with the server under test, so it is kept cheap:

* `Conn` is one blocking keep-alive connection. A request body is either bytes or a file
  sent with `socket.sendfile` (zero-copy, never read into Python memory). A response body
  is kept, or read into one reused 1 MiB buffer and dropped, optionally hashed on the way.
* `closed_loop()` is an asyncio-protocol load generator: N connections, each sending its
  next request as soon as the previous answer is complete, recording every latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

BUF_SIZE = 1 << 20
MAX_LINE = 65536


class HttpError(Exception):
    """The server broke the protocol or the connection."""


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    prefix: str  # path prefix of the service, without the trailing slash

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host[:port][/prefix] URLs are supported: {url!r}")
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes  # empty unless the body was kept
    nbytes: int  # body bytes received
    elapsed: float = 0.0  # seconds from the first byte sent to the last byte read

    def json(self) -> Any:
        return json.loads(self.body)


def _parse_head(lines: list[str]) -> tuple[str, int, str, dict[str, str]]:
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"bad status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(f"bad header line {line[:100]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _wants_close(version: str, headers: dict[str, str]) -> bool:
    conn = headers.get("connection", "").lower()
    return "close" in conn or (version == "HTTP/1.0" and "keep-alive" not in conn)


class Conn:
    """One blocking HTTP/1.1 keep-alive connection; reconnects when needed."""

    def __init__(
        self, endpoint: Endpoint, headers: dict[str, str] | None = None, timeout: float = 900.0
    ) -> None:
        self.endpoint = endpoint
        self.default_headers = dict(headers or {})
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._rfile: Any = None
        self._buf = memoryview(bytearray(BUF_SIZE))

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for closable in (self._rfile, self._sock):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._sock = self._rfile = None

    def _connect(self) -> socket.socket:
        self.close()
        sock = socket.create_connection(
            (self.endpoint.host, self.endpoint.port), timeout=self.timeout
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._rfile = sock.makefile("rb", buffering=256 * 1024)
        return sock

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        body: bytes | None = None,
        file: str | None = None,
        keep_body: bool = True,
        hasher: Hasher | None = None,
    ) -> Response:
        """Send one request and read its whole answer.

        `path` is the full request target (the endpoint prefix included). `file` is sent with
        sendfile. With keep_body=False the body is read into the reused buffer and dropped;
        `hasher` sees every body byte either way.
        """
        reused = self._sock is not None
        try:
            return self._exchange(method, path, headers, body, file, keep_body, hasher)
        except (BrokenPipeError, ConnectionResetError, _ClosedBeforeAnswer):
            self.close()
            if not reused:
                raise
        # The server closed an idle kept-alive connection before reading the request:
        # nothing was processed, so one retry on a fresh connection is safe.
        return self._exchange(method, path, headers, body, file, keep_body, hasher)

    def _exchange(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None,
        body: bytes | None,
        file: str | None,
        keep_body: bool,
        hasher: Hasher | None,
    ) -> Response:
        sock = self._sock or self._connect()
        start = time.perf_counter()
        length: int | None = None
        if file is not None:
            length = os.path.getsize(file)
        elif body is not None:
            length = len(body)
        elif method in ("POST", "PUT", "PATCH"):
            length = 0
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.endpoint.authority}"]
        lines += [f"{k}: {v}" for k, v in self.default_headers.items()]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        send_error: OSError | None = None
        try:
            if body is not None and len(body) <= 256 * 1024:
                sock.sendall(head + body)
            else:
                sock.sendall(head)
                if body is not None:
                    sock.sendall(body)
                elif file is not None and length:
                    with open(file, "rb") as f:
                        sent = sock.sendfile(f, 0, length)
                    if sent != length:
                        raise HttpError(f"sendfile sent {sent} of {length} bytes")
        except (BrokenPipeError, ConnectionResetError) as exc:
            send_error = exc  # the server may have answered early (413, 400): read that
        try:
            resp = self._read_response(method, keep_body, hasher)
        except (HttpError, OSError):
            if send_error is not None:
                raise send_error from None
            raise
        if send_error is not None:
            self.close()
        resp.elapsed = time.perf_counter() - start
        return resp

    def _readline(self) -> bytes:
        line: bytes = self._rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HttpError("response line too long")
        return line

    def _read_response(self, method: str, keep_body: bool, hasher: Hasher | None) -> Response:
        while True:
            first = self._readline()
            if not first:
                raise _ClosedBeforeAnswer("connection closed before the status line")
            lines = [first.decode("latin-1").rstrip("\r\n")]
            while True:
                line = self._readline()
                if not line:
                    raise HttpError("connection closed inside the response head")
                if line in (b"\r\n", b"\n"):
                    break
                lines.append(line.decode("latin-1").rstrip("\r\n"))
            version, status, reason, headers = _parse_head(lines)
            if not 100 <= status < 200:
                break
        chunks: list[bytes] | None = [] if keep_body else None
        nbytes = 0
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = self._readline()
                if not size_line:
                    raise HttpError("connection closed inside a chunked body")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self._readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                nbytes += self._read_body(size, chunks, hasher)
                self._readline()
        elif "content-length" in headers:
            nbytes = self._read_body(int(headers["content-length"]), chunks, hasher)
        else:
            nbytes = self._read_body(None, chunks, hasher)
            self.close()
        if _wants_close(version, headers):
            self.close()
        body = b"".join(chunks) if chunks else b""
        return Response(status, reason, headers, body, nbytes)

    def _read_body(self, n: int | None, chunks: list[bytes] | None, hasher: Hasher | None) -> int:
        """Read n bytes (None: to EOF) into the reused buffer."""
        buf, got = self._buf, 0
        while n is None or got < n:
            want = BUF_SIZE if n is None else min(BUF_SIZE, n - got)
            r = self._rfile.readinto(buf[:want])
            if not r:
                if n is None:
                    break
                raise HttpError(f"connection closed after {got} of {n} body bytes")
            got += r
            if hasher is not None:
                hasher.update(buf[:r])
            if chunks is not None:
                chunks.append(bytes(buf[:r]))
        return got


class _ClosedBeforeAnswer(HttpError):
    pass


# --------------------------------------------------------------------------- load generator


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, one per answer
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    wall: float = 0.0


class _LoadProtocol(asyncio.Protocol):
    """Closed loop on one connection: send, wait for the whole answer, send again."""

    def __init__(self, request: bytes, is_head: bool, deadline: float, out: LoadResult) -> None:
        self.request, self.is_head, self.deadline, self.out = request, is_head, deadline, out
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.sent_at = 0.0
        self.in_flight = False
        self.body_left: int | None = None  # None: reading the head
        self.chunked = False
        self.status = 0
        self.close_after = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if time.perf_counter() >= self.deadline:
            self.transport.close()
            return
        self.body_left, self.chunked, self.in_flight = None, False, True
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            while self.buf and self._parse():
                pass
        except (ValueError, IndexError, HttpError) as exc:
            self.out.errors.append(f"bad response: {exc!r}")
            assert self.transport is not None
            self.transport.close()

    def _parse(self) -> bool:
        """Consume what the buffer holds; True when an answer completed and more may follow."""
        if self.body_left is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            del self.buf[: end + 4]
            version, self.status, _, headers = _parse_head(lines)
            if 100 <= self.status < 200:
                return True
            self.close_after = _wants_close(version, headers)
            self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            no_body = self.is_head or self.status in (204, 304)
            self.body_left = 0 if no_body else int(headers.get("content-length", "0"))
            if no_body:
                self.chunked = False
        if self.chunked:
            while True:
                eol = self.buf.find(b"\r\n")
                if eol < 0:
                    return False
                size = int(bytes(self.buf[:eol]).split(b";", 1)[0], 16)
                if size == 0:
                    end = self.buf.find(b"\r\n\r\n", eol)
                    if end < 0:
                        return False
                    del self.buf[: end + 4]
                    break
                if len(self.buf) < eol + 2 + size + 2:
                    return False
                del self.buf[: eol + 2 + size + 2]
            self.chunked, self.body_left = False, 0
        assert self.body_left is not None
        if len(self.buf) < self.body_left:
            return False
        del self.buf[: self.body_left]
        self._complete()
        return self.transport is not None and not self.transport.is_closing()

    def _complete(self) -> None:
        out = self.out
        out.latencies.append(time.perf_counter() - self.sent_at)
        out.statuses[self.status] = out.statuses.get(self.status, 0) + 1
        self.in_flight = False
        if self.close_after:
            out.reconnects += 1
            assert self.transport is not None
            self.transport.close()
            return
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight:
            self.out.errors.append(f"connection lost during a request: {exc!r}")
        elif exc is not None:
            self.out.errors.append(repr(exc))
        if not self.done.done():
            self.done.set_result(None)


async def _closed_loop(
    endpoint: Endpoint, request: bytes, is_head: bool, connections: int, seconds: float
) -> LoadResult:
    loop = asyncio.get_running_loop()
    out = LoadResult()
    start = time.perf_counter()
    deadline = start + seconds

    async def one_connection() -> None:
        while time.perf_counter() < deadline and len(out.errors) < 100:
            try:
                _, proto = await loop.create_connection(
                    lambda: _LoadProtocol(request, is_head, deadline, out),
                    endpoint.host,
                    endpoint.port,
                )
            except OSError as exc:
                out.errors.append(f"connect: {exc!r}")
                await asyncio.sleep(0.05)
                continue
            await proto.done

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    out.wall = time.perf_counter() - start
    return out


def closed_loop(
    endpoint: Endpoint,
    method: str,
    path: str,
    headers: dict[str, str],
    connections: int,
    seconds: float,
) -> LoadResult:
    """Run `connections` closed-loop clients of one request for `seconds`."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: {endpoint.authority}\r\n"
        f"Accept: application/json\r\n{extra}\r\n"
    ).encode("latin-1")
    return asyncio.run(_closed_loop(endpoint, request, method == "HEAD", connections, seconds))

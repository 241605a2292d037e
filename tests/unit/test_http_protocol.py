"""glimpse's HTTP protocol in process, on a transport of this test's own: a body of declared
length is read past the parser (api/protocol.py), and these check the cases a real socket does
not show on demand. tests/e2e/test_v2_data.py drives the same code through a real server."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from glimpse.api.protocol import GlimpseHttpProtocol

Chunks = list[tuple[str, list[bytes]]]


class Transport(asyncio.Transport):
    """What the protocol writes, kept; reading is never paused for real."""

    def __init__(self, sized: bool) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False
        if sized:
            self.max_size = 1 << 20

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)


def echo_app(seen: Chunks) -> Any:
    """An ASGI app that answers each request with its body's length and md5, and keeps the
    chunks it was handed."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        parts: list[bytes] = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen.append((scope["path"], parts))
        body = b"".join(parts)
        answer = f"{len(body)} {hashlib.md5(body).hexdigest()}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return app


def request(path: str, body: bytes, close: bool = False) -> bytes:
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


async def serve(app: Any, reads: list[bytes], sized: bool) -> tuple[bytes, list[int | None]]:
    """Feeds ``reads`` to a protocol serving ``app``; returns what it wrote, and the
    transport's read size after each read."""
    config = Config(app=app, lifespan="off", log_level="error")
    config.load()
    protocol = GlimpseHttpProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = Transport(sized)
    protocol.connection_made(transport)
    read_sizes: list[int | None] = []
    for data in reads:
        protocol.data_received(data)
        read_sizes.append(getattr(transport, "max_size", None))
        for _ in range(20):
            await asyncio.sleep(0)
    for _ in range(200):
        if transport.closing:
            break
        await asyncio.sleep(0.005)
    protocol.connection_lost(None)
    return bytes(transport.written), read_sizes


def answers(written: bytes) -> list[bytes]:
    return [part.split(b"\r\n\r\n", 1)[1][:60] for part in written.split(b"HTTP/1.1 200 OK")[1:]]


def expect(body: bytes) -> bytes:
    return f"{len(body)} {hashlib.md5(body).hexdigest()}".encode()


@pytest.mark.parametrize("sized", [True, False], ids=["sized-reads", "unsized-reads"])
def test_a_body_read_past_the_parser_ends_where_the_next_request_begins(sized: bool) -> None:
    first = bytes(range(256)) * 12_000
    second = b"second body"
    wire = request("/one", first) + request("/two", second, close=True)
    cut = len(wire) - len(request("/two", second, close=True)) - 5000
    reads = [wire[:1000], wire[1000:cut], wire[cut:]]
    seen: Chunks = []
    written, read_sizes = asyncio.run(serve(echo_app(seen), reads, sized))
    assert answers(written) == [expect(first), expect(second)]
    assert [path for path, _ in seen] == ["/one", "/two"]
    # A read past the parser reaches the app as it was read: the very object, uncopied.
    assert any(part is reads[1] for part in seen[0][1])
    if sized:
        # Reads are sized to end where the body does (so a real socket never reads past it;
        # this transport ignores the size, so the last read is split anyway), and back to a
        # full read once it has.
        assert read_sizes == [1 << 20, 5000, 1 << 20]


def test_a_body_answered_early_is_dropped_to_its_last_byte() -> None:
    seen: Chunks = []

    async def early(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope["path"], []))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"no"})

    # The body is made of requests: read as such, they would be answered.
    body = b"PUT /evil HTTP/1.1\r\nContent-Length: 0\r\n\r\n" * 30_000
    wire = request("/first", body) + request("/second", b"", close=True)
    reads = [wire[:2000]] + [wire[at:at + 65_536] for at in range(2000, len(wire), 65_536)]
    written, _ = asyncio.run(serve(early, reads, sized=False))
    assert written.count(b"HTTP/1.1 200 OK") == 2
    assert [path for path, _ in seen] == ["/first", "/second"]

"""The HTTP/1.1 protocol glimpse serves with: uvicorn's httptools protocol, bounded, plus
zero-copy file sending.

* httptools buffers a request's head without limit before handing it over, so one client could
  make the server hold any amount of memory with an endless header. This counts the bytes that
  arrive while a request head is incomplete and answers 400 past a bound.
* uvicorn pauses reading a request body every 64 KiB (see BODY_HIGH_WATER), and copies every
  body byte twice on its way to the app (see BodyChunks and GlimpseCycle.receive).
* httptools copies every body byte once more, out of the bytes read from the socket. A body of
  declared length is instead read by the protocol itself, past the parser, each read no longer
  than what is left of the body: every chunk the app gets is then a whole read, uncopied (see
  GlimpseHttpProtocol.data_received).
* uvicorn has no ASGI extension for sending a file, so every downloaded byte would be copied
  through Python. Responses may instead send ``{"type": "glimpse.sendfile", "file": <open
  binary file>}`` after ``http.response.start`` with a Content-Length: the file goes out with
  ``loop.sendfile`` (the sendfile system call on plain sockets), from the message's ``"offset"``
  (0 when absent; the file's own position is ignored). An open file rather than a path,
  so an image deleted meanwhile is still sent whole or not at all.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

MAX_HEAD_BYTES = 256 * 1024
# uvicorn stops reading a request body once 64 KiB wait for the app, so a large upload costs
# an epoll unregister/register and an event round trip per 64 KiB. Buffering up to 1 MiB per
# connection lets the loop read ahead and hand the app one block per MiB. (Less is less memory
# and more CPU: see UPLOAD_BLOCK in api/http.py.)
BODY_HIGH_WATER = 1 << 20
SENDFILE = "glimpse.sendfile"


class BodyChunks:
    """A request's unread body chunks, standing in for uvicorn's bytearray ``cycle.body``.

    uvicorn copies every body byte twice: into that bytearray as it arrives, and out of it
    into a new bytes object for the app. Here arriving chunks are kept as they are, and the app
    is handed them one by one, uncopied (GlimpseCycle.receive).
    """

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0

    def __iadd__(self, chunk: bytes) -> BodyChunks:
        self.chunks.append(chunk)
        self.size += len(chunk)
        return self

    def __len__(self) -> int:
        return self.size

    def popleft(self) -> bytes:
        """The oldest waiting chunk (b"" when none waits)."""
        if not self.chunks:
            return b""
        chunk = self.chunks.popleft()
        self.size -= len(chunk)
        return chunk


class GlimpseCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, with the body handed over without copies and the
    glimpse.sendfile extension."""

    body: BodyChunks  # type: ignore[assignment]

    async def receive(self) -> Any:
        """uvicorn's receive, except that the waiting body chunks go to the app one per
        message, as they arrived: uvicorn joins them into one, which copies every byte once
        more (and holds it twice meanwhile)."""
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        body = self.body
        if not body.chunks and not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
        self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        chunk = body.popleft()
        if len(body) <= BODY_HIGH_WATER:
            self.flow.resume_reading()
        return {"type": "http.request", "body": chunk,
                "more_body": self.more_body or bool(body.chunks)}

    async def send(self, message: Any) -> None:
        if message["type"] != SENDFILE:
            await super().send(message)
            return
        if not self.response_started or self.response_complete or self.chunked_encoding:
            raise RuntimeError("glimpse.sendfile needs a started response with Content-Length")
        count = self.expected_content_length
        if self.scope["method"] != "HEAD" and count:
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                return
            loop = asyncio.get_running_loop()
            offset = message.get("offset", 0)
            sent = await loop.sendfile(self.transport, message["file"], offset, count)
            if sent != count:
                # A short file must never complete as a success: drop the connection.
                self.transport.close()
                raise RuntimeError(f"file delivered {sent} of {count} bytes")
            self.expected_content_length = 0
        await super().send({"type": "http.response.body", "body": b"", "more_body": False})


class GlimpseHttpProtocol(HttpToolsProtocol):
    # Set once per process by glimpse.app.build_app from the settings.
    header_timeout = 30.0
    body_idle_timeout = 60.0

    _head_bytes = 0
    _in_head = True
    _timer: asyncio.TimerHandle | None = None
    _body_data_at = 0.0  # loop time the request body last delivered data
    # Body bytes of the current request still to come, when its length was declared: while the
    # parser reads the request (head, and any body in the same read) and then while the protocol
    # reads the body itself (_raw).
    _body_left = 0
    _raw = False

    @classmethod
    def configure(cls, header_timeout: float, body_idle_timeout: float) -> None:
        cls.header_timeout = header_timeout
        cls.body_idle_timeout = body_idle_timeout

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._size_reads()
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._disarm()
                self.send_400_response("Request headers too large.")
                return
        elif self.cycle is not None and not self.cycle.response_complete:
            # The client is alive. Noted, not re-armed: a timer per read would cost a cancel and
            # a schedule per MiB of an upload; the timer re-arms itself when it fires early.
            self._body_data_at = self.loop.time()
        if self._raw:
            self._unset_keepalive_if_required()
            self._raw_body(data)
            return
        super().data_received(data)
        if self._body_left and not self.transport.is_closing():
            # The parser has read the head and what came with it; the rest of the body is
            # read here, each read sized to end at most where the body does.
            self._raw = True
            self._size_reads()

    def _raw_body(self, data: bytes) -> None:
        """Part of a body of declared length, read past the parser (see data_received)."""
        rest = b""
        if len(data) > self._body_left:
            # Only where reads cannot be sized (a transport without max_size): the next
            # request's first bytes came with the body's last.
            data, rest = data[: self._body_left], data[self._body_left :]
        self._body_left -= len(data)
        self._to_cycle(data)
        if not self._body_left:
            self._raw = False
            cycle = self.cycle
            if not cycle.response_complete:
                cycle.more_body = False
                cycle.message_event.set()
            # The parser saw the head but not the body: the next request needs a parser at its
            # start (set up as uvicorn sets up its own).
            self.parser = httptools.HttpRequestParser(self)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._size_reads()
        if rest:
            self.data_received(rest)

    def _size_reads(self) -> None:
        """asyncio reads at most 256 KiB per wake-up; an upload would then cost four parser
        and protocol round trips per MiB, where reads of up to 1 MiB cost one. A body read past
        the parser is read no further than its end."""
        transport = self.transport
        if hasattr(transport, "max_size"):
            transport.max_size = min(self._body_left, BODY_HIGH_WATER) if self._raw \
                else BODY_HIGH_WATER

    def _arm(self, seconds: float) -> None:
        """A slow client (headers sent byte by byte, a body trickled or stalled) may not hold
        a connection and its worker forever: past the timeout the connection is closed, which
        the app sees as a disconnect (an upload ends killed)."""
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._in_head:
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body:
            return
        if self.flow.read_paused:
            # We stopped reading, not the client stopping sending: wait on.
            self._arm(self.body_idle_timeout)
            return
        idle = self.loop.time() - self._body_data_at
        if idle < self.body_idle_timeout:
            self._arm(self.body_idle_timeout - idle)
            return
        self.transport.close()

    def on_body(self, body: bytes) -> None:
        if self.parser.should_upgrade() and self._should_upgrade():
            return
        if self._body_left:
            self._body_left -= len(body)
        self._to_cycle(body)

    def _to_cycle(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.response_complete:
            return  # answered already: the rest of the body is read and dropped
        cycle.body += body
        if len(cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._body_left = 0
        super().on_message_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm(self.header_timeout)
        self.scope["extensions"] = {SENDFILE: {}}

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._body_data_at = self.loop.time()
        self._arm(self.body_idle_timeout)
        super().on_headers_complete()
        # uvicorn builds its cycle inside on_headers_complete; its task has not run yet, so
        # switching the class here gives that request GlimpseCycle's receive() and send().
        cycle = self.cycle
        if cycle is not None and type(cycle) is RequestResponseCycle:
            cycle.__class__ = GlimpseCycle
            cycle.body = BodyChunks()  # type: ignore[assignment]
            self._body_left = _declared_length(self.headers)


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The body length a request head declares, if that alone frames its body (else 0). The
    parser has already refused a malformed or repeated Content-Length."""
    lengths = [value for name, value in headers if name == b"content-length"]
    if len(lengths) != 1 or any(name == b"transfer-encoding" for name, _ in headers):
        return 0
    text = lengths[0].strip()
    return int(text) if text.isdigit() else 0

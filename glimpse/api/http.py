"""Small ASGI pieces shared by every API version: responses, bodies, thread hops, and the
context a routed request reaches its handler in."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, BinaryIO, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glimpse.api.handoff import Handoff
from glimpse.api.protocol import SENDFILE
from glimpse.api.ranges import ByteRange
from glimpse.domain.data import Download, Upload
from glimpse.domain.model import Principal
from glimpse.errors import Invalid

T = TypeVar("T")
Header = tuple[bytes, bytes]
# Downloads hand the transport views of at most this size.
BODY_BLOCK = 1 << 20
# Upload data crosses from the event loop to the worker thread in blocks of this size, so a
# 1 GiB upload costs about a thousand thread hops rather than one per network read. Every
# block in flight is server memory (the pump's next ones, the worker's, those the hashes lag
# behind, the socket reads, the store's buffer), and every hop is CPU on the upload's critical
# path. Measured on a quiet 2-core machine, 1 GiB uploads through the benchmark's client, peak
# memory above the server's resting set / MiB/s: 1 MiB blocks, two ahead and two behind, 1 MiB
# reads, 18-22 MiB / 406-441; one ahead and one behind 16 MiB / 391; 512 KiB blocks and reads,
# two and two, 12 MiB / 367; 512 KiB, one and one, 7-10 MiB / 340 (docs/benchmarks.md). Since
# blocks are no longer joined (BodyPump), four ahead and four behind uploaded 1.05-1.08x as fast
# as two and two at the same peak; eight and eight were no faster and peaked 5 MiB higher. Since
# bodies are read uncopied (api/protocol.py) and blocks cross through a plain queue
# (api/handoff.py), two and two (these) are within 1.03x of four and four's speed and peak
# 2.3 MiB lower (7 interleaved rounds; 500 vs 516 MiB/s, 67 vs 69 MiB).
UPLOAD_BLOCK = 1 << 20
PUMP_DEPTH = 2  # blocks the pump may read ahead of the worker
BODY_HOLD = 1.0  # seconds a partial block may wait for more data
# A declared body this long at most is read whole before its worker starts (BodyPump.feed):
# its image shows saving only once the body is in, which for 64 KiB is at once.
SMALL_BODY = 64 << 10
MAX_JSON_BODY = 1 << 20
IMAGE_DATA_TYPE = "application/octet-stream"  # the one Content-Type image data may carry


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(fn, *args)


_upload_limiter: anyio.CapacityLimiter | None = None
MAX_CONCURRENT_UPLOADS = 64


def _upload_threads() -> anyio.CapacityLimiter:
    """Uploads hold a thread for as long as their data flows, so they draw from their own pool:
    many slow uploads can then never starve metadata requests of worker threads."""
    global _upload_limiter
    if _upload_limiter is None:
        _upload_limiter = anyio.CapacityLimiter(MAX_CONCURRENT_UPLOADS)
    return _upload_limiter


def json_response(
    document: Any, status: int = 200, headers: list[Header] | None = None
) -> Response:
    body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    response = Response(body, status_code=status, media_type="application/json")
    response.raw_headers.extend(headers or [])
    return response


def json_text_response(text: str, status: int = 200) -> Response:
    """``text``, already JSON (as json_response would have written it)."""
    return Response(text.encode("utf-8"), status_code=status, media_type="application/json")


def empty_response(status: int, headers: list[Header] | None = None) -> Response:
    response = Response(b"", status_code=status)
    response.raw_headers.extend(headers or [])
    return response


def text_response(status: int, message: str, headers: list[Header] | None = None) -> Response:
    response = Response(message.encode("utf-8"), status_code=status, media_type="text/plain")
    response.raw_headers.extend(headers or [])
    return response


class BodyPump:
    """Reads a request body on the event loop, a few blocks ahead of the worker thread that
    consumes it, so receiving overlaps hashing and writing while memory stays bounded.

    A block is the chunks as they arrived (about UPLOAD_BLOCK bytes of them), handed over
    together and never joined: joining would copy every byte once more."""

    def __init__(self, request: Request, depth: int = PUMP_DEPTH,
                 length: int | None = None) -> None:
        """``length``: the body's declared length (Content-Length), None when chunked."""
        self._request = request
        self._handoff: Handoff[list[bytes]] = Handoff(depth)
        self._error: Exception | None = None
        self._complete = False
        self._length = length
        self._read: list[bytes] | None = None  # the whole body, when read before the worker

    async def run(self) -> None:
        try:
            await self._pump(self._handoff.put)
        finally:
            # However the pump ends (cancelled too), the worker must see the end.
            self._handoff.close()

    async def _pump(self, put: Callable[[list[bytes]], Awaitable[None]]) -> None:
        clock = asyncio.get_running_loop().time
        parts: list[bytes] = []
        size = 0
        held_since = 0.0
        try:
            async for chunk in self._request.stream():
                if not chunk:
                    continue
                if not parts:
                    held_since = clock()
                parts.append(chunk)
                size += len(chunk)
                # A slow client's data is passed on after BODY_HOLD even short of a block:
                # the upload's heartbeat beats only as data reaches the worker, and an
                # upload that sends less than a block per stale-upload timeout is alive.
                if size >= UPLOAD_BLOCK or clock() - held_since >= BODY_HOLD:
                    await put(parts)
                    parts, size = [], 0
        except ClientDisconnect:
            self._error = Invalid("Client disconnected before sending all image data")
            return
        except Exception as exc:
            # Closing the stream without an error would pass a truncated body as whole.
            self._error = exc
            return
        if parts:
            await put(parts)
        self._complete = True

    def chunks(self) -> Iterator[bytes]:
        """The body as a blocking iterator, for code running in a worker thread."""
        if self._read is not None:
            if self._error is not None:
                raise self._error
            yield from self._read
            return
        while (block := self._handoff.take()) is not None:
            yield from block
        if self._error is not None:
            raise self._error
        if not self._complete:
            # The pump was stopped (server shutdown) before the body ended: what arrived
            # must not pass for the whole image.
            raise Invalid("The request body was cut short")

    async def feed(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a worker thread while this pump feeds it the body."""
        if self._length is not None and self._length <= SMALL_BODY:
            # A small body is read whole before the worker starts: it takes less memory than
            # a block in flight, and the worker then reads it without a hop to the event loop
            # per block (two for a 64 KiB upload).
            read: list[bytes] = []

            async def keep(block: list[bytes]) -> None:
                read.extend(block)

            await self._pump(keep)
            self._read = read
            return await anyio.to_thread.run_sync(fn, *args, limiter=_upload_threads())
        # The body may be read from any thread, not only the worker's (a store may read it on
        # a thread of its own while it sends).
        pump = asyncio.ensure_future(self.run())
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=_upload_threads())
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


@dataclasses.dataclass
class RequestContext:
    """One routed request, as any version's handlers see it: the request, who sent it, the
    route's parameters, and the image data its body may carry."""

    request: Request
    principal: Principal
    params: dict[str, str]
    base_url_of: Callable[[Request], str]
    pump: BodyPump | None = None

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def upload(self) -> Upload | None:
        """The image data carried by the body, if any (spec §8.1.1)."""
        length_text = self.header("content-length")
        chunked = "transfer-encoding" in self.request.headers
        length = int(length_text) if length_text and length_text.isdigit() else None
        if not chunked and not length:
            return None
        self.pump = BodyPump(self.request, length=None if chunked else length)
        return Upload(chunks=self.pump.chunks(), length=None if chunked else length)

    def body_type_ok(self) -> bool:
        """Whether the body is declared image data (each API words its own refusal: v1 400,
        v2 415)."""
        media_type = (self.header("content-type") or "").split(";")[0].strip().lower()
        return media_type == IMAGE_DATA_TYPE

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a service method in a worker thread, feeding it the body if it takes one."""
        if self.pump is None:
            return await in_thread(fn, *args)
        return await self.pump.feed(fn, *args)


async def read_json(request: Request,
                    loads: Callable[[bytes], Any] = json.loads) -> Any | None:
    """A small JSON body, parsed by ``loads`` (an API may be stricter than ``json.loads``);
    None when there is none."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and (len(length) > 9 or int(length) > MAX_JSON_BODY):
        # Refused before reading: a client that announces a terabyte is not waited for.
        raise Invalid("Request body too large")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_JSON_BODY:
                raise Invalid("Request body too large")
    except ClientDisconnect as exc:
        raise Invalid("Client disconnected before sending the request body") from exc
    if not body.strip():
        return None
    try:
        return loads(body)
    except (ValueError, RecursionError) as exc:
        raise Invalid("Malformed JSON in request body.") from exc


ACCEPT_RANGES: Header = (b"accept-ranges", b"bytes")


async def data_response(download: Download, headers: list[Header],
                        byte_range: ByteRange | None = None,
                        accept_ranges: bool = True) -> ASGIApp:
    """The answer carrying a download: 200 with all of the data, or 206 with ``byte_range``
    of it (Content-Range, the range's Content-Length, and no Content-MD5 from ``headers``:
    that hash is of the whole image, which a client would check the range against). Both
    say ``Accept-Ranges: bytes`` unless ``accept_ranges`` is false (v1 has no ranges).

    A local file goes out zero-copy either way. A stream's first block is pulled before
    answering, so a source that fails at once (a remote 404, an unreachable store) still
    gets a proper error status; a source that then ends early or runs long aborts the
    connection (StreamResponse).
    """
    status = 200
    if byte_range is not None:
        if (download.offset, download.length) != (byte_range.start, byte_range.length):
            raise RuntimeError(f"download of {download.length} bytes at {download.offset} "
                               f"does not hold the range {byte_range.content_range()}")
        status = 206
        headers = [h for h in headers if h[0].lower() != b"content-md5"]
        headers.append((b"content-range", byte_range.content_range().encode()))
    if accept_ranges:
        headers = [*headers, ACCEPT_RANGES]
    if download.file is not None:
        return FileResponse(headers, download.file, download.length or 0, download.offset,
                            status, sent=download.sent)
    source = download.chunks or iter(())
    first = await in_thread(next, source, None)
    chunks = _resumed(first, source)
    return StreamResponse(headers, chunks, download.length, status, sent=download.sent)


def _resumed(first: bytes | None, source: Iterator[bytes]) -> Iterator[bytes]:
    """``first`` (already taken from ``source``), then the rest of ``source``; closing this
    closes the source (which itertools.chain would not)."""
    if first is None:
        return
    yield first
    yield from source


class FileResponse:
    """Sends ``length`` bytes of an open file from ``offset``: zero-copy where the server
    offers the glimpse.sendfile extension, read in blocks otherwise."""

    def __init__(self, headers: list[Header], file: BinaryIO, length: int, offset: int = 0,
                 status: int = 200, sent: Callable[[int], None] | None = None) -> None:
        self.headers = headers
        self.file = file
        self.length = length
        self.offset = offset
        self.status = status
        self.sent = sent  # Download.sent: told the byte count once the body is out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if SENDFILE not in scope.get("extensions", {}):
            await StreamResponse(self.headers, _file_blocks(self.file, self.offset, self.length),
                                 self.length, self.status, self.sent)(scope, receive, send)
            return
        try:
            await send(_data_start(self.status, self.headers, self.length))
            await send({"type": SENDFILE, "file": self.file, "offset": self.offset})
        finally:
            self.file.close()
        if self.sent is not None and scope["method"] != "HEAD":
            self.sent(self.length)


def _data_start(status: int, headers: list[Header], length: int | None) -> Message:
    """The head of an image-data response; no Content-Length means chunked."""
    head = [(b"content-type", b"application/octet-stream"), *headers]
    if length is not None:
        head.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": status, "headers": head}


def _file_blocks(file: BinaryIO, offset: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of the file from ``offset`` (fewer if it is shorter), in blocks; the
    file is closed at the end."""
    with file:
        file.seek(offset)
        left = length
        while left > 0 and (block := file.read(min(left, BODY_BLOCK))):
            left -= len(block)
            yield block


def _blocks(chunk: bytes) -> Iterator[bytes | memoryview]:
    """A chunk to send, in views of at most BODY_BLOCK bytes (no copies). A store may hand
    over large chunks (RBD: whole 8 MiB objects, taken one hop per object from the thread that
    reads them). The transport is never handed more than a block at once: what the socket
    does not take at once it copies (on Python 3.11 twice for bytes, a slice and its buffer),
    and the server waits for that buffer to drain before the next block anyway."""
    if len(chunk) <= BODY_BLOCK:
        yield chunk
        return
    view = memoryview(chunk)
    for at in range(0, len(chunk), BODY_BLOCK):
        yield view[at:at + BODY_BLOCK]


class StreamResponse:
    """Streams a blocking iterator of exactly ``length`` bytes (chunked when it is None).

    If the source ends early (or runs long), the connection is aborted instead of completing
    the response, so a client never takes a short body for a whole image.

    The next chunk is taken from the source (in a worker thread) while the current one is
    sent, so the thread hop and the store's wait overlap the sending instead of adding to it:
    one chunk more in memory.
    """

    def __init__(
        self, headers: list[Header], chunks: Iterator[bytes], length: int | None,
        status: int = 200, sent: Callable[[int], None] | None = None,
    ) -> None:
        self.headers = headers
        self.chunks = chunks
        self.length = length
        self.status = status
        self.sent = sent  # Download.sent: told the byte count once the body is out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = _data_start(self.status, self.headers, self.length)
        pending: asyncio.Future[bytes | None] | None = None
        try:
            await send(start)
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            sent = 0
            pending = self._take()
            while (chunk := await pending) is not None:
                sent += len(chunk)
                if self.length is not None and sent > self.length:
                    raise RuntimeError(f"store delivered more than the image size {self.length}")
                pending = self._take()
                for block in _blocks(chunk):
                    await send({"type": "http.response.body", "body": block, "more_body": True})
            if self.length is not None and sent != self.length:
                raise RuntimeError(f"store delivered {sent} of {self.length} bytes")
            await send({"type": "http.response.body", "body": b""})
            if self.sent is not None:
                self.sent(sent)
        finally:
            # A chunk still being taken is waited for: the source cannot be closed while its
            # thread runs it. Its failure, if any, is beside the point by now (and retrieved
            # here, not left to be logged as never retrieved).
            if pending is not None:
                with contextlib.suppress(BaseException):
                    await pending
            close = getattr(self.chunks, "close", None)
            if close is not None:
                await in_thread(close)

    def _take(self) -> asyncio.Future[bytes | None]:
        """The source's next chunk (None at its end), taken in a worker thread from now on."""
        return asyncio.ensure_future(in_thread(next, self.chunks, None))

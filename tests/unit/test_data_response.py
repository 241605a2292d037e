"""data_response: the answer carrying a download, whole (200) or a range (206), from a local
file (zero-copy from the offset, or read from it in blocks) or a stream; and the domain's
checks of the bytes asked for (ImageData.open)."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.api.http import BODY_BLOCK, data_response
from glimpse.api.protocol import SENDFILE
from glimpse.api.ranges import ByteRange
from glimpse.domain.data import Download, data_window
from glimpse.domain.model import Image, Location, Status
from glimpse.errors import Invalid, RangeNotSatisfiable

DATA = os.urandom(3000)
MD5 = (b"content-md5", b"0" * 32)


def _image(size: int | None = len(DATA), store: str = "file") -> Image:
    return Image(str(uuid.uuid4()), Status.ACTIVE, size=size,
                 locations=[Location(store, "key")])


def _run(app: Any, sendfile: bool, method: str = "GET") -> tuple[dict[str, Any], list[Any]]:
    """Call an ASGI app; the response start (with headers as a dict) and what followed."""
    scope = {"type": "http", "method": method,
             "extensions": {SENDFILE: {}} if sendfile else {}}
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return {**start, "headers": {k.decode(): v.decode() for k, v in start["headers"]}}, sent[1:]


def _body(messages: list[Any]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def _file(tmp_path: Path) -> io.BufferedReader:
    path = tmp_path / "data"
    path.write_bytes(DATA)
    return path.open("rb")


def test_whole_file_zero_copy(tmp_path: Path) -> None:
    download = Download(_image(), file=_file(tmp_path), offset=0, length=len(DATA))
    start, rest = _run(asyncio.run(data_response(download, [MD5])), sendfile=True)
    assert start["status"] == 200
    assert start["headers"]["content-length"] == str(len(DATA))
    assert start["headers"]["accept-ranges"] == "bytes"
    assert start["headers"]["content-md5"] == "0" * 32
    assert rest[0]["type"] == SENDFILE and rest[0]["offset"] == 0
    assert download.file is not None and download.file.closed


@pytest.mark.parametrize("sendfile", [True, False])
def test_a_range_of_a_file_starts_at_its_offset(tmp_path: Path, sendfile: bool) -> None:
    chosen = ByteRange(1000, 1499, len(DATA))
    download = Download(_image(), file=_file(tmp_path), offset=1000, length=500)
    start, rest = _run(asyncio.run(data_response(download, [MD5], chosen)), sendfile)
    assert start["status"] == 206
    assert start["headers"]["content-range"] == f"bytes 1000-1499/{len(DATA)}"
    assert start["headers"]["content-length"] == "500"
    assert start["headers"]["accept-ranges"] == "bytes"
    assert "content-md5" not in start["headers"]
    if sendfile:
        assert rest[0] == {"type": SENDFILE, "file": download.file, "offset": 1000}
    else:
        # Read from the offset, and no further than the range (the file goes on).
        assert _body(rest) == DATA[1000:1500]
        assert rest[-1].get("more_body", False) is False
    assert download.file is not None and download.file.closed


def test_a_range_of_a_stream(tmp_path: Path) -> None:
    chosen = ByteRange(10, 19, len(DATA))
    download = Download(_image(), chunks=iter([DATA[10:15], DATA[15:20]]), offset=10, length=10)
    start, rest = _run(asyncio.run(data_response(download, [], chosen)), sendfile=True)
    assert start["status"] == 206
    assert start["headers"]["content-length"] == "10"
    assert _body(rest) == DATA[10:20]


def test_a_stream_longer_than_its_range_is_aborted() -> None:
    chosen = ByteRange(10, 19, len(DATA))
    download = Download(_image(), chunks=iter([DATA[10:30]]), offset=10, length=10)
    app = asyncio.run(data_response(download, [], chosen))
    with pytest.raises(RuntimeError, match="more than"):
        _run(app, sendfile=True)


def test_a_large_chunk_goes_out_in_views_of_a_block() -> None:
    # A store may hand over whole objects (RBD: 8 MiB); the transport gets them a block at a
    # time, as views of the chunk (never copies), and the bytes arrive whole and in order.
    big = os.urandom(2 * BODY_BLOCK + 5)
    download = Download(_image(len(big) + 3), chunks=iter([b"abc", big]), offset=0,
                        length=len(big) + 3)
    start, rest = _run(asyncio.run(data_response(download, [])), sendfile=True)
    assert start["headers"]["content-length"] == str(len(big) + 3)
    bodies = [m["body"] for m in rest if m["body"]]
    assert [len(b) for b in bodies] == [3, BODY_BLOCK, BODY_BLOCK, 5]
    assert all(isinstance(b, memoryview) and b.obj is big for b in bodies[1:])
    assert _body(rest) == b"abc" + big
    assert rest[-1] == {"type": "http.response.body", "body": b""}


def test_the_next_chunk_is_taken_while_one_is_sent() -> None:
    asked = threading.Event()

    def source() -> Iterator[bytes]:
        yield b"a"
        asked.set()  # the second chunk is being taken
        yield b"b"

    download = Download(_image(2), chunks=source(), offset=0, length=2)
    app = asyncio.run(data_response(download, []))
    bodies: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message.get("body") == b"a":
            # Not taken one after the other: the source runs while "a" is being sent.
            assert await asyncio.to_thread(asked.wait, 5)
        bodies.append(message.get("body", b""))

    asyncio.run(app({"type": "http", "method": "GET", "extensions": {}}, receive, send))
    assert b"".join(bodies) == b"ab"


def test_a_send_that_fails_closes_the_source_after_its_chunk_in_flight() -> None:
    events: list[str] = []

    def source() -> Iterator[bytes]:
        try:
            yield b"a"
            time.sleep(0.2)  # still being taken when the send fails
            events.append("second taken")
            yield b"b"
        finally:
            events.append("closed")

    download = Download(_image(2), chunks=source(), offset=0, length=2)
    app = asyncio.run(data_response(download, []))

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message.get("body"):
            raise OSError("client went away")

    with pytest.raises(OSError, match="went away"):
        asyncio.run(app({"type": "http", "method": "GET", "extensions": {}}, receive, send))
    assert events == ["second taken", "closed"]


def test_v1_offers_no_ranges(tmp_path: Path) -> None:
    download = Download(_image(), file=_file(tmp_path), offset=0, length=len(DATA))
    start, _ = _run(asyncio.run(data_response(download, [], accept_ranges=False)), True)
    assert start["status"] == 200 and "accept-ranges" not in start["headers"]


def test_a_download_must_hold_the_range_it_answers() -> None:
    download = Download(_image(), chunks=iter([DATA]), offset=0, length=len(DATA))
    with pytest.raises(RuntimeError):
        asyncio.run(data_response(download, [], ByteRange(0, 9, len(DATA))))


def test_a_stream_that_fails_at_once_fails_before_answering() -> None:
    def failing() -> Iterator[bytes]:
        raise RangeNotSatisfiable("gone", 5)
        yield b""

    download = Download(_image(), chunks=failing(), offset=0, length=5)
    with pytest.raises(RangeNotSatisfiable):
        asyncio.run(data_response(download, []))


@pytest.mark.parametrize(("size", "offset", "length", "expected"), [
    (100, 0, None, (0, 100)),
    (100, 10, None, (10, 90)),
    (100, 10, 5, (10, 5)),
    (100, 99, 1, (99, 1)),
    (100, 99, 50, (99, 1)),  # clamped at the end
    (0, 0, None, (0, 0)),  # empty data, read whole
    (None, 10, None, (10, None)),  # an external source of unknown size
    (None, 10, 5, (10, 5)),
])
def test_data_window(size: int | None, offset: int, length: int | None,
                     expected: tuple[int, int | None]) -> None:
    assert data_window(size, offset, length) == expected


@pytest.mark.parametrize(("size", "offset", "length", "error"), [
    (100, 100, None, RangeNotSatisfiable),
    (100, 10**30, 1, RangeNotSatisfiable),
    (0, 1, None, RangeNotSatisfiable),
    (100, -1, None, Invalid),
    (100, 0, 0, Invalid),
    (100, 0, -5, Invalid),
    (None, -1, None, Invalid),
])
def test_data_window_refusals(size: int | None, offset: int, length: int | None,
                              error: type[Exception]) -> None:
    with pytest.raises(error):
        data_window(size, offset, length)

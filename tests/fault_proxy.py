"""A TCP proxy on loopback that can make the service behind it fail on demand.

Modes: ``pass`` forwards; ``refuse`` closes every connection at once (the store is down);
``503`` answers every new connection with an HTTP 503 and cuts the open ones; ``cut`` forwards
but cuts each connection once ``cut_after`` bytes have come back from the service; ``hold``
forwards one read of what a client sends (a request's head) and holds the rest (its body hangs
in flight, the connection counted in ``held``) until the mode changes or ``break_open()`` cuts it;
``stall`` accepts new connections and never answers on them (a service too slow to answer) until
the mode changes; ``strip-range`` forwards but takes the Range header out of every request (a
service that ignores ranges).

Whatever the mode, ``delivered`` counts the bytes that came back from the service, and
``heads`` keeps the start of every GET request sent to it, so a test can tell what a client
asked for and how much it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading

_RANGE_LINE = re.compile(rb"^range:[^\r\n]*\r\n", re.IGNORECASE | re.MULTILINE)
_UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n")


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.cut_after = 0
        self.held = 0
        self.delivered = 0
        self.heads: list[bytes] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str, cut_after: int = 0) -> None:
        """Switch mode; leaving ``pass`` also breaks the connections that are open."""
        self.mode, self.cut_after = mode, cut_after
        if mode in ("refuse", "503", "stall"):
            self._loop.call_soon_threadsafe(self._drop_all)

    def break_open(self) -> None:
        """Cut every open connection (requests in flight fail); new ones pass."""
        asyncio.run_coroutine_threadsafe(self._break_open(), self._loop).result(10)

    async def _break_open(self) -> None:
        self._drop_all()
        self.mode = "pass"

    def close(self) -> None:
        # Connections a client keeps pooled end here, so no task is left pending at the stop.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._end_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _end_all(self) -> None:
        self._drop_all()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait(others, timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.transport.abort()
            return
        if self.mode == "stall":
            while self.mode == "stall" and not writer.transport.is_closing():
                await asyncio.sleep(0.01)
            writer.transport.abort()
            return
        if self.mode == "503":
            with contextlib.suppress(ConnectionError):
                await reader.read(65536)
                writer.write(_UNAVAILABLE)
                await writer.drain()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer, False),
                                 self._pipe(up_reader, writer, True))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    downstream: bool) -> None:
        sent = 0
        reads = 0
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                reads += 1
                if downstream:
                    self.delivered += len(data)
                elif data.startswith(b"GET "):
                    if self.mode == "strip-range":
                        data = _RANGE_LINE.sub(b"", data)
                    self.heads.append(data[:8192])
                if not downstream and self.mode == "hold" and reads > 1:
                    self.held += 1
                    try:
                        while self.mode == "hold" and not writer.transport.is_closing():
                            await asyncio.sleep(0.01)
                    finally:
                        self.held -= 1
                if downstream and self.mode == "cut":
                    # Counted from the switch to "cut": pooled connections carry earlier
                    # answers too.
                    if sent + len(data) > self.cut_after:
                        writer.write(data[: max(self.cut_after - sent, 0)])
                        await writer.drain()
                        writer.transport.abort()
                        return
                    sent += len(data)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

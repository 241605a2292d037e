"""Reading a stream of chunks ahead on a thread of its own, a bounded number of chunks ahead of
the consumer, so that receiving (and whatever the stream does per chunk, such as hashing)
overlaps sending instead of taking turns with it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable

_END = object()
_POLL = 0.5  # seconds between looks at whether the consumer has gone


def read_ahead(chunks: Iterable[bytes], depth: int) -> Generator[bytes, None, None]:
    """Yield ``chunks`` as a helper thread reads them, at most ``depth`` chunks ahead.

    A failure of the stream is raised here, in the consumer. When the consumer stops early
    (it failed, or closed this iterator), the helper stops at its next chunk; a read still
    waiting on the stream is left to end with the stream (a request body ends when the request
    is answered), so a failing consumer never waits for a client that sends nothing.
    """
    ready: queue.Queue[object] = queue.Queue(depth)
    gone = threading.Event()

    def offer(item: object) -> bool:
        """Queue ``item`` for the consumer; False (and dropped) once the consumer has gone."""
        while not gone.is_set():
            try:
                ready.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        end: object = _END
        try:
            for chunk in chunks:
                if not offer(chunk):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            end = exc
        offer(end)

    threading.Thread(target=pump, name="read-ahead", daemon=True).start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        gone.set()

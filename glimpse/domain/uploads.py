"""Keeping track of uploads in flight: heartbeats, and stopping them at shutdown.

An upload whose server dies leaves its image ``saving``. While an upload streams, its image's
``updated_at`` is refreshed every ``interval`` seconds (a conditional update, so an upload whose
image was deleted or killed meanwhile stops at once). Any API process may then treat a
``saving`` image whose heartbeat is older than a few intervals as abandoned and kill it (see
``ImageData.recover_stale_uploads``), which works when several processes share a database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterable

from glimpse.domain.model import Status, now
from glimpse.domain.ports import ImageRepository
from glimpse.errors import PreconditionFailed, Unavailable


class UploadGuard:
    def __init__(self, repo: ImageRepository, interval: float) -> None:
        self._repo = repo
        self._interval = interval
        self._active = 0
        self._stopping = False
        self._idle = threading.Condition()
        self._observers: list[Callable[[Status, int], None]] = []

    def observe(self, observer: Callable[[Status, int], None]) -> None:
        """Call ``observer(status, +1)`` as each upload starts and ``(status, -1)`` as it
        ends (metrics: transfers in progress)."""
        self._observers.append(observer)

    def _tell(self, status: Status, delta: int) -> None:
        for observer in self._observers:
            observer(status, delta)

    def watch(
        self, image_id: str, chunks: Iterable[bytes], status: Status = Status.SAVING
    ) -> Generator[bytes, None, None]:
        """Pass the chunks on, beating the heart of the upload (an image in ``status``: saving,
        or importing while an external location is verified) and honouring shutdown."""
        with self._idle:
            if self._stopping:
                raise Unavailable("The server is shutting down; retry the upload elsewhere.")
            self._active += 1
        self._tell(status, 1)
        try:
            last = time.monotonic()
            for chunk in chunks:
                if self._stopping:
                    raise Unavailable("The server shut down before the upload finished.")
                yield chunk
                moment = time.monotonic()
                if moment - last >= self._interval:
                    last = moment
                    alive = self._repo.set_fields(
                        image_id, {"updated_at": now()}, expected_status=status
                    )
                    if not alive:
                        raise PreconditionFailed(
                            f"Image {image_id} was deleted while its data was being uploaded."
                        )
        finally:
            self._tell(status, -1)
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def stop_all(self, timeout: float) -> int:
        """Make running uploads fail at their next chunk and wait (bounded) for them to clean
        up. Returns how many were still running at the deadline."""
        deadline = time.monotonic() + timeout
        with self._idle:
            self._stopping = True
            while self._active and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            return self._active

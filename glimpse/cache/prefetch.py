"""The prefetcher: a thread of each server process that caches queued images as soon as they
are queued (woken by the cache API's PUT in the same process), and looks at the shared queue
every few seconds for images queued through another worker or the command line.

Every worker of a node runs one; an image queued once is filled once, because a fill takes
the image's lock (glimpse.cache.local) and the others skip an image being filled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from glimpse.errors import GlimpseError

log = logging.getLogger(__name__)


class Prefetcher:
    def __init__(self, queued: Callable[[], list[str]], prefetch: Callable[[str], bool],
                 forget: Callable[[str], object], period: float) -> None:
        self._queued = queued
        self._prefetch = prefetch  # ImageData.prefetch: whether the image left the queue
        # Takes an image whose prefetch failed off the queue: a store that keeps returning
        # damaged data must not be read again every period (an operator may queue it again).
        self._forget = forget
        self._period = period
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cache-prefetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def run_once(self) -> int:
        """Prefetch every queued image; how many were cached or dropped from the queue."""
        done = 0
        for image_id in self._queued():
            if self._stop.is_set():
                break
            try:
                done += self._prefetch(image_id)
            except GlimpseError as exc:
                log.warning("prefetch of image %s failed; dropped from the queue: %s",
                            image_id, exc.message)
                self._forget(image_id)
            except Exception:
                log.exception("prefetch of image %s failed; dropped from the queue", image_id)
                self._forget(image_id)
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except Exception:
                log.exception("cache prefetch failed; trying again in %.0f s", self._period)
            self._wake.wait(self._period)

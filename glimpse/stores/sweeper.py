"""The background thread that retries deleting data a store could not delete at the time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def start_sweeper(purge: Callable[[], int], interval: float) -> threading.Thread:
    """Call ``purge`` every ``interval`` seconds, for the life of the process."""

    def run() -> None:
        while True:
            time.sleep(interval)
            try:
                cleaned = purge()
            except Exception:
                log.exception("store cleanup failed; retrying in %s s", interval)
                continue
            if cleaned:
                log.info("store cleanup: removed the data of %d image(s)", cleaned)

    thread = threading.Thread(target=run, name="store-sweeper", daemon=True)
    thread.start()
    return thread

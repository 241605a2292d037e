"""What an import's data passes through besides the upload stages: the task's heartbeat, the
client's expected hash, and the copies of a stored object into more stores, a bounded number
at once (glimpse.domain.imports)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from glimpse.domain.model import Location, Status, now
from glimpse.domain.ports import ImageRepository, Store
from glimpse.domain.tasks import Task, TaskRepository, TaskStatus
from glimpse.errors import GlimpseError, Invalid, PreconditionFailed

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20
# Where an image's data goes in a store: ImageData.claimed_location.
Locate = Callable[[str, str], Location]


def parallel_copies(stores: Mapping[str, Store], locate: Locate, image_id: str,
                    source: Location, targets: Sequence[str], facts: Mapping[str, Any],
                    beat: Heartbeat, workers: int,
                    ) -> Iterator[tuple[str, Location | GlimpseError]]:
    """Copy the object at ``source`` into each target store, ``workers`` at once; each copy
    is checked against the size and MD5 of ``facts``. Yields each store with its new
    location, or the error that failed it (its partial data deleted)."""
    if not targets:
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(targets)),
                            thread_name_prefix="copy-image") as pool:
        futures = [(name, pool.submit(copy_one, stores, locate, image_id, source, name, facts,
                                      beat)) for name in targets]
        for name, future in futures:
            try:
                yield name, future.result()
            except GlimpseError as exc:
                log.warning("copying image %s to store %s failed: %s", image_id, name,
                            exc.message)
                yield name, exc
            except Exception as exc:
                log.exception("copying image %s to store %s failed", image_id, name)
                yield name, PreconditionFailed(f"internal error ({type(exc).__name__})")


def copy_one(stores: Mapping[str, Store], locate: Locate, image_id: str, source: Location,
             name: str, facts: Mapping[str, Any], beat: Heartbeat) -> Location:
    """One copy, verified; nothing left in the target store if it fails."""
    target = locate(image_id, name)
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0

    def chunks() -> Iterator[bytes]:
        nonlocal size
        for chunk in beat.passing(stores[source.store].open(source.url)):
            md5.update(chunk)
            size += len(chunk)
            yield chunk

    try:
        stores[name].put(target.url, chunks())
        if facts.get("size") is not None and size != facts["size"]:
            raise Invalid(f"The copy in store {name} has {size} bytes, not {facts['size']}.")
        if facts.get("checksum") and md5.hexdigest() != facts["checksum"]:
            raise Invalid(f"The copy in store {name} does not match the image's checksum.")
    except BaseException:
        with contextlib.suppress(GlimpseError):
            stores[name].delete(target.url)
        raise
    return target


class Heartbeat:
    """While an import runs, a thread refreshes its task's ``updated_at`` (and its image's,
    while the image is importing) every ``interval`` seconds, whether data flows or a
    transform works on a scratch copy; data passing through ``passing`` stops once another
    process has taken the task over."""

    def __init__(self, tasks: TaskRepository, repo: ImageRepository, task: Task,
                 incarnation: str | None, interval: float, image_status: Status | None) -> None:
        self._tasks = tasks
        self._repo = repo
        self._task = task
        self._incarnation = incarnation
        self._interval = interval
        self._image_status = image_status
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="import-heartbeat",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                alive = self._tasks.set_task(self._task.id, {"updated_at": now()},
                                             expected_status=[TaskStatus.PROCESSING],
                                             expected_incarnation=self._incarnation)
                if alive and self._image_status is not None:
                    self._repo.set_fields(self._task.image_id or "", {"updated_at": now()},
                                          expected_status=self._image_status)
            except GlimpseError as exc:  # the database away for a moment: beat again later
                log.warning("import task %s: heartbeat failed: %s", self._task.id, exc.message)
                continue
            if not alive:
                self._lost.set()
                return

    def passing(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if self._lost.is_set():
                raise PreconditionFailed("The import's task was ended by another process.")
            yield chunk


def file_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes, in chunks of bounded size."""
    with path.open("rb") as f:
        while chunk := f.read(_COPY_CHUNK):
            yield chunk



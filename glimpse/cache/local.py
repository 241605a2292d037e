"""A node's image cache: verified copies of image data in one directory, shared by every
worker process of the node.

Layout (every name an image id that canonical_id() accepted, never client text)::

    entries/<id>        the data, published by rename once its hashes matched the image's
    entries/<id>.json   its seal: the image's hashes and size, and the file's identity (inode,
                        size, ctime, mtime) as it was published; the seal's mtime is the
                        entry's last use (LRU)
    partial/<id>.<rnd>  a fill in progress
    locks/<id>          flock()ed exclusively by the one process filling the image
    locks/.evict        flock()ed by whoever evicts
    queue/<id>          queued for prefetch

Why file locks: the node's workers are separate processes; flock() is released by the kernel
when its holder dies, so a crashed filler never blocks the image. The filler runs in a thread
of its own and writes its partial file's name into the lock file; every reader of the image
meanwhile, in any process, follows that file as it grows instead of starting another fill, and
gets its last byte only once the fill published that very file.

An entry is served only if its seal matches the image (a new upload under the same id has
other hashes) and the file is still the one published: any write to it changes its ctime, and
a replaced file has another inode, so a copy tampered with or cut short on disk is dropped and
read again from the store.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from glimpse.domain.caching import CachedImage, CacheRead, Pruned, Source, canonical_id
from glimpse.domain.model import Image
from glimpse.domain.progress import NO_PROGRESS, ProgressObserver
from glimpse.errors import GlimpseError, OverLimit, Unavailable
from glimpse.streams.upload import UploadStream

log = logging.getLogger(__name__)

# How often a reader following a fill looks for more bytes, and how much it reads at once.
TAIL_POLL = 0.01
TAIL_BLOCK = 1 << 20


class CacheRecords(Protocol):
    """Which node holds which image, in the database (glimpse.db.cache_records)."""

    def add(self, node: str, url: str, image_id: str, size: int) -> None: ...

    def hit(self, node: str, image_id: str) -> None: ...

    def remove(self, node: str, image_id: str) -> None: ...

    def remove_all(self, node: str) -> None: ...

    def on_node(self, node: str) -> list[CachedImage]: ...

    def nodes(self, image_id: str) -> list[str]: ...


class CacheMetrics(Protocol):
    def later(self, metric: str, value: float = 1.0, *labels: str) -> None: ...


class LocalCache:
    def __init__(self, root: Path, max_size: int, *, node: str = "", node_url: str = "",
                 records: CacheRecords | None = None, metrics: CacheMetrics | None = None,
                 fill_wait: float = 60.0, on_queue: Callable[[], None] = lambda: None) -> None:
        self.root = root
        self.max_size = max_size
        self.node = node
        self.node_url = node_url
        self._records = records
        self._metrics = metrics
        self._fill_wait = fill_wait
        self.on_queue = on_queue
        for sub in ("entries", "partial", "locks", "queue"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if metrics is not None:
            self._gauge(self.size())  # what the node holds from earlier runs

    # -- paths ----------------------------------------------------------------------------

    def _data(self, image_id: str) -> Path:
        return self.root / "entries" / image_id

    def _seal(self, image_id: str) -> Path:
        return self.root / "entries" / f"{image_id}.json"

    def _lock_path(self, image_id: str) -> Path:
        return self.root / "locks" / image_id

    # -- reading --------------------------------------------------------------------------

    def read(self, image: Image, offset: int, length: int, source: Source,
             fill: bool) -> CacheRead:
        key = canonical_id(image.id)
        size = image.size or 0
        if key is None or not size:
            return CacheRead(chunks=source(offset, _bound(offset, length, size)))
        hit = self._open(key, image)
        if hit is not None:
            return CacheRead(file=hit)
        self._count("miss")
        whole = offset == 0 and length == size
        if not fill or size > self.max_size:
            return CacheRead(chunks=source(offset, _bound(offset, length, size)))
        if not whole:
            # A range is read from the store; the whole image is fetched in the background.
            self.queue(key)
            self.on_queue()
            return CacheRead(chunks=source(offset, _bound(offset, length, size)))
        filler: _Filler | None = None
        for _ in range(3):
            lock = _try_lock(self._lock_path(key), fcntl.LOCK_EX)
            if lock is not None:
                hit = self._open(key, image, count=False)
                if hit is not None:  # another process published it just now
                    os.close(lock)
                    return CacheRead(file=hit)
                filler = self._start_fill(key, image, source, lock)
            following = self._follow(key, image, filler)
            if following is not None:
                return CacheRead(chunks=following)
            hit = self._open(key, image, count=False)
            if hit is not None:
                return CacheRead(file=hit)
            if filler is not None and filler.error is not None:
                raise filler.error
            if filler is not None and filler.local is not None:
                raise filler.local  # the caller reads from the store instead
        # Fills keep ending without an entry (or none could be followed in time).
        log.info("image %s: no cache fill to follow; read from its store", key)
        return CacheRead(chunks=source(offset, _bound(offset, length, size)))

    def warm(self, image: Image, source: Source) -> bool:
        key = canonical_id(image.id)
        if key is None or not image.size or image.size > self.max_size:
            return False
        if self._peek(key, image):
            self.dequeue(key)
            return True
        lock = _try_lock(self._lock_path(key), fcntl.LOCK_EX)
        if lock is None:
            return False  # someone else fills it
        try:
            if self._peek(key, image):
                self.dequeue(key)
                return True
            self._fill(key, image, source(0, None), lock)
            return True
        finally:
            os.close(lock)

    def _start_fill(self, key: str, image: Image, source: Source, lock: int) -> _Filler:
        """Fill the cache in a thread of its own, holding the image's lock until it ends: the
        fill runs at the store's pace whatever its readers' pace, and is not lost when the
        reader that started it goes away."""
        filler = _Filler()

        def run() -> None:
            try:
                self._fill(key, image, source(0, None), lock)
            except GlimpseError as exc:
                filler.error = exc
            except OSError as exc:
                log.warning("image %s: cache fill failed on this node: %s", key, exc)
                filler.local = exc
            except Exception:
                log.exception("image %s: cache fill failed", key)
                filler.error = Unavailable(f"Reading the data of image {key} failed.")
            finally:
                os.close(lock)

        # In the request's context: its log records carry the request's ids.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(run,), name="cache-fill",
                         daemon=True).start()
        return filler

    def _follow(self, key: str, image: Image,
                filler: _Filler | None) -> Iterator[bytes] | None:
        """The running fill's bytes as they reach its partial file; None when no fill runs
        (it ended, or none could be found before the fill_wait deadline)."""
        lock_path = self._lock_path(key)
        deadline = time.monotonic() + self._fill_wait
        while time.monotonic() < deadline:
            if not self._filling(key):
                return None
            # The filler writes its partial file's name into the lock file once it exists.
            name = _read_text(lock_path)
            if name.startswith(f"{key}.") and "/" not in name:
                try:
                    file = open(self.root / "partial" / name, "rb")  # noqa: SIM115
                except FileNotFoundError:
                    pass
                else:
                    return self._tail(key, image, file, filler)
            time.sleep(TAIL_POLL)
        return None

    def _tail(self, key: str, image: Image, file: BinaryIO,
              filler: _Filler | None) -> Iterator[bytes]:
        """Read a fill's partial file as it grows. All but the last byte go out as they come;
        the last only once the fill published this very file (same inode, sealed), so a reader
        of a fill that fails never gets a whole body."""
        size = image.size or 0
        sent = 0
        with file:
            while True:
                # Whatever the file holds once the fill ended is all it will hold.
                ended = not self._filling(key)
                while sent < size - 1 and (block := file.read(min(TAIL_BLOCK, size - 1 - sent))):
                    sent += len(block)
                    yield block
                if ended:
                    break
                time.sleep(TAIL_POLL)
            seal = _read_seal(self._seal(key)) or {}
            published = (_identity(os.fstat(file.fileno())) == seal.get("file")
                         and seal.get("os_hash_value") == image.os_hash_value
                         and seal.get("checksum") == image.checksum)
            rest = file.read(size - sent) if published else b""
            if sent + len(rest) != size:
                if filler is not None and filler.error is not None:
                    raise filler.error
                raise Unavailable(f"The cache fill of image {key} failed; try again.")
            yield rest

    def _filling(self, key: str) -> bool:
        """Whether some process holds the image's fill lock now."""
        probe = _try_lock(self._lock_path(key), fcntl.LOCK_SH)
        if probe is None:
            return True
        os.close(probe)
        return False

    def _peek(self, key: str, image: Image) -> bool:
        found = self._open(key, image, count=False, touch=False)
        if found is None:
            return False
        found.close()
        return True

    def _open(self, key: str, image: Image, count: bool = True,
              touch: bool = True) -> BinaryIO | None:
        """The sealed entry for this image, opened; None (and the entry dropped when it no
        longer fits the image or its seal) otherwise."""
        seal = _read_seal(self._seal(key))
        if seal is None:
            return None
        if (seal.get("size") != image.size or seal.get("checksum") != image.checksum
                or seal.get("os_hash_value") != image.os_hash_value):
            self._drop(key, "it holds other data than the image now has")
            return None
        try:
            file = open(self._data(key), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            return None
        if _identity(os.fstat(file.fileno())) != seal.get("file"):
            file.close()
            self._drop(key, "its file changed on disk after it was cached")
            return None
        if touch:
            with contextlib.suppress(OSError):
                os.utime(self._seal(key))
        if count:
            # A hit is a read the entry served from the start: not the reader whose miss
            # filled it, even when the fill was published before that reader caught up.
            if self._records is not None:
                with contextlib.suppress(GlimpseError):
                    self._records.hit(self.node, key)
            self._count("hit")
        return file

    # -- filling --------------------------------------------------------------------------

    def _fill(self, key: str, image: Image, chunks: Iterator[bytes], lock: int) -> None:
        """Copy the image's bytes to a partial file while hashing them as an upload does, and
        publish it if size and hashes match. ``lock``: the image's lock, held by the caller for
        the whole fill; its file names the partial file for readers to follow."""
        for stray in (self.root / "partial").glob(f"{key}.*"):
            # Under the image's lock no one else is filling it: these are a dead fill's.
            stray.unlink(missing_ok=True)
        partial = self.root / "partial" / f"{key}.{uuid.uuid4().hex}"
        size = image.size or 0
        stream = UploadStream(chunks, limit=size, expected_size=size,
                              hash_algo=image.os_hash_algo or "sha512",
                              limit_error=OverLimit(f"image {key} has more data than its size"))
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(lock, 0)
                os.pwrite(lock, partial.name.encode(), 0)
                for chunk in stream:
                    _write_all(fd, chunk)  # unbuffered: followers read it at once
                os.fsync(fd)
            finally:
                os.close(fd)
            problem = _mismatch(image, stream)
            if problem:
                raise Unavailable(f"The data of image {key} read from its store does not "
                                  f"match the image ({problem}); it was not cached.")
            self._publish(key, image, partial)
        except GlimpseError as exc:
            self._count("fill_failure")
            log.warning("image %s: cache fill failed: %s", key, exc.message)
            raise
        finally:
            partial.unlink(missing_ok=True)
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _publish(self, key: str, image: Image, partial: Path) -> None:
        data = self._data(key)
        os.replace(partial, data)
        seal = {"size": image.size, "checksum": image.checksum,
                "os_hash_algo": image.os_hash_algo, "os_hash_value": image.os_hash_value,
                "file": _identity(os.stat(data)), "cached_at": time.time()}
        tmp = self.root / "partial" / f"{key}.seal.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, json.dumps(seal).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self._seal(key))
        self.dequeue(key)
        if self._records is not None:
            with contextlib.suppress(GlimpseError):
                self._records.add(self.node, self.node_url, key, image.size or 0)
        self._count("fill")
        log.info("image %s: cached (%d bytes)", key, image.size or 0)
        self.prune(keep=key)

    # -- evicting and dropping --------------------------------------------------------------

    def prune(self, keep: str | None = None, *,
              progress: ProgressObserver = NO_PROGRESS) -> Pruned:
        """Evict least recently used entries until the cache fits its limit (``keep``: the
        entry just published, evicted last). Runs after every fill: no cron. ``progress``
        is told of each entry evicted, against the bytes over the limit."""
        files = pruned = 0
        lock = _lock(self.root / "locks" / ".evict", fcntl.LOCK_EX)
        try:
            entries = self._entries()
            total = sum(size for _, size, _ in entries)
            progress.phase("pruning the cache", None, max(total - self.max_size, 0),
                           unit="images")
            entries.sort(key=lambda e: (e[0] == keep, e[2]))
            for key, size, _ in entries:
                if total <= self.max_size:
                    break
                if self.discard(key, evicting=True):
                    files += 1
                    pruned += size
                    total -= size
                    self._count("eviction")
                    progress.advance(1, size)
            self._gauge(total)
        finally:
            os.close(lock)
        return Pruned(files, pruned)

    def _entries(self) -> list[tuple[str, int, float]]:
        """(id, size, last use) of every sealed entry."""
        found = []
        for seal_path in (self.root / "entries").glob("*.json"):
            key = seal_path.name.removesuffix(".json")
            try:
                used = seal_path.stat().st_mtime
                size = self._data(key).stat().st_size
            except FileNotFoundError:
                continue
            found.append((key, size, used))
        return found

    def size(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def discard(self, image_id: str, evicting: bool = False) -> bool:
        """Drop the entry (seal first, so it is never served half-removed) and any queue
        mark; whether there was one."""
        key = canonical_id(image_id)
        if key is None:
            return False
        had = False
        for path in (self._seal(key), self._data(key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                had = True
        if not evicting:
            had = self.dequeue(key) or had
            self._gauge(self.size())
        if self._records is not None:
            with contextlib.suppress(GlimpseError):
                self._records.remove(self.node, key)
        return had

    def _drop(self, key: str, why: str) -> None:
        log.warning("image %s: cached copy dropped: %s", key, why)
        self.discard(key, evicting=True)

    def clear_cached(self, progress: ProgressObserver = NO_PROGRESS) -> int:
        keys = {p.name.removesuffix(".json") for p in (self.root / "entries").iterdir()}
        progress.phase("clearing the cache", len(keys), unit="images")
        count = 0
        for key in keys:
            count += self.discard(key, evicting=True)
            progress.advance()
        if self._records is not None:
            with contextlib.suppress(GlimpseError):
                self._records.remove_all(self.node)
        self._gauge(self.size())
        return count

    def clean(self) -> int:
        """Remove partial files of fills no process runs any more."""
        removed = 0
        for partial in (self.root / "partial").iterdir():
            key = canonical_id(partial.name.split(".", 1)[0])
            if key is None:
                continue  # not a file of ours
            lock = _try_lock(self._lock_path(key), fcntl.LOCK_EX)
            if lock is None:
                continue
            try:
                partial.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(lock)
        return removed

    def held_ids(self) -> list[str]:
        return sorted(k for k, _, _ in self._entries())

    # -- listing and the prefetch queue -------------------------------------------------------

    def cached(self) -> list[CachedImage]:
        recorded = {}
        if self._records is not None:
            with contextlib.suppress(GlimpseError):
                recorded = {c.image_id: c for c in self._records.on_node(self.node)}
        found = []
        for key, size, used in sorted(self._entries()):
            seal = _read_seal(self._seal(key)) or {}
            record = recorded.get(key)
            found.append(CachedImage(
                key, size, record.hits if record else 0,
                dt.datetime.fromtimestamp(used, dt.UTC),
                dt.datetime.fromtimestamp(float(seal.get("cached_at") or used), dt.UTC)))
        return found

    def queue(self, image_id: str) -> None:
        key = canonical_id(image_id)
        if key is not None:
            (self.root / "queue" / key).touch()

    def dequeue(self, image_id: str) -> bool:
        try:
            (self.root / "queue" / image_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def queued(self) -> list[str]:
        marks = []
        for mark in (self.root / "queue").iterdir():
            with contextlib.suppress(FileNotFoundError):  # prefetched meanwhile
                if canonical_id(mark.name) is not None:
                    marks.append((mark.stat().st_mtime, mark.name))
        return [name for _, name in sorted(marks)]

    def clear_queued(self) -> int:
        return sum(self.dequeue(key) for key in self.queued())

    def nodes(self, image_id: str) -> list[str]:
        if self._records is None:
            return [self.node_url] if image_id in self.held_ids() else []
        return self._records.nodes(image_id)

    # -- metrics --------------------------------------------------------------------------

    def _count(self, event: str) -> None:
        if self._metrics is not None:
            self._metrics.later("cache_events", 1.0, event)

    def _gauge(self, total: int) -> None:
        if self._metrics is not None:
            self._metrics.later("cache_size", float(total))


class _Filler:
    """A fill running in a thread of this process; its error, once it failed: the store's
    (``error``), or the node's own (``local``: the cache's disk full or unwritable)."""

    error: GlimpseError | None = None
    local: OSError | None = None


def _bound(offset: int, length: int, size: int) -> int | None:
    """The length to ask a store for: None when the read goes to the end (a plain read)."""
    return None if offset + length >= size else length


def _mismatch(image: Image, stream: UploadStream) -> str:
    if stream.size != image.size:
        return f"{stream.size} bytes, not {image.size}"
    if image.checksum and stream.checksum != image.checksum:
        return "md5 checksum differs"
    if image.os_hash_value and stream.multihash != image.os_hash_value:
        return f"{stream.hash_algo} hash differs"
    return ""


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _read_seal(path: Path) -> dict[str, Any] | None:
    try:
        seal = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return seal if isinstance(seal, dict) else None


def _try_lock(path: Path, kind: int) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _lock(path: Path, kind: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, kind)
    return fd

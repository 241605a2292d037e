"""The Ceph RBD store (librados and librbd, through Debian's python3-rados and python3-rbd).

Images are kept in Glance's layout, the one nova and cinder clone from: an RBD image named by
the image id in the configured pool, with a protected snapshot ``snap`` of the complete data,
known to other services as ``rbd://<fsid>/<pool>/<image>/snap``. Such a URL is also what the
store records as the image's location, and the store takes it as a key as well as the bare
image name.

Writes go to ``<image>.<nonce>.partial`` and are renamed once the data and its snapshot are
complete, so a reader never finds half an image under its name. A failed write removes its
partial image; if Ceph cannot be reached then, the store keeps trying in the background until
it can (a name no other write uses, so that removal never meets a newer upload of the image).

Writes are object-sized (the RBD object size, ``chunk_size``), aligned, and up to
``concurrent_writes`` of them are in flight at once (librbd's asynchronous writes): memory
stays below (concurrent_writes + 1) objects. Runs of zeros (64 KiB blocks) are not written, so
sparse data stays sparse. The image grows ahead of the data in steps that double (up to 8 GiB
a step) and shrinks to the exact size at the end. Reads come from the snapshot, ``read_ahead``
object-sized blocks ahead of what is sent, each handed on whole as librbd filled it (no copy):
memory stays below (read_ahead + 1) objects.

Delete refuses (Conflict, 409 "in use") while the snapshot has clones: a VM or a volume
depends on the data, and destroying it would break them (docs/configuration.md, RBD store).

librados waits forever for a monitor or an OSD unless told not to: every operation here is
bounded by ``connect_timeout`` (client_mount_timeout) and ``op_timeout`` (rados_osd_op_timeout
and rados_mon_op_timeout), after which the store reports Unavailable.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import functools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import rados
import rbd

from glimpse.errors import Conflict, GlimpseError, NotFound, OverLimit, Unavailable
from glimpse.stores.driver import StoreDriver
from glimpse.stores.segments import Pieces

log = logging.getLogger(__name__)

SNAPSHOT = "snap"  # Glance's snapshot name, which nova and cinder clone from
_PARTIAL = ".partial"  # the end of the name of an image while it is being written
_RETRY_INTERVAL = 2.0  # seconds between tries to remove what failed writes left
_ZERO_BLOCK = 1 << 16  # the granularity of skipped zeros
_ZEROS = bytes(_ZERO_BLOCK)
_MAX_GROWTH = 8 << 30  # the largest step an image of unknown size grows by


@dataclasses.dataclass(frozen=True)
class RbdOptions:
    pool: str = "images"
    # The cephx user (without "client."), its keyring and the cluster's configuration file;
    # empty: librados' defaults (client.admin, the keyring and ceph.conf under /etc/ceph).
    # Where the credentials are is kept out of reprs (and so out of logs) as well.
    user: str = ""
    keyring: str = dataclasses.field(default="", repr=False)
    conf_file: str = dataclasses.field(default="", repr=False)
    # The RBD object size: a power of two from 64 KiB to 32 MiB (Glance's rbd_store_chunk_size).
    chunk_size: int = 8 << 20
    concurrent_writes: int = 4
    # Object-sized reads of a download in flight at once.
    read_ahead: int = 4
    # Bounds on librados' waits (it waits forever by default), in whole seconds (librados
    # takes no fractions).
    connect_timeout: int = 30
    op_timeout: int = 60
    # Skip writing runs of zeros (Glance's rbd_thin_provisioning, on here).
    skip_zeros: bool = True

    def __post_init__(self) -> None:
        # ValueErrors: the option parser names the store in front of them.
        size = self.chunk_size
        if size & (size - 1) or not 1 << 16 <= size <= 1 << 25:
            raise ValueError("chunk_size must be a power of two from 64KB to 32MB")
        if not 1 <= self.concurrent_writes <= 64 or not 1 <= self.read_ahead <= 64:
            raise ValueError("concurrent_writes and read_ahead must be between 1 and 64")
        if not 1 <= self.connect_timeout <= 3600 or not 1 <= self.op_timeout <= 3600:
            raise ValueError("connect_timeout and op_timeout must be between 1 and 3600 seconds")
        if not self.pool or "/" in self.pool:
            raise ValueError("pool must be a pool name")


def create(name: str, options: RbdOptions, data_dir: Path) -> RbdStore:
    return RbdStore(name, options)


class RbdStore:
    writable = True

    def __init__(self, name: str, options: RbdOptions) -> None:
        self.name = name
        self.options = options
        self._order = options.chunk_size.bit_length() - 1
        # One cluster connection for every thread (librados is thread-safe), made on first use
        # so that a server starts while Ceph is down; made again after a failed connect.
        self._cluster: rados.Rados | None = None
        self._lock = threading.Lock()
        # Partial images of failed writes that could not be removed yet, and the thread that
        # retries them.
        self._leftovers: set[str] = set()
        self._reaper: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RbdStore({self.name!r}, pool={self.options.pool!r})"

    # -- the Store interface ----------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        name = self._image_name(key)
        partial = f"{name}.{uuid.uuid4().hex[:12]}{_PARTIAL}"
        creating = False
        try:
            with self._session() as ioctx:
                # What an earlier try of this image left (its upload failed while Ceph was
                # down, or the server died).
                for leftover in (*self._partials(ioctx, name), name):
                    self._remove(ioctx, leftover)
                # Layering only (what clones need): no exclusive lock, which a writer that lost
                # Ceph mid-upload would leave behind, stopping the image's removal. Clones
                # choose their own features.
                creating = True
                self._call(lambda: rbd.RBD().create(ioctx, partial, 0, order=self._order,
                                                    old_format=False,
                                                    features=rbd.RBD_FEATURE_LAYERING))
                with rbd.Image(ioctx, partial) as image:
                    written = _Writer(self, image).write(chunks)
                    self._call(image.create_snap, SNAPSHOT)
                    self._call(image.protect_snap, SNAPSHOT)
                self._call(rbd.RBD().rename, ioctx, partial, name)
        except BaseException:
            if creating:  # (a create that timed out may have made the image all the same)
                self._remove_partial(partial)
            raise
        return written

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        name = self._image_name(key)
        ioctx = self._open_ioctx()
        try:
            image = self._call(
                lambda: rbd.Image(ioctx, name, snapshot=SNAPSHOT, read_only=True),
                missing=f"Image data {key} not found in store {self.name}")
        except BaseException:
            ioctx.close()
            raise
        return self._read(ioctx, image, offset, length)

    def _read(self, ioctx: rados.Ioctx, image: rbd.Image, offset: int,
              length: int | None) -> Iterator[bytes]:
        """Object-sized asynchronous reads, ``read_ahead`` of them asked for ahead of what is
        being sent (as ``rbd export`` keeps several in flight), each handed out whole: cutting
        it into smaller pieces would copy every byte once more (the HTTP layer sends a large
        chunk in views of it)."""
        try:
            size: int = self._call(image.size)
            end = size if length is None else min(size, offset + length)
            block = self.options.chunk_size
            window: collections.deque[_AioRead] = collections.deque()
            asked = offset
            while True:
                while asked < end and len(window) < self.options.read_ahead:
                    window.append(_AioRead(self, image, asked, min(block, end - asked)))
                    asked += block
                if not window:
                    return
                yield window.popleft().result()
        finally:
            image.close()
            ioctx.close()

    def delete(self, key: str) -> None:
        name = self._image_name(key)
        with self._session() as ioctx:
            for image in (name, *self._partials(ioctx, name)):
                self._remove(ioctx, image)

    def size(self, key: str) -> int:
        name = self._image_name(key)
        missing = f"Image data {key} not found in store {self.name}"
        with self._ioctx() as ioctx, self._call(
            lambda: rbd.Image(ioctx, name, snapshot=SNAPSHOT, read_only=True), missing=missing
        ) as image:
            size: int = self._call(image.size)
            return size

    def open_file(self, key: str) -> BinaryIO | None:
        return None

    def object_keys(self) -> Iterator[str]:
        with self._ioctx() as ioctx:
            names: list[str] = self._call(lambda: rbd.RBD().list(ioctx))
        return iter([n for n in names if not n.endswith(_PARTIAL)])

    # -- what other services see (glimpse.domain.ports.SharedStore) -------------------------

    def location_url(self, key: str) -> str:
        """Glance's location of the image: rbd://<fsid>/<pool>/<image>/snap."""
        return f"rbd://{self._fsid()}/{self.options.pool}/{self._image_name(key)}/{SNAPSHOT}"

    def in_use(self, key: str) -> bool:
        """Whether the snapshot has clones (a VM's disk or a volume depends on it)."""
        name = self._image_name(key)
        with self._ioctx() as ioctx:
            try:
                with self._call(lambda: rbd.Image(ioctx, name, snapshot=SNAPSHOT,
                                                  read_only=True), missing="") as image:
                    children = self._call(lambda: list(image.list_children2()))
            except NotFound:
                return False
        return bool(children)

    # -- helpers ----------------------------------------------------------------------------

    def space(self) -> tuple[int, int] | None:
        """The cluster's free and raw capacity (Ceph's ``df``; a pool's replicas share it).
        None when the cluster reports none: its manager daemon gathers these figures, and a
        cluster without one (a single-node test cluster) reports zeros."""
        stats = self._call(self._connect().get_cluster_stats)
        if not stats.get("kb"):
            return None
        return stats["kb_avail"] * 1024, stats["kb"] * 1024

    def _partials(self, ioctx: rados.Ioctx, name: str) -> list[str]:
        """The partial images of writes of ``name`` that failed or are under way."""
        names: list[str] = self._call(rbd.RBD().list, ioctx)
        return [n for n in names if n.startswith(name + ".") and n.endswith(_PARTIAL)]

    def _remove_partial(self, partial: str) -> None:
        """Remove a failed write's partial image, in a session of its own (the write's may
        hold a watch that a failed close left); if Ceph cannot be reached, keep trying in the
        background."""
        try:
            with self._session() as ioctx:
                self._remove(ioctx, partial)
            return
        except GlimpseError as exc:
            log.warning("store %s: could not remove the partial image %s yet (will retry): %s",
                        self.name, partial, exc.message)
        with self._lock:
            self._leftovers.add(partial)
            if self._reaper is None or not self._reaper.is_alive():
                self._reaper = threading.Thread(target=self._reap, daemon=True,
                                                name=f"rbd-{self.name}-reaper")
                self._reaper.start()

    def _reap(self) -> None:
        """Retry removing the partial images of failed writes until none is left."""
        while True:
            time.sleep(_RETRY_INTERVAL)
            with self._lock:
                pending = sorted(self._leftovers)
                if not pending:
                    self._reaper = None
                    return
            for partial in pending:
                try:
                    with self._session() as ioctx:
                        self._remove(ioctx, partial)
                except GlimpseError:
                    continue  # Ceph is still away, or the OSD still holds a broken watch
                with self._lock:
                    self._leftovers.discard(partial)
                log.info("store %s: removed the partial image %s", self.name, partial)

    def _image_name(self, key: str) -> str:
        """The RBD image a key names: an image id, or this store's rbd:// location of one.
        Anything else names nothing here (NotFound): keys never steer the store elsewhere."""
        missing = NotFound(f"No object {key!r} in store {self.name}")
        if key.startswith("rbd://"):
            parts = key[len("rbd://"):].split("/")
            if len(parts) != 4 or parts[1] != self.options.pool or parts[3] != SNAPSHOT:
                raise missing
            if parts[0] != self._fsid():
                raise missing
            key = parts[2]
        try:
            canonical = str(uuid.UUID(key))
        except ValueError:
            raise missing from None
        if canonical != key.lower():
            raise missing
        return key

    def _fsid(self) -> str:
        # The connected handle knows it: asking costs no round trip.
        fsid: str = self._call(lambda: self._connect().get_fsid())
        return fsid

    def _connect(self) -> rados.Rados:
        """The shared connection, for reads: they open images read-only, which holds no watch
        on them."""
        with self._lock:
            if self._cluster is None:
                self._cluster = self._new_cluster()
            return self._cluster

    def _new_cluster(self) -> rados.Rados:
        o = self.options
        conf = {
            "rados_osd_op_timeout": str(o.op_timeout),
            "rados_mon_op_timeout": str(o.op_timeout),
            "client_mount_timeout": str(o.connect_timeout),
            # No librbd cache: writes here are large and sequential and reads go through
            # the read-ahead below, so it only costs. Its write-around layer makes librbd
            # copy every written byte; without it librbd sends the caller's buffer as it is
            # (zero-copy writes), which the writer keeps alive until the write completes.
            "rbd_cache": "false",
            "rbd_disable_zero_copy_writes": "false",
        }
        if o.keyring:
            conf["keyring"] = o.keyring
        try:
            cluster = rados.Rados(rados_id=o.user or None, conffile=o.conf_file or "", conf=conf)
            try:
                cluster.connect(timeout=o.connect_timeout)
            except BaseException:
                cluster.shutdown()
                raise
        except (rados.Error, rbd.Error) as exc:
            _raise_unavailable(self.name, exc, "could not connect")
        return cluster

    @contextlib.contextmanager
    def _session(self) -> Iterator[rados.Ioctx]:
        """The pool through a connection of its own (about 10 ms to make), for what changes
        images. Opening an image for writing watches it; if Ceph breaks off, closing it cannot
        end the watch, which then keeps the image busy for as long as that connection lives:
        shut down with the work, it ends with it."""
        cluster = self._new_cluster()
        try:
            ioctx: rados.Ioctx = self._call(cluster.open_ioctx, self.options.pool)
            try:
                yield ioctx
            finally:
                ioctx.close()
        finally:
            cluster.shutdown()

    def _open_ioctx(self) -> rados.Ioctx:
        cluster = self._connect()
        ioctx: rados.Ioctx = self._call(cluster.open_ioctx, self.options.pool)
        return ioctx

    @contextlib.contextmanager
    def _ioctx(self) -> Iterator[rados.Ioctx]:
        ioctx = self._open_ioctx()
        try:
            yield ioctx
        finally:
            ioctx.close()

    def _remove(self, ioctx: rados.Ioctx, name: str) -> None:
        """Remove an image and its snapshots; a missing image is not an error. Conflict when
        the snapshot has clones (it stays protected, the image stays whole)."""
        try:
            with self._call(lambda: rbd.Image(ioctx, name), missing="") as image:
                for snap in self._call(lambda: list(image.list_snaps())):
                    snap_name = snap["name"]
                    if self._call(image.is_protected_snap, snap_name):
                        try:
                            image.unprotect_snap(snap_name)
                        except rbd.ImageBusy:
                            raise _in_use(name) from None
                        except (rados.Error, rbd.Error) as exc:
                            _raise_unavailable(self.name, exc)
                    self._call(image.remove_snap, snap_name)
        except NotFound:
            return
        try:
            rbd.RBD().remove(ioctx, name)
        except rbd.ImageNotFound:
            return
        except (rbd.ImageBusy, rbd.ImageHasSnapshots):
            raise _in_use(name) from None
        except (rados.Error, rbd.Error) as exc:
            _raise_unavailable(self.name, exc)

    def _call(self, fn: Any, *args: Any, missing: str | None = None) -> Any:
        """Run one librados/librbd call; its failures become glimpse errors that name the
        store and the error, never a credential or a path."""
        try:
            return fn(*args)
        except (rbd.ImageNotFound, rados.ObjectNotFound):
            if missing is not None:
                raise NotFound(missing) from None
            raise Unavailable(f"Store {self.name} failed (not found)") from None
        except (rbd.NoSpace, rados.NoSpace):
            raise OverLimit("Image storage media is full") from None
        except (rados.Error, rbd.Error) as exc:
            _raise_unavailable(self.name, exc)


class _Writer:
    """Object-sized, aligned asynchronous writes of a stream into an image, at most
    ``concurrent_writes`` in flight; zeros skipped; the image grown ahead of the data."""

    def __init__(self, store: RbdStore, image: rbd.Image) -> None:
        self._store = store
        self._image = image
        self._slots = threading.BoundedSemaphore(store.options.concurrent_writes)
        self._failure: int | None = None
        self._capacity = 0

    def write(self, chunks: Iterable[bytes]) -> int:
        block = self._store.options.chunk_size
        pieces = Pieces(chunks)
        offset = 0
        try:
            while not pieces.exhausted:
                data = b"".join(pieces.next_piece(block))
                self._grow(offset + len(data))
                for start, end in self._extents(data):
                    self._submit(data if end - start == len(data) else data[start:end],
                                 offset + start)
                offset += len(data)
        finally:
            self._drain()
        self._check()
        if self._capacity != offset:
            self._store._call(lambda: self._image.resize(offset))
        return offset

    def _extents(self, data: bytes) -> list[tuple[int, int]]:
        """The runs of ``data`` to write: all of it, or what lies between 64 KiB blocks of
        zeros."""
        if not self._store.options.skip_zeros:
            return [(0, len(data))]
        runs: list[tuple[int, int]] = []
        start: int | None = None
        for at in range(0, len(data), _ZERO_BLOCK):
            if _zeros_at(data, at):
                if start is not None:
                    runs.append((start, at))
                    start = None
            elif start is None:
                start = at
        if start is not None:
            runs.append((start, len(data)))
        return runs

    def _grow(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        step = min(max(self._capacity, self._store.options.chunk_size), _MAX_GROWTH)
        target = max(needed, self._capacity + step)
        # Writes in flight are below the old size: librbd orders them with the resize.
        self._store._call(lambda: self._image.resize(target))
        self._capacity = target

    def _submit(self, data: bytes, offset: int) -> None:
        self._slots.acquire()
        try:
            self._check()
            # The callback holds ``data``: librbd writes from it in place (zero-copy) and
            # completes only once it let go of it.
            done = functools.partial(self._done, data)
            self._store._call(lambda: self._image.aio_write(data, offset, done))
        except BaseException:
            self._slots.release()
            raise

    def _done(self, written: bytes, completion: rbd.Completion) -> None:
        result = completion.get_return_value()
        if result < 0 and self._failure is None:
            self._failure = -result
        self._slots.release()

    def _drain(self) -> None:
        """Wait for every write in flight (also when failing: none may land afterwards)."""
        for _ in range(self._store.options.concurrent_writes):
            self._slots.acquire()
        for _ in range(self._store.options.concurrent_writes):
            self._slots.release()

    def _check(self) -> None:
        if self._failure is not None:
            code = self._failure
            if code in (errno.ENOSPC, errno.EDQUOT):
                raise OverLimit("Image storage media is full")
            raise Unavailable(f"Store {self._store.name} failed ({_errno_name(code)})")


class _AioRead:
    """One asynchronous read of an image, started at once, waited for by ``result``."""

    def __init__(self, store: RbdStore, image: rbd.Image, offset: int, length: int) -> None:
        self._store = store
        self._length = length
        self._done = threading.Event()
        self._data: bytes = b""
        self._code = 0
        store._call(lambda: image.aio_read(offset, length, self._finish))

    def _finish(self, completion: rbd.Completion, data: bytes | None) -> None:
        code = completion.get_return_value()
        self._code = -code if code < 0 else 0
        self._data = data or b""
        self._done.set()

    def result(self) -> bytes:
        # librbd's own op timeout ends every read; this wait only outlasts it.
        if not self._done.wait(self._store.options.op_timeout * 2 + 5):
            raise Unavailable(f"Store {self._store.name} failed (timed out)")
        if self._code:
            raise Unavailable(f"Store {self._store.name} failed ({_errno_name(self._code)})")
        if len(self._data) != self._length:
            # A short read inside the image's size: never taken for the end of the data.
            raise Unavailable(f"Store {self._store.name} broke off while sending image data")
        return self._data


def _zeros_at(data: bytes, at: int) -> bool:
    """Whether the 64 KiB block of ``data`` at ``at`` (shorter at the end) is all zeros. Its
    first byte settles most blocks of data; the rest are compared in place (memcmp), neither
    copied nor scanned byte by byte in Python: an 8 MiB piece costs 128 index operations."""
    if data[at]:
        return False
    size = min(_ZERO_BLOCK, len(data) - at)
    return data.startswith(_ZEROS if size == _ZERO_BLOCK else _ZEROS[:size], at)


def _in_use(name: str) -> Conflict:
    return Conflict(f"Image {name} could not be deleted because it is in use: its data has "
                    f"clones (a server's disk or a volume), or a client has it open.",
                    code="in_use")


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, f"error {code}")


def _raise_unavailable(store: str, exc: Exception, what: str = "failed") -> NoReturn:
    code = getattr(exc, "errno", None)
    reason = _errno_name(abs(code)) if isinstance(code, int) and code else type(exc).__name__
    raise Unavailable(f"Store {store} {what} ({reason})") from None


DRIVER = StoreDriver(RbdOptions, create)

"""Writing a file with O_DIRECT: the bytes go from one reused, aligned buffer to the device.

A buffered write copies every byte into the page cache, and on the machines glimpse was measured
on that copy (plus allocating the cache pages) cost 0.4 to 2.4 CPU-seconds per GiB, more than any
step of an upload but hashing. With O_DIRECT the device reads the buffer itself; what is left is
one copy per byte into the aligned buffer (about 0.1 CPU-seconds per GiB).

O_DIRECT needs the buffer address, the length and the file offset aligned to the device's
logical block size. The buffer is page-aligned (mmap) and written whole, so every write but the
last is aligned; the tail is written after switching the descriptor back to buffered I/O. Where
the filesystem refuses O_DIRECT (tmpfs on older kernels, some network filesystems) the writer
falls back to buffered writes, so nothing but the cost changes.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os

# A multiple of every logical block size in use (512 and 4096 bytes); the size of the upload's
# blocks (glimpse.api.http.UPLOAD_BLOCK), so each MiB of an upload is one write.
BUFFER_SIZE = 1 << 20
_DIRECT = getattr(os, "O_DIRECT", 0)


def open_for_writing(path: str | os.PathLike[str], direct: bool) -> tuple[int, bool]:
    """Create ``path`` exclusively; returns the descriptor and whether it is in O_DIRECT mode."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if direct and _DIRECT:
        try:
            return os.open(path, flags | _DIRECT, 0o600), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, 0o600), False


class FileWriter:
    """Writes a stream of chunks to ``fd``: through the aligned buffer when ``direct``, else
    straight through."""

    def __init__(self, fd: int, direct: bool) -> None:
        self._fd = fd
        self._direct = direct
        self._buffering = direct
        # Made at the second chunk, or a first one that fills it: a stream of one short chunk
        # (a small image) ends in a buffered write anyway, which the first chunk, held, feeds
        # without the buffer's mapping, page faults and copy.
        self._buffer: mmap.mmap | None = None
        self._held: bytes | None = None
        self._filled = 0

    def write(self, chunk: bytes | memoryview) -> None:
        if not self._buffering:
            _write_all(self._fd, memoryview(chunk))
            return
        if self._buffer is None:
            if self._held is None and len(chunk) < BUFFER_SIZE:
                self._held = chunk if isinstance(chunk, bytes) else bytes(chunk)
                return
            self._buffer = mmap.mmap(-1, BUFFER_SIZE)
            held, self._held = self._held, None
            if held is not None:
                self._copy(held)
        self._copy(chunk)

    def _copy(self, chunk: bytes | memoryview) -> None:
        assert self._buffer is not None
        view = memoryview(chunk)
        while view:
            n = min(len(view), BUFFER_SIZE - self._filled)
            self._buffer[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == BUFFER_SIZE:
                self._flush_full()

    def finish(self) -> None:
        """Write what is buffered and make the file durable."""
        if self._held is not None:
            self._buffered_mode()
            _write_all(self._fd, memoryview(self._held))
            self._held = None
        elif self._buffer is not None and self._filled:
            tail = memoryview(self._buffer)[: self._filled]
            try:
                self._buffered_mode()
                _write_all(self._fd, tail)
            finally:
                tail.release()
            self._filled = 0
        os.fsync(self._fd)

    def close(self) -> None:
        # Dropped rather than closed: after a failed write, views of it may live on in the
        # exception's traceback, and closing an mmap with views raises.
        self._buffer = None
        self._held = None

    def _flush_full(self) -> None:
        assert self._buffer is not None
        block = memoryview(self._buffer)
        try:
            _write_all(self._fd, block)
        except OSError as exc:
            # A device with a larger logical block than the buffer's alignment: go on buffered.
            if exc.errno != errno.EINVAL or not self._direct:
                raise
            self._buffered_mode()
            _write_all(self._fd, block)
        finally:
            block.release()
        self._filled = 0

    def _buffered_mode(self) -> None:
        if self._direct:
            flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~_DIRECT)
            self._direct = False


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]

"""Decompression of an imported image: gzip, bzip2, xz, or a zip archive of one member.

Recognised by its leading bytes, decompressed as a stream into one scratch file with bounded
memory (each read returns at most CHUNK bytes of output), and held to a byte bound: the block
that would take the output past it is refused before it is written, so a bomb costs at most
the bound in disk and never more than a chunk in memory. Damaged and truncated data is
refused naming the cause.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from glimpse.errors import Invalid, OverLimit, Unavailable

CHUNK = 1 << 20
GZIP, BZIP2, XZ, ZIP = "gzip", "bzip2", "xz", "zip"
MAGIC = ((GZIP, b"\x1f\x8b"), (BZIP2, b"BZh"), (XZ, b"\xfd7zXZ\x00"), (ZIP, b"PK\x03\x04"))
# A container_format that says the data is to stay compressed (Glance's "compressed").
KEEP_COMPRESSED = "compressed"
# Zip members decompressed: these two read with bounded output per call in zipfile (its
# bzip2 and lzma members decompress a whole compressed block at once, unbounded).
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# What the decompressors raise on damaged or truncated input.
_DAMAGED = (EOFError, OSError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def compression_of(path: Path) -> str | None:
    """The compression the file's leading bytes name; None when it is not compressed."""
    with path.open("rb") as f:
        head = f.read(8)
    return next((name for name, magic in MAGIC if head.startswith(magic)), None)


class Decompression:
    """``max_size``: the most bytes the decompressed image may have."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def apply(self, staged: Path, scratch_dir: Path, container_format: str | None
              ) -> Path | None:
        """The decompressed copy in ``scratch_dir``; None when the data is not compressed
        (or declared to stay so). Invalid or OverLimit, leaving no file, when refused."""
        kind = compression_of(staged)
        if kind is None or container_format == KEEP_COMPRESSED:
            return None
        fd, name = tempfile.mkstemp(dir=scratch_dir, prefix="decompressed-")
        out = Path(name)
        try:
            with os.fdopen(fd, "wb") as sink, _opened(kind, staged, self.max_size) as source:
                written = 0
                for block in _blocks(source, kind):
                    written += len(block)
                    if written > self.max_size:
                        raise OverLimit(f"The {kind} data decompresses to more than "
                                        f"{self.max_size} bytes: refused.")
                    try:
                        sink.write(block)
                    except OSError as exc:
                        raise Unavailable("Could not write the decompressed image to scratch "
                                          f"space: {exc.strerror or exc}.") from exc
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return out


@contextlib.contextmanager
def _opened(kind: str, path: Path, max_size: int) -> Iterator[_Reader]:
    with contextlib.ExitStack() as stack:
        try:
            source = _open(kind, path, max_size, stack)
        except _DAMAGED as exc:
            raise Invalid(f"The imported {kind} data is damaged: {_reason(exc)}.") from exc
        # Outside the try: a failure of the consumer (a full scratch disk) is not the data's.
        yield source


def _open(kind: str, path: Path, max_size: int, stack: contextlib.ExitStack) -> _Reader:
    if kind == GZIP:
        return stack.enter_context(gzip.open(path, "rb"))
    if kind == BZIP2:
        return stack.enter_context(bz2.open(path, "rb"))
    if kind == XZ:
        return stack.enter_context(lzma.open(path, "rb"))
    archive = stack.enter_context(zipfile.ZipFile(path))
    return stack.enter_context(_member(archive, max_size))


def _member(archive: zipfile.ZipFile, max_size: int) -> IO[bytes]:
    """The archive's one member, opened; Invalid for anything else."""
    members = archive.infolist()
    if len(members) != 1:
        raise Invalid(f"The imported zip archive holds {len(members)} members: only an "
                      "archive of a single image is decompressed.")
    info = members[0]
    if info.is_dir():
        raise Invalid("The imported zip archive holds a directory, not an image.")
    if info.flag_bits & 0x1:
        raise Invalid("The imported zip archive is encrypted.")
    if info.compress_type not in ZIP_METHODS:
        raise Invalid(f"The imported zip archive's member uses compression method "
                      f"{info.compress_type}: only {', '.join(ZIP_METHODS.values())} are read.")
    if info.file_size > max_size:
        # Its own word for its size, refused before a byte is inflated (a lie is caught by
        # the bound while copying, and by the CRC at the end).
        raise OverLimit(f"The imported zip archive's member has {info.file_size} bytes, "
                        f"more than {max_size} bytes: refused.")
    return archive.open(info)


def _blocks(source: _Reader, kind: str) -> Iterator[bytes]:
    while True:
        try:
            block = source.read(CHUNK)
        except _DAMAGED as exc:
            raise Invalid(f"The imported {kind} data is damaged or truncated: "
                          f"{_reason(exc)}.") from exc
        if not block:
            return
        yield block


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

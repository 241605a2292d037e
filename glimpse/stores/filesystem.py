"""The filesystem store: one file per image in a local directory."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from glimpse.errors import NotFound, OverLimit
from glimpse.stores.direct_io import FileWriter, open_for_writing
from glimpse.stores.driver import StoreDriver

_READ_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class FilesystemOptions:
    directory: str = "images"  # relative paths are inside data_dir
    # Write image data with O_DIRECT (see glimpse.stores.direct_io): far less CPU per byte, at
    # the price of not leaving a new image in the page cache.
    direct_io: bool = True


def create(name: str, options: FilesystemOptions, data_dir: Path) -> FilesystemStore:
    return FilesystemStore(data_dir / options.directory, name, options.direct_io)


class FilesystemStore:
    """Writes to a temporary name, fsyncs, then renames into place.

    Paths are built only here, and only from keys that are canonical UUIDs, so no client input
    can steer a path outside the directory.
    """

    writable = True

    def __init__(self, directory: Path, name: str = "file", direct_io: bool = True) -> None:
        self.name = name
        self.directory = directory
        self.direct_io = direct_io
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        try:
            canonical = str(uuid.UUID(key))
        except ValueError as exc:
            raise NotFound(f"No object {key!r} in store {self.name}") from exc
        if canonical != key.lower():
            raise NotFound(f"No object {key!r} in store {self.name}")
        return self.directory / canonical

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        final = self.path(key)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        written = 0
        try:
            fd, direct = open_for_writing(tmp, self.direct_io)
            writer = FileWriter(fd, direct)
            try:
                for chunk in chunks:
                    writer.write(chunk)
                    written += len(chunk)
                writer.finish()
            finally:
                writer.close()
                os.close(fd)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in (28, 122):  # ENOSPC, EDQUOT
                raise OverLimit("Image storage media is full") from exc
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return written

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self._read(self.open_file(key), offset, length)

    def space(self) -> tuple[int, int] | None:
        usage = shutil.disk_usage(self.directory)
        return usage.free, usage.total

    def object_keys(self) -> Iterator[str]:
        for entry in self.directory.iterdir():
            if not entry.name.startswith("."):  # temporary names of writes in progress
                yield entry.name

    def open_file(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"Image data {key} not found in store {self.name}") from exc

    @staticmethod
    def _read(fh: BinaryIO, offset: int, length: int | None) -> Iterator[bytes]:
        with fh:
            if offset:
                fh.seek(offset)
            left = length
            while left is None or left > 0:
                chunk = fh.read(_READ_CHUNK if left is None else min(left, _READ_CHUNK))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def delete(self, key: str) -> None:
        """Remove the object, or else any temporary file an interrupted write left for it.

        Only a write that never reached its rename (the server died mid-upload) leaves a
        temporary file, so the directory is searched only when there is no object: a search
        reads the whole directory."""
        final = self.path(key)
        try:
            final.unlink()
            return
        except FileNotFoundError:
            pass
        for leftover in self.directory.glob(f".{final.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"Image data {key} not found in store {self.name}") from exc


DRIVER = StoreDriver(FilesystemOptions, create)

"""The filesystem store's O_DIRECT writer keeps every byte, whatever the chunk sizes and
wherever the stream ends relative to the aligned buffer."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from glimpse.stores.direct_io import BUFFER_SIZE, FileWriter, open_for_writing

SIZES = [0, 1, 4095, 4096, BUFFER_SIZE - 1, BUFFER_SIZE, BUFFER_SIZE + 1,
         3 * BUFFER_SIZE + 12345]


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("chunk", [1000, 65536, BUFFER_SIZE, 3 * BUFFER_SIZE + 7])
@pytest.mark.parametrize("size", SIZES)
def test_writes_exactly_the_stream(tmp_path: Path, size: int, chunk: int, direct: bool) -> None:
    data = os.urandom(size)
    path = tmp_path / "image"
    fd, _ = open_for_writing(path, direct)
    writer = FileWriter(fd, direct)
    try:
        for start in range(0, size, chunk):
            writer.write(data[start : start + chunk])
        writer.finish()
    finally:
        writer.close()
        os.close(fd)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_open_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "image"
    path.write_bytes(b"x")
    with pytest.raises(FileExistsError):
        open_for_writing(path, True)


def test_buffer_may_be_dropped_while_a_failed_write_keeps_views(tmp_path: Path) -> None:
    """A failed write leaves views of the buffer in its traceback; closing must not raise."""
    fd, direct = open_for_writing(tmp_path / "image", True)
    writer = FileWriter(fd, direct)
    os.close(fd)  # every write now fails with EBADF
    with pytest.raises(OSError) as failure:
        writer.write(b"x" * (BUFFER_SIZE + 1))
    writer.close()
    assert failure.value.errno is not None

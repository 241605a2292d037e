"""A range of an image is read from the store at its offset, never by reading the bytes
before it and dropping them: the filesystem store seeks; Swift and S3 are asked for the range
(a proxy between the store and the Swift all-in-one sees the Range header go out and counts
what comes back); a service that ignores the range is an error, not the wrong bytes."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from glimpse.domain.ports import Store
from glimpse.errors import Unavailable
from glimpse.settings import StoreConfig
from glimpse.stores.filesystem import FilesystemStore
from glimpse.stores.memory import MemoryStore
from glimpse.stores.registry import build_store
from tests import swift_aio
from tests.fault_proxy import FaultProxy

MiB = 1 << 20
SIZE = 11 * MiB + 3  # eleven 1 MiB Swift segments and more; three 5 MiB S3 parts


class _Watched(io.BufferedReader):
    """A file that records where each read starts and how much it returns."""

    reads: list[tuple[int, int]]

    def read(self, size: int | None = -1) -> bytes:
        at = self.tell()
        data = super().read(size)
        self.reads.append((at, len(data)))
        return data


def test_the_filesystem_store_seeks_to_the_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStore(tmp_path, direct_io=False)
    key = str(uuid.uuid4())
    data = os.urandom(3 * MiB + 5)
    store.put(key, [data])
    opened: list[_Watched] = []

    def open_file(key: str) -> BinaryIO:
        watched = _Watched(io.FileIO(store.path(key), "rb"))
        watched.reads = []
        opened.append(watched)
        return watched

    monkeypatch.setattr(store, "open_file", open_file)
    assert b"".join(store.open(key, 2 * MiB + 1, 1000)) == data[2 * MiB + 1:2 * MiB + 1001]
    (watched,) = opened
    assert watched.reads[0][0] == 2 * MiB + 1  # the first read is at the offset
    assert sum(n for _, n in watched.reads) == 1000  # and nothing past the range is read
    assert watched.closed


def test_the_memory_store_slices() -> None:
    store = MemoryStore()
    key = str(uuid.uuid4())
    store.put(key, [b"a" * 10, b"b" * 10, b"c" * 10])
    assert list(store.open(key, 12, 3)) == [b"bbb"]
    assert list(store.open(key, 8, 4)) == [b"aa", b"bb"]
    assert list(store.open(key, 29, 5)) == [b"c"]


@pytest.fixture(scope="module")
def proxy() -> Iterator[FaultProxy]:
    swift_aio.require()
    proxy = FaultProxy(swift_aio.PORT)
    yield proxy
    proxy.close()


@pytest.fixture(params=["swift", "s3"])
def remote(request: pytest.FixtureRequest, proxy: FaultProxy,
           tmp_path: Path) -> Iterator[tuple[Store, str, bytes]]:
    driver: str = request.param
    small = {"segment_size": MiB} if driver == "swift" else {"part_size": 5 * MiB}
    options = swift_aio.store_options(driver, proxy.url, retries=0, **small)
    store = build_store(StoreConfig(driver, driver, options), tmp_path)
    key = str(uuid.uuid4())
    data = os.urandom(SIZE)
    store.put(key, iter([data[i:i + MiB] for i in range(0, SIZE, MiB)]))
    yield store, key, data
    proxy.set_mode("pass")
    store.delete(key)


@pytest.mark.parametrize(("offset", "length"), [
    (SIZE - 100, 50), (SIZE - 1, 1), (6 * MiB - 2, 4), (10 * MiB + 17, None),
])
def test_object_stores_are_asked_for_the_range(
    remote: tuple[Store, str, bytes], proxy: FaultProxy, offset: int, length: int | None
) -> None:
    store, key, data = remote
    proxy.delivered, proxy.heads = 0, []
    end = SIZE if length is None else offset + length
    assert b"".join(store.open(key, offset, length)) == data[offset:end]
    asked = f"range: bytes={offset}-{'' if length is None else end - 1}\r\n".encode()
    assert any(asked in head.lower() for head in proxy.heads), proxy.heads
    # The answer is the range and its headers: far less than the bytes before the offset.
    assert proxy.delivered < (end - offset) + 16 * 1024


def test_swift_ignoring_the_range_is_an_error(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    """A Swift that sends the whole object for a range (here: the proxy takes the Range
    header out) is refused, not sent as the range."""
    options = swift_aio.store_options("swift", proxy.url, retries=0, segment_size=MiB)
    store = build_store(StoreConfig("swift", "swift", options), tmp_path)
    key = str(uuid.uuid4())
    store.put(key, [b"0123456789" * 1000])
    try:
        proxy.set_mode("strip-range")
        for offset, length in ((5, 10), (5, None), (0, 10)):
            with pytest.raises(Unavailable, match="did not answer the range"):
                store.open(key, offset, length)
    finally:
        proxy.set_mode("pass")
        store.delete(key)

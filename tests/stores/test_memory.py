"""The memory store beyond the shared contract (tests/stores/test_contract.py): many threads
at once, as in a server, and a server configured with one."""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from glimpse.settings import StoreConfig
from glimpse.stores.memory import MemoryStore
from glimpse.stores.registry import build_store
from tests.e2e.server import GlimpseServer

MiB = 1 << 20


def test_concurrent_puts_of_one_key_leave_one_whole_object() -> None:
    store = MemoryStore()
    key = str(uuid.uuid4())
    blobs = [bytes([n]) * (MiB + n) for n in range(1, 9)]
    start = threading.Barrier(len(blobs))

    def put(blob: bytes) -> int:
        start.wait()
        return store.put(key, (blob[i:i + 1000] for i in range(0, len(blob), 1000)))

    with ThreadPoolExecutor(len(blobs)) as pool:
        assert list(pool.map(put, blobs)) == [len(b) for b in blobs]
    assert b"".join(store.open(key)) in blobs
    assert list(store.object_keys()) == [key]


def test_a_reader_keeps_reading_what_it_opened() -> None:
    store = MemoryStore()
    key = str(uuid.uuid4())
    store.put(key, [b"a" * MiB, b"b" * MiB])
    reading = store.open(key, 5)
    first = next(reading)
    store.put(key, [b"replaced"])
    store.delete(key)
    assert first + b"".join(reading) == (b"a" * MiB + b"b" * MiB)[5:]


def test_many_threads_each_with_its_own_keys() -> None:
    store = MemoryStore()

    def work(n: int) -> None:
        for _ in range(50):
            key = str(uuid.uuid4())
            store.put(key, [bytes([n]) * 100, bytes([n]) * 28])
            assert store.size(key) == 128
            assert b"".join(store.open(key, 100)) == bytes([n]) * 28
            store.delete(key)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert list(store.object_keys()) == []


def test_each_configured_memory_store_is_its_own(tmp_path: Path) -> None:
    one = build_store(StoreConfig("one", "memory"), tmp_path)
    two = build_store(StoreConfig("two", "memory"), tmp_path)
    key = str(uuid.uuid4())
    one.put(key, [b"x"])
    assert list(two.object_keys()) == [] and one.name == "one"
    assert list(tmp_path.iterdir()) == []  # nothing written to disk


def test_a_server_with_a_memory_store() -> None:
    """Configured through the environment like any store, it holds uploads and serves them."""
    server = GlimpseServer({"default_store": "mem", "default_store_driver": "memory"})
    try:
        data = os.urandom(3 * MiB + 1)
        headers = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
                   "Content-Type": "application/octet-stream"}
        created = httpx.post(f"{server.url}/v1/images", headers=headers, content=data)
        assert created.status_code == 201, created.text
        image_id = created.json()["image"]["id"]
        got = httpx.get(f"{server.url}/v1/images/{image_id}")
        assert got.status_code == 200 and got.content == data
        assert not any((server.data_dir / "images").iterdir())
        deleted = httpx.delete(f"{server.url}/v1/images/{image_id}")
        assert deleted.status_code == 200
    finally:
        server.stop()

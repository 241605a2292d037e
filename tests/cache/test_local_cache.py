"""The node cache on its own: fills, single-flight across processes, verification, eviction,
ranges, tampered and partial entries."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.cache.local import LocalCache
from glimpse.domain.caching import CacheRead
from glimpse.domain.model import Image, Status
from glimpse.errors import Unavailable
from tests.service.test_audit_progress import Recorder

CHUNK = 64 * 1024


def image_of(data: bytes, image_id: str | None = None) -> Image:
    return Image(id=image_id or str(uuid.uuid4()), status=Status.ACTIVE, size=len(data),
                 checksum=hashlib.md5(data).hexdigest(), os_hash_algo="sha512",
                 os_hash_value=hashlib.sha512(data).hexdigest())


class Remote:
    """A store's object: counts the reads it serves (in a file, so forked processes add up)."""

    def __init__(self, data: bytes, log: Path, delay: float = 0.0) -> None:
        self.data = data
        self.log = log
        self.delay = delay

    def __call__(self, offset: int, length: int | None) -> Iterator[bytes]:
        with open(self.log, "a") as out:
            out.write(f"{offset} {length}\n")
        end = len(self.data) if length is None else offset + length
        for at in range(offset, end, CHUNK):
            time.sleep(self.delay)
            yield self.data[at:min(at + CHUNK, end)]

    def reads(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def drain(got: CacheRead, offset: int = 0, length: int | None = None) -> bytes:
    if got.chunks is not None:
        return b"".join(got.chunks)
    assert got.file is not None
    with got.file as file:
        file.seek(offset)
        return file.read(length if length is not None else -1)


def streamed(got: CacheRead) -> bool:
    return got.chunks is not None


@pytest.fixture
def data() -> bytes:
    return os.urandom(5 * CHUNK + 123)


def test_first_read_fills_then_hits(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    remote, image = Remote(data, tmp_path / "reads"), image_of(data)
    # Followed as the fill writes it, or (the fill was quick) already the cache file.
    first = cache.read(image, 0, len(data), remote, fill=True)
    assert drain(first) == data
    second = cache.read(image, 0, len(data), remote, fill=True)
    assert not streamed(second), "the second read is served from the cache file"
    assert drain(second) == data
    assert remote.reads() == ["0 None"]
    assert [c.image_id for c in cache.cached()] == [image.id]


def test_range_is_served_from_the_cache(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    remote, image = Remote(data, tmp_path / "reads"), image_of(data)
    drain(cache.read(image, 0, len(data), remote, fill=True))
    got = cache.read(image, 1000, 5000, remote, fill=True)
    assert not streamed(got)
    assert drain(got, 1000, 5000) == data[1000:6000]
    assert remote.reads() == ["0 None"]


def test_range_miss_reads_the_store_and_queues_a_fill(tmp_path: Path, data: bytes) -> None:
    woken = []
    cache = LocalCache(tmp_path / "cache", 1 << 30, on_queue=lambda: woken.append(1))
    remote, image = Remote(data, tmp_path / "reads"), image_of(data)
    assert drain(cache.read(image, 10, 100, remote, fill=True)) == data[10:110]
    assert remote.reads() == ["10 100"]
    assert cache.queued() == [image.id] and woken
    assert cache.warm(image, remote)
    assert cache.queued() == []
    assert not streamed(cache.read(image, 10, 100, remote, fill=True))


def test_bad_data_is_never_cached_and_never_delivered_whole(tmp_path: Path,
                                                          data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    image = image_of(data)
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    remote = Remote(bytes(corrupt), tmp_path / "reads", delay=0.01)
    received = bytearray()
    with pytest.raises(Unavailable, match="does not match"):
        got = cache.read(image, 0, len(data), remote, fill=True)
        for chunk in got.chunks or ():
            received += chunk
    assert received == corrupt[:len(data) - 1], "all but the last byte, then the failure"
    assert cache.cached() == []
    assert list((tmp_path / "cache" / "partial").iterdir()) == []
    # A short object is refused the same way.
    short = Remote(data[:-1], tmp_path / "reads2")
    with pytest.raises(Unavailable):
        drain(cache.read(image, 0, len(data), short, fill=True))
    assert cache.cached() == []


def test_a_reader_going_away_does_not_stop_the_fill(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30, fill_wait=1.0)
    remote, image = Remote(data, tmp_path / "reads", delay=0.01), image_of(data)
    got = cache.read(image, 0, len(data), remote, fill=True)
    assert got.chunks is not None
    next(got.chunks)
    got.chunks.close()  # type: ignore[attr-defined]  # the client went away
    wait_until(lambda: len(cache.cached()) == 1)
    assert drain(cache.read(image, 0, len(data), remote, fill=True)) == data
    assert remote.reads() == ["0 None"]


def test_a_store_failing_at_once_fails_the_read_with_its_error(tmp_path: Path,
                                                               data: bytes) -> None:
    from glimpse.errors import NotFound

    def missing(offset: int, length: int | None) -> Iterator[bytes]:
        raise NotFound("no such object")

    cache = LocalCache(tmp_path / "cache", 1 << 30)
    with pytest.raises(NotFound, match="no such object"):
        drain(cache.read(image_of(data), 0, len(data), missing, fill=True))


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_tampered_entry_is_not_served(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    remote, image = Remote(data, tmp_path / "reads"), image_of(data)
    drain(cache.read(image, 0, len(data), remote, fill=True))
    entry = tmp_path / "cache" / "entries" / image.id
    time.sleep(0.01)
    with open(entry, "r+b") as f:  # same size, other bytes
        f.seek(100)
        f.write(b"\0" * 10)
    missed = cache.read(image, 0, len(data), remote, fill=False)
    assert streamed(missed), "a tampered entry is a miss"
    assert drain(missed) == data
    assert not entry.exists(), "and is dropped"
    assert drain(cache.read(image, 0, len(data), remote, fill=True)) == data  # and refilled
    assert len(remote.reads()) == 3
    assert entry.read_bytes() == data
    # Replaced by another file (another inode) with the right length: refused too.
    replacement = tmp_path / "other"
    replacement.write_bytes(b"x" * len(data))
    os.replace(replacement, entry)
    assert streamed(cache.read(image, 0, len(data), remote, fill=False))


def test_partial_or_unsealed_entry_is_not_served(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    remote, image = Remote(data, tmp_path / "reads"), image_of(data)
    # A dead fill's partial file and a data file with no seal.
    (tmp_path / "cache" / "partial" / f"{image.id}.dead").write_bytes(data[:100])
    (tmp_path / "cache" / "entries" / image.id).write_bytes(data)
    assert streamed(cache.read(image, 0, 100, remote, fill=False))
    assert drain(cache.read(image, 0, len(data), remote, fill=True)) == data
    assert list((tmp_path / "cache" / "partial").iterdir()) == []
    # Truncated after sealing: refused and dropped.
    entry = tmp_path / "cache" / "entries" / image.id
    os.truncate(entry, 10)
    assert streamed(cache.read(image, 0, len(data), remote, fill=False))
    assert not entry.exists()


def test_new_data_under_the_same_id_is_not_served_stale(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    image = image_of(data)
    drain(cache.read(image, 0, len(data), Remote(data, tmp_path / "r1"), fill=True))
    other = os.urandom(len(data))
    reimaged = image_of(other, image.id)
    assert drain(cache.read(reimaged, 0, len(other), Remote(other, tmp_path / "r2"),
                            fill=True)) == other


def test_lru_eviction_by_size(tmp_path: Path) -> None:
    blobs = [os.urandom(100_000) for _ in range(3)]
    images = [image_of(b) for b in blobs]
    cache = LocalCache(tmp_path / "cache", 250_000)
    remotes = [Remote(b, tmp_path / f"r{i}") for i, b in enumerate(blobs)]
    drain(cache.read(images[0], 0, 100_000, remotes[0], fill=True))
    time.sleep(0.02)
    drain(cache.read(images[1], 0, 100_000, remotes[1], fill=True))
    time.sleep(0.02)
    drain(cache.read(images[0], 0, 100_000, remotes[0], fill=True))  # a hit: now the newest
    time.sleep(0.02)
    drain(cache.read(images[2], 0, 100_000, remotes[2], fill=True))
    assert cache.held_ids() == sorted([images[0].id, images[2].id])
    assert cache.size() <= 250_000
    cache.max_size = 150_000
    seen = Recorder()
    pruned = cache.prune(progress=seen)
    assert (pruned.files, pruned.bytes) == (1, 100_000)
    assert cache.held_ids() == [images[2].id]
    # Told against the bytes over the limit, one entry at a time (glimpse cache prune).
    assert cache.clear_cached(seen) == 1
    assert [(p["label"], p["items"], p["bytes"], p["advances"]) for p in seen.phases] == [
        ("pruning the cache", None, 50_000, [(1, 100_000)]),
        ("clearing the cache", 1, None, [(1, 0)])]



def test_clean_removes_dead_fills_only(tmp_path: Path, data: bytes) -> None:
    import fcntl

    cache = LocalCache(tmp_path / "cache", 1 << 30)
    dead, live = str(uuid.uuid4()), str(uuid.uuid4())
    partial = tmp_path / "cache" / "partial"
    (partial / f"{dead}.x").write_bytes(b"dead")
    (partial / f"{live}.y").write_bytes(b"live")
    (partial / ".stray").write_bytes(b"not ours")
    with open(tmp_path / "cache" / "locks" / live, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a fill in progress
        assert cache.clean() == 1
    assert sorted(p.name for p in partial.iterdir()) == [".stray", f"{live}.y"]


def test_image_larger_than_the_cache_is_not_cached(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1000)
    remote, image = Remote(data, tmp_path / "reads"), image_of(data)
    assert drain(cache.read(image, 0, len(data), remote, fill=True)) == data
    assert cache.cached() == []


def _reader(root: str, data: bytes, image_id: str, log: str, start: Any,
            results: Any) -> None:
    cache = LocalCache(Path(root), 1 << 30)
    image = image_of(data, image_id)
    start.wait()
    got = cache.read(image, 0, len(data), Remote(data, Path(log), delay=0.01), fill=True)
    results.put(hashlib.sha256(drain(got)).hexdigest())


def test_concurrent_readers_in_several_processes_cause_one_fill(tmp_path: Path,
                                                               data: bytes) -> None:
    image_id, log = str(uuid.uuid4()), tmp_path / "reads"
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(str(tmp_path / "cache"), data, image_id,
                                                 str(log), start, results)) for _ in range(5)]
    for p in readers:
        p.start()
    start.set()
    for p in readers:
        p.join(60)
        assert p.exitcode == 0
    digests = [results.get(timeout=5) for _ in readers]
    assert digests == [hashlib.sha256(data).hexdigest()] * 5
    assert log.read_text().splitlines() == ["0 None"], "one read of the store for five readers"


def test_discard_and_clear(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    remote, image = Remote(data, tmp_path / "reads"), image_of(data)
    drain(cache.read(image, 0, len(data), remote, fill=True))
    cache.queue(str(uuid.uuid4()))
    assert cache.discard(image.id)
    assert cache.cached() == [] and not cache.discard(image.id)
    assert not cache.discard("../../etc/passwd")
    cache.queue("../../etc/passwd")  # not an id: ignored, no path made of it
    assert cache.clear_queued() == 1 and cache.queued() == []


def test_prefetcher_fills_queued_images_and_drops_failures(tmp_path: Path,
                                                          data: bytes) -> None:
    from glimpse.cache.prefetch import Prefetcher

    cache = LocalCache(tmp_path / "cache", 1 << 30)
    good, bad = image_of(data), image_of(data)
    images = {good.id: (good, Remote(data, tmp_path / "r1")),
              bad.id: (bad, Remote(data[:-1] + b"?", tmp_path / "r2"))}

    def prefetch(image_id: str) -> bool:
        image, remote = images[image_id]
        return cache.warm(image, remote)

    cache.queue(good.id)
    cache.queue(bad.id)
    prefetcher = Prefetcher(cache.queued, prefetch, cache.dequeue, 60.0)
    assert prefetcher.run_once() == 1
    assert cache.held_ids() == [good.id]
    assert cache.queued() == [], "the failed one is dropped, not retried forever"
    prefetcher.start()  # a started prefetcher works at once when woken
    cache.queue(good.id)
    prefetcher.wake()
    deadline = time.monotonic() + 10
    while cache.queued() and time.monotonic() < deadline:
        time.sleep(0.02)
    prefetcher.stop()
    assert cache.queued() == []


def test_a_second_reader_follows_the_fill_as_it_grows(tmp_path: Path, data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    remote, image = Remote(data, tmp_path / "reads", delay=0.05), image_of(data)
    first = cache.read(image, 0, len(data), remote, fill=True)
    second = cache.read(image, 0, len(data), remote, fill=True)
    assert second.chunks is not None and first.chunks is not None
    head = next(second.chunks)
    assert head and cache.cached() == [], "bytes before the fill is done"
    assert head + b"".join(second.chunks) == data
    assert drain(first) == data
    assert remote.reads() == ["0 None"]


def test_a_follower_of_a_failing_fill_gets_an_error_not_a_body(tmp_path: Path,
                                                               data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    image = image_of(data)
    remote = Remote(data[:-1] + b"?", tmp_path / "reads", delay=0.02)
    readers = [cache.read(image, 0, len(data), remote, fill=True) for _ in range(2)]
    for reader in readers:
        received = bytearray()
        with pytest.raises(Unavailable):
            for chunk in reader.chunks or ():
                received += chunk
        assert len(received) == len(data) - 1
    assert remote.reads() == ["0 None"] and cache.cached() == []


def test_a_cache_that_cannot_write_says_so_with_an_os_error(tmp_path: Path,
                                                            data: bytes) -> None:
    cache = LocalCache(tmp_path / "cache", 1 << 30)
    (tmp_path / "cache" / "partial").rmdir()  # as if the disk refused every new file
    remote, image = Remote(data, tmp_path / "reads"), image_of(data)
    with pytest.raises(OSError):
        cache.read(image, 0, len(data), remote, fill=True)

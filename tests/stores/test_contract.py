"""The store contract: every driver passes the same tests, against real servers.

The filesystem and memory stores need nothing running. Swift and S3 run against the Swift
all-in-one (``scripts/swift-aio start``), with small segments and parts so that multi-segment
and multipart paths are exercised; Swift once more with Keystone credentials
(``scripts/keystone start`` first). RBD runs against the single-node Ceph (``scripts/ceph
start``) with 1 MiB objects, so that images span many objects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from glimpse.domain.ports import Store
from glimpse.errors import GlimpseError, NotFound, Unavailable
from glimpse.settings import StoreConfig
from glimpse.stores.registry import build_store
from tests import ceph, keystone, swift_aio
from tests.e2e.server import free_port

MiB = 1 << 20
SEGMENT = MiB  # the Swift stores' segment size in these tests
PART = 5 * MiB  # the S3 store's first part size (S3's minimum)
SECRET = "s3cr3t-never-shown"

Residue = Callable[[str], list[str]]


def _swift_residue(store: Store) -> Residue:
    def residue(key: str) -> list[str]:
        conn = store._connection()  # type: ignore[attr-defined]
        container = store._container(key)  # type: ignore[attr-defined]
        names = []
        for name in (container, container + "_segments"):
            try:
                _, listing = conn.get_container(name, prefix=key, full_listing=True)
            except Exception:  # the container may not exist yet
                continue
            names += [f"{name}/{entry['name']}" for entry in listing]
        return names
    return residue


def _s3_residue(store: Store) -> Residue:
    def residue(key: str) -> list[str]:
        client = store._client  # type: ignore[attr-defined]
        bucket = store.options.bucket  # type: ignore[attr-defined]
        objects = client.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
        return [o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads]
    return residue


@pytest.fixture(params=["file", "memory", "swift", "swift-prefix", "swift-keystone", "s3", "rbd"])
def store_and_residue(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, Residue]:
    kind: str = request.param
    if kind == "file":
        store = build_store(StoreConfig("file", "filesystem", {"directory": "images"}), tmp_path)
        directory = tmp_path / "images"
        return store, lambda key: [p.name for p in directory.iterdir() if key in p.name]
    if kind == "memory":
        store = build_store(StoreConfig("memory", "memory"), tmp_path)
        # Objects are all it holds, so what it lists is all that could be left.
        return store, lambda key: [k for k in store.object_keys() if key in k]
    if kind == "rbd":
        ceph.require()
        store = build_store(StoreConfig("rbd", "rbd", ceph.store_options(chunk_size=SEGMENT)),
                            tmp_path)
        return store, ceph.images
    swift_aio.require()
    if kind == "s3":
        options = swift_aio.store_options("s3", part_size=PART)
        store = build_store(StoreConfig("s3", "s3", options), tmp_path)
        return store, _s3_residue(store)
    if kind == "swift-keystone":
        keystone.require()
        options = keystone.store_options(segment_size=SEGMENT)
    else:
        layout = "prefix" if kind == "swift-prefix" else "single"
        options = swift_aio.store_options("swift", segment_size=SEGMENT, container_layout=layout)
    store = build_store(StoreConfig(kind, "swift", options), tmp_path)
    return store, _swift_residue(store)


@pytest.fixture
def store(store_and_residue: tuple[Store, Residue]) -> Store:
    return store_and_residue[0]


@pytest.fixture
def residue(store_and_residue: tuple[Store, Residue]) -> Residue:
    return store_and_residue[1]


@pytest.fixture
def key(store: Store) -> Iterator[str]:
    key = str(uuid.uuid4())
    yield key
    store.delete(key)


def chunks_of(data: bytes, size: int = 300_000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("length", [1, SEGMENT, 3 * SEGMENT + 17, 2 * PART + 3])
def test_put_returns_the_byte_count_and_open_reads_it_back(
    store: Store, key: str, length: int
) -> None:
    data = os.urandom(length)
    assert store.put(key, chunks_of(data)) == length
    assert store.size(key) == length
    assert b"".join(store.open(key)) == data


def test_an_empty_image(store: Store, key: str) -> None:
    assert store.put(key, iter([b"", b""])) == 0
    assert store.size(key) == 0
    assert b"".join(store.open(key)) == b""


@pytest.mark.parametrize("offset", [1, SEGMENT, SEGMENT + 5, 3 * SEGMENT + 16])
def test_open_at_an_offset(store: Store, key: str, offset: int) -> None:
    data = os.urandom(3 * SEGMENT + 17)
    store.put(key, chunks_of(data))
    assert b"".join(store.open(key, offset)) == data[offset:]


RANGED = 2 * PART + 3  # eleven Swift segments, three S3 parts


@pytest.mark.parametrize(("offset", "length"), [
    (0, 1),  # the first byte
    (0, None),  # all of it
    (0, RANGED),
    (1, 10),
    (SEGMENT - 3, 6),  # across the first segment boundary
    (SEGMENT, SEGMENT),  # exactly the second segment
    (PART - 3, 6),  # across the first part boundary
    (2 * PART - 1, 2),  # across the second part boundary (and a segment boundary)
    (PART + 7, 3 * SEGMENT),  # in the middle, over several segments
    (5, None),  # to the end
    (RANGED - 10, 10),  # reaching the end
    (RANGED - 10, 1000),  # a length past the end stops at the end
    (RANGED - 1, 1),  # the last byte
    (RANGED - 1, None),
])
def test_open_a_range(store: Store, key: str, offset: int, length: int | None) -> None:
    data = os.urandom(RANGED)
    store.put(key, chunks_of(data))
    end = None if length is None else offset + length
    read = list(store.open(key, offset, length))
    assert b"".join(read) == data[offset:end]
    assert max(len(chunk) for chunk in read) <= MiB


def test_open_a_range_of_one_small_object(store: Store, key: str) -> None:
    store.put(key, [b"0123456789"])
    assert b"".join(store.open(key, 3, 4)) == b"3456"
    assert b"".join(store.open(key, 9, 1)) == b"9"
    assert b"".join(store.open(key, 0, 100)) == b"0123456789"


def test_reading_streams_in_bounded_chunks(store: Store, key: str) -> None:
    store.put(key, chunks_of(os.urandom(4 * MiB)))
    sizes = [len(c) for c in store.open(key)]
    assert len(sizes) > 1 and max(sizes) <= MiB


def test_missing_objects(store: Store) -> None:
    key = str(uuid.uuid4())
    with pytest.raises(NotFound):
        store.size(key)
    with pytest.raises(NotFound):
        b"".join(store.open(key))
    store.delete(key)  # not an error


def test_delete_removes_everything(store: Store, residue: Residue) -> None:
    key = str(uuid.uuid4())
    store.put(key, chunks_of(os.urandom(2 * PART + 3)))
    assert residue(key)
    store.delete(key)
    with pytest.raises(NotFound):
        store.size(key)
    assert residue(key) == []


@pytest.mark.parametrize("fail_after", [0, SEGMENT + 1, 2 * PART + 1])
def test_a_failing_stream_leaves_nothing_behind(
    store: Store, residue: Residue, fail_after: int
) -> None:
    key = str(uuid.uuid4())

    def broken() -> Iterator[bytes]:
        yield from chunks_of(os.urandom(fail_after))
        raise GlimpseError("the client went away")

    with pytest.raises(GlimpseError, match="the client went away"):
        store.put(key, broken())
    with pytest.raises(NotFound):
        store.size(key)
    assert residue(key) == []


def test_nothing_is_visible_until_the_put_completes(store: Store, key: str) -> None:
    """Readers (on other threads, as in the server) see no object while its chunks arrive."""
    seen: list[object] = []

    def look() -> object:
        try:
            return store.size(key)
        except NotFound:
            return key in set(store.object_keys())

    def chunks() -> Iterator[bytes]:
        with ThreadPoolExecutor(1) as reader:
            for chunk in chunks_of(os.urandom(SEGMENT + 5)):
                seen.append(reader.submit(look).result())
                yield chunk
            seen.append(reader.submit(look).result())

    assert store.put(key, chunks()) == SEGMENT + 5
    assert seen and set(seen) == {False}
    assert store.size(key) == SEGMENT + 5


def test_a_second_put_replaces_nothing_it_should_not(store: Store) -> None:
    """Two images never share data: each key reads back its own bytes."""
    keys = [str(uuid.uuid4()) for _ in range(2)]
    blobs = [os.urandom(SEGMENT + 1), os.urandom(SEGMENT + 2)]
    try:
        for k, blob in zip(keys, blobs, strict=True):
            store.put(k, chunks_of(blob))
        for k, blob in zip(keys, blobs, strict=True):
            assert b"".join(store.open(k)) == blob
    finally:
        for k in keys:
            store.delete(k)


@pytest.mark.parametrize("driver", ["swift", "s3"])
@pytest.mark.parametrize("where", ["wrong-key", "no-server"])
def test_failures_are_unavailable_and_never_show_credentials(
    driver: str, where: str, tmp_path: Path
) -> None:
    if where == "wrong-key":
        swift_aio.require()
        endpoint = swift_aio.ENDPOINT
    else:
        endpoint = f"http://127.0.0.1:{free_port()}"
    options = swift_aio.store_options(driver, endpoint, retries=0)
    options["key" if driver == "swift" else "secret_key"] = SECRET
    store = build_store(StoreConfig("remote", driver, options), tmp_path)
    key = str(uuid.uuid4())
    for action in (lambda: store.put(key, iter([b"data"])), lambda: store.size(key),
                   lambda: b"".join(store.open(key)), lambda: store.delete(key)):
        with pytest.raises(Unavailable) as caught:
            action()
        assert "remote" in caught.value.message
        assert SECRET not in caught.value.message and SECRET not in repr(caught.value)
    assert SECRET not in repr(store) and SECRET not in repr(store.options)  # type: ignore[attr-defined]


def test_object_keys_lists_whole_objects_only(store: Store) -> None:
    keys = [str(uuid.uuid4()) for _ in range(3)]
    for key in keys:
        store.put(key, [b"data of " + key.encode()])
    try:
        listed = set(store.object_keys())
        assert set(keys) <= listed
        # Segments, manifests' parts and temporary names are not objects of their own.
        assert not [k for k in listed if "/" in k or k.startswith(".")]
        store.delete(keys[0])
        assert keys[0] not in set(store.object_keys())
    finally:
        for key in keys:
            store.delete(key)


def test_open_file_is_the_data_or_none(store: Store, key: str) -> None:
    store.put(key, [b"local?"])
    local = store.open_file(key)
    if local is not None:
        with local:
            assert local.read() == b"local?"

"""What the RBD store does beyond the store contract, against the single-node Ceph
(``scripts/ceph start``): Glance's layout, sparse writes, growth in steps, clones, credentials
and bounded waits. The pool is inspected directly, as the cluster's admin."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from glimpse.errors import Conflict, NotFound, Unavailable
from glimpse.settings import StoreConfig
from glimpse.stores import rbd as rbd_store
from glimpse.stores.rbd import RbdStore
from glimpse.stores.registry import build_store
from tests import ceph
from tests.e2e.server import free_port
from tests.stores.test_contract import chunks_of

MiB = 1 << 20
SECRET = "AQBgc2VjcmV0LW5ldmVyLXNob3duLWFueXdoZXJlAA=="


@pytest.fixture
def store(tmp_path: Path) -> RbdStore:
    ceph.require()
    built = build_store(StoreConfig("rbd", "rbd", ceph.store_options(chunk_size=MiB)), tmp_path)
    assert isinstance(built, RbdStore)
    return built


@pytest.fixture
def key(store: RbdStore) -> Iterator[str]:
    key = str(uuid.uuid4())
    yield key
    store.delete(key)


def allocated(name: str) -> int:
    """Bytes of the image's snapshot that hold data (written extents)."""
    import rbd

    extents: list[int] = []
    with ceph.admin_ioctx() as ioctx, rbd.Image(ioctx, name, snapshot="snap",
                                                read_only=True) as image:
        image.diff_iterate(0, image.size(), None,
                           lambda offset, length, exists: extents.append(length if exists else 0))
    return sum(extents)


def test_glance_layout_an_image_named_by_id_with_a_protected_snapshot(
    store: RbdStore, key: str
) -> None:
    import rbd

    data = os.urandom(3 * MiB + 5)
    assert store.put(key, chunks_of(data)) == len(data)
    with ceph.admin_ioctx() as ioctx, rbd.Image(ioctx, key, read_only=True) as image:
        assert [s["name"] for s in image.list_snaps()] == ["snap"]
        assert image.is_protected_snap("snap")
        assert image.size() == len(data)
        assert image.stat()["obj_size"] == MiB
    assert ceph.images(key) == [key]
    url = store.location_url(key)
    assert url == f"rbd://{ceph.fsid()}/{ceph.POOL}/{key}/snap"
    # The location is a key as good as the image id.
    assert store.size(url) == len(data)
    assert b"".join(store.open(url, 7, 10)) == data[7:17]


@pytest.mark.parametrize("foreign", [
    "rbd://00000000-0000-0000-0000-000000000000/{pool}/{key}/snap",  # another cluster
    "rbd://{fsid}/other-pool/{key}/snap",
    "rbd://{fsid}/{pool}/{key}/other-snap",
    "rbd://{fsid}/{pool}/{key}",
    "rbd://{fsid}/{pool}/../{key}/snap",
    "{key}.partial",
    "../{key}",
])
def test_keys_naming_anything_else_name_nothing(store: RbdStore, key: str, foreign: str) -> None:
    store.put(key, [b"data"])
    other = foreign.format(fsid=ceph.fsid(), pool=ceph.POOL, key=key)
    with pytest.raises(NotFound):
        store.size(other)
    with pytest.raises(NotFound):
        b"".join(store.open(other))
    with pytest.raises(NotFound):
        store.delete(other)
    assert store.size(key) == 4


def test_runs_of_zeros_are_not_written(store: RbdStore, key: str) -> None:
    data = bytes(4 * MiB) + os.urandom(100_000) + bytes(3 * MiB) + b"end"
    store.put(key, chunks_of(data, 1_000_000))
    assert b"".join(store.open(key)) == data
    written = allocated(key)
    # The 100,000 bytes of data and the last bytes, each in whole 64 KiB blocks.
    assert 100_000 + 3 <= written <= 4 * 64 * 1024


def test_zero_blocks_are_told_by_every_byte_not_the_first_alone() -> None:
    # No Ceph needed: how an object is cut into the runs that are written.
    block = 64 * 1024
    data = bytearray(os.urandom(5 * block + 10))
    data[0:block] = bytes(block)  # zeros
    data[block:2 * block] = bytes(block - 1) + b"\x01"  # zeros but the last byte
    data[2 * block] = 0  # a first byte of zero, random after it
    data[4 * block:] = bytes(block + 10)  # zeros, then a short last block of zeros
    data = bytes(data)
    assert [rbd_store._zeros_at(data, at) for at in range(0, len(data), block)] == [
        True, False, False, False, True, True]
    writer = rbd_store._Writer.__new__(rbd_store._Writer)
    writer._store = SimpleNamespace(options=rbd_store.RbdOptions())
    assert writer._extents(data) == [(block, 4 * block)]
    assert writer._extents(bytes(3)) == []
    assert writer._extents(b"\x00\x00\x07") == [(0, 3)]


def test_an_image_of_zeros_stays_empty(store: RbdStore, key: str) -> None:
    store.put(key, chunks_of(bytes(5 * MiB + 3)))
    assert store.size(key) == 5 * MiB + 3
    assert allocated(key) == 0
    assert b"".join(store.open(key, 5 * MiB)) == bytes(3)


def test_skipping_zeros_can_be_turned_off(tmp_path: Path) -> None:
    ceph.require()
    store = build_store(StoreConfig("rbd", "rbd", ceph.store_options(
        chunk_size=MiB, skip_zeros="false")), tmp_path)
    key = str(uuid.uuid4())
    try:
        store.put(key, chunks_of(bytes(2 * MiB)))
        assert allocated(key) == 2 * MiB
    finally:
        store.delete(key)


def test_an_image_of_unknown_size_grows_in_doubling_steps(
    store: RbdStore, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[int] = []
    grow = rbd_store._Writer._grow

    def counted(self: Any, needed: int) -> None:
        before = self._capacity
        grow(self, needed)
        if self._capacity != before:
            steps.append(self._capacity)

    monkeypatch.setattr(rbd_store._Writer, "_grow", counted)
    length = 37 * MiB + 11
    store.put(key, chunks_of(os.urandom(length), 64 * 1024))
    # 1, 2, 4, 8, 16, 32, 64 MiB: seven resizes for 37 MiB written in 64 KiB chunks.
    assert steps == [MiB << n for n in range(7)]
    assert store.size(key) == length  # shrunk to the data at the end


def test_writes_are_object_sized_and_bounded_in_flight(
    store: RbdStore, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int, int]] = []
    submit = rbd_store._Writer._submit

    def watched(self: Any, data: bytes, offset: int) -> None:
        submit(self, data, offset)
        in_flight = store.options.concurrent_writes - self._slots._value
        seen.append((offset, len(data), in_flight))

    monkeypatch.setattr(rbd_store._Writer, "_submit", watched)
    # The last byte is not zero: a zero tail is skipped, as any run of zeros is (and a random
    # byte is zero once in 256 runs).
    store.put(key, chunks_of(os.urandom(6 * MiB) + b"\x01", 100_000))
    assert [(o, n) for o, n, _ in seen] == [(i * MiB, MiB) for i in range(6)] + [(6 * MiB, 1)]
    assert max(f for _, _, f in seen) <= store.options.concurrent_writes


def test_an_image_with_clones_is_not_deleted(store: RbdStore, key: str) -> None:
    import rbd

    data = os.urandom(2 * MiB + 1)
    store.put(key, chunks_of(data))
    clone = f"clone-of-{key}"
    with ceph.admin_ioctx() as ioctx:
        rbd.RBD().clone(ioctx, key, "snap", ioctx, clone)
        try:
            assert store.in_use(key) and store.in_use(store.location_url(key))
            with pytest.raises(Conflict, match="in use") as refused:
                store.delete(key)
            assert refused.value.code == "in_use"
            # Nothing was taken away: the snapshot is still protected and the clone reads.
            assert b"".join(store.open(key)) == data
            with rbd.Image(ioctx, clone, read_only=True) as child:
                assert child.read(0, len(data)) == data
        finally:
            rbd.RBD().remove(ioctx, clone)
    assert not store.in_use(key)
    store.delete(key)
    assert ceph.images(key) == []


def test_a_missing_image_is_not_in_use(store: RbdStore) -> None:
    assert not store.in_use(str(uuid.uuid4()))


def test_a_wrong_key_is_unavailable_and_never_shown(tmp_path: Path) -> None:
    ceph.require()
    keyring = tmp_path / "keyring"
    keyring.write_text(f"[client.{ceph.USER}]\n\tkey = {SECRET}\n")
    store = build_store(StoreConfig("rbd", "rbd", ceph.store_options(
        keyring=keyring, connect_timeout=5)), tmp_path)
    with pytest.raises(Unavailable) as caught:
        store.put(str(uuid.uuid4()), [b"data"])
    assert "rbd" in caught.value.message
    for text in (caught.value.message, repr(caught.value), repr(store),
                 repr(store.options)):  # type: ignore[attr-defined]
        assert SECRET not in text and str(keyring) not in text


@pytest.mark.serial
def test_no_monitor_is_unavailable_within_the_connect_timeout(tmp_path: Path) -> None:
    ceph.require()
    conf = tmp_path / "ceph.conf"
    conf.write_text(f"[global]\nmon_host = v1:127.0.0.1:{free_port()}\n")
    store = build_store(StoreConfig("rbd", "rbd", ceph.store_options(
        conf_file=conf, connect_timeout=3)), tmp_path)
    started = time.monotonic()
    for action in (lambda: store.put(str(uuid.uuid4()), [b"x"]),
                   lambda: store.size(str(uuid.uuid4()))):
        with pytest.raises(Unavailable, match="Store rbd could not connect"):
            action()
    assert time.monotonic() - started < 20


def test_the_clusters_room_is_unknown_without_a_manager(store: RbdStore) -> None:
    """scripts/ceph runs no mgr, which gathers Ceph's df: its zeros are no figures to show."""
    assert store.space() is None


def test_the_clusters_room_comes_from_its_df() -> None:
    store = object.__new__(RbdStore)
    cluster = SimpleNamespace(get_cluster_stats=lambda: {
        "kb": 40 << 20, "kb_used": 1 << 20, "kb_avail": 39 << 20, "num_objects": 7})
    store._connect = lambda: cluster  # type: ignore[method-assign]
    store._call = lambda fn, *args, **kwargs: fn(*args)  # type: ignore[method-assign]
    assert store.space() == (39 << 30, 40 << 30)

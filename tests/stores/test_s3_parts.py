"""The S3 store's concurrent part uploads, against the Swift all-in-one's S3 API: parts arrive in
order, and a failure while several parts are in flight (a part's connection breaks, or the
incoming stream fails) waits for them and aborts the upload, leaving nothing in the store.

A fault proxy holds the parts in flight, so the failures hit while they are being sent."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import swiftclient.client

from glimpse.errors import Invalid, Unavailable
from glimpse.settings import StoreConfig
from glimpse.stores.registry import build_store
from glimpse.stores.s3 import S3Store
from tests import swift_aio
from tests.fault_proxy import FaultProxy

MiB = 1 << 20
PART = 5 * MiB
CONCURRENCY = 3


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    swift_aio.require()
    proxy = FaultProxy(swift_aio.PORT)
    yield proxy
    proxy.set_mode("pass")
    proxy.close()


def s3_store(tmp_path: Path, endpoint: str) -> S3Store:
    options = swift_aio.store_options("s3", endpoint, part_size=PART, retries=0, timeout=20,
                                      upload_concurrency=CONCURRENCY)
    store = build_store(StoreConfig("s3", "s3", options), tmp_path)
    assert isinstance(store, S3Store)
    return store


def residue(key: str, parts: bool = True) -> list[str]:
    """Objects, multipart uploads and (unless told not to) stored parts of ``key``, asked
    directly: the S3 API for the first two, Swift for the parts (the all-in-one keeps them in
    ``<bucket>+segments``, where the parts of a completed, deleted object may linger)."""
    client = boto3.client("s3", endpoint_url=swift_aio.ENDPOINT, region_name="us-east-1",
                          aws_access_key_id=swift_aio.USER, aws_secret_access_key=swift_aio.KEY)
    objects = client.list_objects_v2(Bucket="glimpse-test", Prefix=key).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket="glimpse-test", Prefix=key).get("Uploads", [])
    found = [o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads]
    if not parts:
        return found
    conn = swiftclient.client.Connection(authurl=f"{swift_aio.ENDPOINT}/auth/v1.0",
                                         user=swift_aio.USER, key=swift_aio.KEY)
    try:
        _, stored = conn.get_container("glimpse-test+segments", prefix=key, full_listing=True)
    except swiftclient.client.ClientException as exc:
        if exc.http_status != 404:
            raise
        stored = []
    return found + [f"part:{p['name']}" for p in stored]


def wait_until_held(proxy: FaultProxy, count: int) -> None:
    deadline = time.monotonic() + 30
    while proxy.held < count:
        assert time.monotonic() < deadline, f"only {proxy.held} requests held"
        time.sleep(0.02)


def test_many_parts_in_odd_chunks_read_back_in_order(tmp_path: Path) -> None:
    swift_aio.require()
    store = s3_store(tmp_path, swift_aio.ENDPOINT)
    data = os.urandom(3 * CONCURRENCY * PART + 12345)
    sizes = [1, 4093, MiB + 7, 3 * MiB]  # chunks that straddle part boundaries
    chunks, at = [], 0
    while at < len(data):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(data[at:at + size])
        at += size
    key = str(uuid.uuid4())
    assert store.put(key, iter(chunks)) == len(data)
    try:
        assert b"".join(store.open(key)) == data
    finally:
        store.delete(key)
    assert residue(key, parts=False) == []


def held_upload(proxy: FaultProxy, parts: int) -> Iterator[bytes]:
    """``parts`` parts of data, each in two chunks; the proxy holds what is sent from the
    middle of the second part on (the store has read ahead into it before starting the
    multipart upload, which must pass)."""
    for n in range(parts):
        yield bytes([n]) * (PART // 2)
        if n == 1:
            proxy.set_mode("hold")
        yield bytes([n]) * (PART - PART // 2)


def test_a_part_failing_while_others_are_in_flight_aborts_the_upload(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    store = s3_store(tmp_path, proxy.url)
    key = str(uuid.uuid4())
    outcome: list[BaseException] = []

    def upload() -> None:
        try:
            store.put(key, held_upload(proxy, 3 * CONCURRENCY))
        except BaseException as exc:
            outcome.append(exc)

    uploader = threading.Thread(target=upload)
    uploader.start()
    # Every thread of the pool is sending a part and the stream waits for room.
    wait_until_held(proxy, CONCURRENCY)
    proxy.break_open()  # the parts in flight fail; the abort that follows passes
    uploader.join(60)
    assert not uploader.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Unavailable), outcome
    assert swift_aio.KEY not in outcome[0].message
    assert residue(key) == []


def test_the_stream_failing_while_parts_are_in_flight_waits_for_them_then_aborts(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    store = s3_store(tmp_path, proxy.url)
    key = str(uuid.uuid4())

    def chunks() -> Iterator[bytes]:
        yield from held_upload(proxy, CONCURRENCY)
        wait_until_held(proxy, CONCURRENCY - 1)
        # The parts in flight go on once the stream has failed: they land after the failure,
        # and the abort must come after them to remove them.
        threading.Timer(0.5, proxy.set_mode, ("pass",)).start()
        raise Invalid("Client disconnected before sending all image data")

    with pytest.raises(Invalid):
        store.put(key, chunks())
    assert residue(key) == []

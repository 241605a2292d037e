"""The Swift store with Keystone credentials (``auth_version = "3"``), against the Keystone of
``scripts/keystone`` and the Swift all-in-one accepting its tokens: failures, tokens revoked
while the store holds them, and logs. The store contract itself runs in test_contract.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpse.errors import Unavailable
from glimpse.settings import StoreConfig
from glimpse.stores.registry import build_store
from tests import keystone
from tests.e2e.server import GlimpseServer, free_port

MiB = 1 << 20
SECRET = "Kq7-wrong-never-shown"
FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    keystone.require()
    options = keystone.store_options(segment_size=MiB, retries=0)
    return build_store(StoreConfig("remote", "swift", options), tmp_path)


def held_token(store: Any) -> str:
    """The token this thread's swiftclient connection holds."""
    token: str = store._connection().token
    assert token
    return token


def chunks(data: bytes, size: int = 300_000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def revoke_and_check_swift_refuses(store: Any) -> str:
    token = held_token(store)
    keystone.revoke(token)
    # Swift itself refuses it now, so a call succeeding afterwards had to get a new one.
    refused = httpx.head(store._connection().url, headers={"X-Auth-Token": token}, timeout=10)
    assert refused.status_code == 401
    return token


def test_a_revoked_token_is_replaced_on_the_next_call(store: Any) -> None:
    key = str(uuid.uuid4())
    store.put(key, [b"first"])
    try:
        old = revoke_and_check_swift_refuses(store)
        assert store.size(key) == 5
        assert b"".join(store.open(key)) == b"first"
        assert held_token(store) != old
    finally:
        store.delete(key)


def test_a_streamed_upload_after_revocation_succeeds(store: Any) -> None:
    """A streamed segment cannot be sent twice: the store must renew the token before it."""
    warm = str(uuid.uuid4())
    store.put(warm, [b"warm"])  # creates the containers and takes a token
    key = str(uuid.uuid4())
    data = os.urandom(3 * MiB + 5)
    try:
        old = revoke_and_check_swift_refuses(store)
        assert store.put(key, chunks(data)) == len(data)
        assert b"".join(store.open(key)) == data
        assert held_token(store) != old
    finally:
        store.delete(key)
        store.delete(warm)


@pytest.mark.parametrize("where", ["wrong-password", "wrong-project", "wrong-region",
                                   "no-keystone"])
def test_keystone_failures_are_unavailable_and_never_show_credentials(
    where: str, tmp_path: Path
) -> None:
    options = keystone.store_options(retries=0, key=SECRET)
    if where == "no-keystone":
        options["auth_url"] = f"http://127.0.0.1:{free_port()}/v3"
    else:
        keystone.require()
    if where == "wrong-project":
        options.update(key=keystone.PASSWORD, project_name="no-such-project")
    elif where == "wrong-region":
        options.update(key=keystone.PASSWORD, region_name="NoSuchRegion")
    store = build_store(StoreConfig("remote", "swift", options), tmp_path)
    key = str(uuid.uuid4())
    for action in (lambda: store.put(key, iter([b"data"])), lambda: store.size(key),
                   lambda: b"".join(store.open(key)), lambda: store.delete(key)):
        with pytest.raises(Unavailable) as caught:
            action()
        shown = caught.value.message + repr(caught.value)
        assert "remote" in caught.value.message and "Keystone" in caught.value.message
        for hidden in (SECRET, keystone.PASSWORD, keystone.TOKEN_MARK):
            assert hidden not in shown
    assert SECRET not in repr(store) and SECRET not in repr(store.options)  # type: ignore[attr-defined]


def test_no_password_or_token_in_the_server_log() -> None:
    """A glimpse server logging at debug level stores, reads and deletes an image through
    Keystone, then a second one with a wrong password fails an upload: neither the password
    nor any token appears in their logs or answers."""
    keystone.require()
    good = GlimpseServer({**keystone.store_env(segment_size="1MB"), "log_level": "debug"})
    try:
        data = os.urandom(2 * MiB + 3)
        r = httpx.post(f"{good.url}/v1/images", content=data, timeout=60,
                       headers={**FORMATS, "content-type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        url = f"{good.url}/v1/images/{r.json()['image']['id']}"
        assert httpx.get(url, timeout=60).content == data
        assert httpx.delete(url).status_code == 200
        log = good.log()
    finally:
        good.stop()
    assert keystone.PASSWORD not in log and keystone.TOKEN_MARK not in log

    bad = GlimpseServer({**keystone.store_env(key=SECRET), "log_level": "debug"})
    try:
        r = httpx.post(f"{bad.url}/v1/images", content=b"data", timeout=60,
                       headers={**FORMATS, "content-type": "application/octet-stream"})
        assert r.status_code == 503
        assert "Keystone" in r.text and SECRET not in r.text
        log = bad.log()
    finally:
        bad.stop()
    assert SECRET not in log and keystone.TOKEN_MARK not in log

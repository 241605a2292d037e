"""The cache through the app in process, with a memory store as the remote store: what the
versions document lists with and without a cache, the cache API's absence when off, and a fill
whose data does not match the image failing its client instead of passing for a download."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from glimpse.app import build_app
from glimpse.settings import Settings, StoreConfig

pytestmark = pytest.mark.anyio

MEMBER = {"X-Tenant-Id": "proj-a", "X-User-Id": "m", "X-Roles": "member"}
ADMIN = {"X-Tenant-Id": "proj-z", "X-User-Id": "z", "X-Roles": "admin"}
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings(data_dir: Path, cache: bool) -> Settings:
    return Settings(data_dir=data_dir, stores=(StoreConfig("mem", "memory"),),
                    default_store="mem", image_cache_dir=Path("cache") if cache else None)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings(tmp_path, cache=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://testserver") as c:
        yield c


async def image_with(client: httpx.AsyncClient, data: bytes) -> str:
    made = await client.post("/v2/images", headers=MEMBER, json={
        "name": "c", "disk_format": "raw", "container_format": "bare"})
    image_id: str = made.json()["id"]
    put = await client.put(f"/v2/images/{image_id}/file", content=data,
                           headers={**MEMBER, **OCTETS})
    assert put.status_code == 204
    return image_id


async def test_versions_list_the_cache_minors_only_with_a_cache(tmp_path: Path) -> None:
    for cache in (False, True):
        app: Any = build_app(settings(tmp_path / str(cache), cache))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                     base_url="http://testserver") as c:
            listed = {v["id"]: v["status"] for v in (await c.get("/versions")).json()["versions"]}
            state = await c.get("/v2/cache", headers=ADMIN)
        if cache:
            assert listed["v2.18"] == "CURRENT" and listed["v2.14"] == "SUPPORTED"
            assert state.status_code == 200
        else:
            assert "v2.14" not in listed and "v2.18" not in listed
            assert listed["v2.17"] == "CURRENT"
            assert state.status_code == 404


async def test_a_download_fills_the_cache_and_the_next_is_served_from_it(
        client: httpx.AsyncClient, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    image_id = await image_with(client, data)
    assert (await client.get(f"/v2/images/{image_id}/file", headers=MEMBER)).content == data
    entry = tmp_path / "cache" / "entries" / image_id
    assert entry.read_bytes() == data
    state = (await client.get("/v2/cache", headers=ADMIN)).json()
    assert [c["image_id"] for c in state["cached_images"]] == [image_id]
    ranged = await client.get(f"/v2/images/{image_id}/file",
                              headers={**MEMBER, "range": "bytes=-10"})
    assert ranged.status_code == 206 and ranged.content == data[-10:]
    state = (await client.get("/v2/cache", headers=ADMIN)).json()
    assert state["cached_images"][0]["hits"] == 1


async def test_a_fill_that_does_not_match_fails_its_client(client: httpx.AsyncClient,
                                                           tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    image_id = await image_with(client, data)
    # The image now claims other data than its store holds (as if the object were damaged).
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'glimpse.sqlite'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE images SET checksum = :c WHERE id = :i"),
                     {"c": "0" * 32, "i": image_id})
    engine.dispose()
    # The fill fails before the answer starts (503), or after (the body is cut short: in
    # process, the app's exception reaches the client).
    received, status, failure = bytearray(), 0, ""
    try:
        async with client.stream("GET", f"/v2/images/{image_id}/file",
                                 headers=MEMBER) as response:
            status = response.status_code
            async for chunk in response.aiter_bytes():
                received += chunk
    except Exception as exc:  # the transport's abort, whatever its type
        failure = str(exc)
    if not failure:
        assert status == 503 and "does not match the image" in received.decode()
    else:
        assert "does not match the image" in failure
        assert len(received) < len(data), "never the whole body"
    assert not (tmp_path / "cache" / "entries" / image_id).exists()
    assert list((tmp_path / "cache" / "partial").iterdir()) == []

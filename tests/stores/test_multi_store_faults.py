"""Multi-store with an object store that fails, through a real glimpse server: the built-in
``file`` store beside a Swift (or S3) store of the all-in-one, behind a fault proxy, of higher
weight. Downloads fall back to the file copy when the object store is down, answers 503 or
lost the object, before any byte is sent; a store that breaks off mid-download is never a
success; removing the object store's copy while it is down is recorded and finished later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from glimpse.db.tables import image_locations
from tests import swift_aio
from tests.e2e.identity import tenant
from tests.e2e.server import GlimpseServer
from tests.fault_proxy import FaultProxy
from tests.stores.test_faults import residue

MiB = 1 << 20
ADMIN = tenant("ops", "admin")
OWNER = tenant("alice", "member,reader")
DATA = os.urandom(3 * MiB + 12345)


@pytest.fixture(scope="module", params=["swift", "s3"])
def setup(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FaultProxy,
                                                                      GlimpseServer]]:
    swift_aio.require()
    driver: str = request.param
    proxy = FaultProxy(swift_aio.PORT)
    small = {"segment_size": "1MB"} if driver == "swift" else {"part_size": "5MB"}
    options = swift_aio.store_options(driver, proxy.url, retries=0, timeout=10, **small,
                                      **swift_aio.probe_credentials(driver))
    table = "".join(f'{key} = "{value}"\n' for key, value in options.items())
    directory = tmp_path_factory.mktemp(f"multi-{driver}")
    config = directory / "glimpse.toml"
    config.write_text('multi_store = true\ndefault_store = "file"\n'
                      'store_cleanup_interval = 0.5\n\n'
                      f'[stores.remote]\ndriver = "{driver}"\nweight = 100\n{table}')
    server = GlimpseServer(data_dir=directory / "data", config=config)
    yield driver, proxy, server
    server.stop()
    proxy.close()


@pytest.fixture
def proxy(setup: tuple[str, FaultProxy, GlimpseServer]) -> Iterator[FaultProxy]:
    yield setup[1]
    setup[1].set_mode("pass")


def in_both(server: GlimpseServer) -> str:
    """An image uploaded into the object store, with a copy in ``file`` as copy-image leaves
    one."""
    created = httpx.post(f"{server.url}/v2/images", headers=OWNER, json={
        "disk_format": "raw", "container_format": "bare"})
    image_id: str = created.json()["id"]
    put = httpx.put(f"{server.url}/v2/images/{image_id}/file", content=DATA, timeout=60,
                    headers={**OWNER, "Content-Type": "application/octet-stream",
                             "X-Image-Meta-Store": "remote"})
    assert put.status_code == 204, put.text
    (Path(server.data_dir) / "images" / image_id).write_bytes(DATA)
    url = os.environ.get("GLIMPSE_TEST_DATABASE_URL") or (
        f"sqlite:///{(server.data_dir / 'glimpse.sqlite').resolve()}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(image_locations.insert().values(
            image_id=image_id, position=1, store="file", url=image_id, meta="{}",
            status="active"))
    engine.dispose()
    assert stores_of(server, image_id) == "remote,file"
    return image_id


def stores_of(server: GlimpseServer, image_id: str) -> str:
    shown = httpx.get(f"{server.url}/v2/images/{image_id}", headers=OWNER)
    assert shown.status_code == 200, shown.text
    return str(shown.json().get("stores"))


def fetch(server: GlimpseServer, image_id: str, api: str = "v2") -> httpx.Response:
    path = f"/v2/images/{image_id}/file" if api == "v2" else f"/v1/images/{image_id}"
    return httpx.get(server.url + path, headers=OWNER, timeout=60)


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_download_falls_back_when_the_object_store_is_down(
        setup: tuple[str, FaultProxy, GlimpseServer], proxy: FaultProxy, mode: str) -> None:
    server = setup[2]
    image_id = in_both(server)
    before = proxy.delivered
    assert fetch(server, image_id).content == DATA
    assert proxy.delivered - before >= len(DATA)  # read from the object store: its weight
    proxy.set_mode(mode)
    for api in ("v2", "v1"):
        got = fetch(server, image_id, api)
        assert (got.status_code, got.content) == (200, DATA)
    ranged = httpx.get(f"{server.url}/v2/images/{image_id}/file", timeout=60,
                       headers={**OWNER, "Range": f"bytes={MiB}-{MiB + 99}"})
    assert (ranged.status_code, ranged.content) == (206, DATA[MiB:MiB + 100])
    assert "trying the next copy" in server.log()
    assert swift_aio.PROBE_KEY not in server.log()


def test_download_falls_back_when_the_object_is_gone(
        setup: tuple[str, FaultProxy, GlimpseServer], proxy: FaultProxy) -> None:
    driver, _, server = setup
    image_id = in_both(server)
    # Removed behind glimpse's back, past the proxy.
    assert residue(driver, image_id)
    _delete_directly(driver, image_id)
    assert not residue(driver, image_id)
    got = fetch(server, image_id)
    assert (got.status_code, got.content) == (200, DATA)


def test_a_store_cut_mid_download_is_never_a_success(
        setup: tuple[str, FaultProxy, GlimpseServer], proxy: FaultProxy) -> None:
    server = setup[2]
    image_id = in_both(server)
    proxy.set_mode("cut", cut_after=MiB)
    received = b""
    url = f"{server.url}/v2/images/{image_id}/file"
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, headers=OWNER,
                                                      timeout=30) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            received += chunk
    assert len(received) < len(DATA)


def test_removing_the_copy_of_a_store_that_is_down_finishes_later(
        setup: tuple[str, FaultProxy, GlimpseServer], proxy: FaultProxy) -> None:
    driver, _, server = setup
    image_id = in_both(server)
    proxy.set_mode("refuse")
    gone = httpx.delete(f"{server.url}/v2/stores/remote/{image_id}", headers=ADMIN)
    assert gone.status_code == 204, gone.text
    # Gone for every reader at once; its bytes wait for the store.
    assert stores_of(server, image_id) == "file"
    assert residue(driver, image_id)
    assert fetch(server, image_id).content == DATA
    proxy.set_mode("pass")
    deadline = time.monotonic() + 30
    while residue(driver, image_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not residue(driver, image_id)
    assert stores_of(server, image_id) == "file"
    assert (server.data_dir / "images" / image_id).read_bytes() == DATA
    assert fetch(server, image_id).content == DATA
    assert httpx.delete(f"{server.url}/v2/stores/file/{image_id}",
                        headers=ADMIN).status_code == 403
    assert swift_aio.PROBE_KEY not in server.log()


def _delete_directly(driver: str, key: str) -> None:
    if driver == "swift":
        import swiftclient.client

        conn = swiftclient.client.Connection(
            authurl=f"{swift_aio.ENDPOINT}/auth/v1.0", user=swift_aio.PROBE_USER,
            key=swift_aio.PROBE_KEY)
        for container in ("glimpse-test", "glimpse-test_segments"):
            _, listing = conn.get_container(container, prefix=key, full_listing=True)
            for entry in listing:
                conn.delete_object(container, entry["name"])
        return
    import boto3

    client = boto3.client("s3", endpoint_url=swift_aio.ENDPOINT, region_name="us-east-1",
                          aws_access_key_id=swift_aio.PROBE_USER,
                          aws_secret_access_key=swift_aio.PROBE_KEY)
    client.delete_object(Bucket="glimpse-test", Key=key)

"""The import plugins (docs/import-plugins.md) through a real ``glimpse serve``: a gzipped
image staged with glance-direct is stored decompressed, a qcow2 one converted to raw by
qemu-img, properties injected for a member and not for an admin, and a decompression bomb
ends the import with the image back in ``queued``, a task naming the cause and no data."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.disk_images import qemu_img
from tests.e2e.identity import tenant
from tests.e2e.server import GlimpseServer
from tests.e2e.test_v2_import import create, settled, stage, start_import, tasks_of, wait

pytestmark = pytest.mark.e2e

OWNER = tenant("import-owner")
ADMIN = tenant("import-admin", roles="admin")
GLANCE_DIRECT = {"method": {"name": "glance-direct"}}
DATA = os.urandom(200_000) + bytes(300_000)  # some of it compresses
BOMB_LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server() -> Iterator[GlimpseServer]:
    running = GlimpseServer({
        "import_decompress": "true", "import_decompress_max_size": str(BOMB_LIMIT),
        "import_convert_to": "raw", "import_inject_properties": "origin:imported,tier:bronze",
        "upload_heartbeat_interval": "0.3", "stale_upload_timeout": "3"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        yield client


def imported(api: httpx.Client, data: bytes, headers: dict[str, str] = OWNER,
             **fields: str) -> dict[str, object]:
    image_id = create(api, headers, **fields)
    assert stage(api, image_id, data, headers).status_code == 204
    response = start_import(api, image_id, GLANCE_DIRECT, headers)
    assert response.status_code == 202, response.text
    return wait(api, image_id, settled, headers=headers)


def test_a_gzipped_image_is_stored_decompressed_with_properties_injected(
        api: httpx.Client) -> None:
    image = imported(api, gzip.compress(DATA))
    assert image["status"] == "active"
    assert image["size"] == len(DATA)
    assert image["checksum"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert (image["origin"], image["tier"]) == ("imported", "bronze")
    got = api.get(f"/v2/images/{image['id']}/file", headers=OWNER)
    assert got.status_code == 200 and got.content == DATA


def test_an_admins_import_is_not_injected(api: httpx.Client) -> None:
    image = imported(api, gzip.compress(DATA), ADMIN)
    assert image["status"] == "active"
    assert "origin" not in image and "tier" not in image


def test_a_decompression_bomb_ends_the_import_with_nothing_stored(
        api: httpx.Client, server: GlimpseServer) -> None:
    bomb = gzip.compress(bytes(4 * BOMB_LIMIT))
    image = imported(api, bomb)
    assert image["status"] == "queued"
    assert image["os_glance_failed_import"] == "file"
    [task] = tasks_of(api, str(image["id"]))
    assert task["status"] == "failure"
    assert "decompress" in str(task["message"]).lower()
    assert api.get(f"/v2/images/{image['id']}/file", headers=OWNER).status_code == 204
    # Neither the staged data nor any of the decompressed output is left in the store.
    assert not [p for p in (server.data_dir / "images").iterdir() if str(image["id"]) in p.name]
    assert not list((server.data_dir / "import-scratch").glob("*/*"))


def test_a_qcow2_image_is_converted_to_raw(api: httpx.Client, tmp_path: Path) -> None:
    tool = qemu_img()
    raw = tmp_path / "disk.raw"
    raw.write_bytes(DATA[:196_608] * 4)
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run([tool, "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
                   check=True)
    image = imported(api, qcow2.read_bytes(), disk_format="qcow2")
    assert image["status"] == "active", image
    assert image["disk_format"] == "raw"
    assert image["virtual_size"] == image["size"] == raw.stat().st_size
    got = api.get(f"/v2/images/{image['id']}/file", headers=OWNER)
    assert got.content == raw.read_bytes()

"""`glimpse store check` and `glimpse store scrub`: the stores against the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.filesystem_store

HEADERS = {"content-type": "application/octet-stream", "x-image-meta-disk_format": "raw",
           "x-image-meta-container_format": "bare"}


def store_command(data_dir: Path, *args: str, **settings: str) -> tuple[int, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env["GLIMPSE_DATA_DIR"] = str(data_dir)
    env.update({f"GLIMPSE_{k.upper()}": v for k, v in settings.items()})
    result = subprocess.run([sys.executable, "-m", "glimpse", "store", *args], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return result.returncode, report


def upload(url: str, data: bytes) -> str:
    resp = httpx.post(url + "/v1/images", content=data, headers=HEADERS, timeout=30)
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["image"]["id"]
    return image_id


def test_check_finds_and_repairs(tmp_path: Path) -> None:
    srv = GlimpseServer(data_dir=tmp_path)
    try:
        healthy = upload(srv.url, b"healthy" * 1000)
        lost = upload(srv.url, b"lost" * 1000)
        rotten = upload(srv.url, b"rotten" * 1000)
        store = tmp_path / "images"
        code, report = store_command(tmp_path, "check")
        assert code == 0 and report["orphans"] == [] and report["images_checked"] == 3

        orphan = str(uuid.uuid4())
        (store / orphan).write_bytes(b"nobody owns me")
        (store / lost).unlink()
        (store / rotten).write_bytes(b"ROTTEN" * 1000)  # same size, other bytes

        code, report = store_command(tmp_path, "check")
        assert code == 1
        assert report["orphans"] == [f"file/{orphan}"]
        assert report["missing"] == [lost]
        assert report["corrupt"] == []  # same size: only --verify reads the data

        code, report = store_command(tmp_path, "check", "--verify")
        assert code == 1 and report["corrupt"] == [rotten]

        code, report = store_command(tmp_path, "check", "--verify", "--repair")
        assert code == 0 and report["repaired"] == 3
        assert not (store / orphan).exists()
        for image_id, status in ((lost, "killed"), (rotten, "killed"), (healthy, "active")):
            head = httpx.head(f"{srv.url}/v1/images/{image_id}")
            assert head.headers["x-image-meta-status"] == status
        code, report = store_command(tmp_path, "check", "--verify")
        assert code == 0 and report["orphans"] == report["missing"] == report["corrupt"] == []
    finally:
        srv.stop()


def test_scrub_finishes_delayed_deletes(tmp_path: Path) -> None:
    srv = GlimpseServer({"delayed_delete": "true"}, data_dir=tmp_path)
    try:
        image_id = upload(srv.url, b"x" * 5000)
        assert httpx.delete(f"{srv.url}/v1/images/{image_id}").status_code == 200
        head = httpx.head(f"{srv.url}/v1/images/{image_id}")
        assert head.headers["x-image-meta-status"] == "pending_delete"
        assert (tmp_path / "images" / image_id).exists()
        code, report = store_command(tmp_path, "check", delayed_delete="true")
        assert code == 0 and report["orphans"] == []  # pending data is still owned
        code, report = store_command(tmp_path, "scrub", delayed_delete="true")
        assert code == 0 and report["scrubbed"] == [image_id]
        assert not (tmp_path / "images" / image_id).exists()
        head = httpx.head(f"{srv.url}/v1/images/{image_id}")
        assert head.headers["x-image-meta-status"] == "deleted"
    finally:
        srv.stop()

"""The operator interface: `glimpse serve` and `glimpse db upgrade`, settings sources, workers."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from glimpse.db.engine import HEAD_REVISION
from tests.e2e.server import GlimpseServer, free_port


def glimpse(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> (
    subprocess.CompletedProcess[str]
):
    base = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    return subprocess.run(
        [sys.executable, "-m", "glimpse", *args], env={**base, **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_refuses_unauthenticated_non_loopback_bind(tmp_path: Path) -> None:
    result = glimpse("serve", "--host", "0.0.0.0", "--port", str(free_port()),
                     env={"GLIMPSE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "refusing to serve without authentication" in result.stderr
    assert "--allow-unauthenticated-remote" in result.stderr


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    result = glimpse("serve", env={"GLIMPSE_DATA_DIR": str(tmp_path),
                                   "GLIMPSE_IMAGE_SIZE_CAP": "lots"})
    assert result.returncode == 2
    assert "configuration error" in result.stderr and "lots" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = glimpse("db", "upgrade", env={"GLIMPSE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "glimpse.sqlite") as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        version = conn.execute("select version_num from alembic_version").fetchone()[0]
    assert {"images", "image_properties", "image_members"} <= tables
    assert version == HEAD_REVISION
    again = glimpse("db", "upgrade", env={"GLIMPSE_DATA_DIR": str(tmp_path)})
    assert again.returncode == 0


def _children(pid: int) -> list[str]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return found


def test_a_server_that_created_its_schema_runs_alone(tmp_path: Path) -> None:
    """The schema is made in a child process that ends: nothing of it stays beside the server
    (multiprocessing's spawn left its resource tracker running, 13 MiB for the server's life),
    and the database URL, which may hold a password, is not on any command line."""
    db_file = tmp_path / "new.sqlite"
    srv = GlimpseServer({"database_url": f"sqlite:///{db_file}"}, data_dir=tmp_path / "data")
    try:
        assert httpx.get(f"{srv.url}/v2/images", headers={"X-Roles": "admin"}).status_code == 200
        with sqlite3.connect(db_file) as conn:
            version = conn.execute("select version_num from alembic_version").fetchone()[0]
        assert version == HEAD_REVISION
        assert _children(srv.process.pid) == []
    finally:
        srv.stop()


def test_database_url_and_config_file(tmp_path: Path) -> None:
    db_file = tmp_path / "elsewhere.sqlite"
    config = tmp_path / "glimpse.toml"
    config.write_text('[glimpse]\nimage_property_quota = 1\nlimit_param_default = 2\n')
    srv = GlimpseServer({"database_url": f"sqlite:///{db_file}", "image_property_quota": "5"},
                        data_dir=tmp_path / "data")
    try:
        resp = httpx.post(srv.url + "/v1/images", headers={
            **{f"x-image-meta-property-p{i}": "v" for i in range(6)}})
        assert resp.status_code == 413 and "Maximum: 5" in resp.text
    finally:
        srv.stop()
    assert db_file.exists()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "glimpse", "serve", "--config", str(config), "--port", str(port)],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")},
             "GLIMPSE_DATA_DIR": str(tmp_path / "data2")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(url + "/versions", timeout=1)
                break
            except httpx.HTTPError:
                proc.poll()
                import time

                time.sleep(0.05)
        resp = httpx.post(url + "/v1/images", headers={
            "x-image-meta-property-a": "1", "x-image-meta-property-b": "2"})
        assert resp.status_code == 413 and "Maximum: 1" in resp.text
    finally:
        proc.terminate()
        proc.wait(10)


def test_request_log_line_carries_the_request_id(server: GlimpseServer) -> None:
    resp = httpx.get(server.url + "/v1/images")
    rid = resp.headers["x-openstack-request-id"]
    log = ""
    for _ in range(50):
        log = server.log()
        if rid in log:
            break
    line = next(line for line in log.splitlines() if rid in line)
    assert "GET /v1/images 200" in line


def test_several_workers_serve_the_same_images(tmp_path: Path) -> None:
    srv = GlimpseServer({"workers": "2"}, data_dir=tmp_path)
    try:
        def create(i: int) -> tuple[int, str]:
            body = f"image number {i}".encode() * 100
            r = httpx.post(srv.url + "/v1/images", content=body, headers={
                "content-type": "application/octet-stream", "x-image-meta-name": f"w{i}",
                "x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
                "x-image-meta-property-tag": "workers"}, timeout=30)
            assert r.status_code == 201, r.text
            return i, r.json()["image"]["id"]

        with ThreadPoolExecutor(8) as pool:
            created = list(pool.map(create, range(40)))
        listed = httpx.get(srv.url + "/v1/images/detail",
                           params={"property-tag": "workers", "is_public": "none",
                                   "limit": "100"}).json()["images"]
        assert {i["id"] for i in listed} == {iid for _, iid in created}
        assert all(i["status"] == "active" for i in listed)
        for i, iid in created[:10]:
            got = httpx.get(f"{srv.url}/v1/images/{iid}")
            assert got.status_code == 200 and got.content == f"image number {i}".encode() * 100
    finally:
        srv.stop()

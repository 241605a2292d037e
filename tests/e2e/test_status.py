"""`glimpse status` as an operator runs it: the real command, on a terminal and piped, next to a
running `glimpse serve` with an upload in flight, and with its database down."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import GlimpseServer, free_port
from tests.e2e.terminal import glimpse_env, in_terminal, piped

pytestmark = pytest.mark.filesystem_store

HOSTILE_NAME = "\x1b[2J\x1b]0;owned\x07\x1b[31mred"


class SlowUpload:
    """A v2 upload that sends a little data and then waits: the image stays ``saving``."""

    def __init__(self, url: str, image_id: str) -> None:
        self.sent = threading.Event()
        self.release = threading.Event()
        self.status = 0
        self._thread = threading.Thread(target=self._run, args=(url, image_id), daemon=True)
        self._thread.start()
        assert self.sent.wait(10)

    def _chunks(self) -> Iterator[bytes]:
        yield b"x" * 65536
        self.sent.set()
        self.release.wait(30)
        yield b"y" * 65536

    def _run(self, url: str, image_id: str) -> None:
        resp = httpx.put(f"{url}/v2/images/{image_id}/file", content=self._chunks(),
                         headers={"content-type": "application/octet-stream"}, timeout=60)
        self.status = resp.status_code

    def finish(self) -> int:
        self.release.set()
        self._thread.join(30)
        return self.status


def test_status_next_to_a_running_server(tmp_path: Path) -> None:
    srv = GlimpseServer(data_dir=tmp_path)
    upload = None
    try:
        for data in (b"a" * 1000, b"b" * 2000):
            resp = httpx.post(srv.url + "/v1/images", content=data, headers={
                "content-type": "application/octet-stream", "x-image-meta-disk_format": "raw",
                "x-image-meta-container_format": "bare"})
            assert resp.status_code == 201
        made = httpx.post(srv.url + "/v2/images", json={
            "name": HOSTILE_NAME, "disk_format": "raw", "container_format": "bare"})
        assert made.status_code == 201, made.text
        image_id = made.json()["id"]
        upload = SlowUpload(srv.url, image_id)
        env = glimpse_env(tmp_path)

        code, output = in_terminal(["status"], env)
        assert code == 0, output
        assert "Traceback" not in output
        assert f"yes: 1 process(es) (pid {srv.process.pid})" in output
        assert "database       ok" in output and "(current)" in output
        assert "file*" in output and "filesystem  free " in output
        assert "images         3: active 2, saving 1" in output
        assert "uploads        1 in flight, 0 stale" in output
        # The name a client chose is shown escaped: it cannot clear the screen or retitle
        # the window. (The report itself writes no escape sequence at all.)
        assert '"\\x1b[2J\\x1b]0;owned\\x07\\x1b[31mred"  running, heartbeat' in output
        assert "\x1b" not in output and "\x07" not in output
        assert output.endswith("status: ok\n")

        result = piped(["status", "--json"], env)
        assert result.returncode == 0 and result.stderr == ""
        report = json.loads(result.stdout)
        assert report["healthy"] is True and report["problems"] == []
        assert [(i["pid"], i["alive"]) for i in report["incarnations"]] == [
            (srv.process.pid, True)]
        [flight] = report["uploads"]
        assert (flight["image_id"], flight["name"], flight["process"]) == (
            image_id, HOSTILE_NAME, "running")
        assert report["images"] == {"active": 2, "saving": 1}
        assert upload.finish() == 204
        upload = None
    finally:
        if upload is not None:
            upload.finish()
        srv.stop()

    # The server stopped cleanly: its incarnation is gone, nothing is down.
    result = piped(["status", "--json"], glimpse_env(tmp_path))
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    assert report["incarnations"] == [] and report["uploads"] == []
    assert report["warnings"] == ["no glimpse serve process of this node is running"]
    assert report["images"] == {"active": 3}


def test_status_with_the_database_down(tmp_path: Path) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    port = free_port()  # nothing listens there: every connection is refused
    env = glimpse_env(tmp_path, database_url=f"postgresql+psycopg://glimpse:{secret}"
                                             f"@127.0.0.1:{port}/glimpse")
    code, output = in_terminal(["status"], env)
    assert code == 1, output
    assert "Traceback" not in output and secret not in output
    assert f"database       DOWN  postgresql+psycopg://127.0.0.1:{port}/glimpse" in output
    assert "  - database unavailable: " in output
    assert output.endswith("status: DOWN\n")

    result = piped(["status", "--json"], env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and secret not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["database"]["reachable"] is False and report["healthy"] is False
    assert report["images"] is None

    # The store commands say so in one line too.
    result = piped(["store", "check"], env)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.startswith("glimpse: store check failed: the database did not answer")
    assert "Traceback" not in result.stderr and secret not in result.stderr

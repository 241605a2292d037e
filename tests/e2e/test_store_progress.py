"""`glimpse store check --verify` and `store scrub` show their progress on a terminal, and
nothing but their report when piped; what they print cannot drive the terminal or leak a
store's credentials."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import GlimpseServer
from tests.e2e.terminal import ERASE, glimpse_env, in_terminal, piped

pytestmark = pytest.mark.filesystem_store

HEADERS = {"content-type": "application/octet-stream", "x-image-meta-disk_format": "raw",
           "x-image-meta-container_format": "bare"}
SIZES = (300_000, 200_000, 100_000, 50_000)


def upload(url: str, data: bytes) -> str:
    resp = httpx.post(url + "/v1/images", content=data, headers=HEADERS, timeout=30)
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["image"]["id"]
    return image_id


def report_of(output: str) -> dict[str, object]:
    """The JSON report among a terminal's output (the progress lines come before it)."""
    start = output.index("{\n")
    end = output.rindex("}") + 1
    document: dict[str, object] = json.loads(output[start:end])
    return document


def test_check_verify_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    srv = GlimpseServer(data_dir=tmp_path)
    try:
        ids = [upload(srv.url, bytes([i]) * size) for i, size in enumerate(SIZES)]
    finally:
        srv.stop()
    env = glimpse_env(tmp_path)

    code, output = in_terminal(["store", "check", "--verify"], env)
    assert code == 0, output
    assert "Traceback" not in output
    # Drawn in place (a carriage return, the line, erase to its end) and then summed up.
    assert "\rverifying images  0/4 images  0 B/634.8 KiB" in output
    assert ERASE in output
    summary = re.search(r"verifying images: 4 images, 634\.8 KiB in [0-9.]+ s \(.+/s\)\n",
                        output)
    assert summary, output
    assert re.search(r"listing store file: 4 objects in [0-9.]+ s", output), output
    report = report_of(output)
    assert report["images_checked"] == 4 and report["missing"] == report["corrupt"] == []

    result = piped(["store", "check", "--verify"], env)
    assert result.returncode == 0
    assert result.stderr == ""  # nothing but the report: no progress, no escapes
    assert json.loads(result.stdout) == report
    assert "\x1b" not in result.stdout and "\r" not in result.stdout

    # Damaged data is still found, and the progress still ends with its summary.
    (tmp_path / "images" / ids[1]).write_bytes(b"\xff" * SIZES[1])
    code, output = in_terminal(["store", "check", "--verify"], env)
    assert code == 1 and report_of(output)["corrupt"] == [ids[1]]
    assert "verifying images: 4 images, " in output


def test_scrub_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    srv = GlimpseServer({"delayed_delete": "true"}, data_dir=tmp_path)
    try:
        ids = [upload(srv.url, b"d" * size) for size in SIZES[:3]]
        for image_id in ids:
            assert httpx.delete(f"{srv.url}/v1/images/{image_id}").status_code == 200
    finally:
        srv.stop()
    env = glimpse_env(tmp_path, delayed_delete="true")
    code, output = in_terminal(["store", "scrub"], env)
    assert code == 0, output
    assert "\rscrubbing images  0/3 images  0 B/585.9 KiB" in output
    assert re.search(r"scrubbing images: 3 images, 585\.9 KiB in [0-9.]+ s", output), output
    assert sorted(report_of(output)["scrubbed"]) == sorted(ids)  # type: ignore[type-var]

    # Nothing left: piped, the report only.
    result = piped(["store", "scrub"], env)
    assert result.returncode == 0 and result.stderr == ""
    assert json.loads(result.stdout) == {"scrubbed": []}


def test_an_object_named_with_escapes_cannot_drive_the_terminal(tmp_path: Path) -> None:
    srv = GlimpseServer(data_dir=tmp_path)
    try:
        upload(srv.url, b"fine" * 100)
    finally:
        srv.stop()
    # A file someone left in the store directory, named to clear the screen and set the
    # window title: reported as an orphan, escaped.
    hostile = "\x1b[2J\x1b]0;owned\x07\x1b[31mred"
    (tmp_path / "images" / hostile).write_bytes(b"x")
    code, output = in_terminal(["store", "check"], glimpse_env(tmp_path))
    assert code == 1, output
    assert "\x1b[2J" not in output and "\x1b]0" not in output and "\x07" not in output
    assert "\x1b[31m" not in output
    assert report_of(output)["orphans"] == [f"file/{hostile}"]


def test_a_store_that_fails_is_one_line_without_its_credentials(tmp_path: Path) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    config = tmp_path / "glimpse.toml"
    # Nothing listens on port 9 of loopback: the store cannot be listed.
    config.write_text(
        "[stores.remote]\n"
        'driver = "swift"\n'
        f'auth_url = "http://admin:{secret}@127.0.0.1:9/auth/v1.0"\n'
        'user = "test:tester"\n'
        f'key = "{secret}"\n'
        "retries = 0\n"
        "timeout = 2\n"
    )
    pytest.importorskip("swiftclient", reason="the swift store's library (glimpse[swift])")
    env = glimpse_env(tmp_path)
    result = piped(["--config", str(config), "store", "check"], env)
    assert result.returncode == 3, result
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("glimpse: store check failed: ")
    assert result.stderr.count("\n") == 1
    assert secret not in result.stderr + result.stdout
    assert result.stdout == ""


def test_ctrl_c_clears_the_line_and_says_so(tmp_path: Path) -> None:
    srv = GlimpseServer(data_dir=tmp_path)
    try:
        for i in range(3):  # enough to read that it is still verifying when Ctrl-C comes
            upload(srv.url, bytes([i]) * (48 << 20))
    finally:
        srv.stop()
    code, output = in_terminal(["store", "check", "--verify"], glimpse_env(tmp_path),
                               type_when=("verifying images  0/3", b"\x03"))
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    # The progress line erased, no summary, and the interruption said on a clean line.
    assert output.endswith(f"\r{ERASE}glimpse: store check interrupted\n"), output[-300:]
    assert "verifying images:" not in output

"""Quotas from Keystone's unified limits (spec identity.md §7 case 12), against the real
Keystone of scripts/keystone and real ``glimpse serve`` processes.

Each module-scoped catalog service (tests/keystone.py LimitsService) carries its own
registered limits, so these tests change nobody else's. Concurrent clients race creates and
uploads against the limits on every database (SQLite, PostgreSQL, MariaDB).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests import databases, keystone
from tests.e2e.identity import tenant
from tests.e2e.server import GlimpseServer, free_port
from tests.e2e.store_objects import stored

pytestmark = pytest.mark.e2e

MiB = 1 << 20
FORMATS = {"disk_format": "raw", "container_format": "bare"}
V1_FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
OCTETS = {"Content-Type": "application/octet-stream"}
CASE_12 = {"image_count_total": 2, "image_size_total": 1, "image_count_uploading": 1,
           "image_stage_total": 0}


@dataclasses.dataclass(frozen=True)
class Project:
    """A fresh Keystone project with a member user: its usage starts at nothing."""

    project_id: str
    user: str
    password: str
    name: str

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": keystone.token_for(self.user, self.password, self.name)}


@pytest.fixture(scope="module")
def case_12() -> Iterator[keystone.LimitsService]:
    keystone.require_limits()
    service = keystone.LimitsService(CASE_12)
    yield service
    service.remove()


def limits_settings(service: keystone.LimitsService, **extra: object) -> dict[str, str]:
    return keystone.glimpse_settings(
        use_keystone_limits="true", keystone_limits_endpoint_id=service.endpoint_id,
        keystone_limits_cache_time=0, log_level="debug", **extra)


@pytest.fixture(scope="module")
def server(case_12: keystone.LimitsService) -> Iterator[GlimpseServer]:
    srv = GlimpseServer(limits_settings(case_12))
    yield srv
    log = srv.log()
    srv.stop()
    assert keystone.TOKEN_MARK not in log and keystone.PASSWORD not in log


@pytest.fixture
def project() -> Project:
    keystone.require_limits()
    name = f"glimpse-limits-{uuid.uuid4().hex[:10]}"
    project_id = keystone.ensure_project(name)
    user, password = f"{name}-user", f"{name}-Pw-x7Qz"
    keystone.ensure_user(user, password, project_id, "member")
    return Project(project_id, user, password, name)


def v2_create(srv: GlimpseServer, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{srv.url}/v2/images", json={"name": "q", **FORMATS}, headers=headers,
                      timeout=30)


def v1_create(srv: GlimpseServer, headers: dict[str, str], body: bytes | None = None,
              **extra: str) -> httpx.Response:
    sent = {"x-image-meta-name": "q", **V1_FORMATS, **extra, **headers}
    if body is not None:
        sent.update(OCTETS)
    return httpx.post(f"{srv.url}/v1/images", headers=sent, content=body, timeout=30)


def v2_put(srv: GlimpseServer, image_id: str, body: bytes | Iterator[bytes],
           headers: dict[str, str]) -> httpx.Response:
    return httpx.put(f"{srv.url}/v2/images/{image_id}/file", content=body,
                     headers={**headers, **OCTETS}, timeout=60)


def v2_show(srv: GlimpseServer, image_id: str, headers: dict[str, str]) -> dict[str, Any]:
    answer = httpx.get(f"{srv.url}/v2/images/{image_id}", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    return shown


def pieces(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """``data`` as a chunked body (no Content-Length)."""
    for at in range(0, len(data), size):
        yield data[at:at + size]


def usage(srv: GlimpseServer, headers: dict[str, str]) -> dict[str, dict[str, int]]:
    answer = httpx.get(f"{srv.url}/v2/info/usage", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    found: dict[str, dict[str, int]] = answer.json()["usage"]
    return found


def assert_413(answer: httpx.Response, resource: str) -> None:
    assert answer.status_code == 413, answer.text
    assert "rate limiting or a quota threshold was breached" in answer.text, answer.text
    assert f"Resource {resource} is over limit" in answer.text, answer.text


# --- §7.12 ------------------------------------------------------------------------------------

def test_the_third_create_is_413_on_both_apis_and_usage_says_why(
        server: GlimpseServer, project: Project) -> None:
    headers = project.headers()
    assert usage(server, headers) == {
        "image_size_total": {"limit": 1, "usage": 0},
        "image_stage_total": {"limit": 0, "usage": 0},
        "image_count_total": {"limit": 2, "usage": 0},
        "image_count_uploading": {"limit": 1, "usage": 0},
    }
    assert v2_create(server, headers).status_code == 201
    assert v1_create(server, headers).status_code == 201
    refused = v2_create(server, headers)
    assert_413(refused, "image_count_total")
    assert f"Project {project.project_id} is over a limit" in refused.text
    assert "over limit of 2 due to current usage 2 and delta 1" in refused.text
    assert_413(v1_create(server, headers), "image_count_total")
    # Nothing was created by the refusals.
    # (Other tests' public images share the database on PostgreSQL and MariaDB runs.)
    listed = [image for image in httpx.get(f"{server.url}/v2/images", headers=headers,
                                           timeout=30).json()["images"]
              if image["owner"] == project.project_id]
    assert len(listed) == 2
    assert usage(server, headers)["image_count_total"] == {"limit": 2, "usage": 2}
    # A deleted image frees its count.
    httpx.delete(f"{server.url}/v2/images/{listed[0]['id']}", headers=headers, timeout=30)
    assert v2_create(server, headers).status_code == 201


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_v2_upload_past_1_mib_is_cut_413_and_the_image_queued(
        server: GlimpseServer, project: Project, chunked: bool) -> None:
    headers = project.headers()
    image_id = v2_create(server, headers).json()["id"]
    data = b"x" * (MiB + 1)
    answer = v2_put(server, image_id, pieces(data) if chunked else data, headers)
    assert_413(answer, "image_size_total")
    image = v2_show(server, image_id, headers)
    assert (image["status"], image["size"], image["checksum"]) == ("queued", None, None)
    assert stored(server, image_id) == []
    assert usage(server, headers)["image_count_uploading"]["usage"] == 0
    # Exactly the limit fits.
    assert v2_put(server, image_id, pieces(data[:MiB]), headers).status_code == 204
    assert v2_show(server, image_id, headers)["size"] == MiB
    assert usage(server, headers)["image_size_total"] == {"limit": 1, "usage": 1}
    # Nothing is left for another image.
    other = v2_create(server, headers).json()["id"]
    assert_413(v2_put(server, other, pieces(b"y"), headers), "image_size_total")


def test_a_v1_upload_past_1_mib_is_cut_413_and_the_image_killed(
        server: GlimpseServer, project: Project) -> None:
    headers = project.headers()
    image_id = v1_create(server, headers).json()["image"]["id"]
    answer = httpx.put(f"{server.url}/v1/images/{image_id}", timeout=60,
                       content=pieces(b"x" * (MiB + 64 * 1024)), headers={**headers, **OCTETS})
    assert_413(answer, "image_size_total")
    head = httpx.head(f"{server.url}/v1/images/{image_id}", headers=headers, timeout=30)
    assert head.headers["x-image-meta-status"] == "killed"
    assert stored(server, image_id) == []
    # A body sent with the create, over the limit by its Content-Length: refused before any
    # byte is stored, the image killed.
    refused = v1_create(server, headers, b"z" * (MiB + 1))
    assert_413(refused, "image_size_total")
    # Killed images are listed only with changes-since.
    listed = [image for image in httpx.get(
        f"{server.url}/v1/images/detail", headers=headers, timeout=30,
        params={"changes-since": "2000-01-01T00:00:00"}).json()["images"]
        if image["owner"] == project.project_id]
    assert sorted(i["status"] for i in listed) == ["killed", "killed"], listed
    assert all(stored(server, i["id"]) == [] for i in listed)


def test_a_second_concurrent_upload_is_413(server: GlimpseServer, project: Project) -> None:
    headers = project.headers()
    first, second = (v2_create(server, headers).json()["id"] for _ in range(2))
    started, release = threading.Event(), threading.Event()

    def slow() -> Iterator[bytes]:
        yield b"a" * 1024
        started.set()
        release.wait(30)
        yield b"b" * 1024

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(v2_put, server, first, slow(), headers)
        assert started.wait(30)
        deadline = time.monotonic() + 10
        while v2_show(server, first, headers)["status"] != "saving":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert usage(server, headers)["image_count_uploading"] == {"limit": 1, "usage": 1}
        refused = v2_put(server, second, b"c" * 10, headers)
        assert_413(refused, "image_count_uploading")
        release.set()
        assert running.result().status_code == 204
    assert v2_show(server, second, headers)["status"] == "queued"
    assert v2_put(server, second, b"c" * 10, headers).status_code == 204


def test_a_project_limit_overrides_the_registered_one_and_minus_one_is_unlimited(
        server: GlimpseServer, project: Project, case_12: keystone.LimitsService) -> None:
    headers = project.headers()
    for _ in range(2):
        assert v2_create(server, headers).status_code == 201
    assert_413(v2_create(server, headers), "image_count_total")
    case_12.limit(project.project_id, "image_count_total", 3)
    assert v2_create(server, headers).status_code == 201
    assert_413(v2_create(server, headers), "image_count_total")
    case_12.limit(project.project_id, "image_count_total", -1)
    case_12.limit(project.project_id, "image_size_total", -1)
    for _ in range(3):
        assert v2_create(server, headers).status_code == 201
    found = usage(server, headers)
    assert found["image_count_total"] == {"limit": -1, "usage": 6}
    assert found["image_size_total"]["limit"] == -1
    image_id = v2_create(server, headers).json()["id"]
    assert v2_put(server, image_id, pieces(b"u" * (2 * MiB)), headers).status_code == 204
    # The registered limits still hold for everyone else.
    assert usage(server, project.headers())["image_count_uploading"]["limit"] == 1


# --- outages and configuration ---------------------------------------------------------------

def test_keystone_unreachable_is_503_with_retry_after_never_a_pass() -> None:
    """noauth with unified limits whose Keystone does not answer: the server starts (an outage
    is not a configuration error), quota checks answer 503, reads are unaffected."""
    dead = f"http://127.0.0.1:{free_port()}/v3"
    srv = GlimpseServer({"use_keystone_limits": "true", "keystone_auth_url": dead,
                         "keystone_password": "never-used", "keystone_timeout": "2"})
    try:
        headers = tenant(f"down-{uuid.uuid4().hex[:8]}")
        for answer in (v2_create(srv, headers), v1_create(srv, headers)):
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "5"
        assert httpx.get(f"{srv.url}/v2/images", headers=headers, timeout=30).status_code == 200
        assert httpx.get(f"{srv.url}/v2/info/usage", headers=headers,
                         timeout=30).status_code == 503
        assert "never-used" not in srv.log()
    finally:
        srv.stop()


def test_an_unknown_endpoint_does_not_start() -> None:
    keystone.require_limits()
    env = {f"GLIMPSE_{k.upper()}": v for k, v in keystone.glimpse_settings(
        use_keystone_limits="true", keystone_limits_endpoint_id="no-such-endpoint").items()}
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port",
                           str(free_port())], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "no endpoint no-such-endpoint" in done.stderr
    assert keystone.PASSWORD not in done.stderr + done.stdout


# --- concurrent clients on every database ------------------------------------------------------

RACE = {"image_count_total": 3, "image_size_total": 1, "image_count_uploading": -1,
        "image_stage_total": 0}


@pytest.fixture(scope="module", params=databases.ENGINES)
def race_server(request: pytest.FixtureRequest) -> Iterator[GlimpseServer]:
    keystone.require_limits()
    service = keystone.LimitsService(RACE)
    try:
        for url in databases.or_skip(request.param):
            settings = {"use_keystone_limits": "true",
                        "keystone_limits_endpoint_id": service.endpoint_id,
                        "keystone_auth_url": keystone.AUTH_URL,
                        "keystone_username": keystone.USER,
                        "keystone_password": keystone.PASSWORD,
                        "keystone_limits_cache_time": "60"}
            settings["database_url"] = url
            srv = GlimpseServer(settings)
            try:
                yield srv
            finally:
                srv.stop()
    finally:
        service.remove()


def test_concurrent_creates_cannot_pass_the_count(race_server: GlimpseServer) -> None:
    headers = tenant(f"race-{uuid.uuid4().hex[:8]}")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: v2_create(race_server, headers), range(8)))
    assert sorted(a.status_code for a in answers) == [201] * 3 + [413] * 5
    listed = httpx.get(f"{race_server.url}/v2/images", headers=headers, timeout=30)
    assert len(listed.json()["images"]) == 3


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_concurrent_uploads_cannot_pass_the_size(race_server: GlimpseServer,
                                                 chunked: bool) -> None:
    """Three uploads of 400 KiB race for 1 MiB: at most two fit, and what is stored never
    passes the limit; every refusal is 413 and leaves its image queued with nothing stored."""
    headers = tenant(f"race-{uuid.uuid4().hex[:8]}")
    ids = [v2_create(race_server, headers).json()["id"] for _ in range(3)]
    barrier = threading.Barrier(3)
    data = b"r" * (400 * 1024)

    def upload(image_id: str) -> httpx.Response:
        barrier.wait(30)
        return v2_put(race_server, image_id, pieces(data) if chunked else data, headers)

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(upload, ids))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {204, 413} and 204 in statuses, [a.text for a in answers]
    if not chunked:
        # A declared length reserves exactly itself: two fit, the third cannot.
        assert sorted(statuses) == [204, 204, 413]
    sizes = [v2_show(race_server, i, headers)["size"] or 0 for i in ids]
    assert sum(sizes) <= MiB
    for image_id, answer in zip(ids, answers, strict=True):
        if answer.status_code == 413:
            assert "image_size_total" in answer.text, answer.text
            assert v2_show(race_server, image_id, headers)["status"] == "queued"
            assert stored(race_server, image_id) == []


# --- image_stage_total: glance-direct stages ----------------------------------------------------

@pytest.fixture(scope="module")
def stage_limits() -> Iterator[keystone.LimitsService]:
    keystone.require_limits()
    service = keystone.LimitsService({"image_count_total": 10, "image_size_total": 10,
                                      "image_count_uploading": 3, "image_stage_total": 2})
    yield service
    service.remove()


def v2_stage(srv: GlimpseServer, image_id: str, body: bytes | Iterator[bytes],
             headers: dict[str, str]) -> httpx.Response:
    return httpx.put(f"{srv.url}/v2/images/{image_id}/stage", content=body,
                     headers={**headers, **OCTETS}, timeout=60)


def test_stages_are_held_to_image_stage_total_until_imported(
        stage_limits: keystone.LimitsService, project: Project) -> None:
    srv = GlimpseServer(limits_settings(stage_limits))
    try:
        headers = project.headers()
        first, second = (v2_create(srv, headers).json()["id"] for _ in range(2))
        assert v2_stage(srv, first, b"\x01" * MiB, headers).status_code == 204
        assert usage(srv, headers)["image_stage_total"] == {"limit": 2, "usage": 1}
        # Declared past what remains: 413 before any byte; chunked: cut past it.
        assert_413(v2_stage(srv, second, b"\x02" * (MiB + 1), headers), "image_stage_total")
        assert_413(v2_stage(srv, second, pieces(b"\x02" * (2 * MiB)), headers),
                   "image_stage_total")
        assert v2_show(srv, second, headers)["status"] == "queued"
        # The import ends: its staged bytes are released, and the next stage fits.
        started = httpx.post(f"{srv.url}/v2/images/{first}/import", headers=headers,
                             json={"method": {"name": "glance-direct"}}, timeout=30)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 30
        while v2_show(srv, first, headers)["status"] != "active":
            assert time.monotonic() < deadline, v2_show(srv, first, headers)
            time.sleep(0.1)
        assert usage(srv, headers)["image_stage_total"] == {"limit": 2, "usage": 0}
        assert v2_stage(srv, second, b"\x02" * (2 * MiB), headers).status_code == 204
    finally:
        srv.stop()

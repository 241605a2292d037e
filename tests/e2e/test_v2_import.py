"""v2 interoperable import through real ``glimpse serve`` processes (docs/import.md, spec §3):
stage on one process and import on another (one database, one shared store), web-download
from a local server that drops connections, redirects inward and serves hostile data,
copy-image, every refusal of the spec, the tasks API, and SIGKILL mid-import for each method
(a restarted process ends its predecessor's import; the time to a terminal state is printed).
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.disk_images import qcow2_header
from tests.e2e.identity import tenant
from tests.e2e.import_remote import remote_server
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

OWNER = tenant("import-owner")
OTHER = tenant("import-other")
ADMIN = tenant("import-admin", roles="admin")
OCTETS = {"Content-Type": "application/octet-stream"}
RAW = {"disk_format": "raw", "container_format": "bare"}
# Recovery fast enough for a test: heartbeats every 0.3 s, stale after 3 s.
FAST = {"upload_heartbeat_interval": "0.3", "stale_upload_timeout": "3"}
# After a SIGKILL and a restart on the same node, an import ends within this (restart
# included).
SETTLED_WITHIN = 15.0


# The runs on PostgreSQL/MariaDB and on Swift/S3 (scripts/test) give every process the same
# database and store already.
FILE_STORE = os.environ.get("GLIMPSE_TEST_STORE", "file") == "file"


def shared_settings(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Settings of one process of a fleet: one database and one store shared by every process
    (a SQLite file and a filesystem directory here, as a shared file system would give a
    fleet; the test run's database server and object store when it has them), each process
    with a data directory of its own (a node of its own)."""
    settings = dict(FAST)
    if not os.environ.get("GLIMPSE_TEST_DATABASE_URL"):
        settings["database_url"] = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    if FILE_STORE:
        settings.update(default_store="shared", default_store_driver="filesystem",
                        default_store_directory=str(tmp_path / "shared-images"))
    return {**settings, **extra}


def create(api: httpx.Client, headers: dict[str, str] = OWNER, **body: Any) -> str:
    response = api.post("/v2/images", json={**RAW, "name": "import", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stage(api: httpx.Client, image_id: str, data: bytes, headers: dict[str, str] = OWNER,
          **extra: str) -> httpx.Response:
    return api.put(f"/v2/images/{image_id}/stage", content=data,
                   headers={**headers, **OCTETS, **extra})


def start_import(api: httpx.Client, image_id: str, body: dict[str, Any],
                 headers: dict[str, str] = OWNER, **extra: str) -> httpx.Response:
    return api.post(f"/v2/images/{image_id}/import", json=body, headers={**headers, **extra})


def wait(api: httpx.Client, image_id: str, until: Any, timeout: float = 30.0,
         headers: dict[str, str] = OWNER) -> dict[str, Any]:
    """The image once ``until(image)`` holds (polled)."""
    deadline = time.monotonic() + timeout
    image: dict[str, Any] = {}
    while time.monotonic() < deadline:
        image = api.get(f"/v2/images/{image_id}", headers=headers).json()
        if until(image):
            return image
        time.sleep(0.1)
    raise AssertionError(f"image {image_id} never settled: {image}")


def settled(image: dict[str, Any]) -> bool:
    return image["status"] in ("active", "queued") and image.get(
        "os_glance_importing_to_stores", "") == "" and "os_glance_import_task" not in image


def tasks_of(api: httpx.Client, image_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v2/images/{image_id}/tasks", headers=OWNER)
    assert response.status_code == 200, response.text
    return list(response.json()["tasks"])


@pytest.fixture(scope="module")
def srv() -> Iterator[GlimpseServer]:
    # Another node's imports are its business until its heartbeat is 600 s stale: where the
    # run shares one database (PostgreSQL, MariaDB), this server must not end the imports of
    # the servers the restart tests kill (it has not their stores, and they settle their own).
    server = GlimpseServer({**FAST, "stale_upload_timeout": "600"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(srv: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=60.0) as client:
        yield client


# -- discovery and glance-direct ---------------------------------------------------------------


def test_discovery_lists_the_methods_and_2_6(api: httpx.Client) -> None:
    found = api.get("/v2/info/import", headers=OWNER).json()
    assert found == {"import-methods": {"description": "Import methods available.",
                                        "type": "array",
                                        "value": ["glance-direct", "web-download",
                                                  "copy-image"]}}
    versions = {v["id"] for v in api.get("/versions").json()["versions"]}
    assert {"v2.6", "v2.12"} <= versions


def test_stage_on_one_process_import_on_another(tmp_path: Path) -> None:
    first = GlimpseServer(shared_settings(tmp_path), data_dir=tmp_path / "node-a")
    second = GlimpseServer(shared_settings(tmp_path), data_dir=tmp_path / "node-b")
    data = os.urandom(3 << 20)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as a, \
                httpx.Client(base_url=second.url, timeout=60) as b:
            image_id = create(a)
            assert stage(a, image_id, data).status_code == 204
            staged = b.get(f"/v2/images/{image_id}", headers=OWNER).json()
            assert staged["status"] == "uploading" and staged["size"] == len(data)
            assert staged["checksum"] is None
            # Staged data is not image data yet.
            assert b.get(f"/v2/images/{image_id}/file", headers=OWNER).status_code == 204
            response = start_import(b, image_id, {"method": {"name": "glance-direct"}})
            assert response.status_code == 202 and response.content == b""
            image = wait(a, image_id, settled)
            assert image["status"] == "active", image
            assert image["checksum"] == hashlib.md5(data).hexdigest()
            assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
            assert image["os_glance_failed_import"] == ""
            assert a.get(f"/v2/images/{image_id}/file", headers=OWNER).content == data
            (task,) = tasks_of(a, image_id)
            assert task["status"] == "success" and task["type"] == "api_image_import"
            assert task["input"]["import_req"] == {"method": {"name": "glance-direct"}}
            assert task["request-id"].startswith("req-") and task["user"] == "user-import-owner"
            # Only the image's object stays in the shared store: the staged copy is gone.
            assert not FILE_STORE or sorted(p.name for p in (tmp_path / "shared-images").iterdir()
                          if not p.name.startswith(".")) == [image_id]
    finally:
        first.stop()
        second.stop()


def test_stage_rules(api: httpx.Client) -> None:
    image_id = create(api)
    wrong_type = api.put(f"/v2/images/{image_id}/stage", content=b"x",
                         headers={**OWNER, "Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    # Someone who cannot see the image: 404; a member of a shared image: 403.
    assert stage(api, image_id, b"x", OTHER).status_code == 404
    api.post(f"/v2/images/{image_id}/members", json={"member": "import-other"}, headers=OWNER)
    api.put(f"/v2/images/{image_id}/members/import-other", json={"status": "accepted"},
            headers=OTHER)
    assert stage(api, image_id, b"x", OTHER).status_code == 403
    bad_size = stage(api, image_id, b"abc", **{"x-openstack-image-size": "4"})
    assert bad_size.status_code == 400
    assert api.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "queued"
    good = hashlib.sha256(b"abc").hexdigest()
    wrong_hash = stage(api, image_id, b"abd",
                       **{"OpenStack-Image-Expected-Hash": f"sha256:{good}"})
    assert wrong_hash.status_code == 400 and "sha256" in wrong_hash.text
    assert api.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "queued"
    malformed = stage(api, image_id, b"abc", **{"OpenStack-Image-Expected-Hash": "md5:00"})
    assert malformed.status_code == 400
    assert stage(api, image_id, b"abc",
                 **{"OpenStack-Image-Expected-Hash": f"sha256:{good}"}).status_code == 204
    again = stage(api, image_id, b"abc")
    assert again.status_code == 409


def test_import_refusals(api: httpx.Client, srv: GlimpseServer) -> None:
    image_id = create(api)
    path = f"/v2/images/{image_id}/import"
    for body in ({}, {"method": {}}, {"method": "glance-direct"}, {"method": {"name": "nope"}},
                 {"method": {"name": "glance-direct"}, "all_stores": "yes"},
                 {"method": {"name": "glance-direct"}, "all_stores_must_succeed": 1},
                 {"method": {"name": "glance-direct"}, "all_stores": True, "stores": ["file"]},
                 {"method": {"name": "glance-direct"}, "stores": "file"},
                 {"method": {"name": "web-download"}},
                 {"method": {"name": "glance-download"}}):
        response = api.post(path, json=body, headers=OWNER)
        assert response.status_code == 400, (body, response.text)
    both = api.post(path, json={"method": {"name": "glance-direct"}, "stores": ["file"]},
                    headers={**OWNER, "X-Image-Meta-Store": "file"})
    assert both.status_code == 400
    # One store only: all_stores_must_succeed=false means nothing here.
    lax = api.post(path, json={"method": {"name": "glance-direct"},
                               "all_stores_must_succeed": False}, headers=OWNER)
    assert lax.status_code == 400
    # glance-direct needs staged data (uploading); copy-image an active image.
    assert api.post(path, json={"method": {"name": "glance-direct"}},
                    headers=OWNER).status_code == 409
    assert api.post(path, json={"method": {"name": "copy-image"}, "stores": ["file"]},
                    headers=ADMIN).status_code == 409
    # An unknown store: 409.
    stage(api, image_id, b"data")
    unknown = api.post(path, json={"method": {"name": "glance-direct"}, "stores": ["nowhere"]},
                       headers=OWNER)
    assert unknown.status_code == 409
    # Invisible: 404; copy-image without admin: 403.
    assert api.post(path, json={"method": {"name": "glance-direct"}},
                    headers=OTHER).status_code == 404
    assert api.post(path, json={"method": {"name": "copy-image"}, "stores": ["file"]},
                    headers=OWNER).status_code == 403
    # No formats: 409 (the image may be created without them).
    bare = api.post("/v2/images", json={"name": "no-formats"}, headers=OWNER).json()["id"]
    stage(api, bare, b"data")
    assert api.post(f"/v2/images/{bare}/import", json={"method": {"name": "glance-direct"}},
                    headers=OWNER).status_code == 409
    # Not JSON, or a JSON array: 400; nothing changed.
    assert api.post(path, content=b"[1]", headers={**OWNER, "Content-Type":
                                                    "application/json"}).status_code == 400
    assert api.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "uploading"
    assert "Traceback" not in srv.log()


def test_import_into_a_named_store_with_the_header(api: httpx.Client) -> None:
    image_id = create(api)
    stage(api, image_id, b"to the file store")
    response = start_import(api, image_id, {"method": {"name": "glance-direct"}},
                            **{"X-Image-Meta-Store": "file"})
    assert response.status_code == 202
    assert wait(api, image_id, settled)["status"] == "active"


def test_tasks_api_is_admin_only_and_pages(api: httpx.Client) -> None:
    image_id = create(api)
    stage(api, image_id, b"task data")
    start_import(api, image_id, {"method": {"name": "glance-direct"}})
    wait(api, image_id, settled)
    (task,) = tasks_of(api, image_id)
    assert api.get("/v2/tasks", headers=OWNER).status_code == 403
    assert api.get(f"/v2/tasks/{task['id']}", headers=OWNER).status_code == 403
    shown = api.get(f"/v2/tasks/{task['id']}", headers=ADMIN).json()
    assert shown["status"] == "success" and shown["schema"] == "/v2/schemas/task"
    assert shown["self"] == f"/v2/tasks/{task['id']}" and shown["result"] == {
        "image_id": image_id}
    assert api.delete(f"/v2/tasks/{task['id']}", headers=ADMIN).status_code == 405
    page = api.get("/v2/tasks?limit=1&status=success", headers=ADMIN).json()
    assert len(page["tasks"]) == 1 and "input" not in page["tasks"][0]
    assert page["next"].startswith("/v2/tasks?") and "marker=" in page["next"]
    assert api.get("/v2/tasks?status=bogus", headers=ADMIN).status_code == 400
    assert api.get("/v2/tasks?sort_dir=up", headers=ADMIN).status_code == 400
    assert api.get(f"/v2/tasks/{image_id}", headers=ADMIN).status_code == 404
    assert api.get(f"/v2/images/{image_id}/tasks", headers=OTHER).status_code == 404
    for name in ("task", "tasks"):
        schema = api.get(f"/v2/schemas/{name}", headers=OWNER).json()
        assert schema["name"] == name


# -- web-download ---------------------------------------------------------------------------


def test_web_download_resumes_a_dropped_transfer() -> None:
    data = os.urandom(2 << 20)
    with remote_server("127.0.0.2") as (remote, base):
        remote.objects["/image.raw"] = data
        remote.drops["/image.raw"] = 2  # the first two GETs end halfway
        server = GlimpseServer({**FAST, "external_allowed_networks": "127.0.0.2/32"})
        try:
            with httpx.Client(base_url=server.url, timeout=60) as api:
                image_id = create(api)
                expected = hashlib.sha256(data).hexdigest()
                response = start_import(
                    api, image_id, {"method": {"name": "web-download",
                                               "uri": f"{base}/image.raw"}},
                    **{"OpenStack-Image-Expected-Hash": f"sha256:{expected}"})
                assert response.status_code == 202, response.text
                image = wait(api, image_id, settled)
                assert image["status"] == "active", (image, tasks_of(api, image_id))
                assert api.get(f"/v2/images/{image_id}/file", headers=OWNER).content == data
                ranges = [r for m, p, r in remote.requests if m == "GET"]
                assert ranges[0] is None and ranges[1] is not None and ranges[2] is not None
                assert ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
        finally:
            server.stop()


def test_web_download_gives_up_after_its_retries_and_refuses_inward_addresses() -> None:
    data = os.urandom(1 << 20)
    with remote_server("127.0.0.2") as (remote, base):
        remote.objects["/flaky.raw"] = data
        remote.drops["/flaky.raw"] = 100
        remote.objects["/wrong.raw"] = data
        remote.redirects["/inward"] = "http://127.0.0.1:9/secret"
        remote.redirects["/inward-later"] = "http://[::ffff:127.0.0.1]:9/secret"
        server = GlimpseServer({**FAST, "external_allowed_networks": "127.0.0.2/32",
                                "web_download_retries": "2"})
        try:
            with httpx.Client(base_url=server.url, timeout=60) as api:
                image_id = create(api)
                response = start_import(api, image_id, {"method": {
                    "name": "web-download", "uri": f"{base}/flaky.raw"}})
                assert response.status_code == 202
                image = wait(api, image_id, settled)
                assert image["status"] == "queued"
                assert image["os_glance_failed_import"] == "file"
                (task,) = tasks_of(api, image_id)
                assert task["status"] == "failure" and "3 attempts" in task["message"]
                gets = [p for m, p, _ in remote.requests if m == "GET" and p == "/flaky.raw"]
                assert len(gets) == 3
                # A hash that does not match: failure, nothing kept.
                response = start_import(
                    api, image_id, {"method": {"name": "web-download",
                                               "uri": f"{base}/wrong.raw"}},
                    **{"OpenStack-Image-Expected-Hash": "sha512:" + "0" * 128})
                assert response.status_code == 202
                assert wait(api, image_id, settled)["status"] == "queued"
                assert "sha512" in tasks_of(api, image_id)[0]["message"]
                # Inward addresses, directly or by a redirect: refused when asked for.
                for uri in ("http://127.0.0.1:9/x", f"{base}/inward", f"{base}/inward-later",
                            "http://[::1]/x", "file:///etc/passwd", "http://0x7f000001/x"):
                    refused = start_import(api, image_id, {"method": {"name": "web-download",
                                                                      "uri": uri}})
                    assert refused.status_code == 400, (uri, refused.text)
                assert api.get(f"/v2/images/{image_id}", headers=OWNER).json()[
                    "status"] == "queued"
                assert list((server.data_dir / "images").iterdir()) == []
                assert "Traceback" not in server.log()
        finally:
            server.stop()


def test_web_download_of_hostile_data_fails_the_task() -> None:
    hostile = qcow2_header(backing_file=b"/etc/passwd") + b"\0" * 4096
    with remote_server("127.0.0.2") as (remote, base):
        remote.objects["/evil.qcow2"] = hostile
        remote.objects["/lies.raw"] = hostile  # a qcow2 that says it is raw
        server = GlimpseServer({**FAST, "external_allowed_networks": "127.0.0.2/32"})
        try:
            with httpx.Client(base_url=server.url, timeout=60) as api:
                for path, disk_format in (("/evil.qcow2", "qcow2"), ("/lies.raw", "raw")):
                    image_id = create(api, disk_format=disk_format)
                    start_import(api, image_id, {"method": {"name": "web-download",
                                                            "uri": f"{base}{path}"}})
                    image = wait(api, image_id, settled)
                    assert image["status"] == "queued", image
                    (task,) = tasks_of(api, image_id)
                    assert task["status"] == "failure" and task["message"]
                assert list((server.data_dir / "images").iterdir()) == []
        finally:
            server.stop()


# -- copy-image ------------------------------------------------------------------------------


def test_copy_image_to_another_store(tmp_path: Path) -> None:
    server = GlimpseServer(shared_settings(tmp_path), data_dir=tmp_path / "node")
    data = os.urandom(1 << 20)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            image_id = create(api)
            assert api.put(f"/v2/images/{image_id}/file", content=data,
                           headers={**OWNER, **OCTETS}).status_code == 204
            copy = {"method": {"name": "copy-image"}, "stores": ["file"]}
            response = start_import(api, image_id, copy, ADMIN)
            assert response.status_code == 202, response.text
            image = wait(api, image_id, lambda i: "os_glance_import_task" not in i
                         and i.get("os_glance_importing_to_stores") == "")
            assert image["status"] == "active" and image["os_glance_failed_import"] == ""
            assert (server.data_dir / "images" / image_id).read_bytes() == data
            (task,) = tasks_of(api, image_id)
            assert task["status"] == "success"
            # Already there: 400; with all_stores nothing is left to copy, done at once with
            # the progress keys set (spec §3, TR).
            assert start_import(api, image_id, copy, ADMIN).status_code == 400
            everywhere = {"method": {"name": "copy-image"}, "all_stores": True}
            assert start_import(api, image_id, everywhere, ADMIN).status_code == 202
            image = api.get(f"/v2/images/{image_id}", headers=OWNER).json()
            assert image["os_glance_importing_to_stores"] == ""
            assert image["os_glance_failed_import"] == ""
            assert "os_glance_import_task" not in image
            assert [t["status"] for t in tasks_of(api, image_id)] == ["success", "success"]
    finally:
        server.stop()


def test_parallel_copy_image_requests_take_the_lock_once(tmp_path: Path) -> None:
    """Copy-image requests sent at the same instant: one takes the image's import lock
    (202), every other gets 409 while its copy runs, and one task copies the data."""
    server = GlimpseServer(shared_settings(tmp_path), data_dir=tmp_path / "node")
    data = os.urandom(1 << 20) * 48  # big enough that its copy outlasts the requests
    parties = 8
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            image_id = create(api)
            assert api.put(f"/v2/images/{image_id}/file", content=data,
                           headers={**OWNER, **OCTETS}).status_code == 204
        copy = {"method": {"name": "copy-image"}, "stores": ["file"]}
        start = threading.Barrier(parties, timeout=30)

        def send() -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=60) as own:
                own.get("/versions")  # connected before the barrier: the posts leave together
                start.wait()
                return start_import(own, image_id, copy, ADMIN)

        with ThreadPoolExecutor(parties) as pool:
            responses = list(pool.map(lambda _: send(), range(parties)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [202] + [409] * (parties - 1), [r.text for r in responses]
        with httpx.Client(base_url=server.url, timeout=60) as api:
            image = wait(api, image_id, lambda i: "os_glance_import_task" not in i
                         and i.get("os_glance_importing_to_stores") == "", timeout=120)
            assert image["status"] == "active" and image["os_glance_failed_import"] == ""
            assert (server.data_dir / "images" / image_id).read_bytes() == data
            statuses = sorted(t["status"] for t in tasks_of(api, image_id))
            # The losers' tasks, if recorded, failed; one task copied.
            assert statuses.count("success") == 1
            assert set(statuses) <= {"success", "failure"}
    finally:
        server.stop()


# -- SIGKILL mid-import, for each method ------------------------------------------------------
# Recovery timed in seconds (SETTLED_WITHIN) or by a 3 s heartbeat: the serial pass.


def _kill_and_restart(server: GlimpseServer, settings: dict[str, str],
                      data_dir: Path) -> tuple[GlimpseServer, float]:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    started = time.monotonic()
    return GlimpseServer(settings, data_dir=data_dir), started


def _assert_failed_cleanly(api: httpx.Client, image_id: str, started: float,
                           status: str) -> float:
    image = wait(api, image_id, lambda i: i["status"] == status and settled(i),
                 timeout=SETTLED_WITHIN)
    took = time.monotonic() - started
    assert image["os_glance_failed_import"], image
    tasks = tasks_of(api, image_id)
    assert tasks[0]["status"] == "failure"
    assert "process" in tasks[0]["message"], tasks[0]
    return took


@pytest.mark.serial
def test_sigkill_mid_web_download_then_restart(tmp_path: Path) -> None:
    settings = {**shared_settings(tmp_path), "stale_upload_timeout": "600",
                "external_allowed_networks": "127.0.0.2/32"}
    with remote_server("127.0.0.2") as (remote, base):
        remote.objects["/slow.raw"] = os.urandom(4 << 20)
        remote.trickle.add("/slow.raw")
        server = GlimpseServer(settings, data_dir=tmp_path / "node")
        with httpx.Client(base_url=server.url, timeout=60) as api:
            image_id = create(api)
            start_import(api, image_id, {"method": {"name": "web-download",
                                                    "uri": f"{base}/slow.raw"}})
            wait(api, image_id, lambda i: i["status"] == "importing")
            time.sleep(0.5)
        server, started = _kill_and_restart(server, settings, tmp_path / "node")
        try:
            with httpx.Client(base_url=server.url, timeout=60) as api:
                took = _assert_failed_cleanly(api, image_id, started, "queued")
                assert _store_objects(tmp_path) == []
        finally:
            server.stop()
    print(f"\nweb-download: SIGKILL, restart to terminal state {took:.2f} s")


@pytest.mark.serial
def test_sigkill_mid_glance_direct_then_restart(tmp_path: Path) -> None:
    settings = {**shared_settings(tmp_path), "stale_upload_timeout": "600"}
    took = _kill_mid_import(tmp_path, settings, "glance-direct")
    print(f"\nglance-direct: SIGKILL, restart to terminal state {took:.2f} s")


@pytest.mark.serial
def test_sigkill_mid_copy_image_then_restart(tmp_path: Path) -> None:
    settings = {**shared_settings(tmp_path), "stale_upload_timeout": "600"}
    took = _kill_mid_import(tmp_path, settings, "copy-image")
    print(f"\ncopy-image: SIGKILL, restart to terminal state {took:.2f} s")


@pytest.mark.serial
def test_a_dead_stage_goes_back_to_queued(tmp_path: Path) -> None:
    """A stage whose process is killed mid-body: the image is queued again, its staged bytes
    deleted, once another process of the fleet finds the stage's heartbeat stale."""
    import socket

    first = GlimpseServer(shared_settings(tmp_path), data_dir=tmp_path / "node-a")
    second = GlimpseServer(shared_settings(tmp_path), data_dir=tmp_path / "node-b")
    try:
        with httpx.Client(base_url=second.url, timeout=60) as api:
            image_id = create(api)
            sock = socket.create_connection(("127.0.0.1", first.port), timeout=10)
            sock.sendall((f"PUT /v2/images/{image_id}/stage HTTP/1.1\r\nHost: x\r\n"
                          "X-Tenant-Id: import-owner\r\nX-Roles: member\r\n"
                          "Content-Type: application/octet-stream\r\n"
                          "Content-Length: 10000000\r\n\r\n").encode() + b"x" * 100000)
            wait(api, image_id, lambda i: i["status"] == "uploading")
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
            sock.close()
            image = wait(api, image_id, lambda i: i["status"] == "queued", timeout=20)
            assert image["status"] == "queued"
            assert _store_objects(tmp_path) == []
    finally:
        first.stop()
        second.stop()


def _store_objects(tmp_path: Path) -> list[str]:
    found = []
    for directory in (tmp_path / "shared-images", tmp_path / "node" / "images"):
        if directory.exists():
            found += [p.name for p in directory.iterdir()]
    return found


def _kill_mid_import(tmp_path: Path, settings: dict[str, str], method: str) -> float:
    """Start an import big enough to be killed in the middle of (bigger each time it finished
    first), SIGKILL the server while the task is processing, restart it on the same node."""
    size = 96 << 20
    for _attempt in range(4):
        server = GlimpseServer(settings, data_dir=tmp_path / "node")
        with httpx.Client(base_url=server.url, timeout=120) as api:
            image_id = create(api)
            blob = b"\x5a" * size
            if method == "glance-direct":
                assert stage(api, image_id, blob).status_code == 204
                body: dict[str, Any] = {"method": {"name": method}}
                headers = OWNER
            else:
                api.put(f"/v2/images/{image_id}/file", content=blob, headers={**OWNER, **OCTETS})
                body, headers = {"method": {"name": method}, "stores": ["file"]}, ADMIN
            assert start_import(api, image_id, body, headers).status_code == 202
            time.sleep(0.2)
            running = tasks_of(api, image_id)[0]["status"] == "processing"
        server, started = _kill_and_restart(server, settings, tmp_path / "node")
        try:
            with httpx.Client(base_url=server.url, timeout=60) as api:
                if not running:
                    size *= 2
                    continue
                status = "queued" if method == "glance-direct" else "active"
                took = _assert_failed_cleanly(api, image_id, started, status)
                if method == "glance-direct":
                    assert image_id not in _store_objects(tmp_path)
                    # Back to a state the user can act on: stage and import again.
                    assert stage(api, image_id, b"again").status_code == 204
                    start_import(api, image_id, body, headers)
                    assert wait(api, image_id, settled)["status"] == "active"
                else:
                    # The partial copy is gone; the original is intact.
                    assert not (tmp_path / "node" / "images" / image_id).exists()
                    got = api.get(f"/v2/images/{image_id}/file", headers=OWNER)
                    assert len(got.content) == size
                return took
        finally:
            server.stop()
    pytest.skip("every import finished before the kill: the machine was too fast")


# -- real clients --------------------------------------------------------------------------------


def test_openstacksdk_create_image_with_use_import(srv: GlimpseServer, api: httpx.Client,
                                                   tmp_path: Path) -> None:
    connection = pytest.importorskip("openstack.connection",
                                     reason="openstacksdk is not installed")
    from keystoneauth1 import noauth
    from keystoneauth1 import session as ks_session

    data = os.urandom(300_000)
    path = tmp_path / "sdk.raw"
    path.write_bytes(data)
    session = ks_session.Session(auth=noauth.NoAuth(endpoint=srv.url),
                                 additional_headers=OWNER)
    conn = connection.Connection(session=session, image_endpoint_override=srv.url)
    image = conn.image.create_image(name="sdk-import", filename=str(path), disk_format="raw",
                                    container_format="bare", use_import=True, wait=True,
                                    timeout=60)
    shown = wait(api, image.id, settled)
    assert shown["status"] == "active" and shown["checksum"] == hashlib.md5(data).hexdigest()
    assert tasks_of(api, image.id)[0]["status"] == "success"
    # The SDK's own import call on a second image, staged through the SDK too.
    other = conn.image.create_image(name="sdk-import-2", disk_format="raw",
                                    container_format="bare")
    conn.image.stage_image(other, data=data)
    conn.image.import_image(other, method="glance-direct")
    assert wait(api, other.id, settled)["status"] == "active"


def test_openstack_image_create_import(srv: GlimpseServer, api: httpx.Client,
                                       tmp_path: Path) -> None:
    import json
    import shutil
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "openstack"
    if not cli.exists() and shutil.which("openstack") is None:
        pytest.skip("python-openstackclient is not installed in the test venv")
    data = os.urandom(200_000)
    path = tmp_path / "osc.raw"
    path.write_bytes(data)
    result = subprocess.run(
        [str(cli), "--os-auth-type", "none", "--os-endpoint", srv.url, "image", "create",
         "--import", "--disk-format", "raw", "--container-format", "bare", "--file",
         str(path), "-f", "json", "osc-import"],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("OS_")})
    assert result.returncode == 0, result.stderr
    image_id = json.loads(result.stdout)["id"]
    # OSC without credentials is the anonymous administrator: it owns nothing, admins see all.
    shown = wait(api, image_id, settled, headers=ADMIN)
    assert shown["status"] == "active" and shown["checksum"] == hashlib.md5(data).hexdigest()


# -- Swift and S3 from the all-in-one ---------------------------------------------------------


@pytest.mark.parametrize("driver", ["swift", "s3"])
def test_stage_in_an_object_store_import_elsewhere_then_copy_to_file(
        tmp_path: Path, driver: str) -> None:
    """Staging in Swift (or S3), the store both processes share; the import on the other
    process; then copy-image from that store into the filesystem store."""
    from tests import swift_aio

    swift_aio.require()
    settings = {**shared_settings(tmp_path), **swift_aio.store_env(driver)}
    settings.pop("default_store_directory", None)
    first = GlimpseServer(settings, data_dir=tmp_path / "node-a")
    second = GlimpseServer(settings, data_dir=tmp_path / "node-b")
    data = os.urandom(2 << 20)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as a, \
                httpx.Client(base_url=second.url, timeout=60) as b:
            image_id = create(a)
            assert stage(a, image_id, data).status_code == 204
            assert start_import(b, image_id, {"method": {"name": "glance-direct"}}
                                ).status_code == 202
            image = wait(a, image_id, settled)
            assert image["status"] == "active", (image, tasks_of(a, image_id))
            got = b.get(f"/v2/images/{image_id}/file", headers=OWNER)
            assert got.content == data, (got.status_code, got.text[:300])
            copy = {"method": {"name": "copy-image"}, "stores": ["file"]}
            assert start_import(a, image_id, copy, ADMIN).status_code == 202
            wait(a, image_id, lambda i: "os_glance_import_task" not in i)
            assert (tmp_path / "node-a" / "images" / image_id).read_bytes() == data
            assert [t["status"] for t in tasks_of(a, image_id)] == ["success", "success"]
    finally:
        first.stop()
        second.stop()


def test_legacy_import_task() -> None:
    data = os.urandom(500_000)
    with remote_server("127.0.0.2") as (remote, base):
        remote.objects["/task.raw"] = data
        server = GlimpseServer({**FAST, "external_allowed_networks": "127.0.0.2/32"})
        try:
            with httpx.Client(base_url=server.url, timeout=60) as api:
                def task_body(uri: str, **props: Any) -> dict[str, Any]:
                    return {"type": "import", "input": {
                        "import_from": uri, "import_from_format": "raw",
                        "image_properties": {**RAW, "name": "legacy", **props}}}

                assert api.post("/v2/tasks", json=task_body(f"{base}/task.raw"),
                                headers=OWNER).status_code == 403
                response = api.post("/v2/tasks", json=task_body(f"{base}/task.raw"),
                                    headers=ADMIN)
                assert response.status_code == 201, response.text
                task = response.json()
                assert response.headers["location"].endswith(f"/v2/tasks/{task['id']}")
                deadline = time.monotonic() + 30
                while task["status"] not in ("success", "failure"):
                    assert time.monotonic() < deadline, task
                    time.sleep(0.1)
                    task = api.get(f"/v2/tasks/{task['id']}", headers=ADMIN).json()
                assert task["status"] == "success", task
                image_id = task["result"]["image_id"]
                image = api.get(f"/v2/images/{image_id}", headers=ADMIN).json()
                assert image["status"] == "active" and image["name"] == "legacy"
                assert api.get(f"/v2/images/{image_id}/file", headers=ADMIN).content == data
                # Inward addresses are refused when asked for (Glance bug 2152110); bad input
                # is 400; an unknown host fails the task (or is refused at once).
                for body in (task_body("http://127.0.0.1:9/x"), {"type": "import"},
                             {"type": "export", "input": {}},
                             task_body(f"{base}/task.raw", bogus_field=[1])):
                    refused = api.post("/v2/tasks", json=body, headers=ADMIN)
                    assert refused.status_code == 400, (body, refused.text)
                assert "Traceback" not in server.log()
        finally:
            server.stop()


def test_glance_image_create_via_import(srv: GlimpseServer, api: httpx.Client,
                                        tmp_path: Path) -> None:
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "glance"
    if not cli.exists():
        pytest.skip("python-glanceclient is not installed in the test venv")
    data = os.urandom(150_000)
    path = tmp_path / "glance.raw"
    path.write_bytes(data)
    # The data on stdin: run without a terminal, glanceclient reads it there (and refuses
    # --file beside it).
    with path.open("rb") as stdin:
        result = subprocess.run(
            [str(cli), "--os-image-api-version", "2", "--os-image-url", srv.url,
             "--os-auth-token", "noauth-dummy-token", "image-create-via-import",
             "--disk-format", "raw", "--container-format", "bare", "--name", "glance-import",
             "--import-method", "glance-direct"],
            stdin=stdin, capture_output=True, text=True, timeout=120, check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("OS_")})
    assert result.returncode == 0, result.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in result.stdout.splitlines() if line.startswith("| id ")]
    image_id = rows[0][1]
    shown = wait(api, image_id, settled, headers=ADMIN)
    assert shown["status"] == "active" and shown["checksum"] == hashlib.md5(data).hexdigest()


def _stores_config(tmp_path: Path) -> Path:
    """A settings file with Swift and S3 stores of the all-in-one beside the default
    filesystem store, and a Swift store nothing answers for."""
    from tests import swift_aio

    lines = []
    for name, driver, endpoint in (("swift", "swift", swift_aio.ENDPOINT),
                                   ("s3", "s3", swift_aio.ENDPOINT),
                                   ("broken", "swift", "http://127.0.0.1:9")):
        lines.append(f"[stores.{name}]\ndriver = {driver!r}")
        for key, value in swift_aio.store_options(driver, endpoint).items():
            lines.append(f"{key} = {value!r}")
    path = tmp_path / "glimpse.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.filesystem_store  # the default store is the filesystem one here
def test_copy_image_from_the_filesystem_to_swift_and_s3_and_the_store_options(
        tmp_path: Path) -> None:
    from glimpse.settings import StoreConfig
    from glimpse.stores.registry import build_store
    from tests import swift_aio

    swift_aio.require()
    settings = {**FAST, "default_store": "file", "max_parallel_stores": "2"}
    server = GlimpseServer(settings, data_dir=tmp_path / "node", config=_stores_config(tmp_path))
    data = os.urandom(1 << 20)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            image_id = create(api)
            api.put(f"/v2/images/{image_id}/file", content=data, headers={**OWNER, **OCTETS})
            copy = {"method": {"name": "copy-image"}, "stores": ["swift", "s3"]}
            assert start_import(api, image_id, copy, ADMIN).status_code == 202
            image = wait(api, image_id, lambda i: "os_glance_import_task" not in i)
            assert image["os_glance_failed_import"] == "", tasks_of(api, image_id)
            for name in ("swift", "s3"):
                options = swift_aio.store_options(name)
                store = build_store(StoreConfig(name, name, options), tmp_path)
                assert b"".join(store.open(image_id)) == data
            # A store that fails, allowed to: the image stays active, the failure is shown.
            lax = {"method": {"name": "copy-image"}, "stores": ["broken"],
                   "all_stores_must_succeed": False}
            assert start_import(api, image_id, lax, ADMIN).status_code == 202
            image = wait(api, image_id, lambda i: "os_glance_import_task" not in i)
            assert image["status"] == "active"
            assert image["os_glance_failed_import"] == "broken"
            assert tasks_of(api, image_id)[0]["status"] == "success"
            # Required to: the task fails, naming the store.
            strict = {"method": {"name": "copy-image"}, "stores": ["broken"]}
            assert start_import(api, image_id, strict, ADMIN).status_code == 202
            image = wait(api, image_id, lambda i: "os_glance_import_task" not in i)
            assert image["status"] == "active" and image["os_glance_failed_import"] == "broken"
            failed = tasks_of(api, image_id)[0]
            assert failed["status"] == "failure" and "broken" in failed["message"]
            assert api.get(f"/v2/images/{image_id}/file", headers=OWNER).content == data
    finally:
        server.stop()

"""glance-download (docs/import.md) between real ``glimpse serve`` processes in keystone mode,
on the test Keystone (scripts/keystone start): a second glimpse is the image service of a
region made for this module (``RegionTwo-<hex>``), found through the importing user's
catalog; the data, hashes, formats and copied properties arrive; every refusal is a clear 4xx
(an endpoint leading inward, a bad request) or, as in Glance and Tempest, a failed task naming
the cause (a region or interface the catalog lacks, a remote image missing or not active); a
remote that drops the connection is resumed; a SIGKILL mid-download ends the import; no token
reaches either server's log.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import keystone
from tests.e2e.import_remote import Remote, remote_server
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

USER, PROJECT = "glimpse-e2e-gdl", "glimpse-e2e-gdl"
USER_PASSWORD = f"gdl-Pw-{'x7Qe' * 2}"  # distinctive: searched for in the servers' logs
METHODS = "glance-direct,web-download,copy-image,glance-download"
FAST = {"upload_heartbeat_interval": "0.3", "stale_upload_timeout": "600"}
# The fake image services of the fault tests listen here (the servers allow 127.0.0.0/8).
FAKE_HOST = "127.0.0.3"


class Cloud:
    """The two regions: ``local`` imports from ``remote`` (the image service of ``region``),
    and regions whose image endpoints lead where they must not or to a fake image service."""

    def __init__(self, local: GlimpseServer, remote: GlimpseServer) -> None:
        self.local, self.remote = local, remote
        self.region = f"RegionTwo-{uuid.uuid4().hex[:8]}"
        self.inward = f"RegionInward-{uuid.uuid4().hex[:8]}"
        self.project_id = keystone.ensure_project(PROJECT)
        keystone.ensure_user(USER, USER_PASSWORD, self.project_id, "member")
        (image,) = keystone.system_call("GET", "/services?type=image")["services"]
        self._image_service = str(image["id"])
        self._regions: list[str] = []
        self._endpoints: list[str] = []
        self.add_region(self.region, remote.url)
        # The metadata service's address: the network rules refuse it.
        self.add_region(self.inward, "http://169.254.169.254/")

    def add_region(self, region: str, url: str) -> str:
        keystone.system_call("POST", "/regions", {"region": {"id": region}})
        self._regions.append(region)
        self._endpoints.append(str(keystone.system_call("POST", "/endpoints", {"endpoint": {
            "service_id": self._image_service, "interface": "public", "region_id": region,
            "url": url}})["endpoint"]["id"]))
        return region

    def fake_region(self, url: str) -> str:
        """A region of its own whose image service is at ``url`` (a fake one)."""
        return self.add_region(f"RegionFake-{uuid.uuid4().hex[:8]}", url)

    def token(self) -> str:
        return keystone.token_for(USER, USER_PASSWORD, PROJECT)

    def remove(self) -> None:
        # Endpoints before their regions (Keystone refuses to delete a region in use).
        for endpoint in self._endpoints:
            keystone.system_call("DELETE", f"/endpoints/{endpoint}")
        for region in self._regions:
            keystone.system_call("DELETE", f"/regions/{region}")


def local_settings(**extra: str) -> dict[str, str]:
    return keystone.glimpse_settings(import_methods=METHODS, log_level="debug", **FAST,
                                     **extra)


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    keystone.require_identity()
    remote = GlimpseServer(keystone.glimpse_settings(log_level="debug"))
    local = GlimpseServer(local_settings())
    made = Cloud(local, remote)
    try:
        yield made
    finally:
        made.remove()
        logs = {"local": local.log(), "remote": remote.log()}
        local.stop()
        remote.stop()
    for name, log in logs.items():
        assert keystone.TOKEN_MARK not in log, f"a token reached the {name} server's log"
        for secret in (USER_PASSWORD, keystone.PASSWORD):
            assert secret not in log, f"a secret reached the {name} server's log"
        assert "Traceback" not in log, log


def client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, headers={"X-Auth-Token": token})


def create(api: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = api.post("/v2/images", json={"name": "gdl", "disk_format": "raw",
                                          "container_format": "bare", **body})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def remote_image(cloud: Cloud, token: str, data: bytes | None, **body: Any) -> dict[str, Any]:
    """An image of the remote region, uploaded when ``data`` is given."""
    with client(cloud.remote.url, token) as api:
        image = create(api, **body)
        if data is not None:
            answer = api.put(f"/v2/images/{image['id']}/file", content=data,
                             headers={"Content-Type": "application/octet-stream"})
            assert answer.status_code == 204, answer.text
        return dict(api.get(f"/v2/images/{image['id']}").json())


def glance_download(region: Any, image_id: Any, **extra: Any) -> dict[str, Any]:
    return {"method": {"name": "glance-download", "glance_region": region,
                       "glance_image_id": image_id, **extra}}


def settle(api: httpx.Client, image_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    image: dict[str, Any] = {}
    while time.monotonic() < deadline:
        image = api.get(f"/v2/images/{image_id}").json()
        if image["status"] in ("active", "queued") and "os_glance_import_task" not in image:
            return image
        time.sleep(0.1)
    raise AssertionError(f"image {image_id} never settled: {image}")


def only_task(api: httpx.Client, image_id: str) -> dict[str, Any]:
    (task,) = api.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
    return dict(task)


def test_glance_download_brings_the_remote_image(cloud: Cloud) -> None:
    token = cloud.token()
    data = os.urandom(3 << 20)
    source = remote_image(cloud, token, data, hw_disk_bus="scsi", os_distro="cirros",
                          **{"trait:CUSTOM_GDL": "required", "colour": "blue"})
    assert source["status"] == "active"
    with client(cloud.local.url, token) as api:
        methods = api.get("/v2/info/import").json()["import-methods"]["value"]
        assert "glance-download" in methods
        # qcow2/ovf here: the remote's raw/bare must replace them, or the inspection of the
        # (random, raw) data as qcow2 would fail the import.
        # The local image's own values of copied keys give way to the remote's (Tempest).
        image = create(api, disk_format="qcow2", container_format="ovf", hw_disk_bus="ide",
                       os_distro="windows")
        answer = api.post(f"/v2/images/{image['id']}/import",
                          json=glance_download(cloud.region, source["id"]))
        assert answer.status_code == 202, answer.text
        done = settle(api, image["id"])
        task = only_task(api, image["id"])
        assert done["status"] == "active", (done, task)
        assert task["status"] == "success", task
        assert api.get(f"/v2/images/{image['id']}/file").content == data
    assert done["size"] == len(data)
    assert done["checksum"] == source["checksum"] == hashlib.md5(data).hexdigest()
    assert done["os_hash_algo"] == source["os_hash_algo"]
    assert done["os_hash_value"] == source["os_hash_value"]
    assert (done["disk_format"], done["container_format"]) == ("raw", "bare")
    assert done["hw_disk_bus"] == "scsi" and done["os_distro"] == "cirros"
    assert done["trait:CUSTOM_GDL"] == "required"
    assert "colour" not in done  # not one of the copied prefixes
    # The task records the request as Glance does (the interface filled in), never the token.
    assert task["input"]["import_req"]["method"] == {
        "name": "glance-download", "glance_region": cloud.region,
        "glance_image_id": source["id"], "glance_service_interface": "public"}
    assert token not in json.dumps(task)


def test_openstacksdk_imports_with_glance_download(cloud: Cloud) -> None:
    openstack = pytest.importorskip("openstack", reason="openstacksdk is missing")
    token = cloud.token()
    data = os.urandom(64 << 10)
    source = remote_image(cloud, token, data)
    conn = openstack.connect(
        auth_type="v3password", auth_url=keystone.AUTH_URL, username=USER,
        password=USER_PASSWORD, project_name=PROJECT, user_domain_name="Default",
        project_domain_name="Default", region_name=cloud.region,
        image_endpoint_override=cloud.local.url)
    image = conn.image.create_image(name="gdl-sdk", disk_format="raw",
                                    container_format="bare")
    conn.image.import_image(image, method="glance-download", remote_region=cloud.region,
                            remote_image_id=source["id"], remote_service_interface="public")
    with client(cloud.local.url, token) as api:
        done = settle(api, image.id)
    assert done["status"] == "active" and done["checksum"] == source["checksum"]


def test_refusals_name_the_problem(cloud: Cloud) -> None:
    token = cloud.token()
    source = remote_image(cloud, token, b"x" * 1024)
    with client(cloud.local.url, token) as api:
        image = create(api)
        url = f"/v2/images/{image['id']}/import"
        cases: list[tuple[dict[str, Any], int, str]] = [
            (glance_download(cloud.inward, source["id"]), 400, "does not pass filtering"),
            (glance_download(cloud.region, source["id"], glance_service_interface=5),
             400, "glance_service_interface"),
            (glance_download(cloud.region, "not-a-uuid"), 400, "UUID"),
            (glance_download(cloud.region, ["a", "list"]), 400, "UUID"),
            ({"method": {"name": "glance-download", "glance_image_id": source["id"]}}, 400,
             "glance_region"),
            ({"method": {"name": "glance-download", "glance_region": cloud.region}}, 400,
             "glance_image_id"),
            (glance_download({"a": 1}, source["id"]), 400, "glance_region"),
        ]
        for body, status, phrase in cases:
            answer = api.post(url, json=body)
            assert answer.status_code == status, (body, answer.text)
            assert phrase in answer.text, (body, answer.text)
        assert api.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
        assert api.get(f"/v2/images/{image['id']}/tasks").json()["tasks"] == []
        # The method needs a queued image, as web-download does.
        active = create(api)
        api.put(f"/v2/images/{active['id']}/file", content=b"y" * 512,
                headers={"Content-Type": "application/octet-stream"})
        answer = api.post(f"/v2/images/{active['id']}/import",
                          json=glance_download(cloud.region, source["id"]))
        assert answer.status_code == 409, answer.text


def test_what_only_the_remote_or_catalog_knows_fails_the_task(cloud: Cloud) -> None:
    """Accepted (202) and failed in the task naming the cause, the image queued again with
    its own formats and properties: as Glance (Tempest's bad_endpoint and
    bad_missing_image tests)."""
    token = cloud.token()
    source = remote_image(cloud, token, b"z" * 2048)
    queued = remote_image(cloud, token, None)  # never uploaded: queued
    missing = str(uuid.uuid4())
    failed: list[str] = []
    cases = [
        (glance_download(cloud.region, queued["id"]), [queued["id"], "is queued"]),
        (glance_download(cloud.region, missing), [missing, "not found"]),
        (glance_download("not a region", source["id"],
                         glance_service_interface="not an interface"),
         ["No image service endpoint", "'not a region'", "'not an interface'"]),
        (glance_download(cloud.region, source["id"], glance_service_interface="admin"),
         [cloud.region, "'admin'"]),
    ]
    with client(cloud.local.url, token) as api:
        for body, phrases in cases:
            image = create(api, hw_cpu_cores="1", os_distro="windows")
            failed.append(image["id"])
            answer = api.post(f"/v2/images/{image['id']}/import", json=body)
            assert answer.status_code == 202, answer.text
            done = settle(api, image["id"])
            task = only_task(api, image["id"])
            assert done["status"] == "queued", done
            assert task["status"] == "failure", task
            assert all(phrase in task["message"] for phrase in phrases), task
            assert (done["disk_format"], done["hw_cpu_cores"], done["os_distro"]) == (
                "raw", "1", "windows")
    left = {path.name for path in (cloud.local.data_dir / "images").glob("*")}
    assert not left & set(failed), left


def fake_image_service(remote: Remote, data: bytes, **record: Any) -> str:
    """A remote image of ``remote`` (a fake image service): its record and its data."""
    image_id = str(uuid.uuid4())
    remote.objects[f"/v2/images/{image_id}"] = json.dumps({
        "id": image_id, "status": "active", "size": len(data), "disk_format": "raw",
        "container_format": "bare", "checksum": hashlib.md5(data).hexdigest(),
        "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest(),
        **record}).encode()
    remote.objects[f"/v2/images/{image_id}/file"] = data
    return image_id


def test_resumed_and_verified_against_the_remote_record(cloud: Cloud) -> None:
    token = cloud.token()
    with remote_server(FAKE_HOST) as (remote, base):
        region = cloud.fake_region(base)
        data = os.urandom(1 << 20)
        dropping = fake_image_service(remote, data)
        remote.drops[f"/v2/images/{dropping}/file"] = 1
        lying = fake_image_service(remote, data, os_hash_value="0" * 128)
        short = fake_image_service(remote, data, size=len(data) + 1)
        with client(cloud.local.url, token) as api:
            image = create(api)
            api.post(f"/v2/images/{image['id']}/import",
                     json=glance_download(region, dropping))
            done = settle(api, image["id"])
            assert done["status"] == "active", only_task(api, image["id"])
            assert done["os_hash_value"] == hashlib.sha512(data).hexdigest()
            ranges = [r for m, p, r in remote.requests if p.endswith(f"{dropping}/file")]
            assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 2}-", ranges
            for remote_id, phrase in ((lying, "sha512 hash"), (short, "bytes")):
                image = create(api)
                api.post(f"/v2/images/{image['id']}/import",
                         json=glance_download(region, remote_id))
                done = settle(api, image["id"])
                task = only_task(api, image["id"])
                assert done["status"] == "queued", done
                assert task["status"] == "failure" and phrase in task["message"], task


def test_sigkill_mid_glance_download_then_restart(cloud: Cloud, tmp_path: Path) -> None:
    token = cloud.token()
    settings = local_settings()
    server = GlimpseServer(settings, data_dir=tmp_path / "node")
    with remote_server(FAKE_HOST) as (remote, base):
        region = cloud.fake_region(base)
        slow = fake_image_service(remote, os.urandom(4 << 20))
        remote.trickle.add(f"/v2/images/{slow}/file")
        try:
            with client(server.url, token) as api:
                image = create(api)
                answer = api.post(f"/v2/images/{image['id']}/import",
                                  json=glance_download(region, slow))
                assert answer.status_code == 202, answer.text
                deadline = time.monotonic() + 10
                while not any(p.endswith("/file") for _, p, _ in remote.requests):
                    assert time.monotonic() < deadline, "the download never started"
                    time.sleep(0.05)
                time.sleep(0.3)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            started = time.monotonic()
            server = GlimpseServer(settings, data_dir=tmp_path / "node")
            with client(server.url, token) as api:
                done = settle(api, image["id"], timeout=15)
                took = time.monotonic() - started
                task = only_task(api, image["id"])
            assert done["status"] == "queued" and done["os_glance_failed_import"], done
            assert task["status"] == "failure" and "process" in task["message"], task
            assert list((tmp_path / "node" / "images").glob("*")) == []
            assert keystone.TOKEN_MARK not in server.log()
        finally:
            server.stop()
    print(f"\nglance-download: SIGKILL, restart to terminal state {took:.2f} s")


def test_noauth_does_not_offer_glance_download() -> None:
    """Without Keystone there is no catalog to find a region in: the method is not offered,
    asked for it is a 400 naming why, and configuring it stops the server at start-up."""
    server = GlimpseServer()
    try:
        with httpx.Client(base_url=server.url, timeout=30,
                          headers={"X-Tenant-Id": "gdl", "X-Roles": "member"}) as api:
            assert "glance-download" not in api.get("/v2/info/import").json()[
                "import-methods"]["value"]
            image = create(api)
            answer = api.post(f"/v2/images/{image['id']}/import",
                              json=glance_download("RegionTwo", str(uuid.uuid4())))
            assert answer.status_code == 400 and "keystone" in answer.text, answer.text
    finally:
        server.stop()
    with pytest.raises(RuntimeError, match="glance-download needs auth_strategy keystone"):
        GlimpseServer({"import_methods": METHODS})

"""The real clients in keystone mode, finding glimpse through Keystone's catalog (issue 12):
python-glanceclient (Python API, v1 and v2) and the openstack CLI, each with a password and
with an application credential. The catalog holds an ``image`` endpoint of a region made for
this module, pointing at this module's server, so that nothing here depends on which glimpse
the shared ``RegionOne`` endpoint names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests import keystone
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
USER, PROJECT = "glimpse-e2e-clients", "glimpse-e2e-clients"
USER_PASSWORD = f"clients-Pw-{'q8Rz' * 2}"  # distinctive: searched for in the server's log


@dataclasses.dataclass(frozen=True)
class Catalog:
    region: str
    project_id: str
    credential_id: str
    credential_secret: str


@pytest.fixture(scope="module")
def server() -> Iterator[GlimpseServer]:
    keystone.require_identity()
    found = GlimpseServer(keystone.glimpse_settings(log_level="debug"))
    yield found
    found.stop()


@pytest.fixture(scope="module")
def catalog(server: GlimpseServer) -> Iterator[Catalog]:
    """A region whose ``image`` endpoint is ``server``, a member user, and an application
    credential of that user; all removed afterwards."""
    project_id = keystone.ensure_project(PROJECT)
    user_id = keystone.ensure_user(USER, USER_PASSWORD, project_id, "member")
    region = f"e2e-clients-{uuid.uuid4().hex[:8]}"
    keystone.system_call("POST", "/regions", {"region": {"id": region}})
    (image,) = keystone.system_call("GET", "/services?type=image")["services"]
    endpoint = keystone.system_call("POST", "/endpoints", {"endpoint": {
        "service_id": image["id"], "interface": "public", "region_id": region,
        "url": server.url}})["endpoint"]["id"]
    password = keystone.password_session(USER, USER_PASSWORD, PROJECT)
    credentials = f"{keystone.AUTH_URL}/users/{user_id}/application_credentials"
    made = password.post(credentials, json={"application_credential": {
        "name": f"e2e-clients-{uuid.uuid4().hex[:8]}"}}).json()["application_credential"]
    try:
        yield Catalog(region, project_id, made["id"], made["secret"])
    finally:
        password.delete(f"{credentials}/{made['id']}")
        keystone.system_call("DELETE", f"/endpoints/{endpoint}")
        keystone.system_call("DELETE", f"/regions/{region}")
    log = server.log()
    assert keystone.TOKEN_MARK not in log, "a token reached the log"
    for secret in (USER_PASSWORD, made["secret"], keystone.PASSWORD):
        assert secret not in log, "a secret reached the log"


def sessions(catalog: Catalog) -> dict[str, ks_session.Session]:
    return {
        "password": keystone.password_session(USER, USER_PASSWORD, PROJECT),
        "application credential": ks_session.Session(auth=v3.ApplicationCredential(
            auth_url=keystone.AUTH_URL, application_credential_id=catalog.credential_id,
            application_credential_secret=catalog.credential_secret)),
    }


@pytest.mark.parametrize("auth", ["password", "application credential"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_glanceclient_through_the_catalog(catalog: Catalog, auth: str, version: str) -> None:
    glanceclient = pytest.importorskip("glanceclient", reason="python-glanceclient is missing")
    session = sessions(catalog)[auth]
    # No endpoint given: the client asks the session's catalog for the image service of the
    # region, as nova and the CLIs do.
    client = glanceclient.Client(version, session=session, region_name=catalog.region,
                                 interface="public")
    data = os.urandom(4096)
    name = f"catalog-{uuid.uuid4().hex[:8]}"
    if version == "1":
        image = client.images.create(name=name, disk_format="raw", container_format="bare",
                                     data=io.BytesIO(data))
    else:
        image = client.images.create(name=name, disk_format="raw", container_format="bare")
        client.images.upload(image.id, io.BytesIO(data))
        image = client.images.get(image.id)
    assert image.owner == catalog.project_id
    assert image.status == "active"
    assert image.checksum == hashlib.md5(data).hexdigest()
    assert b"".join(client.images.data(image.id)) == data
    assert image.id in {listed.id for listed in client.images.list()}
    client.images.delete(image.id)


def openstack(catalog: Catalog, auth: str, *argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=keystone.AUTH_URL, OS_IDENTITY_API_VERSION="3",
               OS_REGION_NAME=catalog.region, OS_INTERFACE="public",
               OS_IMAGE_API_VERSION="2")
    if auth == "password":
        env.update(OS_USERNAME=USER, OS_PASSWORD=USER_PASSWORD, OS_PROJECT_NAME=PROJECT,
                   OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default")
    else:
        env.update(OS_AUTH_TYPE="v3applicationcredential",
                   OS_APPLICATION_CREDENTIAL_ID=catalog.credential_id,
                   OS_APPLICATION_CREDENTIAL_SECRET=catalog.credential_secret)
    done = subprocess.run([str(BIN / "openstack"), *argv], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, check=False)
    assert done.returncode == 0, f"openstack {' '.join(argv)}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.parametrize("auth", ["password", "application credential"])
def test_the_openstack_cli_through_the_catalog(catalog: Catalog, auth: str,
                                               tmp_path: Path) -> None:
    if not (BIN / "openstack").exists():
        pytest.skip("python-openstackclient is not installed")
    data = os.urandom(8192)
    source, saved = tmp_path / "in.raw", tmp_path / "out.raw"
    source.write_bytes(data)
    name = f"osc-{uuid.uuid4().hex[:8]}"
    made = json.loads(openstack(catalog, auth, "image", "create", "--disk-format", "raw",
                                "--container-format", "bare", "--file", str(source),
                                "--property", "purpose=catalog", "-f", "json", name))
    image_id = made["id"]
    shown = json.loads(openstack(catalog, auth, "image", "show", "-f", "json", image_id))
    assert shown["status"] == "active" and shown["owner"] == catalog.project_id
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    listed = json.loads(openstack(catalog, auth, "image", "list", "--property",
                                  "purpose=catalog", "-f", "json"))
    assert image_id in {row["ID"] for row in listed}
    openstack(catalog, auth, "image", "save", "--file", str(saved), image_id)
    assert saved.read_bytes() == data
    openstack(catalog, auth, "image", "delete", image_id)
    listed = json.loads(openstack(catalog, auth, "image", "list", "-f", "json"))
    assert image_id not in {row["ID"] for row in listed}

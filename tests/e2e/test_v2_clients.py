"""End-to-end tests: glimpse's Images API v2 driven by the real clients (issue 13, spec §6).

Four clients run the same operations against one live ``glimpse serve`` in noauth mode:

* ``glanceclient``: python-glanceclient's v2 Python API. It acts as a project: the v2 HTTP
  client's ``identity_headers`` option sends the trusted X-Tenant-Id/X-User-Id/X-Roles headers.
* ``glance``: its command line, ``glance --os-image-api-version 2 --os-image-url URL
  --os-auth-token x`` (a token with an image URL skips Keystone). It cannot send identity
  headers, so it acts as glimpse's anonymous administrator (no identity headers at all).
* ``openstack``: python-openstackclient, ``--os-auth-type none --os-endpoint URL`` (keystoneauth's
  noauth plugin), also the anonymous administrator. Commands that take a project name (``image
  add project``, ``image set --accept --project``, ``image create --project``) first ask the
  identity service; with noauth that would be glimpse itself, so the identity endpoint is pointed
  (``OS_IDENTITY_ENDPOINT_OVERRIDE``) at a stub that answers 403, on which OSC uses the name as
  the project id, as it does for any user not allowed to look projects up.
* ``sdk``: openstacksdk's image v2 proxy on a keystoneauth session with the noauth plugin whose
  ``additional_headers`` are the identity headers: it acts as a project.

Every operation is its own test, parametrized by client, with its setup done over plain HTTP so
that one client's failing operation does not hide the others (the client x operation table of
docs/v2-choices.md, "Clients"). The server's state after each operation is checked over HTTP:
the SDK's deactivate and reactivate, for one, never look at the answer. A proxy that flips a bit
of every download proves each client's checksum check.

Speed: one server for the whole session (the shared ``server`` fixture). The two command lines
run in this process through their own ``main`` (the same argument parsing, requests and output
as the installed scripts, without 0.5-2 s of interpreter start each); the ``create`` test
spawns each installed script once, proving the entry points themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("glanceclient.v2", reason="python-glanceclient is not installed")
pytest.importorskip("openstackclient.shell", reason="python-openstackclient is not installed")
pytest.importorskip("openstack.connection", reason="openstacksdk is not installed")

import glanceclient
import openstack.connection
from glanceclient import shell as glance_shell
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
from openstackclient import shell as osc_shell

from tests.e2e.server import GlimpseServer
from tests.http_remote import serving

pytestmark = pytest.mark.e2e

OWNER = "clients-owner"
MEMBER = "clients-member"
BIN = Path(sys.executable).parent
CLIENTS = ["glanceclient", "glance", "openstack", "sdk"]
DEFAULT_PAGE = 25  # the server's limit_param_default


def identity(project: str, roles: str = "member") -> dict[str, str]:
    return {"X-Tenant-Id": project, "X-User-Id": f"user-of-{project}", "X-Roles": roles}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ------------------------------------------------------------------------ ground truth, setup


class Http:
    """The server as plain HTTP sees it: set-up and checks, independent of the clients."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30.0)

    def image(self, image_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.get(f"/v2/images/{image_id}", headers=headers or {})

    def show(self, image_id: str) -> dict[str, Any]:
        resp = self.image(image_id)
        assert resp.status_code == 200, resp.text
        shown: dict[str, Any] = resp.json()
        return shown

    def create(self, data: bytes | None = None, **body: Any) -> str:
        body = {"disk_format": "raw", "container_format": "bare", **body}
        resp = self.client.post("/v2/images", json=body, headers=identity(OWNER))
        assert resp.status_code == 201, resp.text
        image_id: str = resp.json()["id"]
        if data is not None:
            resp = self.client.put(f"/v2/images/{image_id}/file", content=data,
                                   headers={**identity(OWNER),
                                            "Content-Type": "application/octet-stream"})
            assert resp.status_code == 204, resp.text
        return image_id

    def member_list(self, project: str) -> list[str]:
        resp = self.client.get("/v2/images", headers=identity(project))
        assert resp.status_code == 200, resp.text
        return [image["id"] for image in resp.json()["images"]]

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------------------ the clients


class Driver:
    """One client, doing each operation the way its users do."""

    name = ""

    def create(self, name: str, path: Path, tag: str, props: dict[str, str]) -> str:
        raise NotImplementedError

    def show(self, image_id: str) -> dict[str, Any]:
        """id, name, status, checksum, size, and the custom properties, as the client shows."""
        raise NotImplementedError

    def list_names(self, tag: str, page_size: int) -> list[str]:
        """Names of the shared images with ``tag``, by name ascending, ``page_size`` to a
        request (two filters the server applies, ANDed)."""
        raise NotImplementedError

    def download(self, image_id: str, path: Path) -> bytes:
        raise NotImplementedError

    def update(self, image_id: str, name: str, min_ram: int, prop: tuple[str, str]) -> None:
        raise NotImplementedError

    def unset(self, image_id: str, key: str) -> None:
        raise NotImplementedError

    def add_tag(self, image_id: str, tag: str) -> None:
        raise NotImplementedError

    def remove_tag(self, image_id: str, tag: str) -> None:
        raise NotImplementedError

    def add_member(self, image_id: str, project: str) -> None:
        raise NotImplementedError

    def accept(self, image_id: str, project: str) -> None:
        """Accept the membership, as the member project where the client can act as one."""
        raise NotImplementedError

    def members(self, image_id: str) -> list[tuple[str, str]]:
        raise NotImplementedError

    def remove_member(self, image_id: str, project: str) -> None:
        raise NotImplementedError

    def deactivate(self, image_id: str) -> None:
        raise NotImplementedError

    def reactivate(self, image_id: str) -> None:
        raise NotImplementedError

    def delete(self, image_id: str) -> None:
        raise NotImplementedError


class GlanceclientApi(Driver):
    name = "glanceclient"

    def __init__(self, url: str) -> None:
        self.url = url
        self.gc = self._client(OWNER)

    def _client(self, project: str) -> Any:
        return glanceclient.Client("2", endpoint=self.url, timeout=30,
                                   identity_headers=identity(project))

    def create(self, name: str, path: Path, tag: str, props: dict[str, str]) -> str:
        image = self.gc.images.create(name=name, disk_format="raw", container_format="bare",
                                      tags=[tag], **props)
        with path.open("rb") as f:
            self.gc.images.upload(image["id"], f, image_size=path.stat().st_size)
        return str(image["id"])

    def show(self, image_id: str) -> dict[str, Any]:
        return dict(self.gc.images.get(image_id))

    def list_names(self, tag: str, page_size: int) -> list[str]:
        images = self.gc.images.list(filters={"tag": [tag], "visibility": "shared"},
                                     page_size=page_size, sort_key="name", sort_dir="asc")
        return [image["name"] for image in images]

    def download(self, image_id: str, path: Path) -> bytes:
        # The checksum check runs as the iterator is drained (os_hash_value, else the MD5).
        body = self.gc.images.data(image_id, allow_md5_fallback=True)
        return b"".join(body)

    def update(self, image_id: str, name: str, min_ram: int, prop: tuple[str, str]) -> None:
        self.gc.images.update(image_id, name=name, min_ram=min_ram, **dict([prop]))

    def unset(self, image_id: str, key: str) -> None:
        self.gc.images.update(image_id, remove_props=[key])

    def add_tag(self, image_id: str, tag: str) -> None:
        self.gc.image_tags.update(image_id, tag)

    def remove_tag(self, image_id: str, tag: str) -> None:
        self.gc.image_tags.delete(image_id, tag)

    def add_member(self, image_id: str, project: str) -> None:
        self.gc.image_members.create(image_id, project)

    def accept(self, image_id: str, project: str) -> None:
        self._client(project).image_members.update(image_id, project, "accepted")

    def members(self, image_id: str) -> list[tuple[str, str]]:
        return [(m["member_id"], m["status"]) for m in self.gc.image_members.list(image_id)]

    def remove_member(self, image_id: str, project: str) -> None:
        self.gc.image_members.delete(image_id, project)

    def deactivate(self, image_id: str) -> None:
        self.gc.images.deactivate(image_id)

    def reactivate(self, image_id: str) -> None:
        self.gc.images.reactivate(image_id)

    def delete(self, image_id: str) -> None:
        self.gc.images.delete(image_id)


class CliFailed(AssertionError):
    pass


@contextlib.contextmanager
def cli_process_state(env: dict[str, str]) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What a CLI run in this process may change, restored afterwards: the environment, the
    standard streams, the root logger (cliff and glanceclient add handlers on every run)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    saved_env = {k: os.environ.get(k) for k in env}
    saved_stdin = sys.stdin
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env)
    # A terminal on stdin: glance's image commands read image data from any other stdin.
    sys.stdin = TtyStdin()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        sys.stdin = saved_stdin
        root.handlers[:], root.level = handlers, level
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class TtyStdin(io.StringIO):
    def isatty(self) -> bool:
        return True


class Cli(Driver):
    """A command line: argv prefix, how to run one in this process, and the installed script."""

    script = ""
    env: dict[str, str] = {}  # noqa: RUF012 (replaced per instance)
    always_spawn = False

    def argv(self, *args: str) -> list[str]:
        raise NotImplementedError

    def main(self, argv: list[str]) -> int:
        raise NotImplementedError

    def run(self, *args: str, spawn: bool = False) -> str:
        argv = self.argv(*args)
        if spawn or self.always_spawn:
            env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
            # No stdin: the spawned commands never read one (glance's image-create is given
            # --file, which it prefers to a stdin that is not a terminal).
            result = subprocess.run([str(BIN / self.script), *argv], env={**env, **self.env},
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=120, check=False)
            code, out, err = result.returncode, result.stdout, result.stderr
        else:
            with cli_process_state(self.env) as (stdout, stderr):
                try:
                    code = self.main(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
            out, err = stdout.getvalue(), stderr.getvalue()
        if code:
            raise CliFailed(f"{self.script} {' '.join(args)} exited {code}\n"
                            f"stdout:\n{out}\nstderr:\n{err}")
        return out


def table(output: str) -> list[list[str]]:
    """The rows of a prettytable (without its header row)."""
    rows = [[cell.strip() for cell in line.strip()[1:-1].split("|")]
            for line in output.splitlines() if line.startswith("|")]
    return rows[1:]


class GlanceCli(Cli):
    name = "glance"
    script = "glance"

    def __init__(self, url: str) -> None:
        self.url = url
        self.env = {}

    def argv(self, *args: str) -> list[str]:
        return ["--os-image-api-version", "2", "--os-image-url", self.url,
                "--os-auth-token", "noauth-dummy-token", *args]

    def main(self, argv: list[str]) -> int:
        # Its console script's main: reads sys.argv, prints an error and exits 1 on failure.
        saved, sys.argv = sys.argv, [self.script, *argv]
        try:
            glance_shell.main()
        finally:
            sys.argv = saved
        return 0

    def create(self, name: str, path: Path, tag: str, props: dict[str, str]) -> str:
        # Its options (--tags among them) are built from glimpse's image schema.
        args = ["image-create", "--name", name, "--disk-format", "raw",
                "--container-format", "bare", "--owner", OWNER, "--tags", tag,
                "--file", str(path)]
        for key, value in props.items():
            args += ["--property", f"{key}={value}"]
        return dict(table(self.run(*args, spawn=True)))["id"]

    def show(self, image_id: str) -> dict[str, Any]:
        return dict(table(self.run("image-show", image_id)))

    def list_names(self, tag: str, page_size: int) -> list[str]:
        out = self.run("image-list", "--tag", tag, "--visibility", "shared", "--page-size",
                       str(page_size), "--sort-key", "name", "--sort-dir", "asc")
        return [row[1] for row in table(out)]

    def download(self, image_id: str, path: Path) -> bytes:
        self.run("image-download", "--file", str(path), image_id)
        return path.read_bytes()

    def update(self, image_id: str, name: str, min_ram: int, prop: tuple[str, str]) -> None:
        self.run("image-update", "--name", name, "--min-ram", str(min_ram),
                 "--property", f"{prop[0]}={prop[1]}", image_id)

    def unset(self, image_id: str, key: str) -> None:
        self.run("image-update", "--remove-property", key, image_id)

    def add_tag(self, image_id: str, tag: str) -> None:
        self.run("image-tag-update", image_id, tag)

    def remove_tag(self, image_id: str, tag: str) -> None:
        self.run("image-tag-delete", image_id, tag)

    def add_member(self, image_id: str, project: str) -> None:
        self.run("member-create", image_id, project)

    def accept(self, image_id: str, project: str) -> None:
        # As the administrator, who may set any member's status.
        self.run("member-update", image_id, project, "accepted")

    def members(self, image_id: str) -> list[tuple[str, str]]:
        rows = table(self.run("member-list", "--image-id", image_id))
        return [(row[1], row[2]) for row in rows]

    def remove_member(self, image_id: str, project: str) -> None:
        self.run("member-delete", image_id, project)

    def deactivate(self, image_id: str) -> None:
        self.run("image-deactivate", image_id)

    def reactivate(self, image_id: str) -> None:
        self.run("image-reactivate", image_id)

    def delete(self, image_id: str) -> None:
        self.run("image-delete", image_id)


class OpenStackCli(Cli):
    name = "openstack"
    script = "openstack"

    def __init__(self, url: str, identity_url: str, always_spawn: bool = False) -> None:
        """``always_spawn``: run every command as its own process. OSC run in this process
        keeps talking to the image endpoint of its first run (process-wide state somewhere in
        its SDK stack), so one pointed at a second URL must be spawned."""
        self.url = url
        self.env = {"OS_IDENTITY_ENDPOINT_OVERRIDE": identity_url}
        self.always_spawn = always_spawn

    def argv(self, *args: str) -> list[str]:
        return ["--os-auth-type", "none", "--os-endpoint", self.url, *args]

    def main(self, argv: list[str]) -> int:
        return int(osc_shell.main(argv))

    def json(self, *args: str, spawn: bool = False) -> Any:
        return json.loads(self.run(*args, "-f", "json", spawn=spawn))

    def create(self, name: str, path: Path, tag: str, props: dict[str, str]) -> str:
        args = ["image", "create", "--disk-format", "raw", "--container-format", "bare",
                "--file", str(path), "--tag", tag, "--project", OWNER]
        for key, value in props.items():
            args += ["--property", f"{key}={value}"]
        return str(self.json(*args, name, spawn=True)["id"])

    def show(self, image_id: str) -> dict[str, Any]:
        shown: dict[str, Any] = self.json("image", "show", image_id)
        return {**shown.pop("properties", {}), **shown}

    def list_names(self, tag: str, page_size: int) -> list[str]:
        # OSC pages only by itself: with --limit it asks for that one page (SDK
        # paginated=False), and its --sort sorts what it received (default name:asc), so the
        # last row shown is no marker for a next page. Without --limit the SDK follows "next"
        # through pages of the server's default size; the test gives it more than one.
        assert page_size == DEFAULT_PAGE
        rows = self.json("image", "list", "--tag", tag, "--shared")
        one_page = self.json("image", "list", "--tag", tag, "--shared", "--limit", "2")
        assert len(one_page) == 2
        return [row["Name"] for row in rows]

    def download(self, image_id: str, path: Path) -> bytes:
        self.run("image", "save", "--file", str(path), image_id)
        return path.read_bytes()

    def update(self, image_id: str, name: str, min_ram: int, prop: tuple[str, str]) -> None:
        self.run("image", "set", "--name", name, "--min-ram", str(min_ram),
                 "--property", f"{prop[0]}={prop[1]}", image_id)

    def unset(self, image_id: str, key: str) -> None:
        self.run("image", "unset", "--property", key, image_id)

    def add_tag(self, image_id: str, tag: str) -> None:
        self.run("image", "set", "--tag", tag, image_id)

    def remove_tag(self, image_id: str, tag: str) -> None:
        self.run("image", "unset", "--tag", tag, image_id)

    def add_member(self, image_id: str, project: str) -> None:
        self.run("image", "add", "project", image_id, project)

    def accept(self, image_id: str, project: str) -> None:
        # As the administrator, naming the member project.
        self.run("image", "set", "--accept", "--project", project, image_id)

    def members(self, image_id: str) -> list[tuple[str, str]]:
        rows = self.json("image", "member", "list", image_id)
        return [(row["Member ID"], row["Status"]) for row in rows]

    def remove_member(self, image_id: str, project: str) -> None:
        self.run("image", "remove", "project", image_id, project)

    def deactivate(self, image_id: str) -> None:
        self.run("image", "set", "--deactivate", image_id)

    def reactivate(self, image_id: str) -> None:
        self.run("image", "set", "--activate", image_id)

    def delete(self, image_id: str) -> None:
        self.run("image", "delete", image_id)


class Sdk(Driver):
    name = "sdk"

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = self._connect(OWNER)

    def _connect(self, project: str) -> Any:
        session = ks_session.Session(auth=noauth.NoAuth(endpoint=self.url),
                                     additional_headers=identity(project))
        return openstack.connection.Connection(session=session,
                                               image_endpoint_override=self.url)

    def create(self, name: str, path: Path, tag: str, props: dict[str, str]) -> str:
        image = self.conn.image.create_image(
            name=name, filename=str(path), disk_format="raw", container_format="bare",
            tags=[tag], wait=False, validate_checksum=True, **props)
        return str(image.id)

    def show(self, image_id: str) -> dict[str, Any]:
        image = self.conn.image.get_image(image_id)
        return {**image.properties, **image.to_dict(computed=False, ignore_none=True)}

    def list_names(self, tag: str, page_size: int) -> list[str]:
        images = self.conn.image.images(tag=tag, visibility="shared", limit=page_size,
                                        sort_key="name", sort_dir="asc")
        return [image.name for image in images]

    def download(self, image_id: str, path: Path) -> bytes:
        # The SDK reads the image first, then checks the data against os_hash_value (else the
        # MD5 against the checksum or Content-MD5), streamed or not.
        response = self.conn.image.download_image(image_id)
        data: bytes = response.content
        return data

    def update(self, image_id: str, name: str, min_ram: int, prop: tuple[str, str]) -> None:
        self.conn.image.update_image(image_id, name=name, min_ram=min_ram, **dict([prop]))

    def unset(self, image_id: str, key: str) -> None:
        # As openstackclient does it: the image with a properties dict lacking the key.
        image = self.conn.image.get_image(image_id)
        properties = dict(image.properties)
        properties.pop(key)
        self.conn.image.update_image(image, properties=properties)

    def add_tag(self, image_id: str, tag: str) -> None:
        self.conn.image.add_tag(image_id, tag)

    def remove_tag(self, image_id: str, tag: str) -> None:
        self.conn.image.remove_tag(image_id, tag)

    def add_member(self, image_id: str, project: str) -> None:
        self.conn.image.add_member(image_id, member_id=project)

    def accept(self, image_id: str, project: str) -> None:
        self._connect(project).image.update_member(project, image_id, status="accepted")

    def members(self, image_id: str) -> list[tuple[str, str]]:
        return [(m.member_id, m.status) for m in self.conn.image.members(image_id)]

    def remove_member(self, image_id: str, project: str) -> None:
        self.conn.image.remove_member(project, image_id, ignore_missing=False)

    def deactivate(self, image_id: str) -> None:
        self.conn.image.deactivate_image(image_id)

    def reactivate(self, image_id: str) -> None:
        self.conn.image.reactivate_image(image_id)

    def delete(self, image_id: str) -> None:
        self.conn.image.delete_image(image_id, ignore_missing=False)


# ------------------------------------------------------------------------ fixtures


class RefusingIdentity(BaseHTTPRequestHandler):
    """An identity service that says it is Keystone v3 and forbids every lookup."""

    def _answer(self) -> None:
        if self.path.rstrip("/") in ("", "/v3"):
            host, port = self.server.server_address[:2]
            href = f"http://{host!s}:{port}/v3/"
            code, body = 200, {"version": {"id": "v3.14", "status": "stable",
                                           "links": [{"rel": "self", "href": href}]}}
        else:
            code, body = 403, {"error": {"code": 403, "title": "Forbidden",
                                         "message": "Not allowed in these tests."}}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def identity_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RefusingIdentity)
    with serving(httpd) as port:
        yield f"http://127.0.0.1:{port}/v3"


class CorruptingProxy(BaseHTTPRequestHandler):
    """Forwards every request to glimpse, but flips one bit of the last byte of image data
    (``GET …/file``) on its way back, the headers (Content-MD5 included) left as sent."""

    upstream = ""
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        # Host is kept: glimpse builds the version document's links from it.
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("content-length", "connection")}
        resp = httpx.request(self.command, self.upstream + self.path, headers=headers,
                             content=body, timeout=30.0)
        data = resp.content
        if self.command == "GET" and self.path.endswith("/file") and data:
            data = data[:-1] + bytes([data[-1] ^ 1])
        self.send_response(resp.status_code)
        for key, value in resp.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection",
                                   "content-encoding", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def corrupted_drivers(server: GlimpseServer, identity_url: str) -> Iterator[dict[str, Driver]]:
    """The clients, through a proxy that corrupts every download."""
    handler = type("Proxy", (CorruptingProxy,), {"upstream": server.url})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with serving(httpd) as port:
        url = f"http://127.0.0.1:{port}"
        yield {
            "glanceclient": GlanceclientApi(url),
            "glance": GlanceCli(url),
            "openstack": OpenStackCli(url, identity_url, always_spawn=True),
            "sdk": Sdk(url),
        }


@pytest.fixture(scope="module")
def drivers(server: GlimpseServer, identity_url: str) -> dict[str, Driver]:
    return {
        "glanceclient": GlanceclientApi(server.url),
        "glance": GlanceCli(server.url),
        "openstack": OpenStackCli(server.url, identity_url),
        "sdk": Sdk(server.url),
    }


@pytest.fixture(params=CLIENTS)
def driver(request: pytest.FixtureRequest, drivers: dict[str, Driver]) -> Driver:
    return drivers[request.param]


@pytest.fixture(scope="module")
def wire(server: GlimpseServer) -> Iterator[Http]:
    h = Http(server.url)
    yield h
    h.close()


@pytest.fixture
def active_image(wire: Http, unique: str) -> tuple[str, bytes]:
    """An active image of OWNER's, shared (the default visibility) so it can have members."""
    data = os.urandom(70_000) + unique.encode()
    return wire.create(data, name=f"img-{unique}", gone="soon"), data


# ------------------------------------------------------------------------ the operations


def test_create_with_upload(driver: Driver, wire: Http, unique: str, tmp_path: Path) -> None:
    data = os.urandom(200_000) + unique.encode()
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    image_id = driver.create(f"new-{unique}", path, unique, {"e2e_prop": unique})
    image = wire.show(image_id)
    assert image["status"] == "active"
    assert image["name"] == f"new-{unique}"
    assert image["owner"] == OWNER
    assert image["size"] == len(data)
    assert image["checksum"] == md5(data)
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert image["e2e_prop"] == unique
    assert image["tags"] == [unique]
    assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
    if isinstance(driver, Sdk):
        # Given a file name, the SDK hashes it and records the hashes as properties (spec §6.3).
        assert image["owner_specified.openstack.sha256"] == hashlib.sha256(data).hexdigest()
        assert image["owner_specified.openstack.md5"] == md5(data)


def test_show(driver: Driver, active_image: tuple[str, bytes], unique: str) -> None:
    image_id, data = active_image
    shown = driver.show(image_id)
    assert shown["id"] == image_id
    assert shown["name"] == f"img-{unique}"
    assert shown["status"] == "active"
    assert shown["checksum"] == md5(data)
    assert str(shown["size"]) == str(len(data))
    assert shown["gone"] == "soon"


def test_list_filters_and_pages(driver: Driver, wire: Http, unique: str) -> None:
    # Two to a page: every client has to follow the "next" link to see the third; OSC, which
    # cannot ask for small pages, gets one image more than the server's default page.
    page = DEFAULT_PAGE if isinstance(driver, OpenStackCli) else 2
    count = page + 1
    names = [f"{n:02d}-{unique}" for n in range(count)]
    for name in reversed(names):
        wire.create(name=name, tags=[unique])
    wire.create(name=f"other-{unique}", tags=["other"])  # not listed: the tag filter
    wire.create(name=f"private-{unique}", tags=[unique], visibility="private")  # visibility
    assert driver.list_names(unique, page) == names


def test_download_checks_checksum(
    driver: Driver, active_image: tuple[str, bytes], tmp_path: Path
) -> None:
    image_id, data = active_image
    assert driver.download(image_id, tmp_path / "out") == data


@pytest.mark.parametrize("name", CLIENTS)
def test_download_refuses_corrupted_data(
    corrupted_drivers: dict[str, Driver], name: str, active_image: tuple[str, bytes],
    tmp_path: Path,
) -> None:
    """The checksum check is real: one flipped bit and every client fails the download."""
    image_id, _ = active_image
    # glanceclient: "Corrupt image download. Hash was … expected …" (os_hash_value first);
    # openstacksdk and OSC: "checksum mismatch (sha512): … != …".
    with pytest.raises(Exception, match=r"Corrupt image download|checksum mismatch"):
        corrupted_drivers[name].download(image_id, tmp_path / "out")


def test_update_sets_and_unsets(driver: Driver, wire: Http, active_image: tuple[str, bytes],
                                unique: str) -> None:
    image_id, _ = active_image
    driver.update(image_id, f"renamed-{unique}", 128, ("kept", unique))
    image = wire.show(image_id)
    assert (image["name"], image["min_ram"], image["kept"]) == (f"renamed-{unique}", 128, unique)
    driver.unset(image_id, "gone")
    image = wire.show(image_id)
    assert "gone" not in image
    assert (image["name"], image["min_ram"], image["kept"]) == (f"renamed-{unique}", 128, unique)


def test_tags(driver: Driver, wire: Http, active_image: tuple[str, bytes]) -> None:
    image_id, _ = active_image
    driver.add_tag(image_id, "alpha")
    driver.add_tag(image_id, "beta")
    assert sorted(wire.show(image_id)["tags"]) == ["alpha", "beta"]
    driver.remove_tag(image_id, "alpha")
    assert wire.show(image_id)["tags"] == ["beta"]


def test_members(driver: Driver, wire: Http, active_image: tuple[str, bytes]) -> None:
    image_id, _ = active_image
    driver.add_member(image_id, MEMBER)
    assert driver.members(image_id) == [(MEMBER, "pending")]
    assert image_id not in wire.member_list(MEMBER)  # listed once accepted
    driver.accept(image_id, MEMBER)
    assert driver.members(image_id) == [(MEMBER, "accepted")]
    assert image_id in wire.member_list(MEMBER)
    driver.remove_member(image_id, MEMBER)
    assert driver.members(image_id) == []
    assert wire.image(image_id, identity(MEMBER)).status_code == 404


def test_deactivate_and_reactivate(
    driver: Driver, wire: Http, active_image: tuple[str, bytes], tmp_path: Path
) -> None:
    image_id, data = active_image
    driver.deactivate(image_id)
    assert wire.show(image_id)["status"] == "deactivated"
    resp = wire.client.get(f"/v2/images/{image_id}/file", headers=identity(OWNER))
    assert resp.status_code == 403
    driver.reactivate(image_id)
    assert wire.show(image_id)["status"] == "active"
    assert driver.download(image_id, tmp_path / "out") == data


def test_delete(driver: Driver, wire: Http, active_image: tuple[str, bytes]) -> None:
    image_id, _ = active_image
    driver.delete(image_id)
    assert wire.image(image_id).status_code == 404
    assert wire.client.get(f"/v2/images/{image_id}/file").status_code == 404


def test_a_missing_image_is_the_clients_not_found(drivers: dict[str, Driver]) -> None:
    """Each client turns glimpse's 404 into its own not-found error (the error forms of §2.11:
    HTML for glanceclient's */*, JSON for the SDK's application/json)."""
    missing = str(uuid.uuid4())
    api = drivers["glanceclient"]
    assert isinstance(api, GlanceclientApi)
    from glanceclient import exc as gc_exc
    with pytest.raises(gc_exc.HTTPNotFound):
        api.gc.images.get(missing)
    sdk = drivers["sdk"]
    assert isinstance(sdk, Sdk)
    from openstack import exceptions as sdk_exc
    with pytest.raises(sdk_exc.NotFoundException):
        sdk.conn.image.get_image(missing)
    for name in ("glance", "openstack"):
        with pytest.raises(CliFailed, match=r"(?i)not found|no image"):
            drivers[name].show(missing)

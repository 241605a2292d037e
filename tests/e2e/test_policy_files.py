"""Operators' policy files (docs/identity.md "Policy files") through real server processes: spec
identity.md §7 case 11 in noauth mode (roles from X-Roles) and against the real Keystone of
scripts/keystone, edits applied without a restart, and broken files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests import keystone
from tests.e2e.identity import ctx
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

CASE_11 = """\
publicize_image: "role:image_publicizer"
get_image: "rule:context_is_admin"
context_is_admin: "role:cloud_admin"
"""
# Short, so that the tests of edits do not wait long.
RELOAD = 0.2


def write(path: Path, text: str) -> None:
    """Replace the file as editors do (a new inode), so that the edit is seen even within one
    mtime tick."""
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    staged.write_text(text)
    staged.replace(path)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the edit did not take effect")
        time.sleep(RELOAD / 2)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    write(path, CASE_11)
    return path


@pytest.fixture
def noauth(policy_file: Path) -> Iterator[GlimpseServer]:
    server = GlimpseServer({"policy_file": str(policy_file),
                            "policy_reload_interval": str(RELOAD)})
    yield server
    server.stop()


def who(project: str, *roles: str) -> dict[str, str]:
    return ctx(project, ",".join(roles), user=f"user-{project}")


def names(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {image["name"] for image in answer.json()["images"]}


def test_case_11_noauth(noauth: GlimpseServer, policy_file: Path) -> None:
    """Each rule of the file takes effect, a list is filtered per row, and an edit applies
    without a restart."""
    tag = uuid.uuid4().hex
    owner = who("pa", "member", "reader")
    publicizer = who("pa", "member", "reader", "image_publicizer")
    admin = who("pa", "admin", "member", "reader")  # no longer an administrator
    cloud_admin = who("ops", "cloud_admin")
    with httpx.Client(base_url=noauth.url, timeout=30) as client:
        # publicize_image: the publicizer role, not admin.
        made = client.post("/v2/images", json={"name": f"{tag}-public", "visibility": "public"},
                           headers=publicizer)
        assert made.status_code == 201, made.text
        refused = client.post("/v2/images", json={"name": "no", "visibility": "public"},
                              headers=admin)
        assert refused.status_code == 403, refused.text
        private = client.post("/v2/images", json={"name": f"{tag}-private",
                                                  "visibility": "private"}, headers=owner)
        assert private.status_code == 201, private.text
        image_id = private.json()["id"]
        # get_image: rule:context_is_admin, which is role:cloud_admin.
        assert client.get(f"/v2/images/{image_id}", headers=owner).status_code == 404
        assert client.get(f"/v2/images/{image_id}", headers=admin).status_code == 404
        shown = client.get(f"/v2/images/{image_id}", headers=cloud_admin)
        assert shown.status_code == 200, shown.text
        # Lists: get_image per row. The owner lists nothing of its own; the cloud admin
        # (an administrator: it lists every project's images) lists both.
        query = {"limit": "100"}
        assert not {n for n in names(client.get("/v2/images", params=query, headers=owner))
                    if n.startswith(tag)}
        assert {f"{tag}-public", f"{tag}-private"} <= names(
            client.get("/v2/images", params=query, headers=cloud_admin))
        # v1's list and HEAD follow the same rules.
        v1 = client.get("/v1/images", params=query, headers=owner)
        assert v1.status_code == 200
        assert not [i for i in v1.json()["images"] if i["name"].startswith(tag)]
        assert client.head(f"/v1/images/{image_id}", headers=owner).status_code == 404

        # Editing the file: owners see their images again, without a restart.
        write(policy_file, CASE_11.replace(
            '"rule:context_is_admin"',
            '"rule:context_is_admin or project_id:%(project_id)s"'))
        eventually(lambda: client.get(f"/v2/images/{image_id}",
                                      headers=owner).status_code == 200)
        assert f"{tag}-private" in names(client.get("/v2/images", params=query, headers=owner))
        # A broken edit is logged (by the request that finds the files changed), and the
        # rules in force stay.
        write(policy_file, 'get_image: "role:reader or"\n')
        eventually(lambda: client.get(f"/v2/images/{image_id}", headers=owner).status_code
                   == 200 and "previous rules stay in force" in noauth.log())
        assert "cannot parse" in noauth.log()
        assert client.get(f"/v2/images/{image_id}", headers=owner).status_code == 200
        assert client.post("/v2/images", json={"name": "no", "visibility": "public"},
                           headers=admin).status_code == 403
        # Removing the overrides: the defaults again (admin is an administrator).
        write(policy_file, "{}\n")
        eventually(lambda: client.post(
            "/v2/images", json={"name": f"{tag}-admin", "visibility": "public"},
            headers=admin).status_code == 201)


def serve_once(settings: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``glimpse serve`` expected to stop at start-up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update({f"GLIMPSE_{k.upper()}": v for k, v in settings.items()})
    env["GLIMPSE_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("text", "problem"), [
    ("publicize_image: [\n", "not YAML or JSON"),
    ('publicize_image: "role:a or"\n', "rule 'publicize_image': cannot parse 'role:a or'"),
    ('publicize_image: "https://policy.example/check"\n', "is not supported"),
])
def test_an_unusable_file_stops_start_up(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "policy.yaml"
    write(path, text)
    done = serve_once({"policy_file": str(path)}, tmp_path / "data")
    assert done.returncode == 2, done.stderr
    assert f"glimpse: configuration error: policy file {path}" in done.stderr
    assert problem in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_file_and_enforce_new_defaults_false_stop_start_up(tmp_path: Path) -> None:
    done = serve_once({"policy_file": str(tmp_path / "nope.yaml")}, tmp_path / "data")
    assert done.returncode == 2
    assert "cannot be read" in done.stderr
    done = serve_once({"enforce_new_defaults": "false"}, tmp_path / "data")
    assert done.returncode == 2
    assert "enforce_new_defaults = false is not supported" in done.stderr


def test_unknown_rule_names_are_a_start_up_warning(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    policy_d = tmp_path / "policy.d"
    policy_d.mkdir()
    write(path, 'get_imagez: "role:x"\n')
    write(policy_d / "50-mine.yaml", 'mine: "role:y"\nadd_image: "rule:mine"\n')
    server = GlimpseServer({"policy_file": str(path), "policy_dirs": str(policy_d)})
    try:
        log = server.log()
        assert "policy rule 'get_imagez' is not one of glimpse's rules" in log
        assert "'mine'" not in log
        # policy.d's add_image applies: only role y creates images.
        made = httpx.post(f"{server.url}/v2/images", json={"name": "x"},
                          headers=who("pa", "member", "reader"), timeout=30)
        assert made.status_code == 403, made.text
        made = httpx.post(f"{server.url}/v2/images", json={"name": "x"},
                          headers=who("pa", "y"), timeout=30)
        assert made.status_code == 201, made.text
    finally:
        server.stop()


def test_workers_each_apply_the_files_and_their_edits(tmp_path: Path) -> None:
    """With several workers, each process reads the files (the warnings are said once) and
    each applies an edit."""
    path = tmp_path / "policy.yaml"
    write(path, 'add_image: "role:a"\nget_imagez: "role:x"\n')
    server = GlimpseServer({"policy_file": str(path), "policy_reload_interval": str(RELOAD),
                            "workers": "2"}, data_dir=tmp_path / "data")
    try:
        def creates(*roles: str) -> set[int]:
            # A connection each, so that both workers answer some.
            return {httpx.post(f"{server.url}/v2/images", json={"name": "w"},
                               headers=who("pa", *roles), timeout=30).status_code
                    for _ in range(12)}

        assert creates("a") == {201}
        assert creates("member", "reader") == {403}
        write(path, 'add_image: "role:b"\n')
        eventually(lambda: creates("b") == {201})
        assert creates("a") == {403}
        assert server.log().count("policy rule 'get_imagez' is not one of glimpse's") == 1
    finally:
        server.stop()


# --- against the real Keystone -----------------------------------------------------------

def _user(name: str, project: str, *roles: str) -> str:
    """A token of user ``name`` with ``roles`` on ``project`` (both made when missing)."""
    password = f"{name}-Pw-{'x7Qz' * 2}"
    project_id = keystone.ensure_project(project)
    keystone.ensure_user(name, password, project_id, *roles)
    return keystone.token_for(name, password, project)


def test_case_11_keystone(policy_file: Path) -> None:
    keystone.require_identity()
    alice = _user("glimpse-policy-alice", "glimpse-policy-a", "member", "image_publicizer")
    bob = _user("glimpse-policy-bob", "glimpse-policy-a", "member")
    boss = _user("glimpse-policy-boss", "glimpse-policy-ops", "cloud_admin")
    admin = keystone.token_for(keystone.ADMIN_USER, keystone.ADMIN_PASSWORD,
                               keystone.ADMIN_PROJECT)
    server = GlimpseServer(keystone.glimpse_settings(
        policy_file=str(policy_file), policy_reload_interval=RELOAD, log_level="debug"))
    try:
        def call(method: str, path: str, token: str, **body: object) -> httpx.Response:
            return httpx.request(method, server.url + path, headers={"X-Auth-Token": token},
                                 json=body or None, timeout=30)

        tag = uuid.uuid4().hex
        made = call("POST", "/v2/images", alice, name=f"{tag}-public", visibility="public")
        assert made.status_code == 201, made.text
        # Keystone's admin is no administrator here (context_is_admin is cloud_admin).
        assert call("POST", "/v2/images", admin, name="no",
                    visibility="public").status_code == 403
        assert call("POST", "/v2/images", bob, name="no", visibility="public").status_code == 403
        private = call("POST", "/v2/images", bob, name=f"{tag}-private", visibility="private")
        assert private.status_code == 201, private.text
        image_id = private.json()["id"]
        assert call("GET", f"/v2/images/{image_id}", bob).status_code == 404
        assert call("GET", f"/v2/images/{image_id}", admin).status_code == 404
        assert call("GET", f"/v2/images/{image_id}", boss).status_code == 200
        listed = call("GET", "/v2/images?limit=100", bob)
        assert not [i for i in listed.json()["images"] if i["name"].startswith(tag)]
        listed = call("GET", "/v2/images?limit=100", boss)
        assert {f"{tag}-public", f"{tag}-private"} <= {i["name"] for i in
                                                        listed.json()["images"]}
        write(policy_file, CASE_11.replace('get_image: "rule:context_is_admin"\n', ""))
        eventually(lambda: call("GET", f"/v2/images/{image_id}", bob).status_code == 200)
        log = server.log()
        assert keystone.TOKEN_MARK not in log and keystone.PASSWORD not in log
    finally:
        server.stop()

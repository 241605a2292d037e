"""Property protections over HTTP, through real servers with Glance's file formats: v2 create,
PATCH, show and list, and v1 headers (create, HEAD, GET, PUT with and without purge, detail
lists), with the callers' roles in X-Roles (noauth mode); and start-up refusals of bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import GlimpseServer, free_port

# Glance's functional tests' roles file, in substance.
ROLES_FILE = """\
[^x_owner_.*]
create = admin,member
read = admin,member
update = admin,member
delete = admin,member

[spl_create_prop]
create = admin,spl_role
read = admin,spl_role
update = admin
delete = admin

[spl_read_prop]
create = admin,spl_role
read = admin,spl_role
update = admin
delete = admin

[spl_update_prop]
create = admin,spl_role
read = admin,spl_role
update = admin,spl_role
delete = admin

[spl_delete_prop]
create = admin,spl_role
read = admin,spl_role
update = admin
delete = admin,spl_role

[spl_delete_empty_prop]
create = admin,spl_role
read = admin,spl_role
update = admin
delete = admin,spl_role

[^x_all_permitted.*]
create = @
read = @
update = @
delete = @

[^x_none_permitted.*]
create = !
read = !
update = !
delete = !

[x_none_read]
create = admin,member
read = !
update = !
delete = !

[.*]
create = admin
read = admin
update = admin
delete = admin
"""

POLICIES_FILE = """\
[spl_creator_policy]
create = glance_creator
read = glance_creator
update = context_is_admin
delete = context_is_admin

[spl_default_policy]
create = context_is_admin
read = default
update = context_is_admin
delete = context_is_admin

[.*]
create = context_is_admin
read = context_is_admin
update = context_is_admin
delete = context_is_admin
"""

V21 = "application/openstack-images-v2.1-json-patch"
FORMATS = {"disk_format": "aki", "container_format": "aki"}


def caller(roles: str, project: str = "proj") -> dict[str, str]:
    return {"X-Tenant-Id": project, "X-User-Id": f"user-{project}", "X-Roles": roles}


MEMBER = caller("reader,member")
SPL = caller("reader,member,spl_role")
ADMIN = caller("admin")


def start(tmp: Path, text: str, rule_format: str = "roles") -> GlimpseServer:
    path = tmp / f"protections-{rule_format}.conf"
    path.write_text(text)
    return GlimpseServer({"property_protection_file": str(path),
                          "property_protection_rule_format": rule_format})


@pytest.fixture(scope="module")
def roles_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server = start(tmp_path_factory.mktemp("roles"), ROLES_FILE)
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            yield client
    finally:
        server.stop()


def patch(client: httpx.Client, image_id: str, who: dict[str, str],
          ops: Sequence[Mapping[str, object]]) -> httpx.Response:
    return client.patch(f"/v2/images/{image_id}", content=json.dumps(ops), headers={
        **who, "Content-Type": V21, "Accept": "application/json"})


# -- v2 ---------------------------------------------------------------------------------------


def test_v2_create_refuses_a_property_the_caller_may_not_create(
        roles_client: httpx.Client) -> None:
    refused = roles_client.post("/v2/images", headers={**MEMBER, "Accept": "application/json"},
                                json={"name": "i", "foo": "bar", "x_owner_foo": "o", **FORMATS})
    assert refused.status_code == 403
    assert refused.json()["message"] == "Attribute 'foo' is reserved."
    made = roles_client.post("/v2/images", headers=MEMBER,
                             json={"name": "i", "x_owner_foo": "o", **FORMATS})
    assert made.status_code == 201
    assert made.json()["x_owner_foo"] == "o"


def test_v2_create_patch_show_and_list(roles_client: httpx.Client) -> None:
    made = roles_client.post("/v2/images", headers=SPL, json={
        "name": "spl", **FORMATS, "spl_create_prop": "create_bar",
        "spl_create_prop_policy": "create_policy_bar", "spl_read_prop": "read_bar",
        "spl_update_prop": "update_bar", "spl_delete_prop": "delete_bar",
        "spl_delete_empty_prop": ""})
    assert made.status_code == 201, made.text
    image_id = made.json()["id"]

    # Replacing a property spl_role may read but not update: 403, and nothing changes.
    response = patch(roles_client, image_id, SPL, [
        {"op": "replace", "path": "/spl_read_prop", "value": "r"},
        {"op": "replace", "path": "/spl_update_prop", "value": "u"}])
    assert response.status_code == 403, response.text
    assert response.json()["message"] == "Attribute 'spl_read_prop' is reserved."
    # Adding one it may not create, removing one it may not delete.
    for ops in ([{"op": "add", "path": "/spl_new_prop", "value": "new"}],
                [{"op": "remove", "path": "/spl_create_prop"}]):
        assert patch(roles_client, image_id, SPL, ops).status_code == 403
    shown = roles_client.get(f"/v2/images/{image_id}", headers=SPL).json()
    assert (shown["spl_read_prop"], shown["spl_update_prop"]) == ("read_bar", "update_bar")

    # What it may do (an empty value too: Glance's bug 1332103).
    response = patch(roles_client, image_id, SPL, [
        {"op": "replace", "path": "/spl_update_prop", "value": ""},
        {"op": "replace", "path": "/spl_update_prop", "value": "u"}])
    assert response.status_code == 200, response.text
    assert response.json()["spl_update_prop"] == "u"
    response = patch(roles_client, image_id, SPL, [
        {"op": "remove", "path": "/spl_delete_prop"},
        {"op": "remove", "path": "/spl_delete_empty_prop"}])
    assert response.status_code == 200, response.text
    assert "spl_delete_prop" not in response.json()
    assert "spl_delete_empty_prop" not in response.json()

    # A plain member of the project sees none of them, in show and in lists.
    shown = roles_client.get(f"/v2/images/{image_id}", headers=MEMBER).json()
    assert not [key for key in shown if key.startswith("spl_")]
    listed = roles_client.get("/v2/images", headers=MEMBER).json()["images"]
    assert [image for image in listed if image["id"] == image_id]
    assert not [key for image in listed for key in image if key.startswith("spl_")]
    # ... cannot find them with a filter ...
    found = roles_client.get("/v2/images", params={"spl_read_prop": "read_bar"},
                             headers=MEMBER).json()["images"]
    assert found == []
    found = roles_client.get("/v2/images", params={"spl_read_prop": "read_bar"},
                             headers=SPL).json()["images"]
    assert [image["id"] for image in found] == [image_id]
    # ... and cannot touch them: for it they do not exist.
    response = patch(roles_client, image_id, MEMBER,
                     [{"op": "replace", "path": "/spl_read_prop", "value": "x"}])
    assert response.status_code == 409, response.text
    response = patch(roles_client, image_id, MEMBER,
                     [{"op": "remove", "path": "/spl_read_prop"}])
    assert response.status_code == 409, response.text
    # The admin sees everything (the file grants it), and deletes the image.
    shown = roles_client.get(f"/v2/images/{image_id}", headers=ADMIN).json()
    assert shown["spl_read_prop"] == "read_bar"
    assert roles_client.delete(f"/v2/images/{image_id}", headers=ADMIN).status_code == 204


def test_v2_special_characters(roles_client: httpx.Client) -> None:
    # '@': anyone, whatever its roles; '!': no one, admins included.
    for who in (ADMIN, caller("joe_soap,member")):
        made = roles_client.post("/v2/images", headers=who,
                                 json={"name": "i", "x_all_permitted_1": "1"})
        assert made.status_code == 201
        assert made.json()["x_all_permitted_1"] == "1"
        refused = roles_client.post("/v2/images", headers=who,
                                    json={"name": "i", "x_none_permitted_1": "1"})
        assert refused.status_code == 403
    made = roles_client.post("/v2/images", headers=MEMBER, json={"name": "i", "x_none_read": "1"})
    assert made.status_code == 201
    # Created, then unreadable even to its creator, and to admins.
    assert "x_none_read" not in made.json()
    shown = roles_client.get(f"/v2/images/{made.json()['id']}", headers=ADMIN).json()
    assert "x_none_read" not in shown


# -- v1 ---------------------------------------------------------------------------------------


def v1_meta(**properties: str) -> dict[str, str]:
    return {f"x-image-meta-property-{k}": v for k, v in properties.items()}


def v1_properties(response: httpx.Response) -> dict[str, str]:
    prefix = "x-image-meta-property-"
    return {k[len(prefix):]: v for k, v in response.headers.items() if k.startswith(prefix)}


def test_v1_create_head_get_and_detail(roles_client: httpx.Client) -> None:
    refused = roles_client.post("/v1/images", headers={
        **MEMBER, "x-image-meta-name": "v1", **v1_meta(foo="bar", x_owner_foo="o")})
    assert refused.status_code == 403
    assert "Property 'foo' is protected" in refused.text
    made = roles_client.post("/v1/images", headers={
        **SPL, "x-image-meta-name": "v1", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare", "Content-Type": "application/octet-stream",
        **v1_meta(x_owner_foo="o", spl_read_prop="r", spl_delete_prop="d")}, content=b"abc")
    assert made.status_code == 201, made.text
    image_id = made.json()["image"]["id"]
    assert made.json()["image"]["properties"] == {
        "x_owner_foo": "o", "spl_read_prop": "r", "spl_delete_prop": "d"}

    head = roles_client.head(f"/v1/images/{image_id}", headers=MEMBER)
    assert v1_properties(head) == {"x_owner_foo": "o"}
    assert v1_properties(roles_client.head(f"/v1/images/{image_id}", headers=SPL)) == {
        "x_owner_foo": "o", "spl_read_prop": "r", "spl_delete_prop": "d"}
    download = roles_client.get(f"/v1/images/{image_id}", headers=MEMBER)
    assert download.content == b"abc"
    assert v1_properties(download) == {"x_owner_foo": "o"}
    detail = roles_client.get("/v1/images/detail", headers=MEMBER).json()["images"]
    assert [i["properties"] for i in detail if i["id"] == image_id] == [{"x_owner_foo": "o"}]
    # A filter on a property the member may not read finds nothing.
    found = roles_client.get("/v1/images/detail", params={"property-spl_read_prop": "r"},
                             headers=MEMBER).json()["images"]
    assert found == []


def test_v1_update_and_purge(roles_client: httpx.Client) -> None:
    made = roles_client.post("/v1/images", headers={
        **SPL, "x-image-meta-name": "v1", **v1_meta(
            x_owner_foo="o", spl_read_prop="r", spl_update_prop="u", spl_delete_prop="d")})
    assert made.status_code == 201, made.text
    url = f"/v1/images/{made.json()['image']['id']}"

    # The member resends what it sees (purge is on by default): the spl_ properties it
    # cannot read stay.
    updated = roles_client.put(url, headers={**MEMBER, "x-image-meta-name": "renamed",
                                             **v1_meta(x_owner_foo="o2")})
    assert updated.status_code == 200, updated.text
    assert updated.json()["image"]["properties"] == {"x_owner_foo": "o2"}
    assert v1_properties(roles_client.head(url, headers=ADMIN)) == {
        "x_owner_foo": "o2", "spl_read_prop": "r", "spl_update_prop": "u",
        "spl_delete_prop": "d"}

    every = {"x_owner_foo": "o2", "spl_read_prop": "r", "spl_update_prop": "u",
             "spl_delete_prop": "d"}
    # spl_role resends a property it may not update, unchanged: fine. Changed: 403.
    assert roles_client.put(url, headers={**SPL, **v1_meta(**every)}).status_code == 200
    changed = roles_client.put(url, headers={**SPL, **v1_meta(**{**every,
                                                                  "spl_read_prop": "x"})})
    assert changed.status_code == 403
    assert changed.text.strip().endswith("Property 'spl_read_prop' is protected")
    # Leaving out one it may not delete: 403; one it may delete: deleted.
    without_read = {k: v for k, v in every.items() if k != "spl_read_prop"}
    assert roles_client.put(url, headers={**SPL, **v1_meta(**without_read)}).status_code == 403
    without_delete = {k: v for k, v in every.items() if k != "spl_delete_prop"}
    response = roles_client.put(url, headers={**SPL, **v1_meta(**without_delete)})
    assert response.status_code == 200, response.text
    assert v1_properties(roles_client.head(url, headers=ADMIN)) == without_delete
    # Without purge, nothing is removed, and a new property still needs create.
    response = roles_client.put(url, headers={**SPL, "x-glance-registry-purge-props": "false",
                                              **v1_meta(spl_create_prop="c")})
    assert response.status_code == 200, response.text
    assert v1_properties(roles_client.head(url, headers=ADMIN)) == {
        **without_delete, "spl_create_prop": "c"}
    response = roles_client.put(url, headers={**MEMBER, "x-glance-registry-purge-props": "false",
                                              **v1_meta(brand_new="n")})
    assert response.status_code == 403


# -- the policies format ----------------------------------------------------------------------


def test_policies_format(tmp_path: Path) -> None:
    server = start(tmp_path, POLICIES_FILE, "policies")
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            refused = client.post("/v2/images", headers=MEMBER,
                                  json={"name": "i", "spl_default_policy": "d"})
            assert refused.status_code == 403
            made = client.post("/v2/images", headers=caller("admin,member"),
                               json={"name": "i", "spl_default_policy": "d", "other": "o"})
            assert made.status_code == 201, made.text
            image_id = made.json()["id"]
            # "default" lets anyone read; context_is_admin is role:admin.
            shown = client.get(f"/v2/images/{image_id}", headers=caller("reader,random")).json()
            assert shown["spl_default_policy"] == "d"
            assert "other" not in shown
            # glance_creator is defined by no policy file here: no one passes it.
            refused = client.post("/v2/images", headers=ADMIN,
                                  json={"name": "i", "spl_creator_policy": "c"})
            assert refused.status_code == 403
            assert "property protections name the policy rule 'glance_creator'" in server.log()
    finally:
        server.stop()


# -- start-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rule_format", "message"), [
    ("", "roles", "no sections"),
    ("[a(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n", "roles",
     "is not a valid regular expression"),
    ("[a]\ncreate = @\nread = @\nupdate = @\n", "roles", "does not give delete"),
    ("[a]\ncreate = @\nread = @\nupdate = @\ndelete = @\nsmash = @\n", "roles",
     "unknown operation smash"),
    ("[a]\ncreate = r1,r2\nread = @\nupdate = @\ndelete = @\n", "policies",
     "one policy rule per operation"),
    ("[a]\ncreate = admin\n", "rolez", "property_protection_rule_format"),
])
def test_bad_files_stop_glimpse_at_start_up(tmp_path: Path, text: str, rule_format: str,
                                            message: str) -> None:
    path = tmp_path / "protections.conf"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update(GLIMPSE_DATA_DIR=str(tmp_path / "data"),
               GLIMPSE_PROPERTY_PROTECTION_FILE=str(path),
               GLIMPSE_PROPERTY_PROTECTION_RULE_FORMAT=rule_format)
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "configuration error" in done.stderr
    assert message in done.stderr


def test_a_missing_file_stops_glimpse(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update(GLIMPSE_DATA_DIR=str(tmp_path / "data"),
               GLIMPSE_PROPERTY_PROTECTION_FILE=str(tmp_path / "absent.conf"))
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "absent.conf: cannot be read" in done.stderr

"""Image representations and the header codec (spec §5, §5.4, §6)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.e2e

FULL_KEYS = {
    "id", "name", "status", "size", "virtual_size", "checksum", "disk_format",
    "container_format", "min_disk", "min_ram", "is_public", "protected", "owner",
    "created_at", "updated_at", "deleted_at", "deleted", "properties",
}
BRIEF_KEYS = {"id", "name", "size", "disk_format", "container_format", "checksum"}
HEADER_ATTRS = {
    "id", "name", "status", "size", "virtual_size", "checksum", "disk_format",
    "container_format", "min_disk", "min_ram", "is_public", "protected", "owner",
    "created_at", "updated_at", "deleted_at", "deleted",
}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")
FORBIDDEN_WORDS = ("location", "store", "direct_url", "uri")
OCTET = {"Content-Type": "application/octet-stream"}
FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}


def who(tenant: str | None, roles: str = "member") -> dict[str, str]:
    headers = {"X-Roles": roles, "X-User-Id": f"user-{tenant or 'none'}"}
    if tenant is not None:
        headers["X-Tenant-Id"] = tenant
    return headers


def create(client: httpx.Client, headers: dict[str, str], content: bytes | None = None
           ) -> httpx.Response:
    hdrs = dict(headers)
    if content:
        hdrs.update(OCTET)
    return client.post("/v1/images", headers=hdrs, content=content)


def created_image(client: httpx.Client, headers: dict[str, str],
                  content: bytes | None = None) -> dict[str, object]:
    resp = create(client, headers, content)
    assert resp.status_code == 201, resp.text
    image: dict[str, object] = resp.json()["image"]
    return image


def raw_meta(resp: httpx.Response) -> dict[str, str]:
    """x-image-meta-* response headers: lower-cased name -> UTF-8 decoded value."""
    out: dict[str, str] = {}
    for name, value in resp.headers.raw:
        lname = name.decode("latin-1").lower()
        if lname.startswith("x-image-meta-"):
            assert lname not in out, f"duplicate header {lname}"
            out[lname] = value.decode("utf-8")
    return out


def head(client: httpx.Client, image_id: object, headers: dict[str, str] | None = None
         ) -> httpx.Response:
    return client.head(f"/v1/images/{image_id}", headers=headers or {})


def head_meta(client: httpx.Client, image_id: object,
              headers: dict[str, str] | None = None) -> dict[str, str]:
    resp = head(client, image_id, headers)
    assert resp.status_code == 200, resp.status_code
    return raw_meta(resp)


def assert_not_created(client: httpx.Client, image_id: str) -> None:
    assert head(client, image_id).status_code == 404


def bad_request(resp: httpx.Response, fragment: str | None = None) -> None:
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert "Traceback" not in resp.text
    if fragment is not None:
        assert fragment in resp.text, resp.text



@pytest.fixture(scope="module")
def custom_server() -> Iterator[GlimpseServer]:
    srv = GlimpseServer({
        "owner_is_tenant": "false",
        "disk_formats": "raw,qcow2",
        "container_formats": "bare,ovf",
    })
    yield srv
    srv.stop()


# --- §5.2 JSON representations ----------------------------------------------------------


def test_full_representation_keys_and_types(client: httpx.Client, unique: str) -> None:
    data = b"hello glimpse " + unique.encode()
    image = created_image(client, {
        **who(f"t-{unique}"), **FORMATS,
        "x-image-meta-name": f"full-{unique}",
        "x-image-meta-min_ram": "512", "x-image-meta-min_disk": "3",
        "x-image-meta-virtual_size": "4096",
        "x-image-meta-property-distro": "ubuntu",
    }, data)
    assert set(image) == FULL_KEYS
    assert image["status"] == "active"
    assert image["size"] == len(data) and type(image["size"]) is int
    # Inspection records what the content is: raw bytes, as many as were sent.
    assert image["virtual_size"] == len(data) and type(image["virtual_size"]) is int
    assert image["min_ram"] == 512 and type(image["min_ram"]) is int
    assert image["min_disk"] == 3 and type(image["min_disk"]) is int
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["is_public"] is False
    assert image["protected"] is False
    assert image["deleted"] is False
    assert image["deleted_at"] is None
    assert image["owner"] == f"t-{unique}"
    assert image["disk_format"] == "raw" and image["container_format"] == "bare"
    assert image["properties"] == {"distro": "ubuntu"}
    assert isinstance(image["created_at"], str) and TIMESTAMP.match(image["created_at"])
    assert isinstance(image["updated_at"], str) and TIMESTAMP.match(image["updated_at"])
    assert image["updated_at"] >= image["created_at"]
    uuid.UUID(str(image["id"]))


def test_reserved_image_defaults_are_null(client: httpx.Client, unique: str) -> None:
    resp = create(client, {**who(f"t-{unique}")})
    assert resp.status_code == 201
    assert resp.headers["content-type"].split(";")[0].strip() == "application/json"
    assert "etag" not in resp.headers
    image = resp.json()["image"]
    assert set(resp.json()) == {"image"}
    assert set(image) == FULL_KEYS
    assert image["status"] == "queued"
    assert image["name"] is None
    assert image["checksum"] is None
    assert image["virtual_size"] is None
    assert image["disk_format"] is None and image["container_format"] is None
    assert image["size"] == 0 and image["min_ram"] == 0 and image["min_disk"] == 0
    assert image["properties"] == {}
    assert resp.headers["location"].endswith(f"/v1/images/{image['id']}")


def test_detail_list_full_and_brief_list_keys(client: httpx.Client, unique: str) -> None:
    tenant = who(f"t-{unique}")
    data = b"x" * 77
    image = created_image(client, {**tenant, **FORMATS, "x-image-meta-name": f"lst-{unique}"},
                          data)
    detail = client.get("/v1/images/detail", params={"name": f"lst-{unique}"}, headers=tenant)
    assert detail.status_code == 200
    assert list(detail.json()) == ["images"]
    (entry,) = detail.json()["images"]
    assert set(entry) == FULL_KEYS
    assert entry == image
    brief = client.get("/v1/images", params={"name": f"lst-{unique}"}, headers=tenant)
    assert brief.status_code == 200
    (b,) = brief.json()["images"]
    assert set(b) == BRIEF_KEYS
    assert b == {
        "id": image["id"], "name": f"lst-{unique}", "size": 77, "disk_format": "raw",
        "container_format": "bare", "checksum": hashlib.md5(data).hexdigest(),
    }
    assert type(b["size"]) is int


def test_no_location_or_store_ever_returned(
    client: httpx.Client, server: GlimpseServer, unique: str
) -> None:
    data = b"secret-location-data"
    resp = create(client, {
        **FORMATS, "x-image-meta-name": f"loc-{unique}", "x-image-meta-store": "file",
    }, data)
    assert resp.status_code == 201
    image_id = resp.json()["image"]["id"]
    responses = [
        resp,
        client.put(f"/v1/images/{image_id}", headers={"x-image-meta-name": f"loc2-{unique}"}),
        head(client, image_id),
        client.get(f"/v1/images/{image_id}"),
        client.get("/v1/images/detail", params={"name": f"loc2-{unique}", "is_public": "none"}),
    ]
    for r in responses:
        assert r.status_code in (200, 201)
        for name, value in r.headers.raw:
            lname = name.decode("latin-1").lower()
            if lname.startswith("x-"):
                assert not any(word in lname for word in FORBIDDEN_WORDS), lname
            assert b"file://" not in value
            assert str(server.data_dir).encode() not in value
            if lname.startswith("x-image-meta-"):
                assert lname[13:] in HEADER_ATTRS or lname.startswith("x-image-meta-property-")
    for r in (responses[0], responses[1], responses[4]):
        body = r.json()
        images = body["images"] if "images" in body else [body["image"]]
        assert len(images) == 1
        assert set(images[0]) == FULL_KEYS
        assert "file://" not in r.text
        assert str(server.data_dir) not in r.text
    assert responses[3].content == data


# --- §5.3 header representation -----------------------------------------------------------


def test_head_renders_underscore_names_and_python_booleans(
    client: httpx.Client, unique: str
) -> None:
    data = b"0123456789" * 10
    image = created_image(client, {
        **FORMATS, "x-image-meta-name": f"hd-{unique}", "x-image-meta-owner": f"o-{unique}",
        "x-image-meta-is_public": "true", "x-image-meta-protected": "True",
        "x-image-meta-min_ram": "128", "x-image-meta-min_disk": "2",
        "x-image-meta-virtual_size": "1000",  # replaced by the inspected size, 100
        "x-image-meta-property-os_version": "22.04",
        "x-image-meta-property-empty": "",
    }, data)
    resp = head(client, image["id"])
    assert resp.status_code == 200
    assert resp.content == b""
    meta = raw_meta(resp)
    checksum = hashlib.md5(data).hexdigest()
    expected = {
        "x-image-meta-id": str(image["id"]),
        "x-image-meta-name": f"hd-{unique}",
        "x-image-meta-status": "active",
        "x-image-meta-size": "100",
        "x-image-meta-virtual_size": "100",
        "x-image-meta-checksum": checksum,
        "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare",
        "x-image-meta-min_disk": "2",
        "x-image-meta-min_ram": "128",
        "x-image-meta-is_public": "True",
        "x-image-meta-protected": "True",
        "x-image-meta-owner": f"o-{unique}",
        "x-image-meta-created_at": image["created_at"],
        "x-image-meta-updated_at": image["updated_at"],
        "x-image-meta-deleted": "False",
        "x-image-meta-property-os_version": "22.04",
    }
    assert meta == expected
    assert resp.headers.get_list("etag") == [checksum]
    # clean up the protected public image
    upd = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-protected": "False"})
    assert upd.status_code == 200
    assert client.delete(f"/v1/images/{image['id']}").status_code == 200


def test_head_omits_null_attributes(client: httpx.Client, unique: str) -> None:
    image = created_image(client, {})  # anonymous admin: owner null, name null
    resp = head(client, image["id"])
    assert resp.status_code == 200
    meta = raw_meta(resp)
    assert set(meta) == {
        "x-image-meta-id", "x-image-meta-status", "x-image-meta-size",
        "x-image-meta-min_disk", "x-image-meta-min_ram", "x-image-meta-is_public",
        "x-image-meta-protected", "x-image-meta-created_at", "x-image-meta-updated_at",
        "x-image-meta-deleted",
    }
    assert meta["x-image-meta-status"] == "queued"
    assert meta["x-image-meta-size"] == "0"
    assert meta["x-image-meta-is_public"] == "False"
    assert meta["x-image-meta-protected"] == "False"
    assert meta["x-image-meta-deleted"] == "False"
    assert TIMESTAMP.match(meta["x-image-meta-created_at"])
    assert TIMESTAMP.match(meta["x-image-meta-updated_at"])
    assert "etag" not in resp.headers


def test_utf8_values_including_emoji(client: httpx.Client, unique: str) -> None:
    name = f"Ünïcödé 🐍 {unique}"
    prop = "日本語 ✓ 🚀"
    image = created_image(client, {
        **who(f"t-{unique}"),
        "x-image-meta-name": quote(name, safe="/:"),
        "x-image-meta-property-desc": quote(prop, safe="/:"),
    })
    assert image["name"] == name
    assert image["properties"] == {"desc": prop}
    resp = head(client, image["id"], who(f"t-{unique}"))
    assert resp.status_code == 200
    raw = {n.decode("latin-1").lower(): v for n, v in resp.headers.raw}
    assert raw["x-image-meta-name"] == name.encode("utf-8")
    assert raw["x-image-meta-property-desc"] == prop.encode("utf-8")
    detail = client.get("/v1/images/detail", params={"name": name}, headers=who(f"t-{unique}"))
    assert detail.status_code == 200
    assert [i["id"] for i in detail.json()["images"]] == [image["id"]]


def test_timestamps_format_in_json_and_headers(client: httpx.Client, unique: str) -> None:
    image = created_image(client, {**who(f"t-{unique}"), "x-image-meta-name": f"ts-{unique}"})
    meta = head_meta(client, image["id"], who(f"t-{unique}"))
    for key in ("created_at", "updated_at"):
        assert TIMESTAMP.match(str(image[key]))
        assert meta[f"x-image-meta-{key}"] == image[key]


# --- §5.4 input codec ------------------------------------------------------------------------


def test_property_key_mapping(client: httpx.Client, unique: str) -> None:
    image = created_image(client, {
        **who(f"t-{unique}"),
        "X-Image-Meta-Property-Distro": "ubuntu",
        "x-image-meta-property-os-version": "22.04",
        "X-IMAGE-META-PROPERTY-Hw-Disk-Bus": "scsi",
        "x-image-meta-property-owner_specified.openstack.md5": "abc",
        "x-image-meta-property-nothing": "",
    })
    assert image["properties"] == {
        "distro": "ubuntu",
        "os_version": "22.04",
        "hw_disk_bus": "scsi",
        "owner_specified.openstack.md5": "abc",
        "nothing": None,
    }
    meta = head_meta(client, image["id"], who(f"t-{unique}"))
    props = {k: v for k, v in meta.items() if k.startswith("x-image-meta-property-")}
    assert props == {
        "x-image-meta-property-distro": "ubuntu",
        "x-image-meta-property-os_version": "22.04",
        "x-image-meta-property-hw_disk_bus": "scsi",
        "x-image-meta-property-owner_specified.openstack.md5": "abc",
    }


def test_dash_and_underscore_header_names_are_equivalent(client: httpx.Client) -> None:
    image = created_image(client, {
        "x-image-meta-disk-format": "qcow2", "x-image-meta-container-format": "ovf",
        "x-image-meta-min-ram": "64", "x-image-meta-min-disk": "1",
        "x-image-meta-is-public": "false",
    })
    assert image["disk_format"] == "qcow2" and image["container_format"] == "ovf"
    assert image["min_ram"] == 64 and image["min_disk"] == 1
    image2 = created_image(client, {
        "x-image-meta-disk_format": "qcow2", "x-image-meta-container_format": "ovf",
        "x-image-meta-min_ram": "64", "x-image-meta-min_disk": "1",
    })
    assert image2["disk_format"] == "qcow2" and image2["min_ram"] == 64


@pytest.mark.parametrize(
    "header",
    ["x-image-meta-foo", "x-image-meta-disk", "x-image-meta-property", "x-image-meta-locations",
     "x-image-meta-direct_url"],
)
def test_unknown_meta_header_is_400_and_creates_nothing(
    client: httpx.Client, header: str
) -> None:
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id, header: "bar"})
    bad_request(resp)
    assert_not_created(client, image_id)


def test_unknown_meta_header_on_update_is_400(client: httpx.Client, unique: str) -> None:
    image = created_image(client, {"x-image-meta-name": f"uk-{unique}"})
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-foo": "bar",
                                                           "x-image-meta-name": "changed"})
    bad_request(resp)
    assert head_meta(client, image["id"])["x-image-meta-name"] == f"uk-{unique}"


@pytest.mark.parametrize(
    ("header", "value", "fragment"),
    [
        ("size", "abc", None),
        ("size", "-1", None),
        ("size", "1.5", None),
        ("min_ram", "-5", None),
        ("min_ram", "lots", None),
        ("min_disk", "-1", None),
        ("min_disk", "x", None),
        ("virtual_size", "-1", None),
        ("virtual_size", "big", None),
        ("min_ram", "2147483648", "'min_ram' value out of range"),
        ("min_disk", "2147483648", "'min_disk' value out of range"),
    ],
)
def test_bad_integer_values_are_400(
    client: httpx.Client, header: str, value: str, fragment: str | None
) -> None:
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id, f"x-image-meta-{header}": value})
    bad_request(resp, fragment)
    assert_not_created(client, image_id)


def test_integer_bounds_and_virtual_size_none(client: httpx.Client) -> None:
    image = created_image(client, {
        "x-image-meta-min_ram": "2147483647", "x-image-meta-min_disk": "2147483647",
        "x-image-meta-virtual_size": "None", "x-image-meta-size": "12",
    })
    assert image["min_ram"] == 2147483647
    assert image["min_disk"] == 2147483647
    assert image["virtual_size"] is None
    assert image["size"] == 12 and image["status"] == "queued"


def test_integer_out_of_range_on_update(client: httpx.Client, unique: str) -> None:
    image = created_image(client, {"x-image-meta-name": f"rng-{unique}"})
    resp = client.put(f"/v1/images/{image['id']}",
                      headers={"x-image-meta-min_ram": "2147483648"})
    bad_request(resp, "'min_ram' value out of range")
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-min_disk": "-3"})
    bad_request(resp)
    assert head_meta(client, image["id"])["x-image-meta-min_ram"] == "0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True), ("t", True), ("TRUE", True), ("on", True), ("y", True), ("Yes", True),
        ("True", True), ("None", False), ("false", False), ("0", False), ("nah", False),
        ("", False), ("off", False),
    ],
)
def test_lenient_boolean_parsing(client: httpx.Client, value: str, expected: bool) -> None:
    image = created_image(client, {
        "x-image-meta-is_public": value, "x-image-meta-protected": value,
        "x-image-meta-deleted": value,
    })
    assert image["is_public"] is expected
    assert image["protected"] is expected
    assert image["deleted"] is False  # accepted and ignored
    if expected:
        resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-protected": "0"})
        assert resp.status_code == 200
        assert resp.json()["image"]["protected"] is False


def test_non_admin_is_public_none_is_false(client: httpx.Client, unique: str) -> None:
    image = created_image(client, {**who(f"t-{unique}"), "x-image-meta-is_public": "None"})
    assert image["is_public"] is False
    assert image["owner"] == f"t-{unique}"


@pytest.mark.parametrize("value", ["true", "yes", "1"])
def test_non_admin_publicize_is_403(client: httpx.Client, unique: str, value: str) -> None:
    image_id = str(uuid.uuid4())
    resp = create(client, {**who(f"t-{unique}"), "x-image-meta-id": image_id,
                           "x-image-meta-is_public": value})
    assert resp.status_code == 403
    assert_not_created(client, image_id)


RESERVED = ["os_glance_import_task", "os_glance_importing_to_stores", "os_glance_failed_import",
            "os_glance_stage_host", "os_glance_hash_op_host"]


@pytest.mark.parametrize("key", RESERVED)
def test_reserved_properties_are_403_on_create(client: httpx.Client, unique: str,
                                               key: str) -> None:
    """The os_glance namespace belongs to the import machinery: no client sets it, admins
    included, and a refused create leaves no image."""
    for headers in (who(f"t-{unique}"), {}):  # a tenant, then the anonymous admin
        image_id = str(uuid.uuid4())
        resp = create(client, {**headers, "x-image-meta-id": image_id,
                               f"x-image-meta-property-{key}": "forged"})
        assert resp.status_code == 403, resp.text
        assert "reserved" in resp.text and "Traceback" not in resp.text
        assert_not_created(client, image_id)


@pytest.mark.parametrize("key", RESERVED)
def test_reserved_properties_are_403_on_update(client: httpx.Client, unique: str,
                                               key: str) -> None:
    image = created_image(client, {**who(f"t-{unique}"), "x-image-meta-property-a": "1"})
    resp = client.put(f"/v1/images/{image['id']}",
                      headers={**who(f"t-{unique}"), f"x-image-meta-property-{key}": "forged",
                               "x-glance-registry-purge-props": "false"})
    assert resp.status_code == 403, resp.text
    head = client.head(f"/v1/images/{image['id']}", headers=who(f"t-{unique}"))
    assert f"x-image-meta-property-{key}" not in head.headers
    assert head.headers["x-image-meta-property-a"] == "1"


def test_name_length(client: httpx.Client) -> None:
    image = created_image(client, {"x-image-meta-name": "n" * 255})
    assert image["name"] == "n" * 255
    accented = "é" * 255
    image = created_image(client, {"x-image-meta-name": quote(accented)})
    assert image["name"] == accented
    image_id = str(uuid.uuid4())
    bad_request(create(client, {"x-image-meta-id": image_id, "x-image-meta-name": "n" * 256}))
    assert_not_created(client, image_id)
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-name": "m" * 256})
    bad_request(resp)


def test_checksum_length(client: httpx.Client) -> None:
    checksum = "0123456789abcdef0123456789abcdef"
    image = created_image(client, {"x-image-meta-checksum": checksum})
    assert image["checksum"] == checksum
    assert image["status"] == "queued"
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id, "x-image-meta-checksum": checksum + "0"})
    bad_request(resp, "Invalid checksum")
    assert_not_created(client, image_id)


@pytest.mark.parametrize("field", ["created_at", "updated_at", "deleted_at"])
@pytest.mark.parametrize("value", ["foo", "-42", "1100", "2012-01-01hey12:32:12", "1899-12-31"])
def test_bad_timestamps_are_400(client: httpx.Client, field: str, value: str) -> None:
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id, f"x-image-meta-{field}": value})
    bad_request(resp)
    assert_not_created(client, image_id)


@pytest.mark.parametrize("field", ["created_at", "updated_at", "deleted_at"])
def test_valid_timestamps_accepted(client: httpx.Client, field: str) -> None:
    image = created_image(client, {f"x-image-meta-{field}": "2012-01-01T12:32:12"})
    assert image["status"] == "queued"
    assert image["deleted"] is False
    assert image["deleted_at"] is None


def test_bad_timestamp_on_update_is_400(client: httpx.Client) -> None:
    image = created_image(client, {})
    bad_request(client.put(f"/v1/images/{image['id']}",
                           headers={"x-image-meta-created_at": "foo"}))


def test_status_ignored_on_create(client: httpx.Client) -> None:
    for status in ("active", "killed", "deleted"):
        image = created_image(client, {"x-image-meta-status": status})
        assert image["status"] == "queued"


def test_status_change_on_update_is_403(client: httpx.Client) -> None:
    image = created_image(client, {})
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-status": "active"})
    assert resp.status_code == 403
    assert "Forbidden to modify 'status'" in resp.text
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-status": "queued"})
    assert resp.status_code == 200
    assert resp.json()["image"]["status"] == "queued"


def test_id_honoured_on_create_and_immutable(client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    image = created_image(client, {"x-image-meta-id": image_id})
    assert image["id"] == image_id
    other = str(uuid.uuid4())
    assert client.put(f"/v1/images/{image_id}",
                      headers={"x-image-meta-id": other}).status_code == 403
    assert_not_created(client, other)
    resp = client.put(f"/v1/images/{image_id}", headers={"x-image-meta-id": image_id})
    assert resp.status_code == 200
    assert resp.json()["image"]["id"] == image_id


@pytest.mark.parametrize("bad", ["not-a-uuid", "12345", "6b3ecfca-d445-4946-a8d1-c4938352b25z"])
def test_bad_id_on_create_is_400(client: httpx.Client, bad: str) -> None:
    bad_request(create(client, {"x-image-meta-id": bad}))


def test_ignored_inputs_accepted(client: httpx.Client, unique: str) -> None:
    image = created_image(client, {
        "x-image-meta-name": f"ign-{unique}",
        "x-image-meta-deleted": "true",
        "x-image-meta-uri": "http://example.com/whatever",
        "x-image-meta-copy_from": "http://example.com/other",
    })
    assert image["deleted"] is False
    assert image["status"] == "queued"
    assert set(image) == FULL_KEYS


def test_owner_rules_on_create(client: httpx.Client, unique: str) -> None:
    # anonymous admin: owner null
    assert created_image(client, {})["owner"] is None
    # anonymous admin with explicit owner
    assert created_image(client, {"x-image-meta-owner": f"o-{unique}"})["owner"] == f"o-{unique}"
    # tenant admin: owner = own tenant unless told otherwise
    admin = who(f"adm-{unique}", roles="admin")
    assert created_image(client, admin)["owner"] == f"adm-{unique}"
    assert created_image(client, {**admin, "x-image-meta-owner": f"o-{unique}"})["owner"] == \
        f"o-{unique}"
    # non-admin: explicit owner silently ignored
    user = who(f"t-{unique}", roles="member,_member_")
    assert created_image(client, {**user, "x-image-meta-owner": f"o-{unique}"})["owner"] == \
        f"t-{unique}"
    # X-Project-Id works like X-Tenant-Id
    proj = {"X-Project-Id": f"p-{unique}", "X-Roles": "member"}
    assert created_image(client, proj)["owner"] == f"p-{unique}"
    # identity without a tenant: owner null
    assert created_image(client, {"X-Roles": "member"})["owner"] is None
    # Admin role is case-insensitive
    upper = who(f"up-{unique}", roles="Member, ADMIN")
    assert created_image(client, {**upper, "x-image-meta-owner": f"o2-{unique}"})["owner"] == \
        f"o2-{unique}"


def test_owner_rules_on_update(client: httpx.Client, unique: str) -> None:
    user = who(f"t-{unique}")
    image = created_image(client, user)
    resp = client.put(f"/v1/images/{image['id']}",
                      headers={**user, "x-image-meta-owner": f"x-{unique}"})
    assert resp.status_code == 200
    assert resp.json()["image"]["owner"] == f"t-{unique}"
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-owner": f"y-{unique}"})
    assert resp.status_code == 200
    assert resp.json()["image"]["owner"] == f"y-{unique}"
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-owner": ""})
    assert resp.status_code == 200
    assert resp.json()["image"]["owner"] is None
    assert "x-image-meta-owner" not in head_meta(client, image["id"])


def test_owner_is_user_when_not_tenant(custom_server: GlimpseServer, unique: str) -> None:
    with httpx.Client(base_url=custom_server.url, timeout=10) as c:
        headers = {"X-Tenant-Id": f"t-{unique}", "X-User-Id": f"u-{unique}", "X-Roles": "member"}
        image = created_image(c, headers)
        assert image["owner"] == f"u-{unique}"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("My%20Image%21", "My Image!"),
        ("100%", "100%"),
        ("50%zz", "50%zz"),
        ("ab%4", "ab%4"),
        ("%25", "%"),
        ("%2541", "%41"),
        ("caf%c3%a9", "café"),
        ("a%2Fb%3Ac", "a/b:c"),
        ("%E2%9C%93 ok", "✓ ok"),
        ("plain", "plain"),
    ],
)
def test_percent_decoding(client: httpx.Client, unique: str, sent: str, stored: str) -> None:
    image = created_image(client, {
        "x-image-meta-name": sent, "x-image-meta-property-tag": sent,
        "x-image-meta-property-u": unique,
    })
    assert image["name"] == stored
    assert image["properties"]["tag"] == stored
    meta = head_meta(client, image["id"])
    assert meta["x-image-meta-name"] == stored
    assert meta["x-image-meta-property-tag"] == stored


def test_percent_decoding_on_update(client: httpx.Client) -> None:
    image = created_image(client, {})
    resp = client.put(f"/v1/images/{image['id']}",
                      headers={"x-image-meta-name": "New%20Name", "x-image-meta-owner": "a%20b"})
    assert resp.status_code == 200
    assert resp.json()["image"]["name"] == "New Name"
    assert resp.json()["image"]["owner"] == "a b"


@pytest.mark.parametrize("value", ["foo%0D%0Abar", "foo%0Abar", "foo%0Dbar", "foo%00bar",
                                   "%0d%0aX-Injected: 1"])
@pytest.mark.parametrize("header", ["x-image-meta-name", "x-image-meta-property-evil"])
def test_smuggled_control_characters_rejected(
    client: httpx.Client, header: str, value: str
) -> None:
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id, header: value})
    bad_request(resp)
    assert_not_created(client, image_id)


def test_smuggled_control_characters_rejected_on_update(client: httpx.Client) -> None:
    image = created_image(client, {"x-image-meta-name": "clean"})
    resp = client.put(f"/v1/images/{image['id']}",
                      headers={"x-image-meta-name": "a%0D%0Ax-image-meta-status: active"})
    bad_request(resp)
    meta = head_meta(client, image["id"])
    assert meta["x-image-meta-name"] == "clean"
    assert meta["x-image-meta-status"] == "queued"


# --- §6 formats --------------------------------------------------------------------------


def test_all_default_formats_accepted(client: httpx.Client) -> None:
    for disk in ("vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"):
        image = created_image(client, {"x-image-meta-disk_format": disk,
                                       "x-image-meta-container_format": "bare"})
        assert image["disk_format"] == disk
    for container in ("bare", "ovf", "ova", "docker"):
        image = created_image(client, {"x-image-meta-disk_format": "raw",
                                       "x-image-meta-container_format": container})
        assert image["container_format"] == container


def test_invalid_formats_are_400(client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id, "x-image-meta-disk_format": "floppy"})
    bad_request(resp, "Invalid disk format")
    assert_not_created(client, image_id)
    resp = create(client, {"x-image-meta-id": image_id,
                           "x-image-meta-container_format": "crate"})
    bad_request(resp, "Invalid container format")
    assert_not_created(client, image_id)
    image = created_image(client, FORMATS)
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-disk_format": "floppy"})
    bad_request(resp, "Invalid disk format")
    resp = client.put(f"/v1/images/{image['id']}",
                      headers={"x-image-meta-container_format": "crate"})
    bad_request(resp, "Invalid container format")
    meta = head_meta(client, image["id"])
    assert meta["x-image-meta-disk_format"] == "raw"
    assert meta["x-image-meta-container_format"] == "bare"


def test_configured_format_lists(custom_server: GlimpseServer) -> None:
    with httpx.Client(base_url=custom_server.url, timeout=10) as c:
        ok = created_image(c, {"x-image-meta-disk_format": "qcow2",
                               "x-image-meta-container_format": "ovf"})
        assert ok["disk_format"] == "qcow2"
        bad_request(create(c, {"x-image-meta-disk_format": "iso"}), "Invalid disk format")
        bad_request(create(c, {"x-image-meta-container_format": "docker"}),
                    "Invalid container format")


@pytest.mark.parametrize("fmt", ["aki", "ari", "ami"])
def test_amazon_pairing(client: httpx.Client, fmt: str) -> None:
    image = created_image(client, {"x-image-meta-disk_format": fmt})
    assert image["container_format"] == fmt
    image = created_image(client, {"x-image-meta-container_format": fmt})
    assert image["disk_format"] == fmt
    image = created_image(client, {"x-image-meta-disk_format": fmt,
                                   "x-image-meta-container_format": fmt})
    assert (image["disk_format"], image["container_format"]) == (fmt, fmt)


@pytest.mark.parametrize(("disk", "container"),
                         [("aki", "bare"), ("raw", "ami"), ("aki", "ari"), ("ami", "ovf")])
def test_amazon_mismatch_is_400(client: httpx.Client, disk: str, container: str) -> None:
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id, "x-image-meta-disk_format": disk,
                           "x-image-meta-container_format": container})
    bad_request(resp, "Invalid mix of disk and container formats")
    assert_not_created(client, image_id)


def test_amazon_pairing_on_update_looks_at_request_only(client: httpx.Client) -> None:
    image = created_image(client, FORMATS)
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-disk_format": "aki"})
    assert resp.status_code == 200
    assert resp.json()["image"]["disk_format"] == "aki"
    assert resp.json()["image"]["container_format"] == "aki"
    # stored formats are aki/aki; setting only the disk format to raw is fine
    resp = client.put(f"/v1/images/{image['id']}", headers={"x-image-meta-disk_format": "raw"})
    assert resp.status_code == 200
    assert resp.json()["image"]["disk_format"] == "raw"
    assert resp.json()["image"]["container_format"] == "aki"
    resp = client.put(f"/v1/images/{image['id']}",
                      headers={"x-image-meta-disk_format": "ari",
                               "x-image-meta-container_format": "bare"})
    bad_request(resp, "Invalid mix of disk and container formats")


def test_formats_optional_while_queued(client: httpx.Client) -> None:
    image = created_image(client, {"x-image-meta-name": "noformats"})
    assert image["status"] == "queued"
    assert image["disk_format"] is None and image["container_format"] is None


def _status_or_none(client: httpx.Client, image_id: str) -> str | None:
    resp = head(client, image_id)
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200
    return resp.headers["x-image-meta-status"]


def test_formats_mandatory_at_activation_on_create(client: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id,
                           "x-image-meta-container_format": "bare"}, b"data")
    bad_request(resp, "Disk format is not specified")
    assert _status_or_none(client, image_id) in (None, "killed")
    image_id = str(uuid.uuid4())
    resp = create(client, {"x-image-meta-id": image_id, "x-image-meta-disk_format": "raw"},
                  b"data")
    bad_request(resp, "Container format is not specified")
    assert _status_or_none(client, image_id) in (None, "killed")


def test_formats_mandatory_at_activation_on_put(client: httpx.Client) -> None:
    image = created_image(client, {"x-image-meta-container_format": "bare"})
    resp = client.put(f"/v1/images/{image['id']}", headers=OCTET, content=b"data")
    bad_request(resp, "Disk format is not specified")
    assert _status_or_none(client, str(image["id"])) in ("queued", "killed")
    image = created_image(client, {"x-image-meta-disk_format": "raw"})
    resp = client.put(f"/v1/images/{image['id']}", headers=OCTET, content=b"data")
    bad_request(resp, "Container format is not specified")
    assert _status_or_none(client, str(image["id"])) in ("queued", "killed")


def test_stored_formats_count_at_activation(client: httpx.Client) -> None:
    image = created_image(client, {"x-image-meta-disk_format": "raw"})
    resp = client.put(f"/v1/images/{image['id']}",
                      headers={**OCTET, "x-image-meta-container_format": "bare"},
                      content=b"payload")
    assert resp.status_code == 200, resp.text
    assert resp.json()["image"]["status"] == "active"
    assert resp.json()["image"]["container_format"] == "bare"

"""The v1 header codec (spec §5.3, §5.4)."""

from __future__ import annotations

import datetime as dt

import pytest

from glimpse.api.v1 import headers as codec
from glimpse.domain.model import Image, Location, Status, Visibility
from glimpse.errors import Invalid


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"My%20Image%21", "My Image!"),
        (b"100%", "100%"),
        (b"%zz", "%zz"),
        (b"caf%C3%A9", "caf\u00e9"),
        ("caf\u00e9 \U0001f600".encode(), "caf\u00e9 \U0001f600"),
        (b"a%2Fb:c", "a/b:c"),
    ],
)
def test_decode_value(raw: bytes, text: str) -> None:
    assert codec.decode_value(raw) == text


@pytest.mark.parametrize("raw", [b"a%0D%0Ab", b"x%00", b"\xff\xfe", b"%FF", b"a\x01b"])
def test_decode_value_refuses_control_and_invalid_utf8(raw: bytes) -> None:
    with pytest.raises(Invalid):
        codec.decode_value(raw)


@pytest.mark.parametrize("word", ["1", "t", "True", "on", "Y", "yes", "TRUE"])
def test_lenient_true(word: str) -> None:
    assert codec.parse_bool(word) is True


@pytest.mark.parametrize("word", ["0", "false", "None", "", "maybe", "off"])
def test_lenient_false(word: str) -> None:
    assert codec.parse_bool(word) is False


def test_parse_headers_maps_names_and_properties() -> None:
    data = codec.parse_image_headers(
        [
            ("x-image-meta-disk-format", "raw"),
            ("x-image-meta-container_format", "bare"),
            ("x-image-meta-size", "5120"),
            ("x-image-meta-is_public", "None"),
            ("x-image-meta-property-os-version", "22.04"),
            ("x-image-meta-property-owner_specified.openstack.md5", "abc"),
            ("x-image-meta-property-empty", ""),
            ("x-image-meta-virtual_size", "None"),
            ("x-image-meta-id", "6b3ecfca-d445-4946-a8d1-c4938352b251"),
            ("x-glance-api-copy-from", "http://example.com/a"),
            ("content-type", "application/octet-stream"),
        ]
    )
    # is_public false is v1's view of a shared image (its members keep seeing it).
    assert data.fields == {
        "disk_format": "raw", "container_format": "bare", "size": 5120,
        "visibility": Visibility.SHARED, "virtual_size": None,
        "id": "6b3ecfca-d445-4946-a8d1-c4938352b251",
    }
    assert data.properties == {
        "os_version": "22.04", "owner_specified.openstack.md5": "abc", "empty": None,
    }
    assert data.source.copy_from == "http://example.com/a"


@pytest.mark.parametrize(("visibility", "is_public"), [
    (Visibility.PUBLIC, b"True"), (Visibility.COMMUNITY, b"False"),
    (Visibility.SHARED, b"False"), (Visibility.PRIVATE, b"False"),
])
def test_is_public_is_a_view_of_visibility(visibility: Visibility, is_public: bytes) -> None:
    image = Image(id="x", status=Status.QUEUED, visibility=visibility)
    assert dict(codec.image_headers(image))[b"x-image-meta-is_public"] == is_public
    assert codec.image_json(image)["is_public"] is (is_public == b"True")
    assert codec.image_json(image)["size"] == 0  # an unknown size is 0 in v1


def test_unknown_meta_header_is_refused() -> None:
    with pytest.raises(Invalid, match="Bad header: x-image-meta-foo"):
        codec.parse_image_headers([("x-image-meta-foo", "1")])


@pytest.mark.parametrize(
    ("value", "message"),
    [("x", "Cannot convert image size 'x' to an integer"), ("-1", "Cannot be a negative value"),
     ("+5", "to an integer"), ("1.5", "to an integer"), ("1" * 40, "to an integer")],
)
def test_bad_integers(value: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        codec.parse_image_headers([("x-image-meta-size", value)])


@pytest.mark.parametrize("value", ["foo", "-42", "1100", "2012-01-01hey12:32:12", "1899-12-31"])
def test_bad_timestamps(value: str) -> None:
    with pytest.raises(Invalid, match="Invalid time format for created_at"):
        codec.parse_image_headers([("x-image-meta-created_at", value)])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-01-02", dt.datetime(2019, 1, 2)),
        ("20190102", dt.datetime(2019, 1, 2)),
        ("2019-0102", dt.datetime(2019, 1, 2)),
        ("2019-01-02T10:00:00+01:00", dt.datetime(2019, 1, 2, 9)),
        ("2019-01-02T10:00:00-01:00", dt.datetime(2019, 1, 2, 11)),
        ("2019-01-02T10:00:00.123456", dt.datetime(2019, 1, 2, 10, 0, 0, 123456)),
    ],
)
def test_timestamps(text: str, expected: dt.datetime) -> None:
    assert codec.parse_timestamp("changes-since", text) == expected


def test_image_headers_render_underscores_and_skip_nulls() -> None:
    stamp = dt.datetime(2016, 5, 10, 21, 41, 41)
    image = Image(
        id="6b3ecfca-d445-4946-a8d1-c4938352b251", status=Status.ACTIVE, name="Ubuntu \u00e9",
        size=3908, checksum="7b1b10607acc1319506185e7227ca30d", disk_format="raw",
        container_format="bare", created_at=stamp, updated_at=stamp,
        properties={"distro": "ubuntu", "gone": None}, locations=[Location("file", "secret")],
    )
    headers = dict(codec.image_headers(image))
    assert headers[b"x-image-meta-disk_format"] == b"raw"
    assert headers[b"x-image-meta-is_public"] == b"False"
    assert headers[b"x-image-meta-created_at"] == b"2016-05-10T21:41:41.000000"
    assert headers[b"x-image-meta-name"] == "Ubuntu \u00e9".encode()
    assert headers[b"x-image-meta-property-distro"] == b"ubuntu"
    assert headers[b"etag"] == b"7b1b10607acc1319506185e7227ca30d"
    for absent in (b"x-image-meta-owner", b"x-image-meta-deleted_at",
                   b"x-image-meta-virtual_size", b"x-image-meta-property-gone"):
        assert absent not in headers
    assert not any(b"secret" in v or b"location" in k or b"store" in k
                   for k, v in headers.items())


def test_image_json_has_exactly_the_spec_keys() -> None:
    image = Image(id="x", status=Status.QUEUED, locations=[Location("file", "secret")])
    assert set(codec.image_json(image)) == {
        "id", "name", "status", "size", "virtual_size", "checksum", "disk_format",
        "container_format", "min_disk", "min_ram", "is_public", "protected", "owner",
        "created_at", "updated_at", "deleted_at", "deleted", "properties",
    }
    assert set(codec.brief_json(image)) == {
        "id", "name", "size", "disk_format", "container_format", "checksum",
    }

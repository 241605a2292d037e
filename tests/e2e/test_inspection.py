"""Upload inspection: every disk image is inspected as it streams (issue 5).

Each image of the corpus (tests/e2e/disk_images.py) is uploaded over HTTP to a real server;
accepted ones must be active with the inspector's virtual size and served back unchanged,
refused ones must answer 400 naming the reason, end killed, and leave nothing in the store.
"""

from __future__ import annotations

import http.server
import io
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.e2e.disk_images import HOST_SECRET, MIB, Corpus
from tests.e2e.server import GlimpseServer
from tests.http_remote import serving

# The checks look into the filesystem store's directory for leftovers of refused images;
# inspection itself does not depend on the store.
pytestmark = [pytest.mark.e2e, pytest.mark.filesystem_store]

OCTET = {"Content-Type": "application/octet-stream"}
QEMU_1M = MIB  # the virtual size of the qemu-img images, created with size 1M


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return Corpus(tmp_path_factory.mktemp("disk-images")).build()


@pytest.fixture(scope="module")
def srv() -> Iterator[GlimpseServer]:
    server = GlimpseServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lax() -> Iterator[GlimpseServer]:
    """Non-raw content may be declared raw, and only raw and qcow2 declarations are checked."""
    server = GlimpseServer({"inspection_strict_raw": "false",
                            "inspection_disk_formats": "raw,qcow2"})
    yield server
    server.stop()


def upload(server: GlimpseServer, data: bytes, disk_format: str,
           container_format: str = "bare") -> tuple[httpx.Response, str]:
    image_id = str(uuid.uuid4())
    # A zero-byte image can only be sent chunked: Content-Length 0 means "no data" in v1.
    body = data if data else iter([b""])
    resp = httpx.post(f"{server.url}/v1/images", content=body, timeout=60, headers={
        **OCTET, "x-image-meta-id": image_id, "x-image-meta-name": "inspected",
        "x-image-meta-disk_format": disk_format,
        "x-image-meta-container_format": container_format,
    })
    assert HOST_SECRET not in resp.content
    return resp, image_id


def stored(server: GlimpseServer, image_id: str) -> list[Path]:
    """Everything in the filesystem store belonging to the image, temporary files included."""
    return [p for p in (server.data_dir / "images").iterdir() if image_id in p.name]


def assert_accepted(server: GlimpseServer, data: bytes, disk_format: str,
                    virtual_size: int | None, container_format: str = "bare") -> None:
    resp, image_id = upload(server, data, disk_format, container_format)
    assert resp.status_code == 201, resp.text
    image = resp.json()["image"]
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["virtual_size"] == virtual_size
    head = httpx.head(f"{server.url}/v1/images/{image_id}")
    expected_header = "None" if virtual_size is None else str(virtual_size)
    assert head.headers.get("x-image-meta-virtual_size", "None") == expected_header
    served = httpx.get(f"{server.url}/v1/images/{image_id}", timeout=60).content
    assert served == data and HOST_SECRET not in served
    assert [p.name for p in stored(server, image_id)] == [image_id]


def assert_refused(server: GlimpseServer, data: bytes, disk_format: str, reason: str,
                   container_format: str = "bare") -> None:
    resp, image_id = upload(server, data, disk_format, container_format)
    assert resp.status_code == 400, resp.text
    assert reason in resp.text
    head = httpx.head(f"{server.url}/v1/images/{image_id}")
    assert head.headers["x-image-meta-status"] == "killed"
    assert "x-image-meta-virtual_size" not in head.headers
    data_resp = httpx.get(f"{server.url}/v1/images/{image_id}")
    assert data_resp.status_code == 404 and HOST_SECRET not in data_resp.content
    assert stored(server, image_id) == []


# (corpus image, declared disk_format, expected virtual size: a number, or "qemu" for what
# qemu-img reports for the file)
BENIGN = [
    ("raw", "raw", MIB),
    ("raw-mbr", "raw", MIB),  # a partition table is still raw
    ("raw-gpt", "raw", 2 * MIB),
    ("qcow2", "qcow2", QEMU_1M),
    ("vmdk", "vmdk", QEMU_1M),
    ("vmdk-stream", "vmdk", QEMU_1M),
    ("vhd", "vhd", "qemu"),
    ("vhdx", "vhdx", QEMU_1M),
    ("vdi", "vdi", QEMU_1M),
    ("iso", "iso", MIB),
    ("iso-hybrid", "iso", MIB),  # a bootable ISO's partition table is expected
    ("empty", "raw", 0),
]


@pytest.mark.parametrize(("name", "disk_format", "virtual_size"), BENIGN)
def test_benign_image_of_each_format_is_accepted(
    srv: GlimpseServer, corpus: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory,
    name: str, disk_format: str, virtual_size: int | str,
) -> None:
    if virtual_size == "qemu":
        work = tmp_path_factory.mktemp("qemu-info")
        (work / "image").write_bytes(corpus[name])
        virtual_size = Corpus(work).virtual_size("image")
    assert_accepted(srv, corpus[name], disk_format, int(virtual_size))


def test_fixed_vhd_is_recognised_by_its_footer(
    srv: GlimpseServer, corpus: dict[str, bytes]
) -> None:
    """A fixed VHD has its footer only at the end; its size is the footer's, as a dynamic
    VHD of the same disk size."""
    dynamic = httpx.post(f"{srv.url}/v1/images", content=corpus["vhd"], headers={
        **OCTET, "x-image-meta-disk_format": "vhd", "x-image-meta-container_format": "bare",
    }).json()["image"]["virtual_size"]
    assert_accepted(srv, corpus["vhd-fixed"], "vhd", dynamic)
    assert_refused(srv, corpus["vhd-fixed"], "raw", "Image content is vhd, but disk_format is raw")


# (corpus image, declared disk_format, what the 400 must say)
HOSTILE = [
    ("qcow2-backing", "qcow2", "Image has a backing file"),
    ("qcow2-backing", "raw", "Image has a backing file"),
    ("qcow2-data-file", "qcow2", "Image has data_file set"),
    ("qcow2-unknown-feature", "qcow2", "Unknown QCOW2 features found"),
    ("vmdk-flat", "vmdk", "Unsupported subformat"),
    ("vmdk-extent-path", "vmdk", "Invalid extent filenames found"),
    ("vmdk-parent-hint", "vmdk", "parentFileNameHint"),
    ("iso-qcow2-system-area", "iso", "matches more than one disk format (iso, qcow2)"),
    ("qcow2-vhd-footer", "qcow2", "matches more than one disk format (qcow2, vhd)"),
    ("qed", "raw", "This file format is not allowed"),
    ("gpt-hybrid-mbr", "raw", "partition table fails its safety checks: mbr: GPT MBR defines "
     "invalid extra partitions"),
    # mismatched declarations
    ("qcow2", "vmdk", "does not match disk_format vmdk: it is qcow2"),
    ("vhd", "vdi", "does not match disk_format vdi: it is vhd"),
    ("raw", "qcow2", "does not match disk_format qcow2: it is raw"),
    ("iso", "vhdx", "does not match disk_format vhdx: it is iso"),
    ("empty", "qcow2", "does not match disk_format qcow2: it is raw"),
    ("gzip-bomb", "qcow2", "does not match disk_format qcow2: it is raw"),
    # non-raw content declared raw
    ("qcow2", "raw", "Image content is qcow2, but disk_format is raw"),
    ("vmdk", "raw", "Image content is vmdk, but disk_format is raw"),
    ("vhdx", "raw", "Image content is vhdx, but disk_format is raw"),
    ("vdi", "raw", "Image content is vdi, but disk_format is raw"),
    ("iso", "raw", "Image content is iso, but disk_format is raw"),
    ("luks", "raw", "Image content is luks, but disk_format is raw"),
    # truncated headers: ending inside a header is read as zeros by a hypervisor
    ("qcow2-truncated", "qcow2", "the image ends inside its qcow2 structures"),
    ("qcow2-truncated", "raw", "the image ends inside its qcow2 structures"),
    ("qcow2-short-backing", "raw", "Image has a backing file"),
]


@pytest.mark.parametrize(("name", "disk_format", "reason"), HOSTILE)
def test_hostile_or_mismatched_image_is_refused(
    srv: GlimpseServer, corpus: dict[str, bytes], name: str, disk_format: str, reason: str
) -> None:
    assert_refused(srv, corpus[name], disk_format, reason)


def test_refused_on_reserved_image_upload_too(
    srv: GlimpseServer, corpus: dict[str, bytes]
) -> None:
    """The two-step path (reserve, then PUT the data) is inspected the same way."""
    image = httpx.post(f"{srv.url}/v1/images", headers={
        "x-image-meta-disk_format": "qcow2", "x-image-meta-container_format": "bare",
    }).json()["image"]
    resp = httpx.put(f"{srv.url}/v1/images/{image['id']}", content=corpus["qcow2-backing"],
                     headers=OCTET)
    assert resp.status_code == 400 and "Image has a backing file" in resp.text
    assert httpx.head(f"{srv.url}/v1/images/{image['id']}").headers[
        "x-image-meta-status"] == "killed"
    assert stored(srv, image["id"]) == []


class _Images(http.server.BaseHTTPRequestHandler):
    """Serves corpus images at /<name>, for copy-from."""

    images: ClassVar[dict[str, bytes]] = {}

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.images[self.path.lstrip("/")]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_HEAD = do_GET


def final_status(server: GlimpseServer, image_id: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        status = httpx.head(f"{server.url}/v1/images/{image_id}").headers["x-image-meta-status"]
        if status in ("active", "killed") or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_copy_from_is_inspected(srv: GlimpseServer, corpus: dict[str, bytes]) -> None:
    _Images.images = corpus
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    with serving(httpd):
        ids = {}
        for name, disk_format in (("qcow2-backing", "qcow2"), ("qcow2", "qcow2")):
            resp = httpx.post(f"{srv.url}/v1/images", headers={
                "x-image-meta-disk_format": disk_format, "x-image-meta-container_format": "bare",
                "x-glance-api-copy-from": f"http://127.0.0.1:{httpd.server_address[1]}/{name}",
            })
            assert resp.status_code == 201, resp.text
            ids[name] = resp.json()["image"]["id"]
        status = {name: final_status(srv, image_id) for name, image_id in ids.items()}
        assert status == {"qcow2-backing": "killed", "qcow2": "active"}
        assert stored(srv, ids["qcow2-backing"]) == []
        assert httpx.head(f"{srv.url}/v1/images/{ids['qcow2']}").headers[
            "x-image-meta-virtual_size"] == str(QEMU_1M)


def test_gzip_bomb_declared_raw_is_stored_as_is(
    srv: GlimpseServer, corpus: dict[str, bytes]
) -> None:
    """Nothing is ever decompressed: the bytes are raw data of their own size."""
    bomb = corpus["gzip-bomb"]
    assert len(bomb) < MIB
    assert_accepted(srv, bomb, "raw", len(bomb))


def test_archive_containers_are_checked_for_safety_not_declaration(
    srv: GlimpseServer, corpus: dict[str, bytes]
) -> None:
    """An OVA holds a tar, not the declared disk: only the safety rules apply to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member = tarfile.TarInfo("disk.vmdk")
        member.size = len(corpus["vmdk"])
        tar.addfile(member, io.BytesIO(corpus["vmdk"]))
    assert_accepted(srv, buffer.getvalue(), "vmdk", None, container_format="ova")
    assert_refused(srv, corpus["qcow2-backing"], "vmdk", "Image has a backing file",
                   container_format="ova")
    # Not an archive at all, but an image format other than the declared one.
    assert_refused(srv, corpus["qcow2"], "vmdk", "does not match disk_format vmdk: it is qcow2",
                   container_format="ova")


def test_uninspected_formats_store_other_content_as_sent(
    srv: GlimpseServer, corpus: dict[str, bytes]
) -> None:
    """ami, aki, ari and ploop declarations are not checked against the content: what is not
    a recognised image format is stored, with no virtual size."""
    assert_accepted(srv, corpus["raw"], "aki", None, container_format="aki")
    assert_accepted(srv, corpus["raw-gpt"], "ami", None, container_format="ami")
    assert_accepted(srv, corpus["iso"], "ari", None, container_format="ari")


# (declared disk_format, container_format): the declarations not inspected by default
UNINSPECTED = [("ami", "ami"), ("aki", "aki"), ("ari", "ari"), ("ploop", "bare")]


@pytest.mark.parametrize(("disk_format", "container_format"), UNINSPECTED)
def test_image_formats_declared_uninspected_are_refused(
    srv: GlimpseServer, corpus: dict[str, bytes], disk_format: str, container_format: str
) -> None:
    """An image format hidden under a declaration that is not inspected would reach a
    hypervisor that probes it: its content is recognised whatever the declaration."""
    assert_refused(srv, corpus["qcow2-backing"], disk_format,
                   "Image content is qcow2 and fails its safety checks: backing_file: Image "
                   "has a backing file", container_format=container_format)
    assert_refused(srv, corpus["qcow2"], disk_format,
                   f"does not match disk_format {disk_format}: it is qcow2",
                   container_format=container_format)
    assert_refused(srv, corpus["gpt-hybrid-mbr"], disk_format,
                   "GPT MBR defines invalid extra partitions", container_format=container_format)


def test_partition_checks_may_be_relaxed(
    srv: GlimpseServer, server_factory: Callable[..., GlimpseServer], corpus: dict[str, bytes]
) -> None:
    """The operator's choice: a partition table that fails its checks is logged, not refused;
    other safety checks stay."""
    assert_refused(srv, corpus["gpt-hybrid-mbr"], "raw", "GPT MBR defines invalid extra")
    relaxed = server_factory(inspection_relax_partition_checks="true")
    assert_accepted(relaxed, corpus["gpt-hybrid-mbr"], "raw", 2 * MIB)
    assert_refused(relaxed, corpus["qcow2-backing"], "raw", "Image has a backing file")


def test_settings_allow_non_raw_declared_raw_and_choose_formats(
    lax: GlimpseServer, corpus: dict[str, bytes]
) -> None:
    # Declared raw, read as raw: the virtual size is the byte count.
    assert_accepted(lax, corpus["qcow2"], "raw", len(corpus["qcow2"]))
    # Safety rules stay: a backing file is refused whatever the declaration.
    assert_refused(lax, corpus["qcow2-backing"], "raw", "Image has a backing file")
    assert_refused(lax, corpus["vmdk"], "qcow2", "does not match disk_format qcow2")
    # vmdk is not in the inspected list: accepted as declared, virtual size unknown, but
    # content of another image format is still refused.
    assert_accepted(lax, corpus["vmdk"], "vmdk", None)
    assert_refused(lax, corpus["qcow2"], "vmdk", "does not match disk_format vmdk: it is qcow2")
    assert_refused(lax, corpus["vmdk-extent-path"], "vmdk", "Invalid extent filenames found")

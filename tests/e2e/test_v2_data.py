"""The v2 data path, end to end (spec §2.6, §2.5; issue 13 "Data"): uploads chunked and with a
Content-Length, with and without x-openstack-image-size; every failure (a size that disagrees,
the size cap, the storage quota, a client gone mid-upload, content the inspector refuses, a
delete during the upload) returns the image to queued with NOTHING left in the store; 409 for a
re-upload or a concurrent one; downloads of 1 byte and 20 MiB with their hashes; a deactivated
image's data is the admin's only. On every database and store the suite runs with.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.disk_images import qcow2_header
from tests.e2e.identity import ctx
from tests.e2e.server import GlimpseServer
from tests.e2e.store_objects import stored
from tests.e2e.test_hostile_input import build, chunk, read_response

pytestmark = pytest.mark.e2e

OWNER = ctx("data-v2")
ADMIN = ctx("data-v2-admin", roles="admin")
OCTETS = {"Content-Type": "application/octet-stream"}
MIB = 1 << 20


@pytest.fixture(scope="module")
def client(server: GlimpseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def create(client: httpx.Client, headers: dict[str, str] = OWNER, disk_format: str = "raw",
           **body: object) -> str:
    resp = client.post("/v2/images", json={"disk_format": disk_format,
                                           "container_format": "bare", **body},
                       headers=headers)
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    return image_id


def show(client: httpx.Client, image_id: str, headers: dict[str, str] = OWNER
         ) -> dict[str, object]:
    resp = client.get(f"/v2/images/{image_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    image: dict[str, object] = resp.json()
    return image


def put_file(client: httpx.Client, image_id: str, body: bytes | Iterator[bytes],
             headers: dict[str, str] = OWNER, size: int | None = None) -> httpx.Response:
    extra = {} if size is None else {"x-openstack-image-size": str(size)}
    return client.put(f"/v2/images/{image_id}/file", content=body,
                      headers={**headers, **OCTETS, **extra})


def pieces(data: bytes, n: int = 4) -> Iterator[bytes]:
    """``data`` as a chunked body (httpx sends an iterator chunked)."""
    step = max(len(data) // n, 1)
    for i in range(0, len(data), step):
        yield data[i:i + step]


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def assert_requeued_and_empty(server: GlimpseServer, client: httpx.Client, image_id: str,
                              headers: dict[str, str] = OWNER) -> None:
    """A failed upload's end state: queued, no facts about data, nothing in the store; and
    the image takes an upload again."""
    assert wait_until(lambda: show(client, image_id, headers)["status"] == "queued"
                      and stored(server, image_id) == []), (show(client, image_id, headers),
                                                           stored(server, image_id))
    image = show(client, image_id, headers)
    for key in ("checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size"):
        assert image[key] is None, (key, image)
    assert client.get(f"/v2/images/{image_id}/file", headers=headers).status_code == 204
    assert put_file(client, image_id, b"retry", headers).status_code == 204
    assert show(client, image_id, headers)["status"] == "active"


def assert_holds(client: httpx.Client, image_id: str, data: bytes) -> None:
    image = show(client, image_id)
    assert image["status"] == "active"
    assert image["size"] == len(data) == image["virtual_size"]
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    got = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert got.status_code == 200
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert got.content == data


# --- uploads that work ------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize("declare", [True, False], ids=["size-header", "no-size-header"])
def test_upload_every_framing(server: GlimpseServer, client: httpx.Client, chunked: bool,
                              declare: bool) -> None:
    data = uuid.uuid4().bytes * 40_000 + b"end"
    image_id = create(client)
    resp = put_file(client, image_id, pieces(data) if chunked else data,
                    size=len(data) if declare else None)
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert_holds(client, image_id, data)
    assert len(stored(server, image_id)) >= 1


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_an_empty_upload_makes_an_empty_active_image(client: httpx.Client,
                                                     chunked: bool) -> None:
    image_id = create(client)
    resp = put_file(client, image_id, iter([b""]) if chunked else b"", size=0)
    assert resp.status_code == 204, resp.text
    image = show(client, image_id)
    assert image["status"] == "active" and image["size"] == 0
    assert image["checksum"] == hashlib.md5(b"").hexdigest()


@pytest.mark.parametrize("size", [1, 20 * MIB])
def test_download_one_byte_and_20_mib(client: httpx.Client, size: int) -> None:
    data = (hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1))[:size]
    image_id = create(client)
    assert put_file(client, image_id, pieces(data, 16), size=size).status_code == 204
    assert_holds(client, image_id, data)
    # Streamed: the bytes arrive in pieces and add up.
    digest = hashlib.sha512()
    with client.stream("GET", f"/v2/images/{image_id}/file", headers=OWNER) as resp:
        assert resp.status_code == 200
        for block in resp.iter_bytes():
            digest.update(block)
    assert digest.hexdigest() == show(client, image_id)["os_hash_value"]


# --- uploads that fail: back to queued, nothing stored -----------------------------------------


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize("declared", [99, 101, 0], ids=["declared-less", "declared-more",
                                                        "declared-zero"])
def test_a_size_that_disagrees_is_400_and_back_to_queued(
    server: GlimpseServer, client: httpx.Client, chunked: bool, declared: int
) -> None:
    data = b"d" * 100
    image_id = create(client)
    resp = put_file(client, image_id, pieces(data) if chunked else data, size=declared)
    assert resp.status_code == 400, resp.text
    assert "x-openstack-image-size" in resp.text
    assert_requeued_and_empty(server, client, image_id)


@pytest.mark.serial
def test_an_upload_over_the_size_cap_is_413_and_back_to_queued(
    server_factory: Callable[..., GlimpseServer],
) -> None:
    srv = server_factory(image_size_cap=1000)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        for body, size in ((b"x" * 1001, None), (pieces(b"x" * 5000), None),
                           (pieces(b"x" * 1001), 1001), (b"x" * 1000 + b"!", 1001)):
            image_id = create(c)
            resp = put_file(c, image_id, body, size=size)
            assert resp.status_code == 413, resp.text
            assert_requeued_and_empty(srv, c, image_id)
        image_id = create(c)
        assert put_file(c, image_id, b"x" * 1000).status_code == 204
    # No refused upload still counts as in flight: the server stops within its grace period
    # (2 s in tests; an upload refused mid-stream used to hold shutdown for 10 s).
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 4


def test_an_upload_over_the_storage_quota_is_413_and_back_to_queued(
    server_factory: Callable[..., GlimpseServer],
) -> None:
    srv = server_factory(user_storage_quota=3000)
    # A project of its own: on a shared database, other tests' data counts for theirs.
    project = ctx(f"quota-{uuid.uuid4().hex[:12]}")
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        first = create(c, project)
        assert put_file(c, first, b"a" * 2000, project).status_code == 204
        for body in (b"b" * 1500, pieces(b"b" * 1500)):
            image_id = create(c, project)
            resp = put_file(c, image_id, body, project)
            assert resp.status_code == 413, resp.text
            assert "quota" in resp.text
            # Back to queued, nothing stored (the retry of 5 bytes fits the quota).
            assert_requeued_and_empty(srv, c, image_id, project)
        # The quota is still the project's: 2010 bytes used, 990 more fit exactly.
        image_id = create(c, project)
        assert put_file(c, image_id, b"c" * 990, project).status_code == 204
        assert put_file(c, create(c, project), b"d", project).status_code == 413


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_client_gone_mid_upload_leaves_the_image_queued_and_nothing_stored(
    server: GlimpseServer, client: httpx.Client, chunked: bool
) -> None:
    image_id = create(client)
    framing = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", "1000000")]
    body = chunk(b"p" * 50_000) if chunked else b"p" * 50_000
    request = build("PUT", f"/v2/images/{image_id}/file", server.port,
                    [*OWNER.items(), *OCTETS.items(), *framing], body)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(request)
        assert wait_until(lambda: show(client, image_id)["status"] == "saving")
    finally:
        sock.close()
    assert_requeued_and_empty(server, client, image_id)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_in_many_odd_writes_after_100_continue_arrives_whole_and_in_order(
    server: GlimpseServer, client: httpx.Client, chunked: bool
) -> None:
    # The server hands the body to the upload as the pieces it read, one per message, never
    # joined (api/protocol.py): odd sizes, pauses that make it read several pieces at once, and
    # a second request on the same connection check that nothing is lost, doubled or reordered.
    data = bytes(range(256)) * (3 * MIB // 256) + b"tail"
    sizes = [1, 7, 4093, 65_537, 300_001, 1 << 20]
    image_id = create(client)
    framing = [("Transfer-Encoding", "chunked")] if chunked else [
        ("Content-Length", str(len(data)))]
    head = build("PUT", f"/v2/images/{image_id}/file", server.port,
                 [*OWNER.items(), *OCTETS.items(), *framing, ("Expect", "100-continue")],
                 close=False)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    with sock:
        sock.sendall(head)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        at = 0
        for n in range(10_000):
            piece = data[at:at + sizes[n % len(sizes)]]
            if not piece:
                break
            sock.sendall(chunk(piece) if chunked else piece)
            at += len(piece)
            if n % 5 == 0:
                time.sleep(0.01)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        resp = read_response(sock, timeout=30)
        assert resp is not None and resp.status == 204, resp
        sock.sendall(build("GET", f"/v2/images/{image_id}", server.port, list(OWNER.items())))
        again = read_response(sock)
        assert again is not None and again.status == 200, again
    image = show(client, image_id)
    assert image["status"] == "active" and image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert client.get(f"/v2/images/{image_id}/file", headers=OWNER).content == data


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_pipelined_uploads_on_one_connection_keep_their_own_bodies(
    server: GlimpseServer, client: httpx.Client, chunked: bool
) -> None:
    # Two uploads and a GET sent in one write, before any answer: each body must reach its
    # own image, whole, and the GET must be answered after them. The first body is longer than
    # a read: with a Content-Length the server reads most of it past the HTTP parser
    # (api/protocol.py), and must hand the parser the next request at its first byte.
    first, second = create(client), create(client)
    bodies = {first: bytes(range(251)) * (3 * MIB // 251), second: bytes(range(256)) * 1000}
    wire = b""
    for image_id, data in bodies.items():
        framing = [("Transfer-Encoding", "chunked")] if chunked else [
            ("Content-Length", str(len(data)))]
        body = chunk(data[:1000]) + chunk(data[1000:]) + b"0\r\n\r\n" if chunked else data
        wire += build("PUT", f"/v2/images/{image_id}/file", server.port,
                      [*OWNER.items(), *OCTETS.items(), *framing], body, close=False)
    # The GET asks to close the connection: everything up to the end is the three answers.
    wire += build("GET", f"/v2/images/{second}", server.port, list(OWNER.items()))
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(wire)
        while piece := sock.recv(65536):
            received += piece
    statuses = re.findall(rb"(?:^|\r\n)HTTP/1\.1 (\d{3}) ", received)
    assert statuses == [b"204", b"204", b"200"], received[:2000]
    for image_id, data in bodies.items():
        image = show(client, image_id)
        assert image["status"] == "active" and image["size"] == len(data)
        assert image["checksum"] == hashlib.md5(data).hexdigest()


def test_a_body_answered_before_it_is_read_is_dropped_and_the_connection_goes_on(
    server: GlimpseServer, client: httpx.Client
) -> None:
    # A 404 comes before the body is read; the rest of the body must be read and dropped, not
    # taken for the next request, and the next request on the connection answered as usual.
    image_id = create(client)
    body = b"GET /v2/images HTTP/1.1\r\n\r\n" * (3 * MIB // 29)
    head = build("PUT", f"/v2/images/{uuid.uuid4()}/file", server.port,
                 [*OWNER.items(), *OCTETS.items(), ("Content-Length", str(len(body)))],
                 close=False)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body[:100_000])
        early = read_response(sock)
        assert early is not None and early.status == 404, early
        sock.sendall(body[100_000:])
        sock.sendall(build("GET", f"/v2/images/{image_id}", server.port, list(OWNER.items())))
        after = read_response(sock)
        assert after is not None and after.status == 200, after
        assert image_id.encode() in after.body
        sock.settimeout(10)
        assert sock.recv(65536) == b""  # nothing more: the body was no request


REFUSED_CONTENT = {
    # The classic probe: a qcow2 naming a host file as its backing file.
    "qcow2-with-backing-file": (qcow2_header(b"/etc/hostname"), "qcow2"),
    "qcow2-declared-raw": (qcow2_header() + bytes(64 * 1024), "raw"),
    "raw-declared-qcow2": (b"\x00" * 64 * 1024, "qcow2"),
    "text-declared-vmdk": (b"just some text\n" * 1000, "vmdk"),
}


@pytest.mark.parametrize("name", list(REFUSED_CONTENT))
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_content_the_inspector_refuses_is_415_and_back_to_queued(
    server: GlimpseServer, client: httpx.Client, name: str, chunked: bool
) -> None:
    data, disk_format = REFUSED_CONTENT[name]
    image_id = create(client, disk_format=disk_format)
    resp = put_file(client, image_id, pieces(data) if chunked else data, size=len(data))
    assert resp.status_code == 415, resp.text
    assert "Image content" in resp.text
    image = show(client, image_id)
    assert image["status"] == "queued" and image["checksum"] is None
    assert image["disk_format"] == disk_format
    assert wait_until(lambda: stored(server, image_id) == [])


def test_an_image_deleted_during_its_upload_is_410_and_nothing_is_left(
    server: GlimpseServer, client: httpx.Client
) -> None:
    image_id = create(client)
    released = threading.Event()

    def slow() -> Iterator[bytes]:
        yield b"s" * 10_000
        released.wait(10)
        yield b"t" * 10_000

    with ThreadPoolExecutor(1) as pool:
        upload = pool.submit(put_file, client, image_id, slow())
        assert wait_until(lambda: show(client, image_id)["status"] == "saving")
        deleted = client.delete(f"/v2/images/{image_id}", headers=OWNER)
        released.set()
        answer = upload.result(30)
    assert deleted.status_code == 204, deleted.text
    assert answer.status_code == 410, answer.text
    assert client.get(f"/v2/images/{image_id}", headers=OWNER).status_code == 404
    assert client.get(f"/v2/images/{image_id}/file", headers=OWNER).status_code == 404
    assert wait_until(lambda: stored(server, image_id) == [])


def test_a_second_upload_is_409_and_changes_nothing(server: GlimpseServer,
                                                     client: httpx.Client) -> None:
    image_id = create(client)
    assert put_file(client, image_id, b"first").status_code == 204
    for body in (b"second", pieces(b"second"), b""):
        resp = put_file(client, image_id, body)
        assert resp.status_code == 409, resp.text
    assert_holds(client, image_id, b"first")


def test_concurrent_uploads_one_wins_the_other_is_409(server: GlimpseServer,
                                                      client: httpx.Client) -> None:
    for attempt in range(3):
        image_id = create(client, name=f"race-{attempt}")
        bodies = [bytes([65 + n]) * 80_000 for n in range(2)]
        barrier = threading.Barrier(2)

        def slow(data: bytes) -> Iterator[bytes]:
            for piece in pieces(data):
                yield piece
                time.sleep(0.05)

        def upload(n: int, image_id: str = image_id, barrier: threading.Barrier = barrier,
                   bodies: list[bytes] = bodies) -> httpx.Response:
            barrier.wait()
            return put_file(client, image_id, slow(bodies[n]))

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(upload, range(2)))
        codes = [a.status_code for a in answers]
        assert sorted(codes) == [204, 409], [a.text for a in answers]
        assert_holds(client, image_id, bodies[codes.index(204)])
        # The loser wrote nothing: one object (plus a large object's segments) for one image.
        assert len([k for k in stored(server, image_id) if "segments" not in k]) == 1


def test_upload_refusals_before_any_data_leave_the_image_queued(
    server: GlimpseServer, client: httpx.Client
) -> None:
    image_id = create(client)
    stranger = ctx("data-v2-stranger")
    assert put_file(client, image_id, b"x", headers=stranger).status_code == 404
    no_formats = client.post("/v2/images", json={}, headers=OWNER).json()["id"]
    assert put_file(client, no_formats, b"x").status_code == 400
    assert client.put(f"/v2/images/{image_id}/file", content=b"x",
                      headers={**OWNER, "Content-Type": "text/plain"}).status_code == 415
    for checked in (image_id, no_formats):
        assert show(client, checked)["status"] == "queued"
        assert stored(server, checked) == []


# --- deactivated images (actions come with the v2-domain piece) ----------------------------------


def test_download_of_a_deactivated_image_is_403_but_for_admins(client: httpx.Client) -> None:
    image_id = create(client)
    assert put_file(client, image_id, b"deactivated data").status_code == 204
    resp = client.post(f"/v2/images/{image_id}/actions/deactivate", headers=OWNER)
    assert resp.status_code == 204, resp.text
    assert show(client, image_id)["status"] == "deactivated"
    refused = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert refused.status_code == 403, refused.text
    assert client.get(f"/v2/images/{image_id}/file", headers=ADMIN).content == b"deactivated data"
    assert client.post(f"/v2/images/{image_id}/actions/reactivate",
                       headers=OWNER).status_code == 204
    assert client.get(f"/v2/images/{image_id}/file", headers=OWNER).content == b"deactivated data"

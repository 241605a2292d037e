"""Crashes, shutdowns, full disks and slow clients lose or corrupt no image."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import GlimpseServer

# These tests look into the filesystem store's directory to prove nothing partial remains.
# SIGKILL recovery within seconds, peak memory under load: the serial pass, beside no other test.
pytestmark = [pytest.mark.filesystem_store, pytest.mark.serial]

FAST_RECOVERY = {"upload_heartbeat_interval": "0.3", "stale_upload_timeout": "1.5"}
# A heartbeat timeout no test outlasts: what ends an upload here is a restarted process
# finding its predecessor's incarnation ended, nothing else.
RESTART_RECOVERY = {"upload_heartbeat_interval": "0.3", "stale_upload_timeout": "600"}
# After a SIGKILL and a restart, no image is saving for longer than this (issue 15), counted
# from the restart (the new process's spawn), its start-up included.
SETTLED_WITHIN = 5.0
FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
CRASHES = int(os.environ.get("GLIMPSE_CRASH_COUNT", "50"))


def raw_upload_start(port: int, total: int) -> socket.socket:
    """Begin a chunked upload and leave it open (the caller sends more or abandons it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        "POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: application/octet-stream\r\nx-image-meta-disk_format: raw\r\n"
        f"x-image-meta-container_format: bare\r\nx-image-meta-property-total: {total}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def send_chunk(sock: socket.socket, data: bytes) -> None:
    sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def all_images(url: str) -> list[dict[str, object]]:
    """Every image the server has, deleted and killed ones included, all pages."""
    images: list[dict[str, object]] = []
    params = {"is_public": "none", "limit": "1000", "changes-since": "2000-01-01"}
    while True:
        resp = httpx.get(url + "/v1/images/detail", params=params, timeout=30)
        assert resp.status_code == 200, resp.text
        page = resp.json()["images"]
        images += page
        if len(page) < 1000:
            return images
        params["marker"] = page[-1]["id"]


def check_consistency(url: str, data_dir: Path) -> dict[str, int]:
    """No image saving, no stray or partial file, every active image's data matches."""
    images = all_images(url)
    store = data_dir / "images"
    files = {p.name for p in store.iterdir()} if store.exists() else set()
    active = {str(i["id"]): i for i in images if i["status"] == "active" and i["size"]}
    assert not [i for i in images if i["status"] == "saving"]
    assert not [f for f in files if f.endswith(".tmp")], files
    assert files == set(active), (files ^ set(active))
    for image_id, image in active.items():
        digest = hashlib.md5((store / image_id).read_bytes()).hexdigest()
        assert digest == image["checksum"], image_id
    return {"images": len(images), "active": len(active)}


def wait_for_no_saving(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [i for i in all_images(url) if i["status"] == "saving"]:
            return
        time.sleep(0.2)
    raise AssertionError("an upload stayed saving after its server died")


def settle_time(url: str, started: float, timeout: float = SETTLED_WITHIN) -> float:
    """Seconds from ``started`` (a monotonic time) until no image is saving; AssertionError
    past ``timeout``."""
    while True:
        if not [i for i in all_images(url) if i["status"] == "saving"]:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"an upload stayed saving {timeout} s after the restart")
        time.sleep(0.05)


def wait_for_saving(url: str, count: int, timeout: float = 10.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        saving = [i for i in all_images(url) if i["status"] == "saving"]
        if len(saving) >= count or time.monotonic() > deadline:
            assert len(saving) == count, saving
            return saving
        time.sleep(0.05)


def raw_v2_upload_start(port: int, image_id: str) -> socket.socket:
    """Begin a chunked v2 upload of a queued image's data and leave it open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n").encode())
    return sock


def crash_lane(tmp_path: Path, seed: int, crashes: int, completed: list[int],
               errors: list[BaseException]) -> None:
    try:
        _crash_lane(tmp_path, seed, crashes, completed)
    except BaseException as exc:
        errors.append(exc)


def _crash_lane(tmp_path: Path, seed: int, crashes: int, completed: list[int]) -> None:
    """One API process after another on the shared database and data directory, each killed
    with SIGKILL while uploads stream into it."""
    rng = random.Random(seed)
    for _ in range(crashes):
        srv = GlimpseServer(RESTART_RECOVERY, data_dir=tmp_path)
        try:
            # Uploads in flight (left open), one that completes, then a crash.
            sockets = [raw_upload_start(srv.port, 0) for _ in range(2)]
            for sock in sockets:
                send_chunk(sock, os.urandom(rng.randint(1, 300_000)))
            blob = os.urandom(rng.randint(1, 200_000))
            done = httpx.post(srv.url + "/v1/images", content=blob, timeout=60, headers={
                **FORMATS, "content-type": "application/octet-stream"})
            assert done.status_code == 201
            completed.append(1)
            time.sleep(rng.uniform(0, 0.05))
        finally:
            srv.process.send_signal(signal.SIGKILL)
            srv.process.wait()
            srv.stop()
        for sock in sockets:
            sock.close()


def test_sigkill_mid_upload_recovers(tmp_path: Path) -> None:
    """Kill API processes with SIGKILL in the middle of uploads, many times, two lanes at a
    time sharing one database and data directory (one node: each restart ends the uploads of
    the node's dead processes, never the other lane's live ones); after the last restart
    nothing stays saving beyond SETTLED_WITHIN with a heartbeat timeout of 600 s, no partial
    data remains and every active image's data matches its checksum."""
    completed: list[int] = []
    errors: list[BaseException] = []
    lanes = [threading.Thread(target=crash_lane,
                              args=(tmp_path, seed, CRASHES // 2, completed, errors))
             for seed in (1, 2)]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    if errors:
        raise errors[0]
    assert len(completed) == 2 * (CRASHES // 2)
    started = time.monotonic()
    srv = GlimpseServer(RESTART_RECOVERY, data_dir=tmp_path)
    try:
        ready = time.monotonic() - started
        settled = settle_time(srv.url, started)
        figures = check_consistency(srv.url, tmp_path)
        statuses = {str(i["status"]) for i in all_images(srv.url)}
    finally:
        srv.stop()
    assert figures["active"] == len(completed)
    assert statuses <= {"active", "killed"}, statuses
    print(f"\ncrash recovery: {2 * (CRASHES // 2)} SIGKILLs, {figures['images']} images "
          f"checked, {figures['active']} active intact, 0 orphans; restart to settled "
          f"{settled:.2f} s (serving after {ready:.2f} s)")


def test_restart_ends_its_predecessors_uploads_at_once(tmp_path: Path) -> None:
    """A v1 and a v2 upload in flight, SIGKILL, restart on the same node: within
    SETTLED_WITHIN of the restart the v1 image is killed and the v2 one queued again (the
    rules their claims recorded), the bytes they wrote are gone, and the v2 image takes a new
    upload."""
    srv = GlimpseServer(RESTART_RECOVERY, data_dir=tmp_path)
    try:
        v1 = raw_upload_start(srv.port, 0)
        send_chunk(v1, os.urandom(300_000))
        created = httpx.post(srv.url + "/v2/images", json={"disk_format": "raw",
                                                             "container_format": "bare"})
        assert created.status_code == 201, created.text
        v2_id = created.json()["id"]
        v2 = raw_v2_upload_start(srv.port, v2_id)
        send_chunk(v2, os.urandom(300_000))
        saving = wait_for_saving(srv.url, 2)
    finally:
        srv.process.send_signal(signal.SIGKILL)
        srv.process.wait()
        srv.stop()
    v1.close()
    v2.close()
    started = time.monotonic()
    restarted = GlimpseServer(RESTART_RECOVERY, data_dir=tmp_path)
    try:
        settled = settle_time(restarted.url, started)
        statuses = {str(i["id"]): i["status"] for i in all_images(restarted.url)}
        v1_id = next(str(i["id"]) for i in saving if i["id"] != v2_id)
        assert statuses == {v1_id: "killed", v2_id: "queued"}
        check_consistency(restarted.url, tmp_path)
        blob = os.urandom(100_000)
        again = httpx.put(f"{restarted.url}/v2/images/{v2_id}/file", content=blob,
                          headers={"content-type": "application/octet-stream"}, timeout=30)
        assert again.status_code == 204, again.text
        assert httpx.get(f"{restarted.url}/v2/images/{v2_id}/file", timeout=30).content == blob
        check_consistency(restarted.url, tmp_path)
    finally:
        restarted.stop()
    print(f"\nrestart recovery: restart to settled {settled:.2f} s")


def worker_pids(supervisor: int) -> list[int]:
    """The uvicorn worker processes of a multi-worker server (its spawned children)."""
    pids = []
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline:
                pids.append(int(child))
    return sorted(pids)


def connection_holder(pids: list[int], server_port: int, client_port: int) -> int | None:
    """Which of the processes ``pids`` holds the server's end of the client's connection."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port):
            inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return pid
    return None


def test_a_worker_restarted_by_its_supervisor_ends_its_predecessors_uploads(
        tmp_path: Path) -> None:
    """Two uvicorn workers: one is SIGKILLed with uploads in flight and uvicorn starts a new
    one, which ends them at once; the surviving worker's uploads (same node, a live
    incarnation) stream on and complete."""
    srv = GlimpseServer({**RESTART_RECOVERY, "workers": "2"}, data_dir=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while len(workers := worker_pids(srv.process.pid)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        held: dict[int, list[socket.socket]] = {pid: [] for pid in workers}
        for _ in range(40):
            if all(held.values()):
                break
            sock = raw_upload_start(srv.port, 0)
            send_chunk(sock, os.urandom(100_000))
            holder = None
            for _ in range(50):
                holder = connection_holder(workers, srv.port, sock.getsockname()[1])
                if holder is not None:
                    break
                time.sleep(0.05)
            assert holder is not None
            held[holder].append(sock)
        assert all(held.values()), "the connections all went to one worker"
        victim, survivor = workers
        wait_for_saving(srv.url, len(held[victim]) + len(held[survivor]))
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        while True:
            statuses = [str(i["status"]) for i in all_images(srv.url)]
            if statuses.count("killed") == len(held[victim]):
                break
            assert time.monotonic() - started < SETTLED_WITHIN, statuses
            time.sleep(0.05)
        settled = time.monotonic() - started
        assert statuses.count("saving") == len(held[survivor])
        assert victim not in worker_pids(srv.process.pid)
        for sock in held[victim]:
            sock.close()
        for sock in held[survivor]:
            send_chunk(sock, b"more")
            sock.sendall(b"0\r\n\r\n")
            sock.settimeout(30)
            assert sock.recv(65536).startswith(b"HTTP/1.1 201")
            sock.close()
        check_consistency(srv.url, tmp_path)
    finally:
        srv.stop()
    print(f"\nworker restart: {len(held[victim])} uploads of the killed worker settled "
          f"{settled:.2f} s after the SIGKILL, {len(held[survivor])} of its sibling completed")


def test_a_restarting_node_leaves_a_peer_nodes_live_upload_alone(tmp_path: Path) -> None:
    """Nodes A and B share one database (each its own data directory and store). B dies with
    an upload in flight and restarts: its upload ends at once, A's, which keeps streaming
    meanwhile, completes intact; B's restart never takes A's claim for its predecessor's."""
    database = (os.environ.get("GLIMPSE_TEST_DATABASE_URL")
                or f"sqlite:///{tmp_path / 'shared.sqlite'}")
    # A timeout the test outlasts (A's upload beats through it), far beyond SETTLED_WITHIN.
    settings = {"database_url": database, "upload_heartbeat_interval": "0.3",
                "stale_upload_timeout": "20"}
    node_a = GlimpseServer(settings, data_dir=tmp_path / "a")
    node_b = GlimpseServer(settings, data_dir=tmp_path / "b")
    restarted = None
    streaming = threading.Event()
    stop = threading.Event()
    sent = hashlib.md5()
    try:
        a_upload = raw_upload_start(node_a.port, 0)

        def keep_streaming() -> None:
            # A's client keeps sending through B's crash and restart: its heartbeat beats.
            while not stop.is_set():
                piece = os.urandom(20_000)
                sent.update(piece)
                send_chunk(a_upload, piece)
                streaming.set()
                time.sleep(0.1)

        feeder = threading.Thread(target=keep_streaming)
        feeder.start()
        assert streaming.wait(10)
        b_upload = raw_upload_start(node_b.port, 0)
        send_chunk(b_upload, os.urandom(300_000))
        saving = wait_for_saving(node_a.url, 2)
        node_b.process.send_signal(signal.SIGKILL)
        node_b.process.wait()
        node_b.stop()
        b_upload.close()
        started = time.monotonic()
        restarted = GlimpseServer(settings, data_dir=tmp_path / "b")
        deadline = started + SETTLED_WITHIN
        while True:
            now_saving = [i for i in all_images(restarted.url) if i["status"] == "saving"]
            if len(now_saving) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        settled = time.monotonic() - started
        assert len(now_saving) == 1, now_saving
        a_id = str(now_saving[0]["id"])
        b_id = next(str(i["id"]) for i in saving if i["id"] != a_id)
        # B's later sweeps leave A alone too: A streams on a while, then finishes.
        time.sleep(1.5)
        stop.set()
        feeder.join(10)
        a_upload.sendall(b"0\r\n\r\n")
        a_upload.settimeout(30)
        answer = a_upload.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
        a_upload.close()
        final = {str(i["id"]): i for i in all_images(node_a.url)}
        assert final[a_id]["status"] == "active"
        assert final[a_id]["checksum"] == sent.hexdigest()
        assert final[b_id]["status"] == "killed"
        b_store = tmp_path / "b" / "images"
        assert not (list(b_store.iterdir()) if b_store.exists() else []), "orphaned bytes on B"
        assert [p.name for p in (tmp_path / "a" / "images").iterdir()] == [a_id]
    finally:
        stop.set()
        node_a.stop()
        node_b.stop()
        if restarted is not None:
            restarted.stop()
    print(f"\ntwo nodes: B's restart to its upload settled {settled:.2f} s; A's upload "
          f"completed")


def test_dead_process_upload_is_killed_by_a_surviving_peer(tmp_path: Path) -> None:
    """Two API processes share a database and data directory; one dies mid-upload and the
    other one kills the abandoned image and removes its partial data."""
    first = GlimpseServer(FAST_RECOVERY, data_dir=tmp_path)
    second = GlimpseServer(FAST_RECOVERY, data_dir=tmp_path)
    try:
        sock = raw_upload_start(first.port, 0)
        send_chunk(sock, os.urandom(500_000))
        time.sleep(0.5)
        saving = [i for i in all_images(second.url) if i["status"] == "saving"]
        assert len(saving) == 1
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        sock.close()
        wait_for_no_saving(second.url)
        image = httpx.head(f"{second.url}/v1/images/{saving[0]['id']}")
        assert image.headers["x-image-meta-status"] == "killed"
        check_consistency(second.url, tmp_path)
    finally:
        first.stop()
        second.stop()


def test_sigterm_lets_uploads_finish_then_ends_the_rest(tmp_path: Path) -> None:
    srv = GlimpseServer({**FAST_RECOVERY, "shutdown_grace_period": "2"}, data_dir=tmp_path)
    finishing = raw_upload_start(srv.port, 0)
    stalled = raw_upload_start(srv.port, 0)
    send_chunk(finishing, b"a" * 100_000)
    send_chunk(stalled, b"b" * 100_000)
    time.sleep(0.3)
    srv.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # New connections are refused once shutdown began.
    with pytest.raises(httpx.HTTPError):
        httpx.get(srv.url + "/versions", timeout=2)
    # The in-flight upload that completes within the grace period succeeds.
    send_chunk(finishing, b"a" * 100_000)
    finishing.sendall(b"0\r\n\r\n")
    finishing.settimeout(10)
    answer = finishing.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    # The stalled one is ended when the grace period runs out; the server exits.
    srv.process.wait(timeout=30)
    finishing.close()
    stalled.close()
    restarted = GlimpseServer(FAST_RECOVERY, data_dir=tmp_path)
    try:
        wait_for_no_saving(restarted.url)
        statuses = sorted(str(i["status"]) for i in all_images(restarted.url))
        assert statuses == ["active", "killed"]
        check_consistency(restarted.url, tmp_path)
    finally:
        restarted.stop()


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(images)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (needs root): {mounted.stderr!r}")
    try:
        yield tmp_path / "data"
    finally:
        subprocess.run(["umount", "-l", str(images)], check=False)


def test_full_disk_gives_413_and_keeps_other_images(small_disk: Path) -> None:
    srv = GlimpseServer(data_dir=small_disk)
    try:
        headers = {**FORMATS, "content-type": "application/octet-stream"}
        keep = os.urandom(1_000_000)
        kept = httpx.post(srv.url + "/v1/images", content=keep, headers=headers, timeout=30)
        assert kept.status_code == 201
        too_big = httpx.post(srv.url + "/v1/images", content=os.urandom(3_000_000),
                             headers=headers, timeout=30)
        assert too_big.status_code == 413, too_big.text
        assert "full" in too_big.text
        assert "Traceback" not in too_big.text
        killed = [i for i in all_images(srv.url) if i["status"] == "killed"]
        assert len(killed) == 1
        kept_id = kept.json()["image"]["id"]
        assert httpx.get(f"{srv.url}/v1/images/{kept_id}", timeout=30).content == keep
        check_consistency(srv.url, small_disk)
        # Space is back once the partial data is gone: a fitting upload works again.
        again = httpx.post(srv.url + "/v1/images", content=os.urandom(1_000_000),
                           headers=headers, timeout=30)
        assert again.status_code == 201
    finally:
        srv.stop()


def test_slow_clients_are_cut_off_without_starving_others(tmp_path: Path) -> None:
    srv = GlimpseServer({"header_timeout": "1", "body_idle_timeout": "1", **FAST_RECOVERY},
                        data_dir=tmp_path)
    try:
        trickle = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        trickle.sendall(b"GET /v1/images HTTP/1.1\r\nHo")
        stalled = raw_upload_start(srv.port, 0)
        send_chunk(stalled, b"x" * 10_000)
        # Meanwhile everybody else is served promptly.
        for _ in range(20):
            assert httpx.get(srv.url + "/versions", timeout=2).status_code == 200
        time.sleep(2.5)
        trickle.settimeout(5)
        assert trickle.recv(100) == b""  # closed by the server
        stalled.settimeout(5)
        try:
            leftover = stalled.recv(100)
        except ConnectionResetError:
            leftover = b""
        assert leftover == b""
        wait_for_no_saving(srv.url)
        assert [i["status"] for i in all_images(srv.url)] == ["killed"]
        check_consistency(srv.url, tmp_path)
    finally:
        srv.stop()


def test_a_slow_body_that_keeps_coming_is_not_cut_off(tmp_path: Path) -> None:
    """The idle timeout counts from the body's last data, not from its first, and an upload
    that sends far less than a block per stale-upload timeout still beats its heartbeat: a
    body sent a little at a time for six idle timeouts (over twice the stale timeout)
    completes."""
    srv = GlimpseServer({"body_idle_timeout": "1", "upload_heartbeat_interval": "0.3",
                         "stale_upload_timeout": "2.5"}, data_dir=tmp_path)
    try:
        slow = raw_upload_start(srv.port, 0)
        for _ in range(20):
            send_chunk(slow, b"x" * 1000)
            time.sleep(0.3)
        slow.sendall(b"0\r\n\r\n")
        slow.settimeout(10)
        assert slow.recv(100).startswith(b"HTTP/1.1 201")
        slow.close()
        assert [i["status"] for i in all_images(srv.url)] == ["active"]
    finally:
        srv.stop()


def test_overload_mixed_clients(tmp_path: Path) -> None:
    """Many concurrent clients mixing uploads, downloads, lists and deletes: no 5xx, no lost
    or corrupted image, bounded memory."""
    seconds = float(os.environ.get("GLIMPSE_SOAK_SECONDS", "15"))
    clients = int(os.environ.get("GLIMPSE_SOAK_CLIENTS", "200"))
    srv = GlimpseServer(data_dir=tmp_path)
    failures: list[str] = []
    served = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds + 10  # time for 200 threads to start

    def client(n: int) -> None:
        rng = random.Random(n)
        mine: dict[str, bytes] = {}
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            while time.monotonic() < stop_at:
                op = rng.random()
                try:
                    if op < 0.3 or not mine:
                        blob = os.urandom(rng.randint(1, 256_000))
                        r = c.post("/v1/images", content=blob, headers={
                            **FORMATS, "content-type": "application/octet-stream",
                            "x-image-meta-property-client": str(n)})
                        if r.status_code == 201:
                            mine[r.json()["image"]["id"]] = blob
                    elif op < 0.6:
                        image_id, blob = rng.choice(list(mine.items()))
                        r = c.get(f"/v1/images/{image_id}")
                        if r.status_code == 200 and r.content != blob:
                            failures.append(f"corrupt download of {image_id}")
                    elif op < 0.85:
                        r = c.get("/v1/images/detail", params={"limit": "50"})
                    else:
                        image_id = rng.choice(list(mine))
                        r = c.delete(f"/v1/images/{image_id}")
                        if r.status_code == 200:
                            del mine[image_id]
                    if r.status_code >= 500 and r.status_code != 503:
                        failures.append(f"{r.request.method} {r.request.url}: {r.status_code}")
                except httpx.HTTPError as exc:
                    failures.append(f"client {n}: {exc!r}")
                with lock:
                    served[0] += 1

    peak_rss = [0]

    def sample_rss() -> None:
        while time.monotonic() < stop_at:
            with open(f"/proc/{srv.process.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        peak_rss[0] = max(peak_rss[0], int(line.split()[1]))
            time.sleep(0.2)

    try:
        threads = [threading.Thread(target=sample_rss)]
        threads += [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 120)
        assert not failures, failures[:10]
        check_consistency(srv.url, tmp_path)
    finally:
        srv.stop()
    assert peak_rss[0] < 1024 * 1024, f"peak RSS {peak_rss[0]} KiB"
    print(f"\noverload: {clients} clients, {seconds:.0f} s, {served[0]} requests, "
          f"0 failed, peak RSS {peak_rss[0] // 1024} MiB")

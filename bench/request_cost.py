"""The CPU cost of one request kind, in process: repeatable on a busy machine.

Builds glimpse's ASGI application (the defaults: SQLite and the file store in a temporary
directory, every upload fsynced, hashed and inspected as in a server) and calls it directly, with
no network and no HTTP parser, N times after 20 untimed calls:

* ``get``: ``GET /v2/images/{id}`` of an image with five properties;
* ``create``: ``POST /v2/images`` (five properties);
* ``create_put``: ``POST /v2/images`` then ``PUT .../file`` with 64 KiB of random data;
* ``list``: ``GET /v2/images?limit=1000`` as an admin of the images' project, of 2,000 queued
  private images with five properties each (the shape of glimpse_bench.py's listing set),
  the first page and the page after it (``marker``) in turn.

It prints wall and CPU microseconds per request. Under callgrind, ``--instructions`` runs
itself twice (N and 2N requests) and prints the difference per request: instructions that do
not depend on how busy the machine is, start-up excluded.

    .venv/bin/python bench/request_cost.py get 3000
    .venv/bin/python bench/request_cost.py --instructions create_put 40   # needs valgrind
    .venv/bin/python bench/request_cost.py --instructions list 4

``list`` seeds its images once per data directory (through the API, 2,000 creates); with
``--instructions`` they are made before callgrind starts, and each run under it reads a copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEADERS = [(b"host", b"127.0.0.1:9292"), (b"x-tenant-id", b"bench"), (b"x-roles", b"admin")]
CREATE = json.dumps({"name": "bench", "disk_format": "raw", "container_format": "bare",
                     **{f"p{n}": f"v{n}" for n in range(5)}}).encode()
WARM_UP = 20
LIST_IMAGES = 2000
LIST_PAGE = 1000
LIST_WARM_UP = 2


def _listed(i: int) -> bytes:
    """An image of the listing set, as glimpse_bench.py's list_1000 makes them."""
    return json.dumps({"name": f"bench-list-{i:05d}", "disk_format": "raw",
                       "container_format": "bare", "visibility": "private",
                       "bench_set": "list10k", "bench_idx": str(i), "bench_os": "linux",
                       "bench_arch": "x86_64", "bench_team": f"team-{i % 17}"}).encode()


async def _call(app: Any, method: str, path: str, body: bytes = b"",
                headers: tuple[tuple[bytes, bytes], ...] = (),
                query: bytes = b"") -> tuple[int, bytes]:
    sent = False
    status = 0
    out = b""
    scope_headers = [*HEADERS, *headers]
    if body:
        scope_headers.append((b"content-length", str(len(body)).encode()))

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query, "root_path": "", "headers": scope_headers,
             "server": ("127.0.0.1", 9292), "client": ("127.0.0.1", 50000), "extensions": {}}
    await app(scope, receive, send)
    return status, out


async def _run(kind: str, count: int, data_dir: Path) -> None:
    from glimpse import heap
    from glimpse import settings as settings_mod
    from glimpse.app import build_app

    settings = settings_mod.load(None, overrides={}, environ={"GLIMPSE_DATA_DIR": str(data_dir)})
    app = build_app(settings)
    heap.freeze_startup_objects()  # as the server does at start-up
    json_type = ((b"content-type", b"application/json"),)
    data_type = ((b"content-type", b"application/octet-stream"),)
    data = os.urandom(64 * 1024)
    if kind == "list":
        await _list_pages(app, count)
        return
    status, body = await _call(app, "POST", "/v2/images", CREATE, json_type)
    assert status == 201, status
    image_id = json.loads(body)["id"]

    async def once() -> None:
        if kind == "get":
            status, _ = await _call(app, "GET", f"/v2/images/{image_id}")
            assert status == 200, status
            return
        status, body = await _call(app, "POST", "/v2/images", CREATE, json_type)
        assert status == 201, status
        if kind == "create_put":
            new_id = json.loads(body)["id"]
            status, _ = await _call(app, "PUT", f"/v2/images/{new_id}/file", data, data_type)
            assert status == 204, status

    await _timed(kind, once, count, WARM_UP)


async def _timed(kind: str, once: Any, count: int, warm_up: int) -> None:
    for _ in range(warm_up):
        await once()
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    for _ in range(count):
        await once()
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / count * 1e6
    system = (after.ru_stime - before.ru_stime) / count * 1e6
    print(f"{kind}: {wall / count * 1e6:.0f} us wall, {user:.0f} us user + {system:.0f} us "
          "system CPU per request")


async def _list_pages(app: Any, count: int) -> None:
    """``count`` list pages of LIST_PAGE images, the first page and the second in turn; the
    listing set is made first unless the data directory holds it."""
    query = f"limit={LIST_PAGE}".encode()
    status, body = await _call(app, "GET", "/v2/images", query=query)
    assert status == 200, status
    listed = len(json.loads(body)["images"])
    if listed < LIST_PAGE:
        json_type = ((b"content-type", b"application/json"),)
        for i in range(LIST_IMAGES):
            status, _ = await _call(app, "POST", "/v2/images", _listed(i), json_type)
            assert status == 201, status
        status, body = await _call(app, "GET", "/v2/images", query=query)
    first = json.loads(body)
    assert len(first["images"]) == LIST_PAGE, len(first["images"])
    pages = [query, first["next"].partition("?")[2].encode()]
    turn = 0

    async def once() -> None:
        nonlocal turn
        status, body = await _call(app, "GET", "/v2/images", query=pages[turn])
        assert status == 200 and body.count(b'"bench_set"') == LIST_PAGE, status
        turn ^= 1

    await _timed("list", once, count, LIST_WARM_UP)


def _instructions(kind: str, count: int, seeded: Path | None) -> int:
    """Instructions of ``count`` requests under callgrind (whole process, start-up included).
    ``seeded``: a data directory to run on a copy of."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        if seeded is not None:
            shutil.copytree(seeded, scratch, dirs_exist_ok=True)
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             __file__, "--data-dir", scratch, kind, str(count)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("get", "create", "create_put", "list"))
    parser.add_argument("count", type=int)
    parser.add_argument("--instructions", action="store_true",
                        help="instructions per request under callgrind (N and 2N runs)")
    parser.add_argument("--data-dir", type=Path, help="default: a temporary directory")
    args = parser.parse_args()
    if args.instructions:
        with tempfile.TemporaryDirectory() as seeded:
            template = None
            if args.kind == "list":
                # The listing set made once, outside callgrind (by a process that has ended
                # when it is copied): each run reads a copy.
                template = Path(seeded)
                subprocess.run([sys.executable, __file__, "--data-dir", seeded, "list", "1"],
                               check=True, stdout=subprocess.DEVNULL)
            once = _instructions(args.kind, args.count, template)
            twice = _instructions(args.kind, 2 * args.count, template)
        print(f"{args.kind}: {(twice - once) // args.count:,} instructions per request")
        return
    if args.data_dir is not None:
        asyncio.run(_run(args.kind, args.count, args.data_dir))
        return
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(_run(args.kind, args.count, Path(scratch)))


if __name__ == "__main__":
    main()

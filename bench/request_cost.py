"""The CPU cost of one request kind, in process: repeatable on a busy machine.

Builds glimpse's ASGI application (the defaults: SQLite and the file store in a temporary
directory, every upload fsynced, hashed and inspected as in a server) and calls it directly, with
no network and no HTTP parser, N times after 20 untimed calls:

* ``get``: ``GET /v2/images/{id}`` of an image with five properties;
* ``create``: ``POST /v2/images`` (five properties);
* ``create_put``: ``POST /v2/images`` then ``PUT .../file`` with 64 KiB of random data.

It prints wall and CPU microseconds per request. Under callgrind, ``--instructions`` runs
itself twice (N and 2N requests) and prints the difference per request: instructions that do
not depend on how busy the machine is, start-up excluded.

    .venv/bin/python bench/request_cost.py get 3000
    .venv/bin/python bench/request_cost.py --instructions create_put 40   # needs valgrind
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
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


async def _call(app: Any, method: str, path: str, body: bytes = b"",
                headers: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[int, bytes]:
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
             "query_string": b"", "root_path": "", "headers": scope_headers,
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

    for _ in range(WARM_UP):
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


def _instructions(kind: str, count: int) -> int:
    """Instructions of ``count`` requests under callgrind (whole process, start-up included)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
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
    parser.add_argument("kind", choices=("get", "create", "create_put"))
    parser.add_argument("count", type=int)
    parser.add_argument("--instructions", action="store_true",
                        help="instructions per request under callgrind (N and 2N runs)")
    parser.add_argument("--data-dir", type=Path, help="default: a temporary directory")
    args = parser.parse_args()
    if args.instructions:
        once, twice = _instructions(args.kind, args.count), _instructions(args.kind,
                                                                          2 * args.count)
        print(f"{args.kind}: {(twice - once) // args.count:,} instructions per request")
        return
    if args.data_dir is not None:
        asyncio.run(_run(args.kind, args.count, args.data_dir))
        return
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(_run(args.kind, args.count, Path(scratch)))


if __name__ == "__main__":
    main()

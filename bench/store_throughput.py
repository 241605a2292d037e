"""Upload and download throughput of one image through glimpse into Swift, S3 and Ceph RBD,
next to python-swiftclient, boto3 and the rbd tool moving the same file directly, in the same
run.

Needs the Swift all-in-one (``scripts/swift-aio start``; it serves both APIs) for Swift and S3,
the single-node Ceph (``scripts/ceph start``, and ``scripts/ceph bindings``) for RBD, and the
test extras (``scripts/bootstrap test``). Without ``--only``, every store whose service runs is
measured. Run from the repository root:

    .venv/bin/python bench/store_throughput.py            # 1 GiB image
    .venv/bin/python bench/store_throughput.py --size 256MB --rounds 2
    .venv/bin/python bench/store_throughput.py --only s3 \
        --variant s3:upload_concurrency=1 --variant s3:upload_concurrency=4
    .venv/bin/python bench/store_throughput.py --only rbd --variant rbd:concurrent_writes=8

glimpse is driven with curl (so the client costs little) and runs with its default store
options (Swift: 1 GiB segments; S3: 16 MiB parts growing past 1,000 parts). The direct clients
run as a user would run them: swiftclient's put_object/get_object on the file, boto3's managed
upload_file/download_fileobj with their default settings, ``rbd import`` of the file (with
glimpse's 8 MiB object size) and ``rbd export`` of the image to stdout (/dev/null), as glimpse's
Ceph user.
On RBD the OSD runs on the same machine and shares its cores with glimpse and the client.
``--variant DRIVER:OPTION=VALUE,...`` adds a glimpse server whose store has other options,
measured in the same rounds (A/B of a setting). The cases run in turn within each round, so a
slow drift of a shared machine hits them alike. Figures are medians over the rounds, in MiB/s,
and the ratio of each glimpse case to the direct client, measured on this (possibly shared)
machine in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import swiftclient.client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from glimpse.scalars import parse_size
from tests import ceph, swift_aio
from tests.e2e.server import GlimpseServer

MiB = 1 << 20
BUCKET = "glimpse-bench"
APIS = ("swift", "s3", "rbd")


def make_file(path: Path, size: int) -> None:
    block = os.urandom(16 * MiB)
    with path.open("wb") as fh:
        left = size
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= len(block)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Sink:
    """A writable file object that drops what it gets (boto3 downloads into it)."""

    def write(self, data: bytes) -> int:
        return len(data)


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", *args], check=True)


def glimpse_round(server: GlimpseServer, path: Path) -> tuple[float, float]:
    image_id = str(uuid.uuid4())
    url = f"{server.url}/v1/images"
    up = timed(lambda: curl(
        "-X", "POST", url, "-T", str(path), "-H", "Content-Type: application/octet-stream",
        "-H", f"x-image-meta-id: {image_id}", "-H", "x-image-meta-disk_format: raw",
        "-H", "x-image-meta-container_format: bare", "-H", "Expect:"))
    down = timed(lambda: curl(f"{url}/{image_id}"))
    curl("-X", "DELETE", f"{url}/{image_id}")
    return up, down


def swift_round(path: Path) -> tuple[float, float]:
    conn = swiftclient.client.Connection(
        authurl=f"{swift_aio.ENDPOINT}/auth/v1.0", user=swift_aio.USER, key=swift_aio.KEY)
    conn.put_container(BUCKET)
    name = str(uuid.uuid4())
    size = path.stat().st_size

    def upload() -> None:
        with path.open("rb") as fh:
            conn.put_object(BUCKET, name, fh, content_length=size, chunk_size=MiB)

    def download() -> None:
        _, body = conn.get_object(BUCKET, name, resp_chunk_size=MiB)
        for _ in body:
            pass

    up, down = timed(upload), timed(download)
    conn.delete_object(BUCKET, name)
    return up, down


def s3_round(path: Path) -> tuple[float, float]:
    client = boto3.client("s3", endpoint_url=swift_aio.ENDPOINT, region_name="us-east-1",
                          aws_access_key_id=swift_aio.USER,
                          aws_secret_access_key=swift_aio.KEY)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    name = str(uuid.uuid4())
    up = timed(lambda: client.upload_file(str(path), BUCKET, name))
    down = timed(lambda: client.download_fileobj(BUCKET, name, Sink()))
    client.delete_object(Bucket=BUCKET, Key=name)
    return up, down


def rbd_round(path: Path) -> tuple[float, float]:
    image = f"{ceph.POOL}/bench-{uuid.uuid4()}"
    tool = ["rbd", "-c", str(ceph.CONF), "--id", ceph.USER, "--keyring", str(ceph.KEYRING),
            "--no-progress"]

    def run(*args: str) -> None:
        subprocess.run([*tool, *args], check=True, stdout=subprocess.DEVNULL)

    up = timed(lambda: run("import", "--object-size", "8M", str(path), image))
    down = timed(lambda: run("export", image, "-"))  # to stdout, which goes to /dev/null
    run("rm", image)
    return up, down


def store_env(driver: str, options: dict[str, str]) -> dict[str, str]:
    if driver == "rbd":
        return ceph.store_env(**options)
    return swift_aio.store_env(driver, **options)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    driver, _, options = text.partition(":")
    if driver not in APIS or not options:
        raise argparse.ArgumentTypeError(f"expected swift|s3|rbd:OPTION=VALUE,...: {text!r}")
    pairs = [item.split("=", 1) for item in options.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected OPTION=VALUE in {text!r}")
    return driver, dict(pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GB", help="image size (default 1GB)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per case; median kept")
    parser.add_argument("--only", choices=APIS, help="measure one store only")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="also glimpse with these store options, e.g. s3:part_size=8MB")
    args = parser.parse_args()
    running = {"swift": swift_aio.available, "s3": swift_aio.available, "rbd": ceph.available}
    apis = [api for api in ([args.only] if args.only else APIS) if running[api]()]
    if not apis or (args.only and args.only not in apis):
        print("no store service: run scripts/swift-aio start (Swift, S3) or scripts/ceph start "
              "(RBD)", file=sys.stderr)
        return 1
    size = parse_size(args.size)
    variants: list[tuple[str, dict[str, str]]] = [(api, {}) for api in apis]
    variants += [(driver, options) for driver, options in args.variant if driver in apis]
    direct_names = {"swift": "swift direct (python-swiftclient)", "s3": "s3 direct (boto3)",
                    "rbd": "rbd direct (rbd import/export)"}
    direct_rounds = {"swift": swift_round, "s3": s3_round, "rbd": rbd_round}
    with tempfile.TemporaryDirectory(prefix="glimpse-bench-") as tmp:
        path = Path(tmp) / "image.raw"
        make_file(path, size)
        cases: dict[str, Callable[[], tuple[float, float]]] = {}
        servers: list[GlimpseServer] = []
        try:
            for api in apis:
                cases[direct_names[api]] = lambda api=api: direct_rounds[api](path)
                for n, (driver, options) in enumerate(variants):
                    if driver != api:
                        continue
                    server = GlimpseServer(
                        {**store_env(driver, options), "store_cleanup_interval": "0"},
                        data_dir=Path(tmp) / f"{driver}-{n}")
                    servers.append(server)
                    label = ",".join(f"{k}={v}" for k, v in options.items())
                    name = f"{api} through glimpse" + (f" ({label})" if label else "")
                    cases[name] = lambda server=server: glimpse_round(server, path)
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, case in cases.items():
                    samples[name].append(case())
        finally:
            for server in servers:
                server.stop()
    mib = size / MiB
    results = {name: (statistics.median(up for up, _ in runs),
                      statistics.median(down for _, down in runs))
               for name, runs in samples.items()}
    print(f"image {mib:.0f} MiB, {args.rounds} round(s), median")
    width = max(len(name) for name in results) + 1
    print(f"{'case':{width}} {'upload MiB/s':>13} {'download MiB/s':>15}  "
          f"{'up/direct':>9} {'down/direct':>11}")
    for name, (up, down) in results.items():
        d_up, d_down = results[direct_names[name.split()[0]]]
        print(f"{name:{width}} {mib / up:13.1f} {mib / down:15.1f}  "
              f"{d_up / up:9.2f} {d_down / down:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

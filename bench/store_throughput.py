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
measured in the same rounds (A/B of a setting). ``--unhashed`` adds, for each store, a glimpse
server whose upload stream does not hash (bench/unhashed_serve.py, bench only): glimpse's cost
without the two digests a direct client never computes. The cases run in turn within each
round, so a slow drift of a shared machine hits them alike. Figures are medians over the
rounds: MiB/s, the ratio of each glimpse case to the direct client in the same round (the
median of the rounds' ratios), and CPU seconds per GiB of glimpse's server, of the client
(curl, or the direct tool), of Ceph's OSD (RBD), and of everything else the machine ran
meanwhile (other users of a shared machine), with the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import swiftclient.client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# bench/ (this script's folder) is first on sys.path.
from proctree import CLK_TCK, machine_busy_seconds, tree_cpu_seconds

from glimpse.scalars import parse_size
from tests import ceph, swift_aio
from tests.e2e.server import GlimpseServer

MiB = 1 << 20
GiB = 1 << 30
BUCKET = "glimpse-bench"
APIS = ("swift", "s3", "rbd")
UNHASHED = [str(Path(__file__).with_name("unhashed_serve.py"))]


@dataclasses.dataclass
class Sample:
    """One transfer: its wall time and the CPU seconds spent meanwhile, by whom."""

    wall: float
    glimpse: float = 0.0  # glimpse's server (0 for a direct client)
    client: float = 0.0  # curl, the rbd tool, or this process (swiftclient, boto3)
    service: float = 0.0  # Ceph's OSD (RBD only)
    other: float = 0.0  # the rest of the machine's busy time


def _cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().decode("latin-1").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def measured(server: GlimpseServer | None, service_pid: int | None) -> Iterator[Sample]:
    """Times what runs inside and splits the machine's CPU time meanwhile: glimpse's server
    tree, the client (this process and the children it waited for: curl, rbd), the OSD."""
    sample = Sample(0.0)
    server_pid = server.process.pid if server is not None else None
    g0 = tree_cpu_seconds(server_pid) if server_pid else 0.0
    c0, s0 = time.process_time() + _children_cpu(), _cpu_of(service_pid)
    m0, w0 = machine_busy_seconds(), time.perf_counter()
    yield sample
    sample.wall = time.perf_counter() - w0
    sample.glimpse = tree_cpu_seconds(server_pid) - g0 if server_pid else 0.0
    sample.client = time.process_time() + _children_cpu() - c0
    sample.service = _cpu_of(service_pid) - s0
    busy = machine_busy_seconds() - m0
    sample.other = max(0.0, busy - sample.glimpse - sample.client - sample.service)


def make_file(path: Path, size: int) -> None:
    block = os.urandom(16 * MiB)
    with path.open("wb") as fh:
        left = size
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= len(block)


def timed(fn: Callable[[], object], server: GlimpseServer | None = None,
          service_pid: int | None = None) -> Sample:
    with measured(server, service_pid) as sample:
        fn()
    return sample


class Sink:
    """A writable file object that drops what it gets (boto3 downloads into it)."""

    def write(self, data: bytes) -> int:
        return len(data)


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", *args], check=True)


def service_pid(api: str) -> int | None:
    """The process whose CPU time is counted as the store's: the OSD on RBD (the Swift
    all-in-one's is not told apart)."""
    return ceph.daemon_pid("osd") if api == "rbd" else None


def glimpse_round(server: GlimpseServer, path: Path, api: str) -> tuple[Sample, Sample]:
    image_id = str(uuid.uuid4())
    url = f"{server.url}/v1/images"
    pid = service_pid(api)
    up = timed(lambda: curl(
        "-X", "POST", url, "-T", str(path), "-H", "Content-Type: application/octet-stream",
        "-H", f"x-image-meta-id: {image_id}", "-H", "x-image-meta-disk_format: raw",
        "-H", "x-image-meta-container_format: bare", "-H", "Expect:"), server, pid)
    down = timed(lambda: curl(f"{url}/{image_id}"), server, pid)
    curl("-X", "DELETE", f"{url}/{image_id}")
    return up, down


def swift_round(path: Path) -> tuple[Sample, Sample]:
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


def s3_round(path: Path) -> tuple[Sample, Sample]:
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


def rbd_round(path: Path) -> tuple[Sample, Sample]:
    image = f"{ceph.POOL}/bench-{uuid.uuid4()}"
    tool = ["rbd", "-c", str(ceph.CONF), "--id", ceph.USER, "--keyring", str(ceph.KEYRING),
            "--no-progress"]

    def run(*args: str) -> None:
        subprocess.run([*tool, *args], check=True, stdout=subprocess.DEVNULL)

    osd = service_pid("rbd")
    up = timed(lambda: run("import", "--object-size", "8M", str(path), image), None, osd)
    # To stdout, which goes to /dev/null.
    down = timed(lambda: run("export", image, "-"), None, osd)
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
    parser.add_argument("--unhashed", action="store_true",
                        help="also glimpse without the upload hashes (bench only)")
    args = parser.parse_args()
    running = {"swift": swift_aio.available, "s3": swift_aio.available, "rbd": ceph.available}
    apis = [api for api in ([args.only] if args.only else APIS) if running[api]()]
    if not apis or (args.only and args.only not in apis):
        print("no store service: run scripts/swift-aio start (Swift, S3) or scripts/ceph start "
              "(RBD)", file=sys.stderr)
        return 1
    size = parse_size(args.size)
    # (driver, options, unhashed)
    variants: list[tuple[str, dict[str, str], bool]] = [(api, {}, False) for api in apis]
    variants += [(driver, options, False) for driver, options in args.variant if driver in apis]
    if args.unhashed:
        variants += [(api, {}, True) for api in apis]
    direct_names = {"swift": "swift direct (python-swiftclient)", "s3": "s3 direct (boto3)",
                    "rbd": "rbd direct (rbd import/export)"}
    direct_rounds = {"swift": swift_round, "s3": s3_round, "rbd": rbd_round}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="glimpse-bench-") as tmp:
        path = Path(tmp) / "image.raw"
        make_file(path, size)
        cases: dict[str, Callable[[], tuple[Sample, Sample]]] = {}
        direct_of: dict[str, str] = {}
        servers: list[GlimpseServer] = []
        try:
            for api in apis:
                cases[direct_names[api]] = lambda api=api: direct_rounds[api](path)
                direct_of[direct_names[api]] = direct_names[api]
                for n, (driver, options, unhashed) in enumerate(variants):
                    if driver != api:
                        continue
                    server = GlimpseServer(
                        {**store_env(driver, options), "store_cleanup_interval": "0"},
                        data_dir=Path(tmp) / f"{driver}-{n}",
                        launcher=UNHASHED if unhashed else None)
                    servers.append(server)
                    label = ",".join([*(f"{k}={v}" for k, v in options.items()),
                                      *(["unhashed"] if unhashed else [])])
                    name = f"{api} through glimpse" + (f" ({label})" if label else "")
                    cases[name] = lambda server=server, api=api: glimpse_round(server, path, api)
                    direct_of[name] = direct_names[api]
            samples: dict[str, list[tuple[Sample, Sample]]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, case in cases.items():
                    samples[name].append(case())
        finally:
            for server in servers:
                server.stop()
    report(samples, direct_of, size, args.rounds, load_before, os.getloadavg())
    return 0


def report(samples: dict[str, list[tuple[Sample, Sample]]], direct_of: dict[str, str],
           size: int, rounds: int, load_before: tuple[float, ...],
           load_after: tuple[float, ...]) -> None:
    mib, gib = size / MiB, size / GiB

    def median(values: Iterator[float]) -> float:
        return statistics.median(values)

    print(f"image {mib:.0f} MiB, {rounds} round(s), medians; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    width = max(len(name) for name in samples) + 1
    print(f"{'case':{width}} {'upload MiB/s':>13} {'download MiB/s':>15}  "
          f"{'up/direct':>9} {'down/direct':>11}")
    for name, runs in samples.items():
        direct = samples[direct_of[name]]
        up_ratio = median(d[0].wall / g[0].wall for d, g in zip(direct, runs, strict=True))
        down_ratio = median(d[1].wall / g[1].wall for d, g in zip(direct, runs, strict=True))
        print(f"{name:{width}} {mib / median(up.wall for up, _ in runs):13.1f} "
              f"{mib / median(down.wall for _, down in runs):15.1f}  "
              f"{up_ratio:9.2f} {down_ratio:11.2f}")
    print("\nCPU seconds per GiB (medians): glimpse's server, the client, the store's daemon "
          "(OSD), the rest of the machine")
    print(f"{'case':{width}} {'direction':>9} {'glimpse':>8} {'client':>7} {'store':>6} "
          f"{'other':>6}")
    for name, runs in samples.items():
        for direction, index in (("upload", 0), ("download", 1)):
            taken = [run[index] for run in runs]
            print(f"{name:{width}} {direction:>9} "
                  f"{median(s.glimpse for s in taken) / gib:8.2f} "
                  f"{median(s.client for s in taken) / gib:7.2f} "
                  f"{median(s.service for s in taken) / gib:6.2f} "
                  f"{median(s.other for s in taken) / gib:6.2f}")


if __name__ == "__main__":
    sys.exit(main())

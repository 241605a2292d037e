"""Download throughput of one image served from the node image cache, next to the filesystem
store's zero-copy download and an uncached download from the remote store (Swift), in the
same run, with the server's peak memory over each download (docs/cache.md).

Needs the Swift all-in-one (``scripts/swift-aio start``) and the test extras
(``scripts/bootstrap test``). Run from the repository root:

    .venv/bin/python bench/cache_throughput.py              # 1 GiB image, 3 rounds
    .venv/bin/python bench/cache_throughput.py --size 256MB --rounds 5

Three servers, each with one worker: the filesystem store; Swift with no cache; Swift with a
cache. The same image is uploaded to each once. The cache is filled by a first download
(reported on its own: "swift, cache fill", the remote read and the write of the cache file in
one stream), then every round downloads the image from each server in turn with curl to
/dev/null, so a slow drift of a shared machine hits the cases alike. Figures are medians in
MiB/s, with each case's ratio to the filesystem store and to uncached Swift, and the peak
growth of the server's resident memory during its downloads.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import proctree
from store_throughput import make_file

from glimpse.scalars import parse_size
from tests import swift_aio
from tests.e2e.server import GlimpseServer

MiB = 1 << 20


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", *args], check=True)


def upload(server: GlimpseServer, path: Path) -> str:
    image_id = str(uuid.uuid4())
    curl("-X", "POST", f"{server.url}/v1/images", "-T", str(path),
         "-H", "Content-Type: application/octet-stream", "-H", f"x-image-meta-id: {image_id}",
         "-H", "x-image-meta-disk_format: raw", "-H", "x-image-meta-container_format: bare",
         "-H", "Expect:")
    return image_id


def measured(server: GlimpseServer, image_id: str) -> tuple[float, int]:
    """Seconds to download the image through v2, and the server's peak RSS growth (KiB)."""
    root = proctree.server_pid(server.port) or server.process.pid
    with proctree.MemorySampler(root) as memory:
        start = time.perf_counter()
        curl(f"{server.url}/v2/images/{image_id}/file")
        seconds = time.perf_counter() - start
    return seconds, memory.peak_rss_kib - memory.rss_before_kib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GB", help="image size (default 1GB)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case; median kept")
    args = parser.parse_args()
    if not swift_aio.available():
        print("no Swift all-in-one: run scripts/swift-aio start", file=sys.stderr)
        return 1
    size = parse_size(args.size)
    swift = swift_aio.store_env("swift")
    with tempfile.TemporaryDirectory(prefix="glimpse-bench-cache-") as tmp:
        path = Path(tmp) / "image.raw"
        make_file(path, size)
        configs = {
            "filesystem store (sendfile)": {},
            "swift, uncached": swift,
            "swift, from the cache": {**swift, "image_cache_dir": "cache",
                                      "image_cache_max_size": str(2 * size + MiB)},
        }
        servers: dict[str, GlimpseServer] = {}
        try:
            for n, (name, settings) in enumerate(configs.items()):
                servers[name] = GlimpseServer({**settings, "store_cleanup_interval": "0"},
                                              data_dir=Path(tmp) / f"server-{n}")
            images = {name: upload(server, path) for name, server in servers.items()}
            cached = "swift, from the cache"
            fill = measured(servers[cached], images[cached])
            samples: dict[str, list[tuple[float, int]]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, server in servers.items():
                    samples[name].append(measured(server, images[name]))
        finally:
            for server in servers.values():
                server.stop()
    report(size, args.rounds, fill, samples)
    return 0


def report(size: int, rounds: int, fill: tuple[float, int],
           samples: dict[str, list[tuple[float, int]]]) -> None:
    mib = size / MiB
    def median(runs: list[tuple[float, int]]) -> float:
        return statistics.median(s for s, _ in runs)

    results = {name: (median(runs), max(kib for _, kib in runs))
               for name, runs in samples.items()}
    base_fs = results["filesystem store (sendfile)"][0]
    base_swift = results["swift, uncached"][0]
    print(f"image {mib:.0f} MiB, {rounds} round(s), median download")
    width = max(len(n) for n in results) + 1
    print(f"{'case':{width}} {'MiB/s':>8} {'vs file':>8} {'vs swift':>9} {'peak RSS +MiB':>14}")
    for name, (seconds, kib) in results.items():
        print(f"{name:{width}} {mib / seconds:8.1f} {base_fs / seconds:8.2f} "
              f"{base_swift / seconds:9.2f} {kib / 1024:14.1f}")
    print(f"{'swift, cache fill (1st)':{width}} {mib / fill[0]:8.1f} {base_fs / fill[0]:8.2f} "
          f"{base_swift / fill[0]:9.2f} {fill[1] / 1024:14.1f}")


if __name__ == "__main__":
    sys.exit(main())

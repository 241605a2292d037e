"""Upload throughput with format inspection on and off, measured in one interleaved run.

Starts two real ``glimpse serve`` processes on loopback, identical but for
``inspection_disk_formats`` (the default list, and empty: nothing inspected), and uploads the
same pseudo-random image (1 GiB by default, declared raw) to each in turn, A B A B, checking
every answer is active with the right size. Reports the median MiB/s and server CPU seconds
of each, and their ratio: compare ratios, never absolute figures, on a shared machine.

Then, in process and without the network's noise, the CPU time of the upload stream (size
limits and hashing) with and without the inspection stage over the same chunks: for raw
content, and for the worst case, a streamOptimized VMDK header (made with qemu-img, when it
is installed) whose footer inspector is fed every chunk.

    .venv/bin/python bench/inspection_overhead.py [--mib 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proctree import tree_cpu_seconds  # bench/ is this script's folder, first on sys.path

BLOCK = 1 << 20


class Server:
    """A real ``glimpse serve`` process (the one the end-to-end tests start), log level warning."""

    def __init__(self, name: str, settings: dict[str, str]) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.e2e.server import GlimpseServer

        self.name = name
        self.server = GlimpseServer({"log_level": "warning", **settings})
        self.port = self.server.port
        self.process = self.server.process

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def upload(self, path: Path) -> tuple[float, float]:
        """Seconds and server CPU seconds for one POST /v1/images of the file."""
        size = path.stat().st_size
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        cpu0, t0 = self.cpu_seconds(), time.perf_counter()
        with path.open("rb") as body:
            conn.request("POST", "/v1/images", body=body, headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(size),
                "x-image-meta-name": "bench", "x-image-meta-disk_format": "raw",
                "x-image-meta-container_format": "bare",
            })
            resp = conn.getresponse()
            answer = resp.read()
        seconds, cpu = time.perf_counter() - t0, self.cpu_seconds() - cpu0
        image = json.loads(answer)["image"]
        assert resp.status == 201 and image["status"] == "active" and image["size"] == size
        conn.request("DELETE", f"/v1/images/{image['id']}")
        conn.getresponse().read()
        conn.close()
        return seconds, cpu

    def stop(self) -> None:
        self.server.stop()


def image_file(directory: Path, mib: int) -> Path:
    path = directory / f"bench-{mib}m.raw"
    if not path.exists() or path.stat().st_size != mib * BLOCK:
        seed = os.urandom(BLOCK)
        with path.open("wb") as fh:
            for i in range(mib):  # cheap pseudo-random blocks, all distinct
                fh.write(i.to_bytes(8, "little") + seed[8:])
    return path


def stream_cpu(chunks: list[bytes], inspect: bool) -> float:
    """CPU seconds to pass the chunks through the upload stream, inspected or not."""
    from glimpse.errors import OverLimit
    from glimpse.inspection.oslo import OsloDetector
    from glimpse.streams.inspection import InspectionRules, Inspector
    from glimpse.streams.upload import UploadStream

    start = time.process_time()
    stream = UploadStream(chunks, limit=1 << 50, limit_error=OverLimit("cap"))
    stage = Inspector(OsloDetector, InspectionRules(frozenset({"raw", "vmdk"}))).stage(
        stream, "vmdk" if chunks[0].startswith(b"KDMV") else "raw", "ova") if inspect else None
    for _ in stage if stage is not None else stream:
        pass
    return time.process_time() - start


def in_process(mib: int, rounds: int) -> None:
    block = os.urandom(BLOCK)
    cases = {"raw": [block] * mib}
    tool = shutil.which("qemu-img")
    if tool:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s.vmdk"
            subprocess.run([tool, "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized",
                            str(path), "1M"], check=True)
            header = path.read_bytes()
        cases["vmdk-stream"] = [header + block[len(header):]] + [block] * (mib - 1)
    for name, chunks in cases.items():
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):  # interleaved, so load from other work hits both alike
            for inspect in (False, True):
                runs[inspect].append(stream_cpu(chunks, inspect))
        off, on = statistics.median(runs[False]), statistics.median(runs[True])
        print(f"in process, {name:11} stream CPU on {on:.3f} s, off {off:.3f} s: "
              f"on/off {on / off:.3f}")
    print(f"detector alone over the raw chunks: glimpse {detector_cpu(cases['raw'], False):.4f} s"
          f", oslo.utils' InspectWrapper {detector_cpu(cases['raw'], True):.4f} s")


def detector_cpu(chunks: list[bytes], wrapper: bool) -> float:
    """CPU seconds of format detection alone: glimpse's detector or oslo.utils' own wrapper."""
    from oslo_utils.imageutils import format_inspector

    from glimpse.inspection.oslo import OsloDetector

    start = time.process_time()
    if wrapper:
        wrapped = format_inspector.InspectWrapper(iter(chunks))  # type: ignore[arg-type]
        for _ in wrapped:
            pass
        wrapped.close()
    else:
        detector = OsloDetector()
        for chunk in chunks:
            detector.feed(chunk)
        detector.finish()
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    path = image_file(args.dir, args.mib)
    servers = [Server("inspection-on", {}),
               Server("inspection-off", {"inspection_disk_formats": ""})]
    results: dict[str, list[tuple[float, float]]] = {s.name: [] for s in servers}
    try:
        for server in servers:
            server.upload(path)  # warm-up: imports, page cache, first-use paths
        for _ in range(args.rounds):
            for server in servers:
                results[server.name].append(server.upload(path))
    finally:
        for server in servers:
            server.stop()
    medians = {}
    for name, runs in results.items():
        rate = statistics.median(args.mib / s for s, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        medians[name] = (rate, cpu)
        rates = sorted(round(args.mib / s) for s, _ in runs)
        print(f"{name:15} {rate:7.1f} MiB/s {rates}  server CPU {cpu:.2f} s")
    on, off = medians["inspection-on"], medians["inspection-off"]
    print(f"throughput on/off: {on[0] / off[0]:.3f}   server CPU on/off: {on[1] / off[1]:.3f}")
    in_process(args.mib, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

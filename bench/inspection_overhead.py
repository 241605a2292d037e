"""Upload throughput with format inspection on and off, measured in one interleaved run.

Starts two real ``glimpse serve`` processes on loopback, identical but for
``inspection_disk_formats`` (the default list, and empty: nothing inspected), and uploads the
same pseudo-random image (1 GiB by default, declared raw) to each in turn, A B A B, checking
every answer is active with the right size. Reports the median MiB/s and server CPU seconds
of each, and their ratio: compare ratios, never absolute figures, on a shared machine.

    .venv/bin/python bench/inspection_overhead.py [--mib 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, name: str, settings: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        data_dir = workdir / name
        data_dir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
        env["GLIMPSE_DATA_DIR"] = str(data_dir)
        env["GLIMPSE_LOG_LEVEL"] = "warning"
        env.update({f"GLIMPSE_{k.upper()}": v for k, v in settings.items()})
        self.log = (data_dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "glimpse", "serve", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def image_file(directory: Path, mib: int) -> Path:
    path = directory / f"bench-{mib}m.raw"
    if not path.exists() or path.stat().st_size != mib * BLOCK:
        seed = os.urandom(BLOCK)
        with path.open("wb") as fh:
            for i in range(mib):  # cheap pseudo-random blocks, all distinct
                fh.write(i.to_bytes(8, "little") + seed[8:])
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    path = image_file(args.dir, args.mib)
    with tempfile.TemporaryDirectory(prefix="glimpse-bench-", dir=args.dir) as tmp:
        servers = [Server("inspection-on", {}, Path(tmp)),
                   Server("inspection-off", {"inspection_disk_formats": ""}, Path(tmp))]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

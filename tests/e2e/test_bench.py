"""The project's benchmark harness runs end to end against a live server (at tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.server import GlimpseServer

BENCH = Path(__file__).parents[2] / "bench" / "glimpse_bench.py"


SCENARIOS = ("upload_1g", "download_1g", "upload_small", "head_rps", "list_1000")
TINY = ["--rounds", "1", "--big-mib", "4", "--small-count", "10", "--head-seconds", "1",
        "--list-images", "30"]


def run_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), *TINY, "--data-dir", str(tmp_path / "data"),
         "--json", str(out), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(out.read_text())
    assert document["failed"] is None
    return document


def test_bench_smoke(tmp_path: Path) -> None:
    srv = GlimpseServer(data_dir=tmp_path / "srv")
    try:
        document = run_bench(tmp_path, "--url", srv.url)
        for scenario in SCENARIOS:
            assert document["results"][scenario]["A"], scenario  # samples were taken
    finally:
        srv.stop()


def test_bench_v2_against_v1(tmp_path: Path) -> None:
    """glimpse's two adapters side by side on one server, with the v2 client the benchmark
    uses for Glance; every v2 image must carry the sha512 multihash of its data."""
    srv = GlimpseServer(data_dir=tmp_path / "srv")
    identity = ["X-Tenant-Id: bench", "X-Roles: admin"]
    try:
        document = run_bench(
            tmp_path, "--url", srv.url, "--api", "v2",
            *(f"--header={h}" for h in identity),
            "--url-b", srv.url, "--api-b", "v1", *(f"--header-b={h}" for h in identity),
            "--multihash", "sha512",
        )
        assert document["targets"]["A"].startswith(f"A: {srv.url} (API v2")
        for scenario in SCENARIOS:
            assert document["results"][scenario]["A"], scenario
            assert document["results"][scenario]["B"], scenario
    finally:
        srv.stop()


def test_bench_refuses_another_multihash(tmp_path: Path) -> None:
    """The multihash check is real: asking for sha256 from a server that uses sha512 fails."""
    srv = GlimpseServer(data_dir=tmp_path / "srv")
    try:
        result = subprocess.run(
            [sys.executable, str(BENCH), *TINY, "--data-dir", str(tmp_path / "data"),
             "--url", srv.url, "--api", "v2", "--header", "X-Tenant-Id: bench",
             "--multihash", "sha256", "upload_small"],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "os_hash_algo 'sha512' != 'sha256'" in result.stderr
    finally:
        srv.stop()
